// @ts-check
// The pre-call check: camera preview, microphone level, a speaker test tone,
// and a connection test against this server (WebSocket round trip, whether
// media reaches the SFU over UDP, TCP or neither, a throughput estimate),
// ending in a plain verdict. On its own page (/check, check.html) and folded
// into the join page (app.js mounts it under the join button).
//
// The media test runs in a check room (server/src/check.rs): a room of one
// that the server opens for 30 s, stores nothing about, and closes when we
// leave. No DOM use at import time (the pure helpers are tested under Node).

import * as P from './protocol.js';
import {
  t, tf, getLang, onLangChange, applyLang, mountLang,
} from './i18n.js';

// ---------------------------------------------------------------------------
// Pure helpers.

/** The median of a list of numbers (null for none). */
export function median(list) {
  const xs = list.filter(Number.isFinite).sort((a, b) => a - b);
  if (!xs.length) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/** The ports of the server's candidates in an SDP, by protocol: {udp: [..], tcp: [..]}. */
export function candidatePorts(sdp) {
  const out = { udp: [], tcp: [] };
  for (const line of String(sdp).split(/\r?\n/)) {
    const m = /^a=candidate:\S+ \d+ (udp|tcp) \d+ \S+ (\d+) typ /i.exec(line);
    if (!m) continue;
    const proto = m[1].toLowerCase();
    const port = Number(m[2]);
    if (!out[proto].includes(port)) out[proto].push(port);
  }
  return out;
}

/**
 * The SDP with only the candidates of `protocol` ('udp' or 'tcp'): testing
 * TCP alone needs no server option, the browser simply never hears of the
 * UDP candidate.
 */
export function keepCandidates(sdp, protocol) {
  const re = /^a=candidate:\S+ \d+ (udp|tcp) /i;
  return String(sdp).split('\r\n').filter((line) => {
    const m = re.exec(line);
    return !m || m[1].toLowerCase() === protocol;
  }).join('\r\n');
}

/** Enough for video above this estimate (bits per second): the SFU's lowest layer plus audio, with room. */
export const VIDEO_MIN_BPS = 300_000;
/** Enough for sound above this. */
export const AUDIO_MIN_BPS = 40_000;
/** A signalling round trip above this makes a conversation hard, whatever the bandwidth. */
export const SLOW_RTT_MS = 1500;

/**
 * The verdict from what was measured: 'video', 'audio' or 'none'.
 * `ws`: {ok, rttMs}; `media`: {connected, arrived, protocol}; `bps`: the
 * throughput estimate (null when the browser gave none).
 */
export function verdictOf({ ws, media, bps }) {
  if (!ws || !ws.ok || !media || !media.connected || !media.arrived) return 'none';
  if (Number.isFinite(bps) && bps < AUDIO_MIN_BPS) return 'none';
  if (Number.isFinite(ws.rttMs) && ws.rttMs > SLOW_RTT_MS) return 'audio';
  if (!Number.isFinite(bps) || bps < VIDEO_MIN_BPS) return 'audio';
  return 'video';
}

/** What the person can try, as i18n keys with their values, for a verdict. */
export function adviceFor(verdict, { protocol, ports, tcpOnlyWorks, wsOk }) {
  const udp = ports && ports.udp.length ? ports.udp.join(', ') : '?';
  const tcp = ports && ports.tcp.length ? ports.tcp.join(', ') : '';
  const out = [];
  if (verdict === 'none') {
    if (!wsOk) {
      out.push(['check_try_internet', {}]);
      return out;
    }
    out.push(['check_try_move', {}]);
    out.push(['check_try_mobile', {}]);
    out.push([tcp ? 'check_try_it_both' : 'check_try_it_udp', { udp, tcp }]);
    return out;
  }
  if (verdict === 'audio') {
    out.push(['check_try_move', {}]);
    out.push(['check_try_mobile', {}]);
    out.push(['check_try_camera_off', {}]);
  }
  if (protocol === 'tcp') out.push(['check_try_it_udp', { udp, tcp }]);
  else if (tcpOnlyWorks === false && tcp) out.push(['check_note_tcp_closed', { tcp }]);
  return out;
}

// ---------------------------------------------------------------------------
// Measurements (browser only).

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

/**
 * One WebSocket session to the server: hello, then `count` pings one after
 * the other. Resolves {ok, rttMs, samples, ws, next} with the socket still
 * open (the media test goes on on it), or {ok: false}.
 */
async function wsRoundTrips(count, log) {
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (e) {
    log('websocket', e);
    return { ok: false };
  }
  const waiting = [];
  const queue = [];
  ws.onmessage = (ev) => P.dispatchServerFrame(ev.data, (msg) => {
    const w = waiting.findIndex((x) => x.match(msg));
    if (w >= 0) waiting.splice(w, 1)[0].resolve(msg);
    else queue.push(msg);
  }, log);
  const closed = new Promise((resolve) => { ws.onclose = () => resolve(null); ws.onerror = () => resolve(null); });
  // The next server message that `match`es (or null when the socket closes or `ms` pass).
  const next = (match, ms = 10_000) => {
    const i = queue.findIndex(match);
    if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
    return Promise.race([
      new Promise((resolve) => waiting.push({ match, resolve })),
      closed, sleep(ms).then(() => null),
    ]);
  };
  const opened = await Promise.race([
    new Promise((resolve) => { ws.onopen = () => resolve(true); }), closed, sleep(10_000).then(() => null),
  ]);
  if (!opened) return { ok: false };
  const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  send(P.hello());
  const welcome = await next((m) => m.type === 'welcome' || m.type === 'error');
  if (!welcome || welcome.type !== 'welcome') return { ok: false };
  const samples = [];
  for (let seq = 1; seq <= count; seq += 1) {
    const t0 = performance.now();
    send(P.ping(seq));
    const pong = await next((m) => m.type === 'pong' && m.seq === seq, 5000);
    if (!pong) break;
    samples.push(performance.now() - t0);
  }
  return { ok: samples.length > 0, rttMs: median(samples), samples, ws, send, next };
}

/** Asks the server for a check room: {room, token} or {error, status}. */
async function checkRoom() {
  try {
    const res = await fetch('/api/v1/check', { method: 'POST' });
    const body = await res.json().catch(() => ({}));
    if (res.ok && body.room && body.token) return { room: body.room, token: body.token };
    return { error: (body.error && body.error.code) || 'internal', status: res.status };
  } catch {
    return { error: 'network', status: 0 };
  }
}

/** The selected candidate pair and its local candidate, from a stats report. */
/** @param {RTCStatsReport} report */
function selectedPair(report) {
  /** @type {Map<string, any>} stats objects differ by type; read by field */
  const byId = new Map();
  report.forEach((r) => byId.set(r.id, r));
  /** @type {any} a candidate-pair stats object */
  let pair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = byId.get(r.selectedCandidatePairId);
  });
  if (!pair) {
    report.forEach((r) => {
      if (r.type === 'candidate-pair' && r.state === 'succeeded' && (r.nominated || r.selected)) pair = r;
    });
  }
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId) || {};
  return { pair, protocol: local.protocol || local.transport || null };
}

