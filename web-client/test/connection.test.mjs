// The connection the call page, the queue page and the console share
// (connection.js), without a browser: a fake WebSocket the test opens,
// feeds and closes, and fake timers the test moves forward.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Connection, Keepalive, silenceLimitMs, SILENCE_CHECK_MS } from '../connection.js';
import { backoffMs } from '../session.js';

/** Timers that run only when the test advances the clock. */
function fakeTimers() {
  let now = 0;
  let nextId = 1;
  const pending = new Map(); // id → {at, fn, every}
  const add = (fn, ms, every) => {
    const id = nextId++;
    pending.set(id, { at: now + ms, fn, every });
    return id;
  };
  const timers = {
    setTimeout: (fn, ms) => add(fn, ms, 0),
    setInterval: (fn, ms) => add(fn, ms, ms),
    clearTimeout: (id) => pending.delete(id),
    clearInterval: (id) => pending.delete(id),
    now: () => now,
    pending: () => pending.size,
    /** Moves the clock by `ms`, running what falls due in order. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let due = null;
        for (const [id, t] of pending) if (t.at <= end && (!due || t.at < due[1].at)) due = [id, t];
        if (!due) break;
        const [id, t] = due;
        now = t.at;
        if (t.every) t.at += t.every;
        else pending.delete(id);
        t.fn();
      }
      now = end;
    },
  };
  return timers;
}

/** A WebSocket stand-in: records what is sent; the test opens, feeds and closes it. */
class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static all = [];
  static refuse = false;

  constructor(url) {
    if (FakeSocket.refuse) throw new Error('refused');
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000, reason = '') {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    this.readyState = FakeSocket.CLOSED;
    // A browser reports a close it was asked for too.
    this.onclose?.({ code, reason });
  }

  // The server's side.
  serverOpens() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
  }

  serverSends(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  networkDrops(code = 1006) {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason: '' });
  }
}

const WELCOME = { type: 'welcome', version: 1, server: 'tuxa-test', keepalive_interval_ms: 15000, idle_timeout_ms: 45000 };

function setup(extra = {}) {
  FakeSocket.all = [];
  FakeSocket.refuse = false;
  const timers = fakeTimers();
  const events = { messages: [], lost: [], states: [], silent: 0 };
  const conn = new Connection({
    url: () => 'wss://tuxa.test/ws',
    WebSocket: FakeSocket,
    timers,
    onMessage: (m) => events.messages.push(m),
    onLost: (l) => events.lost.push(l),
    onState: (s) => events.states.push(s),
    onSilent: () => { events.silent += 1; },
    ...extra,
  });
  return { conn, timers, events, sock: () => FakeSocket.all.at(-1) };
}

test('hello goes out on open; welcome starts the keepalive and reaches the page', () => {
  const { conn, timers, events, sock } = setup();
  conn.connect();
  assert.equal(conn.state, 'connecting');
  assert.equal(sock().url, 'wss://tuxa.test/ws');
  assert.equal(conn.send({ type: 'join' }), false, 'nothing goes out before the socket is open');
  sock().serverOpens();
  assert.equal(conn.state, 'open');
  assert.deepEqual(sock().sent.map((m) => m.type), ['hello']);
  timers.advance(60_000);
  assert.deepEqual(sock().sent.map((m) => m.type), ['hello'], 'no ping before the welcome');
  sock().serverSends({ ...WELCOME, keepalive_interval_ms: 5000 });
  assert.equal(conn.state, 'ready');
  assert.equal(events.messages[0].type, 'welcome');
  timers.advance(15_000);
  assert.deepEqual(sock().sent.filter((m) => m.type === 'ping').map((m) => m.seq), [1, 2, 3]);
  assert.deepEqual(events.states, ['connecting', 'open', 'ready']);
});

