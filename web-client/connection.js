// @ts-check
// The one WebSocket session to tuxa's /ws that the call page (app.js), the
// queue page (queue.js) and the staff console (staff.js) share. No DOM use:
// it loads in Node, where web-client/test/connection.test.mjs drives it with
// a fake WebSocket and fake timers.
//
// What it does (docs/protocol.md, "Session" and "Keepalive"):
//   - open: `connect()` opens a new socket (closing the one before, if any)
//     and sends `hello` as soon as it is open;
//   - handshake: the server's `welcome` starts the keepalive at the interval
//     it names and is then handed to the page like every other message; the
//     page sends its `join` (or `queue_join`, `available`, …) from there;
//   - keepalive: `ping` with a growing `seq`; with `watchSilence`, a server
//     that sends nothing for two keepalive intervals and 5 s is reported
//     (`onSilent`): the server answers every ping, so such a silence means
//     the socket is dead without a close (a NAT forgot it, the phone changed
//     network);
//   - reconnect: `retryLater(run)` runs `run` after the next backoff delay
//     (attempt 0, 1, 2, … until `resetBackoff()`), `retryNow()` runs a
//     waiting retry at once (the browser says the network is back);
//   - clean close: `close()` stops everything and detaches the socket, so
//     that its late events reach nobody; `close(code, {lingerMs})` lets a
//     last frame (`leave`) go out before the socket closes.
//
// What it leaves to the page: WHETHER to reconnect and what to do first
// (the call page checks its link again, the console its sign-in, the queue
// page gives up when the place is gone), because that differs per page.
// A socket that closes or fails to open without `close()` is reported once
// (`onLost`); nothing is retried unless the page asks.

import * as P from './protocol.js';
import { backoffMs } from './session.js';

/**
 * Where a connection is:
 * - `closed`: no socket (never opened, closed by the page, or lost);
 * - `connecting`: a socket is opening;
 * - `open`: the socket is open and `hello` sent;
 * - `ready`: the server's `welcome` came; the keepalive runs;
 * - `retrying`: no socket, a retry is scheduled (`retryLater`).
 * @typedef {'closed' | 'connecting' | 'open' | 'ready' | 'retrying'} ConnectionState
 */

/**
 * How a socket ended without `close()`.
 * @typedef {object} Lost
 * @property {boolean} opened whether it had opened (false: it never connected)
 * @property {boolean} created false when the browser refused to make the socket at all
 * @property {number} code the close code (0 when there was no close event)
 * @property {string} reason the close reason
 */

/**
 * The timers and clock a connection uses: the global ones, or a test's.
 * @typedef {object} Timers
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(id: any) => void} clearTimeout
 * @property {(fn: () => void, ms: number) => any} setInterval
 * @property {(id: any) => void} clearInterval
 * @property {() => number} now milliseconds, monotonic
 */

/** @type {Timers} */
const GLOBAL_TIMERS = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (id) => globalThis.clearInterval(id),
  now: () => globalThis.performance.now(),
};

/** How often the silence watch looks at the time of the last frame. */
export const SILENCE_CHECK_MS = 2000;

/** The silence after which a server is taken for gone, for a keepalive interval. */
export function silenceLimitMs(keepaliveMs) {
  return 2 * keepaliveMs + 5000;
}