/**
 * A few seconds of audio and video to the SFU in a check room, on the open
 * session `s` (from wsRoundTrips). `only`: 'tcp' to offer the browser the
 * server's TCP candidate alone. Resolves what was seen:
 * {connected, protocol, arrived, bytesSent, bps, ports}.
 */
async function mediaTrip(s, tracks, { only = null, seconds = 5, log }) {
  const result = { connected: false, protocol: null, arrived: false, bytesSent: 0, bps: null, ports: null };
  const room = await checkRoom();
  if (room.error) {
    result.refused = room.error;
    return result;
  }
  s.send(P.join(room.room, room.token));
  const joined = await s.next((m) => m.type === 'joined' || (m.type === 'error' && m.in_reply_to === 'join'));
  if (!joined || joined.type !== 'joined') {
    log('check join failed', joined);
    return result;
  }
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
  try {
    let sent = 0;
    for (const track of tracks) {
      pc.addTransceiver(track, { direction: 'sendonly' });
      sent += 1;
    }
    // Nothing to send (no camera, no microphone): the connection is still
    // tested, with an audio m-line that carries nothing.
    if (!sent) pc.addTransceiver('audio', { direction: 'sendonly' });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    s.send(P.offer(pc.localDescription.sdp));
    const answer = await s.next((m) => m.type === 'answer' || (m.type === 'error' && m.in_reply_to === 'offer'));
    if (!answer || answer.type !== 'answer') {
      log('check offer failed', answer);
      return result;
    }
    result.ports = candidatePorts(answer.sdp);
    const sdp = only ? keepCandidates(answer.sdp, only) : answer.sdp;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    const connected = await new Promise((resolve) => {
      const done = (v) => { clearTimeout(timer); pc.onconnectionstatechange = null; resolve(v); };
      const timer = setTimeout(() => done(false), only ? 8000 : 10_000);
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'connected') done(true);
        else if (pc.connectionState === 'failed') done(false);
      };
      if (pc.connectionState === 'connected') done(true);
    });
    result.connected = connected;
    if (!connected) return result;
    // Publish a while: the SFU's receiver reports come back, and the
    // browser's bandwidth estimate climbs from its start value.
    const first = Date.now();
    let firstBytes = null;
    let bestAvail = null;
    while (Date.now() - first < seconds * 1000) {
      await sleep(1000);
      // Keep the session alive while we wait (and a pong means the server is still there).
      const report = await pc.getStats();
      const sel = selectedPair(report);
      if (sel) {
        result.protocol = sel.protocol;
        const a = sel.pair.availableOutgoingBitrate;
        if (Number.isFinite(a)) bestAvail = Math.max(bestAvail ?? 0, a);
      }
      let bytes = 0;
      report.forEach((r) => {
        if (r.type === 'outbound-rtp') bytes += r.bytesSent || 0;
        // The SFU's RTCP receiver reports: it got our packets.
        if (r.type === 'remote-inbound-rtp' && (Number.isFinite(r.roundTripTime) || Number.isFinite(r.packetsLost))) {
          result.arrived = true;
        }
      });
      if (firstBytes === null) firstBytes = { at: Date.now(), bytes };
      result.bytesSent = bytes;
      const span = (Date.now() - firstBytes.at) / 1000;
      if (span > 0) {
        const rate = ((bytes - firstBytes.bytes) * 8) / span;
        // What was sent is a floor for what the link carries.
        result.bps = Math.max(bestAvail ?? 0, rate);
      } else if (bestAvail !== null) {
        result.bps = bestAvail;
      }
    }
    return result;
  } finally {
    s.send(P.leave());
    pc.close();
  }
}