test('a garbled frame is logged and dropped; the next one still arrives', () => {
  const lines = [];
  const { conn, events, sock } = setup({ log: (...a) => lines.push(a.join(' ')) });
  conn.connect();
  sock().serverOpens();
  sock().onmessage({ data: '{not json' });
  sock().serverSends({ type: 'pong', seq: 4 });
  assert.deepEqual(events.messages, [{ type: 'pong', seq: 4 }]);
  assert.ok(lines.some((l) => l.startsWith('bad server message')), lines.join('\n'));
});

test('a dropped socket is reported once, stops the keepalive, and is not retried unless asked', () => {
  const { conn, timers, events, sock } = setup();
  conn.connect();
  sock().serverOpens();
  sock().serverSends(WELCOME);
  sock().networkDrops(1006);
  assert.deepEqual(events.lost, [{ opened: true, created: true, code: 1006, reason: '' }]);
  assert.equal(conn.state, 'closed');
  assert.equal(conn.socket, null);
  timers.advance(120_000);
  assert.equal(FakeSocket.all.length, 1, 'the page decides whether to reconnect');
  assert.equal(timers.pending(), 0, 'keepalive stopped');
});

test('a socket that never opened, or could not be made, says so', () => {
  const { conn, events, sock } = setup();
  conn.connect();
  sock().networkDrops(1006);
  FakeSocket.refuse = true;
  conn.connect();
  assert.deepEqual(events.lost, [
    { opened: false, created: true, code: 1006, reason: '' },
    { opened: false, created: false, code: 0, reason: '' },
  ]);
});

test('retries back off with the given delays and reset after a success', () => {
  const delays = [];
  const { conn, timers, events, sock } = setup({
    backoff: (attempt) => { const d = Math.min(8000, 1000 * 2 ** attempt); delays.push(d); return d; },
    onLost: () => conn.retryLater(() => conn.connect()),
  });
  conn.connect();
  sock().networkDrops();
  assert.equal(conn.state, 'retrying');
  for (const expected of [1000, 2000, 4000, 8000, 8000]) {
    const before = FakeSocket.all.length;
    timers.advance(expected - 1);
    assert.equal(FakeSocket.all.length, before, `no attempt before ${expected} ms`);
    timers.advance(1);
    assert.equal(FakeSocket.all.length, before + 1, `an attempt at ${expected} ms`);
    sock().networkDrops(); // the network is still down: the next retry is scheduled
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 8000, 8000]);
  // It comes back: the page says so (welcome, joined, …) and the next loss starts over.
  timers.advance(8000);
  sock().serverOpens();
  sock().serverSends(WELCOME);
  conn.resetBackoff();
  sock().networkDrops();
  assert.equal(delays.at(-1), 1000);
  assert.ok(events.messages.some((m) => m.type === 'welcome'));
});

test('the default backoff is the jittered one of session.js', () => {
  const { conn, sock, timers } = setup({ onLost: () => conn.retryLater(() => conn.connect()) });
  conn.connect();
  sock().networkDrops();
  // Attempt 0: 0.5 s ± 20 %.
  timers.advance(399);
  assert.equal(FakeSocket.all.length, 1);
  timers.advance(201);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(backoffMs(0, () => 0), 400);
});

test('jitter spreads the retries of pages that lost the server together', () => {
  const firstAttempts = new Set();
  let seed = 1;
  const rand = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
  for (let page = 0; page < 20; page += 1) {
    const { conn, sock } = setup({ backoff: (a) => backoffMs(a, rand) });
    conn.connect();
    sock().networkDrops();
    firstAttempts.add(conn.retryLater(() => {}));
  }
  assert.ok(firstAttempts.size > 10, `only ${firstAttempts.size} distinct delays`);
  for (const d of firstAttempts) assert.ok(d >= 400 && d <= 600, String(d));
});

