// @ts-check
// What the join page, the queue page and the staff console share besides
// the protocol and their connection (connection.js): their page log (kept
// for tests and support), the reconnect backoff, and the call's telemetry
// and simulcast helpers. No DOM use: loads in Node too.

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

/**
 * How long to wait before reconnect attempt number `attempt` (0-based):
 * 0.5 s, 1 s, 2 s, 4 s, 8 s, then every 10 s, each ±20 % so that phones
 * cut off by the same tower do not all come back in the same instant.
 * `rand` is Math.random or a stand-in (tests).
 */
export function backoffMs(attempt, rand = Math.random) {
  const base = Math.min(10_000, 500 * 2 ** Math.max(0, Math.min(attempt, 10)));
  return Math.round(base * (0.8 + 0.4 * rand()));
}

/**
 * One telemetry sample from an RTCStatsReport (anything with `values()` or
 * `forEach`): round-trip time of the selected candidate pair, the loss of
 * received packets since `prev` (the `state` this function returned last
 * time), the worst receive jitter, the tallest picture decoded since then,
 * and whether no video went either way since then. Returns
 * `{sample, state}`; fields the browser did not give are left undefined.
 */
export function summarizeStats(report, prev = null) {
  const list = [];
  if (report && typeof report.forEach === 'function') report.forEach((r) => list.push(r));
  const state = { inbound: {}, outboundFrames: 0 };
  let rtt;
  let jitter;
  let height;
  let lostDelta = 0;
  let recvDelta = 0;
  let videoIn = false;
  for (const r of list) {
    if (r.type === 'candidate-pair' && r.state === 'succeeded' && (r.nominated || r.selected)
        && Number.isFinite(r.currentRoundTripTime)) {
      rtt = Math.max(rtt ?? 0, r.currentRoundTripTime * 1000);
    } else if (r.type === 'inbound-rtp') {
      const lost = Math.max(0, r.packetsLost || 0);
      const received = r.packetsReceived || 0;
      const frames = r.framesDecoded || 0;
      state.inbound[r.id] = { lost, received, frames };
      const before = prev && prev.inbound[r.id];
      lostDelta += Math.max(0, lost - (before ? before.lost : 0));
      recvDelta += Math.max(0, received - (before ? before.received : 0));
      if (Number.isFinite(r.jitter)) jitter = Math.max(jitter ?? 0, r.jitter * 1000);
      if (r.kind === 'video' && frames > (before ? before.frames : 0)) {
        videoIn = true;
        if (Number.isFinite(r.frameHeight)) height = Math.max(height ?? 0, r.frameHeight);
      }
    } else if (r.type === 'outbound-rtp' && r.kind === 'video') {
      state.outboundFrames += r.framesEncoded || r.framesSent || 0;
    }
  }
  const videoOut = state.outboundFrames > (prev ? prev.outboundFrames : 0);
  const loss = lostDelta + recvDelta > 0 ? (100 * lostDelta) / (lostDelta + recvDelta) : undefined;
  return {
    sample: {
      rtt_ms: rtt, loss_pct: loss, jitter_ms: jitter, frame_height: height,
      audio_only: !videoIn && !videoOut,
    },
    state,
  };
}

/**
 * The camera's simulcast layers, lowest first (rids `q`, `h`, `f`: a quarter,
 * half and full resolution of the 1280x720 the camera is asked for). The SFU
 * forwards each subscriber one layer (the one its link carries) and tells the
 * publisher which layers nobody receives (`publish_layers`) so that it stops
 * encoding them.
 */
export const CAMERA_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 100_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

/** `sendEncodings` for the camera's transceiver: every layer, active unless `paused`. */
export function cameraEncodings({ paused = false } = {}) {
  return CAMERA_LAYERS.map((l) => ({ ...l, active: !paused }));
}

/**
 * Sets the `active` flag of a sender's encodings (from getParameters()) in
 * place: everything off while `paused` (audio only); otherwise a simulcast
 * layer (an encoding with a rid) is on when `allowed` (the rids of the
 * latest `publish_layers`, or null before any) lists it, and an encoding
 * without a rid is on. Returns whether anything changed.
 */
export function setLayerActivity(encodings, { allowed = null, paused = false } = {}) {
  let changed = false;
  for (const e of encodings || []) {
    let want = !paused;
    if (want && e.rid && Array.isArray(allowed)) want = allowed.includes(e.rid);
    if (e.active !== want) {
      e.active = want;
      changed = true;
    }
  }
  return changed;
}