/**
 * The whole connection test. `tracks`: what to publish (the preview's
 * tracks, cloned here so that stopping them leaves the preview alone).
 * `onStep(name)` reports progress. Resolves the result and its verdict.
 */
/**
 * @param {MediaStreamTrack[]} tracks
 * @param {{ onStep?: (step: string) => void, log?: (...args: any[]) => void }} [hooks]
 */
export async function runConnectionTest(tracks, { onStep = () => {}, log = () => {} } = {}) {
  const result = { ws: { ok: false, rttMs: null }, media: null, tcpOnly: null, bps: null, verdict: 'none', refused: null };
  onStep('ws');
  const s = await wsRoundTrips(5, log);
  result.ws = { ok: s.ok, rttMs: s.rttMs ?? null, samples: s.samples || [] };
  if (!s.ok) {
    if (s.ws) s.ws.close();
    return result;
  }
  const clones = tracks.filter(Boolean).map((tr) => tr.clone());
  try {
    onStep('media');
    result.media = await mediaTrip(s, clones, { seconds: 5, log });
    result.refused = result.media.refused || null;
    result.bps = result.media.bps;
    // UDP worked: is TCP open too (the fallback of a network that blocks
    // UDP later)? A short second trip, on a fresh session (one join each).
    if (result.media.arrived && result.media.protocol === 'udp' && result.media.ports
        && result.media.ports.tcp.length) {
      onStep('tcp');
      s.ws.close();
      const s2 = await wsRoundTrips(1, log);
      if (s2.ok) {
        const tcp = await mediaTrip(s2, clones, { only: 'tcp', seconds: 2, log });
        result.tcpOnly = tcp.refused ? null : tcp.connected;
        s2.ws.close();
      }
    }
  } finally {
    for (const tr of clones) tr.stop();
    if (s.ws.readyState === WebSocket.OPEN) s.ws.close();
  }
  result.verdict = verdictOf({ ws: result.ws, media: result.media, bps: result.bps });
  return result;
}

// ---------------------------------------------------------------------------
// Microphone level and speaker tone (WebAudio).

let audioCtx = null;
function ctx() {
  if (!audioCtx) {
    const AC = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!AC) return null;
    audioCtx = new AC();
  }
  // Started from a click: the browser lets it run.
  if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  return audioCtx;
}

/** Follows a microphone track's level (0..1) with an AnalyserNode; `onLevel` ~10 times a second. */
export class MicMeter {
  constructor(onLevel) {
    this.onLevel = onLevel;
    this.timer = null;
    this.source = null;
    this.peak = 0;
  }