test('retryNow runs a waiting retry at once, and only once', () => {
  const { conn, timers } = setup();
  let runs = 0;
  assert.equal(conn.retryNow(), false, 'nothing waiting');
  conn.retryLater(() => { runs += 1; });
  assert.equal(conn.retryPending, true);
  assert.equal(conn.retryNow(), true);
  assert.equal(runs, 1);
  assert.equal(conn.retryPending, false);
  timers.advance(60_000);
  assert.equal(runs, 1, 'the timer was cancelled');
});

test('close is clean: no loss reported, no retry, late events of the old socket reach nobody', () => {
  const { conn, timers, events, sock } = setup();
  conn.connect();
  const old = sock();
  old.serverOpens();
  old.serverSends(WELCOME);
  conn.retryLater(() => assert.fail('a closed connection retried'));
  conn.close(1000);
  assert.deepEqual(old.closedWith, { code: 1000, reason: '' });
  assert.deepEqual(events.lost, []);
  assert.equal(conn.state, 'closed');
  old.serverSends({ type: 'pong', seq: 1 });
  assert.equal(events.messages.length, 1, 'only the welcome');
  timers.advance(120_000);
  assert.equal(old.sent.filter((m) => m.type === 'ping').length, 0, 'no keepalive after close');
  assert.equal(timers.pending(), 0);
});

test('connect replaces the socket: the old one is closed and its close is not a loss', () => {
  const { conn, events, sock } = setup();
  conn.connect();
  const first = sock();
  first.serverOpens();
  conn.connect();
  assert.deepEqual(first.closedWith, { code: 1000, reason: '' });
  assert.notEqual(sock(), first);
  assert.deepEqual(events.lost, []);
});

test('close with linger lets the last frame out first', () => {
  const { conn, timers, sock } = setup();
  conn.connect();
  sock().serverOpens();
  assert.equal(conn.send({ type: 'leave' }), true);
  const s = sock();
  conn.close(1000, { lingerMs: 200 });
  assert.equal(s.closedWith, null);
  assert.equal(conn.send({ type: 'chat', text: 'x' }), false, 'detached at once');
  timers.advance(200);
  assert.deepEqual(s.closedWith, { code: 1000, reason: '' });
  assert.deepEqual(s.sent.map((m) => m.type), ['hello', 'leave']);
});

test('drop is a loss the page hears of, as a flaky network would be', () => {
  const { conn, events, sock } = setup();
  conn.connect();
  sock().serverOpens();
  conn.drop();
  assert.deepEqual(events.lost, [{ opened: true, created: true, code: 4000, reason: 'dropped for a test' }]);
});

test('a silent server is reported after two keepalive intervals and 5 s, a talking one never', () => {
  const { conn, timers, events, sock } = setup({ watchSilence: true });
  conn.connect();
  sock().serverOpens();
  sock().serverSends({ ...WELCOME, keepalive_interval_ms: 10_000 });
  assert.equal(silenceLimitMs(10_000), 25_000);
  // The server answers every ping: never silent.
  for (let i = 0; i < 10; i += 1) {
    timers.advance(10_000);
    sock().serverSends({ type: 'pong', seq: i + 1 });
  }
  assert.equal(events.silent, 0);
  // Then nothing: reported at the first check past 25 s.
  timers.advance(25_000);
  assert.equal(events.silent, 0);
  timers.advance(SILENCE_CHECK_MS);
  assert.equal(events.silent, 1);
  // Not watched without the option.
  const quiet = setup();
  quiet.conn.connect();
  quiet.sock().serverOpens();
  quiet.timers.advance(300_000);
  assert.equal(quiet.events.silent, 0);
});

test('Keepalive falls back when the server names no usable interval', () => {
  const timers = fakeTimers();
  const seqs = [];
  const k = new Keepalive((s) => seqs.push(s), timers);
  k.start(undefined, 15000);
  timers.advance(30_000);
  k.start(10, 15000); // under a second: not taken
  timers.advance(15_000);
  k.stop();
  timers.advance(60_000);
  assert.deepEqual(seqs, [1, 2, 3]);
});