/** The `/ws` URL of the page's own origin (`wss:` under https). */
export function defaultWsUrl(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${loc.host}/ws`;
}

/** Sends `ping`s with growing `seq` at the interval the server's `welcome` names. */
export class Keepalive {
  /**
   * @param {(seq: number) => void} sendPing
   * @param {Timers} [timers]
   */
  constructor(sendPing, timers = GLOBAL_TIMERS) {
    this.sendPing = sendPing;
    this.timers = timers;
    /** @type {any} */
    this.timer = null;
    this.seq = 0;
  }

  /**
   * @param {number} ms the interval the server asked for
   * @param {number} fallbackMs used when `ms` is missing or under a second
   */
  start(ms, fallbackMs) {
    this.stop();
    const every = Number.isFinite(ms) && ms >= 1000 ? ms : fallbackMs;
    this.timer = this.timers.setInterval(() => this.sendPing(++this.seq), every);
  }

  stop() {
    if (this.timer) this.timers.clearInterval(this.timer);
    this.timer = null;
  }
}

/**
 * @typedef {object} ConnectionOptions
 * @property {(msg: any) => void} onMessage every parsed server message, in order (`welcome` too)
 * @property {(lost: Lost) => void} [onLost] the socket closed, or could not open, without `close()`
 * @property {(state: ConnectionState) => void} [onState] every change of `state`
 * @property {() => void} [onSilent] with `watchSilence`: the server has been silent too long
 * @property {boolean} [watchSilence] report a silent server (default false)
 * @property {(attempt: number) => number} [backoff] delay before retry `attempt` (0-based); default `backoffMs`
 * @property {(...args: any[]) => void} [log] the page's log
 * @property {(msg: any) => string} [describeSent] what to log after `→ type` for a sent message
 * @property {() => string} [url] the socket's URL (default: /ws of this origin)
 * @property {{ new (url: string): WebSocket, OPEN: number }} [WebSocket] the WebSocket class (tests pass a fake)
 * @property {Timers} [timers] timers and clock (tests pass fakes)
 */

/** One page's session to /ws, reopened by the page as it sees fit (see the header). */
export class Connection {
  /** @param {ConnectionOptions} opts */
  constructor(opts) {
    this.opts = opts;
    this.log = opts.log || (() => {});
    this.timers = opts.timers || GLOBAL_TIMERS;
    this.WS = opts.WebSocket || globalThis.WebSocket;
    this.backoff = opts.backoff || ((attempt) => backoffMs(attempt));
    /** @type {WebSocket | null} the live socket; null once closed, lost or detached */
    this.socket = null;
    /** @type {ConnectionState} */
    this.state = 'closed';
    /** Retries scheduled since the last `resetBackoff()`. */
    this.attempt = 0;
    /** @type {any} */
    this.retryTimer = null;
    /** @type {(() => void) | null} */
    this.retryRun = null;
    this.keepalive = new Keepalive((seq) => this.send(P.ping(seq)), this.timers);
    /** `timers.now()` when the server was last heard. */
    this.lastHeard = 0;
    /** The silence after which `onSilent` fires; follows the welcome's keepalive interval. */
    this.silenceLimitMs = silenceLimitMs(P.KEEPALIVE_INTERVAL_MS);
    /** @type {any} */
    this.silenceTimer = null;
  }

  /** @param {ConnectionState} state */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    if (this.opts.onState) this.opts.onState(state);
  }

  /** Whether a message sent now goes out. */
  get isOpen() {
    return !!this.socket && this.socket.readyState === this.WS.OPEN;
  }

  /** Whether a retry is scheduled and has not run yet. */
  get retryPending() {
    return this.retryTimer !== null;
  }

  /**
   * Opens a new socket: the current one (if any) is closed first and a
   * scheduled retry is cancelled. Sends `hello` once open.
   */
  connect() {
    this.detach(1000);
    this.cancelRetry();
    let sock;
    try {
      sock = new this.WS(this.opts.url ? this.opts.url() : defaultWsUrl());
    } catch (e) {
      this.log('WebSocket failed', e);
      this.setState('closed');
      this.lost({ opened: false, created: false, code: 0, reason: '' });
      return;
    }
    this.socket = sock;
    this.setState('connecting');
    let opened = false;
    sock.onopen = () => {
      if (sock !== this.socket) return;
      opened = true;
      this.lastHeard = this.timers.now();
      this.log('socket open');
      this.setState('open');
      if (this.opts.watchSilence) this.watchSilence();
      this.send(P.hello());
    };
    sock.onmessage = (ev) => {
      if (sock !== this.socket) return;
      this.lastHeard = this.timers.now();
      P.dispatchServerFrame(ev.data, (msg) => this.onFrame(msg), this.log);
    };
    sock.onerror = () => this.log('socket error');
    sock.onclose = (ev) => {
      this.log('socket closed', ev.code, ev.reason || '');
      if (sock !== this.socket) return;
      this.socket = null;
      this.stopTimers();
      this.setState('closed');
      this.lost({ opened, created: true, code: ev.code, reason: ev.reason || '' });
    };
  }

  /** @param {any} msg a parsed server message */
  onFrame(msg) {
    if (msg.type === 'welcome') {
      this.keepalive.start(msg.keepalive_interval_ms, P.KEEPALIVE_INTERVAL_MS);
      if (msg.keepalive_interval_ms >= 1000) this.silenceLimitMs = silenceLimitMs(msg.keepalive_interval_ms);
      this.setState('ready');
    }
    this.opts.onMessage(msg);
  }

  /** @param {Lost} how */
  lost(how) {
    if (this.opts.onLost) this.opts.onLost(how);
  }

  watchSilence() {
    this.timers.clearInterval(this.silenceTimer);
    this.silenceTimer = this.timers.setInterval(() => {
      if (!this.isOpen) return;
      if (this.timers.now() - this.lastHeard > this.silenceLimitMs && this.opts.onSilent) this.opts.onSilent();
    }, SILENCE_CHECK_MS);
  }

  stopTimers() {
    this.keepalive.stop();
    this.timers.clearInterval(this.silenceTimer);
    this.silenceTimer = null;
  }

  /**
   * Sends a client message if the socket is open; says whether it did.
   * @param {{ type: string }} msg
   */
  send(msg) {
    const sock = this.socket;
    if (!sock || sock.readyState !== this.WS.OPEN) {
      this.log('not sent (socket closed):', msg.type);
      return false;
    }
    if (msg.type !== 'ping') this.log('→', msg.type, this.opts.describeSent ? this.opts.describeSent(msg) : '');
    sock.send(P.encode(msg));
    return true;
  }

  /**
   * Closes the socket as the page's own decision: no `onLost`, no retry.
   * @param {number} [code] the close code (1000: normal)
   * @param {{ lingerMs?: number }} [how] `lingerMs`: close only after this
   *   long, so that a frame just sent (`leave`) goes out first
   */
  close(code = 1000, { lingerMs = 0 } = {}) {
    this.cancelRetry();
    this.detach(code, lingerMs);
    this.setState('closed');
  }

  /**
   * @param {number} code
   * @param {number} [lingerMs]
   */
  detach(code, lingerMs = 0) {
    this.stopTimers();
    const sock = this.socket;
    this.socket = null;
    if (!sock) return;
    const shut = () => { try { sock.close(code); } catch { /* already closing */ } };
    if (lingerMs > 0) this.timers.setTimeout(shut, lingerMs);
    else shut();
  }

  /**
   * Closes the live socket the way a flaky network would: the page hears of
   * it as a loss (`onLost`), as it would of a real one. For tests.
   */
  drop(code = 4000, reason = 'dropped for a test') {
    if (this.socket) this.socket.close(code, reason);
  }

  /**
   * Runs `run` after the next backoff delay (replacing a retry already
   * scheduled) and counts the attempt. Returns the delay.
   * @param {() => void} run usually the page's "check, then connect()"
   */
  retryLater(run) {
    this.cancelRetry();
    const delay = this.backoff(this.attempt);
    this.attempt += 1;
    this.retryRun = run;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.retryRun = null;
      run();
    }, delay);
    if (!this.socket) this.setState('retrying');
    return delay;
  }

  /** Runs a scheduled retry now; says whether there was one. */
  retryNow() {
    const run = this.retryRun;
    if (!this.retryPending || !run) return false;
    this.cancelRetry();
    run();
    return true;
  }

  /** Cancels a scheduled retry (the attempt count stays). */
  cancelRetry() {
    if (this.retryTimer !== null) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryRun = null;
    if (this.state === 'retrying') this.setState('closed');
  }

  /** The next retry waits the first delay again (after a success). */
  resetBackoff() {
    this.attempt = 0;
  }
}