  start(track) {
    this.stop();
    const ac = ctx();
    if (!ac || !track) return false;
    this.source = ac.createMediaStreamSource(new MediaStream([track]));
    const analyser = ac.createAnalyser();
    analyser.fftSize = 1024;
    this.source.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      // RMS, scaled so that speech fills most of the bar.
      const level = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      this.peak = Math.max(this.peak, level);
      this.onLevel(level);
    }, 100);
    return true;
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.source) this.source.disconnect();
    this.source = null;
  }
}

/**
 * Plays a short two-note chime (no file download). Resolves when it ends:
 * true when the audio actually ran (a browser with no audio output keeps
 * its AudioContext suspended).
 */
export async function playTestTone() {
  const ac = ctx();
  if (!ac) return false;
  const start = ac.currentTime + 0.05;
  for (const [i, freq] of [[0, 660], [1, 880]]) {
    const osc = ac.createOscillator();
    const gain = ac.createGain();
    osc.frequency.value = freq;
    const at = start + i * 0.45;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.4, at + 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.4);
    osc.connect(gain).connect(ac.destination);
    osc.start(at);
    osc.stop(at + 0.42);
  }
  await sleep(1000);
  return ac.state === 'running';
}

// ---------------------------------------------------------------------------
// The UI: one block, mounted into a container (the /check page's main, or
// the join page's folded section).

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'i18n') e.dataset.i18n = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const VERDICT_KEYS = { video: 'check_verdict_video', audio: 'check_verdict_audio', none: 'check_verdict_none' };

function formatBps(bps) {
  if (!Number.isFinite(bps)) return '—';
  const lang = getLang() === 'vi' ? 'vi-VN' : 'en-GB';
  if (bps >= 1_000_000) return `${(bps / 1_000_000).toLocaleString(lang, { maximumFractionDigits: 1 })} Mbit/s`;
  return `${Math.round(bps / 1000).toLocaleString(lang)} kbit/s`;
}

/**
 * Builds the check into `root`. `getTracks()` gives the tracks to test
 * with (the join page passes its preview's; null: the check opens camera
 * and microphone itself, with a preview of its own). Returns the state
 * object the page exposes to tests.
 */
/**
 * @param {HTMLElement} root
 * @param {{ getTracks?: (() => (MediaStreamTrack | null)[]) | null, log?: (...args: any[]) => void }} [opts]
 */
