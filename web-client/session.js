// What the join page, the queue page and the staff console share besides
// the protocol: their page log (kept for tests and support) and the
// keepalive on their WebSocket. No DOM use: loads in Node too.

/** A value for a log line: errors by name and message, the rest as JSON. */
export function safeJson(v) {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try { return JSON.stringify(v); } catch { return String(v); }
}

/**
 * A logger that keeps the last 300 lines in `entries` (exposed to tests as
 * `window.tuxa*.log`) and echoes them to the console under `tag`.
 */
export function pageLog(entries, tag) {
  return (...args) => {
    const line = args.map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ');
    entries.push(`${(performance.now() / 1000).toFixed(2)} ${line}`);
    if (entries.length > 300) entries.shift();
    console.log(tag, line);
  };
}

/** Sends `ping`s with growing `seq` at the interval the server's `welcome` names. */
export class Keepalive {
  constructor(sendPing) {
    this.sendPing = sendPing;
    this.timer = null;
    this.seq = 0;
  }

  start(ms, fallbackMs) {
    this.stop();
    const every = Number.isFinite(ms) && ms >= 1000 ? ms : fallbackMs;
    this.timer = setInterval(() => this.sendPing(++this.seq), every);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