export function mountCheck(root, { getTracks = null, log = () => {} } = {}) {
  const state = { state: 'idle', micPeak: 0, tone: false, result: null };
  const own = !getTracks;
  let stream = null;

  const video = el('video', { autoplay: '', playsinline: '', class: 'check-video' });
  video.muted = true;
  const videoBox = el('div', { class: 'video-box check-video-box' }, video);
  videoBox.hidden = true;
  const meter = el('meter', { min: '0', max: '1', value: '0', class: 'check-meter', id: 'check-meter' });
  const meterLabel = el('span', { i18n: 'check_mic_label', class: 'check-label' });
  const micHint = el('p', { class: 'muted-text check-mic-hint', i18n: 'check_mic_hint' });
  const toneBtn = el('button', { type: 'button', class: 'btn btn-secondary', id: 'check-tone', i18n: 'check_tone' });
  const toneHint = el('p', { class: 'muted-text', i18n: 'check_tone_hint' });
  const startBtn = el('button', { type: 'button', class: 'btn btn-primary btn-big btn-block', id: 'check-start', i18n: 'check_start' });
  const steps = el('ul', { class: 'check-steps', id: 'check-steps' });
  const verdictBox = el('div', { class: 'check-verdict', id: 'check-verdict', role: 'status', 'aria-live': 'polite' });
  verdictBox.hidden = true;

  root.append(
    videoBox,
    el('div', { class: 'check-row' }, meterLabel, meter),
    micHint,
    el('div', { class: 'check-row' }, toneBtn),
    toneHint,
    startBtn,
    steps,
    verdictBox,
  );

  const meterObj = new MicMeter((level) => {
    meter.value = level;
    state.micPeak = Math.max(state.micPeak, level);
  });

  async function tracks() {
    if (!own) return getTracks().filter(Boolean);
    if (!stream) {
      const md = navigator.mediaDevices;
      if (md && md.getUserMedia) {
        for (const c of [{ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } }, { audio: true }, { video: true }]) {
          try { stream = await md.getUserMedia(c); break; } catch (e) {
            log('getUserMedia failed', e);
            if (e && (e.name === 'NotAllowedError' || e.name === 'SecurityError')) break;
          }
        }
      }
      if (stream && stream.getVideoTracks().length) {
        video.srcObject = new MediaStream(stream.getVideoTracks());
        videoBox.hidden = false;
        video.play().catch(() => {});
      }
    }
    return stream ? stream.getTracks() : [];
  }

  function stepLine(key, text, ok) {
    const li = el('li', { class: `check-step ${ok === true ? 'is-ok' : ok === false ? 'is-bad' : ''}` });
    li.dataset.step = key;
    li.append(el('span', { class: 'check-step-mark', 'aria-hidden': 'true' }, ok === true ? '✓' : ok === false ? '✕' : '…'), el('span', {}, text));
    return li;
  }

  function render() {
    steps.replaceChildren();
    const r = state.result;
    if (state.state === 'running') {
      steps.append(stepLine('running', t(`check_step_${state.step || 'ws'}`), null));
    }
    if (!r) return;
    steps.append(stepLine('ws', r.ws.ok
      ? tf('check_ws_ok', { ms: Math.round(r.ws.rttMs) }) : t('check_ws_bad'), r.ws.ok));
    if (r.refused) {
      steps.append(stepLine('media', t('check_busy'), null));
    } else if (r.media) {
      const m = r.media;
      const line = m.arrived
        ? tf(m.protocol === 'tcp' ? 'check_media_tcp' : 'check_media_udp', {})
        : t('check_media_bad');
      steps.append(stepLine('media', line, m.arrived));
      if (m.arrived) steps.append(stepLine('bps', tf('check_bps', { rate: formatBps(r.bps) }), r.verdict === 'video'));
      if (r.tcpOnly !== null) {
        steps.append(stepLine('tcp', t(r.tcpOnly ? 'check_tcp_ok' : 'check_tcp_bad'), r.tcpOnly));
      }
    }
    if (state.state !== 'done') return;
    verdictBox.replaceChildren();
    verdictBox.dataset.verdict = r.refused ? 'busy' : r.verdict;
    verdictBox.hidden = false;
    if (r.refused) {
      verdictBox.append(el('p', { class: 'check-verdict-title' }, t('check_busy')));
      return;
    }
    verdictBox.append(el('p', { class: 'check-verdict-title', id: 'check-verdict-title' }, t(VERDICT_KEYS[r.verdict])));
    const advice = adviceFor(r.verdict, {
      protocol: r.media && r.media.protocol, ports: r.media && r.media.ports, tcpOnlyWorks: r.tcpOnly, wsOk: r.ws.ok,
    });
    if (advice.length) {
      const ul = el('ul', { class: 'check-advice' });
      for (const [key, vars] of advice) ul.append(el('li', {}, tf(key, vars)));
      verdictBox.append(ul);
    }
  }

  toneBtn.addEventListener('click', async () => {
    toneBtn.disabled = true;
    state.tone = await playTestTone();
    toneBtn.disabled = false;
  });

  startBtn.addEventListener('click', async () => {
    if (state.state === 'running') return;
    // The click lets the AudioContext run (autoplay rules).
    ctx();
    state.state = 'running';
    state.result = null;
    state.step = 'ws';
    startBtn.disabled = true;
    verdictBox.hidden = true;
    render();
    const list = await tracks();
    const mic = list.find((tr) => tr.kind === 'audio');
    if (mic) meterObj.start(mic);
    try {
      state.result = await runConnectionTest(list, {
        log,
        onStep: (step) => { state.step = step; render(); },
      });
    } catch (e) {
      log('check failed', e);
      state.result = { ws: { ok: false }, media: null, tcpOnly: null, bps: null, verdict: 'none', refused: null };
    }
    state.state = 'done';
    startBtn.disabled = false;
    startBtn.dataset.i18n = 'check_again';
    startBtn.textContent = t('check_again');
    render();
  });

  // The join page's preview is already running: follow its microphone at once.
  state.startMeter = () => {
    if (own) return;
    const mic = getTracks().find((tr) => tr && tr.kind === 'audio');
    if (mic) meterObj.start(mic);
  };
  state.stop = () => meterObj.stop();
  state.render = render;
  onLangChange(render);
  return state;
}

// ---------------------------------------------------------------------------
// The /check page.

if (typeof document !== 'undefined' && document.getElementById('check-page')) {
  const entries = [];
  const log = (...a) => {
    entries.push(a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' '));
    if (entries.length > 200) entries.shift();
  };
  const state = mountCheck(document.getElementById('check-body'), { log });
  state.log = entries;
  globalThis.tuxaCheck = state;
  mountLang();
  applyLang();
}
