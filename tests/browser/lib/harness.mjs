// Shared helpers for tuxa's browser end-to-end tests.
//
// The server is started by run.sh, which passes TUXA_URL (https://127.0.0.1:PORT)
// and TUXA_ADMIN_KEY. The tests create consultations and mint links through
// the admin API (docs/api.md), open the join pages in headless Chromium and
// Firefox ESR with fake camera and microphone, and read what each page
// receives with RTCPeerConnection.getStats() through window.tuxa.

import https from 'node:https';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

export const BASE = (process.env.TUXA_URL || '').replace(/\/$/, '');
export const ADMIN_KEY = process.env.TUXA_ADMIN_KEY || '';

if (!BASE || !ADMIN_KEY) {
  throw new Error('TUXA_URL and TUXA_ADMIN_KEY must be set (run tests/browser/run.sh)');
}

// ---------------------------------------------------------------------------
// HTTP (self-signed certificate: verification off for this client only).

const agent = new https.Agent({ rejectUnauthorized: false, keepAlive: false });

export function request(method, path, body, { admin = true } = {}) {
  const url = new URL(path, BASE);
  const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
  const headers = { Accept: 'application/json' };
  if (data) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(data.length);
  }
  if (admin) headers.Authorization = `Bearer ${ADMIN_KEY}`;
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, agent, timeout: 10_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function expectStatus(res, status, what) {
  if (res.status !== status) {
    throw new Error(`${what}: HTTP ${res.status} (wanted ${status}): ${res.text.slice(0, 500)}`);
  }
  return res.json;
}

export async function createConsultation(kind, title) {
  const res = await request('POST', '/api/v1/consultations', { kind, title });
  return expectStatus(res, 201, 'create consultation');
}

export async function mintLink(roomId, { role, name, facility, expires_in_secs }) {
  const body = { role, name };
  if (facility !== undefined) body.facility = facility;
  if (expires_in_secs !== undefined) body.expires_in_secs = expires_in_secs;
  const res = await request('POST', `/api/v1/consultations/${roomId}/links`, body);
  const link = await expectStatus(res, 201, 'mint link');
  return { ...link, room: roomId, name, role, facility };
}

export async function endConsultation(roomId) {
  const res = await request('POST', `/api/v1/consultations/${roomId}/end`, {});
  return expectStatus(res, 200, 'end consultation');
}

export async function getConsultation(roomId) {
  const res = await request('GET', `/api/v1/consultations/${roomId}`);
  return expectStatus(res, 200, 'get consultation');
}

/** The join page for a link, on the server under test (the link's own host may differ). */
export function joinUrl(link, { autojoin = true } = {}) {
  return `${BASE}/join/${link.room}${autojoin ? '?autojoin=1' : ''}#${link.token}`;
}

// ---------------------------------------------------------------------------
// Browsers.

const CHROMIUM_CANDIDATES = [
  process.env.CHROMIUM_BIN, '/usr/lib/chromium/chromium', '/usr/bin/chromium',
].filter(Boolean);
const FIREFOX_CANDIDATES = [process.env.FIREFOX_BIN, '/usr/bin/firefox-esr'].filter(Boolean);

function firstExisting(list, what) {
  const found = list.find((p) => existsSync(p));
  if (!found) throw new Error(`${what} not found (tried ${list.join(', ')})`);
  return found;
}

/** The Chromium binary the tests run. */
export function chromiumBinary() {
  return firstExisting(CHROMIUM_CANDIDATES, 'Chromium');
}

// Exactly the flags of shared/notes/testing-on-these-machines.md, plus a
// fresh profile directory per browser.
export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--ignore-certificate-errors',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.navigator.permission.fake': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
};

const launched = new Set();

/**
 * A headless Chromium with the flags above. `executablePath` may name a
 * wrapper (e.g. one that enters another network namespace: then `pipe`,
 * since the DevTools port would be on that namespace's loopback);
 * `extraArgs` are added to the flags.
 */
export async function launchChromium({ executablePath, extraArgs = [], pipe = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'tuxa-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: executablePath || firstExisting(CHROMIUM_CANDIDATES, 'Chromium'),
    ignoreDefaultArgs: true, // no puppeteer defaults: only the flags above
    args: [...CHROMIUM_FLAGS, ...extraArgs, `--user-data-dir=${profile}`],
    pipe,
    headless: true,
    acceptInsecureCerts: true,
    defaultViewport: { width: 640, height: 720 },
    protocolTimeout: 60_000,
  });
  const entry = { browser, profile, kind: 'chromium' };
  launched.add(entry);
  return browser;
}

export async function launchFirefox() {
  const profile = mkdtempSync(join(tmpdir(), 'tuxa-firefox-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: firstExisting(FIREFOX_CANDIDATES, 'Firefox ESR'),
    headless: true,
    acceptInsecureCerts: true,
    userDataDir: profile,
    extraPrefsFirefox: FIREFOX_PREFS,
    defaultViewport: { width: 640, height: 720 },
    protocolTimeout: 60_000,
  });
  const entry = { browser, profile, kind: 'firefox' };
  launched.add(entry);
  return browser;
}

/** Closes every browser this process launched (for `after` hooks). */
export async function closeAllBrowsers() {
  const all = [...launched];
  launched.clear();
  await Promise.all(all.map(async ({ browser, profile }) => {
    try {
      await Promise.race([browser.close(), sleep(10_000).then(() => { throw new Error('close timeout'); })]);
    } catch {
      try { browser.process()?.kill('SIGKILL'); } catch { /* ignore */ }
    }
    try { rmSync(profile, { recursive: true, force: true }); } catch { /* ignore */ }
  }));
}

// ---------------------------------------------------------------------------
// Participants: one page each, in its own window (browser context).

export class Participant {
  constructor(name, page, browserKind) {
    this.name = name;
    this.page = page;
    this.browserKind = browserKind;
    this.console = [];
    page.on('console', (msg) => this.#push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => this.#push(`pageerror: ${err && err.message}`));
    page.on('requestfailed', (req) => this.#push(`requestfailed: ${req.url()} ${req.failure()?.errorText || ''}`));
  }

  #push(line) {
    this.console.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
    if (this.console.length > 400) this.console.shift();
  }

  async goto(url) {
    try {
      await this.page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    } catch (e) {
      // Chromium fails what is loading when the machine's addresses or links
      // change (net::ERR_NETWORK_CHANGED); a user would load it again, and
      // so does this, once, saying so in the log. Tests that change the
      // network themselves let it settle before their browsers start.
      if (!/net::ERR_NETWORK_CHANGED/.test(String(e && e.message))) throw e;
      this.#push(`goto: ${e.message}; loading again`);
      console.log(`${this.name}: ${e.message}; loading again`);
      await this.page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    }
  }

  async state() {
    return this.page.evaluate(() => (window.tuxa ? window.tuxa.state : 'no-tuxa'));
  }

  async waitForState(state, timeoutMs = 30_000) {
    await waitFor(`${this.name} in state ${state}`, async () => {
      const s = await this.state();
      if (s === 'error' && state !== 'error') {
        const err = await this.page.evaluate(() => window.tuxa.error);
        throw new Error(`${this.name} went to error: ${err}`);
      }
      return s === state;
    }, timeoutMs);
  }

  /** Our own participant id (after joined). */
  async id() {
    return this.page.evaluate(() => (window.tuxa.you && window.tuxa.you.id != null ? String(window.tuxa.you.id) : null));
  }

  /** Per remote participant id: video framesDecoded and audio packetsReceived (from pc.getStats()). */
  async stats() {
    return this.page.evaluate(pageStats);
  }

  /** Fails if the page got an error from the server, other than the expected kind. */
  async assertNoErrors(allowed = ['negotiation_glare']) {
    const errors = await this.page.evaluate(() => window.tuxa.errors);
    const bad = errors.filter((e) => !allowed.includes(e));
    if (bad.length) throw new Error(`${this.name} got server errors: ${bad.join(', ')}`);
  }

  async diagnostics() {
    let info = null;
    try {
      info = await this.page.evaluate(() => {
        const tx = window.tuxa;
        if (!tx) return { state: 'no window.tuxa' };
        return {
          state: tx.state,
          error: tx.error,
          errors: tx.errors,
          you: tx.you,
          participants: tx.participants,
          lobby: tx.lobby,
          history: tx.history,
          signalingState: tx.pc && tx.pc.signalingState,
          connectionState: tx.pc && tx.pc.connectionState,
          iceConnectionState: tx.pc && tx.pc.iceConnectionState,
          tiles: [...document.querySelectorAll('.tile')].map((el) => `${el.dataset.pid}:${el.querySelector('.name')?.textContent}`),
          visibility: document.visibilityState,
          log: tx.log.slice(-80),
        };
      });
      try { info.stats = await this.stats(); } catch (e) { info.stats = String(e); }
    } catch (e) {
      info = { evaluateFailed: String(e) };
    }
    return [
      `===== ${this.name} (${this.browserKind}) =====`,
      JSON.stringify(info, null, 2),
      '--- console (last 80) ---',
      ...this.console.slice(-80),
    ].join('\n');
  }
}

/** Opens a new window (own context: no shared storage, not a background tab). */
export async function openParticipant(browser, name, kind = 'chromium') {
  let page;
  if (kind === 'chromium') {
    const ctx = await browser.createBrowserContext();
    page = await ctx.newPage();
  } else {
    page = await browser.newPage();
  }
  return new Participant(name, page, kind);
}

// Runs inside the page. Maps each inbound-rtp report to the remote
// participant whose stream the receiving track belongs to (window.tuxa
// knows the owner of every remote track: MediaStream id = participant id).
async function pageStats() {
  const tx = window.tuxa;
  const out = { state: tx && tx.state, byParticipant: {}, unattributed: [], pairs: [] };
  if (!tx || !tx.pc || tx.pc.signalingState === 'closed') return out;
  const owners = tx.remoteTracks(); // [{pid, kind, trackId, mid}]
  const byTrack = new Map(owners.map((o) => [o.trackId, o]));
  const byMid = new Map(owners.filter((o) => o.mid != null).map((o) => [o.mid, o]));
  const report = await tx.pc.getStats();
  const add = (o, r) => {
    const p = out.byParticipant[o.pid] || (out.byParticipant[o.pid] = { video: [], audio: [] });
    if (o.kind === 'video') {
      p.video.push({ framesDecoded: r.framesDecoded || 0, packetsReceived: r.packetsReceived || 0, frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0, codecId: r.codecId });
    } else {
      p.audio.push({ packetsReceived: r.packetsReceived || 0, bytesReceived: r.bytesReceived || 0 });
    }
  };
  const unmatched = [];
  report.forEach((r) => {
    if (r.type === 'inbound-rtp') {
      const o = (r.trackIdentifier && byTrack.get(r.trackIdentifier)) || (r.mid != null && byMid.get(r.mid));
      if (o) add(o, r); else unmatched.push(r);
    } else if (r.type === 'candidate-pair' && (r.state === 'succeeded' || r.nominated)) {
      out.pairs.push({ state: r.state, nominated: r.nominated, bytesReceived: r.bytesReceived });
    }
  });
  // Fallback attribution through each receiver's own stats.
  if (unmatched.length) {
    for (const tr of tx.pc.getTransceivers()) {
      const track = tr.receiver && tr.receiver.track;
      const o = track && byTrack.get(track.id);
      if (!o) continue;
      const rs = await tr.receiver.getStats();
      rs.forEach((r) => {
        if (r.type === 'inbound-rtp' && unmatched.some((u) => u.id === r.id)) {
          add(o, r);
          const i = unmatched.findIndex((u) => u.id === r.id);
          unmatched.splice(i, 1);
        }
      });
    }
  }
  out.unattributed = unmatched.map((r) => ({ kind: r.kind, framesDecoded: r.framesDecoded, packetsReceived: r.packetsReceived }));
  return out;
}

const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0);

function totals(stats, pid) {
  const p = stats.byParticipant[pid];
  if (!p) return { frames: 0, videoPackets: 0, audioPackets: 0, width: 0 };
  return {
    frames: sum(p.video, (v) => v.framesDecoded),
    videoPackets: sum(p.video, (v) => v.packetsReceived),
    audioPackets: sum(p.audio, (a) => a.packetsReceived),
    width: Math.max(0, ...p.video.map((v) => v.frameWidth)),
  };
}

/**
 * Waits until `who` decodes growing video and receives growing audio from
 * each of the participant ids in `from`. Returns the last totals per id.
 */
export async function expectReceiving(who, from, { timeoutMs = 30_000, audio = true } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  let prev = await who.stats();
  for (;;) {
    await sleep(1_000);
    const cur = await who.stats();
    const status = {};
    let ok = true;
    for (const pid of from) {
      const a = totals(prev, pid);
      const b = totals(cur, pid);
      const videoOk = b.frames > 0 && b.frames > a.frames;
      const audioOk = !audio || (b.audioPackets > 0 && b.audioPackets > a.audioPackets);
      status[pid] = { frames: b.frames, framesDelta: b.frames - a.frames, width: b.width, audioPackets: b.audioPackets, videoOk, audioOk };
      if (!videoOk || !audioOk) ok = false;
    }
    last = status;
    if (ok) return status;
    if (Date.now() > deadline) {
      throw new Error(`${who.name} does not receive from ${from.join(', ')} within ${timeoutMs} ms: ${JSON.stringify(status)} (unattributed: ${JSON.stringify(cur.unattributed)})`);
    }
    prev = cur;
  }
}

/** The remote video tiles a page shows: [{pid, name, meta}]. */
export async function tiles(who) {
  return who.page.evaluate(() => [...document.querySelectorAll('#grid .tile')].map((el) => ({
    pid: el.dataset.pid,
    name: el.querySelector('.name')?.textContent || '',
    meta: el.querySelector('.meta')?.textContent || '',
  })));
}

// ---------------------------------------------------------------------------
// Lobby (waiting room): patients and guests wait until a doctor admits them.

/** What a host's lobby panel shows: [{pid, name, meta, admitVisible}], and the count badge. */
export async function lobbyPanel(host) {
  return host.page.evaluate(() => {
    const panel = document.getElementById('lobby-panel');
    const visible = (el) => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
    return {
      visible: visible(panel),
      count: document.getElementById('lobby-count').textContent,
      entries: [...document.querySelectorAll('#lobby-list .lobby-entry')].map((el) => ({
        pid: el.dataset.pid,
        name: el.querySelector('.lobby-name')?.textContent || '',
        meta: el.querySelector('.lobby-meta')?.textContent || '',
        admitVisible: visible(el.querySelector('[data-action="admit"]')),
        refuseVisible: visible(el.querySelector('[data-action="refuse"]')),
      })),
      lobby: window.tuxa.lobby,
    };
  });
}

/** Waits until `host`'s lobby panel lists someone called `name`; returns that entry. */
export async function waitInLobby(host, name, timeoutMs = 20_000) {
  let entry = null;
  await waitFor(`${host.name}'s lobby panel to list ${name}`, async () => {
    const panel = await lobbyPanel(host);
    entry = panel.visible ? panel.entries.find((e) => e.name === name && e.admitVisible) : null;
    return !!entry;
  }, timeoutMs);
  return entry;
}

/** The host clicks Admit (or Refuse) next to `name` in the lobby panel, as a user would. */
export async function decideInLobby(host, name, action = 'admit') {
  const entry = await waitInLobby(host, name);
  await clickSettled(host, `#lobby-list .lobby-entry[data-pid="${entry.pid}"] [data-action="${action}"]`);
  return entry;
}

/**
 * Opens the join page for `link` as its holder would: staff and guests with
 * `?autojoin=1`; a patient on the preview, where they tick their consent to
 * the remote examination (only that: third parties and recording stay
 * unticked) and click Join — a patient page never joins by itself.
 */
export async function openJoinPage(who, link, { timeoutMs = 30_000 } = {}) {
  if (link.role !== 'patient') {
    await who.goto(joinUrl(link));
    return;
  }
  await who.goto(joinUrl(link, { autojoin: false }));
  await who.waitForState('preview', timeoutMs);
  await who.page.click('#consent-exam');
  await who.page.click('#join-btn');
}

/** The states a page went through (window.tuxa.history). */
export async function history(who) {
  return who.page.evaluate(() => window.tuxa.history);
}

// ---------------------------------------------------------------------------
// Misc.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Clicks what `selector` finds with the mouse, as a user would, once it has
 * settled: looked up afresh, shown, enabled, in view, and with the same box
 * over two animation frames (puppeteer's locator). A plain `page.click` acts
 * on the node it looked up, and fails ("Node is either not clickable or not
 * an Element", "detached") or clicks where the node was when a re-render
 * replaces, hides or moves it between the look-up and the click; this one
 * starts again with whatever is there then. The page must be in front
 * (a background tab draws no frames).
 */
export async function clickSettled(who, selector, { timeoutMs = 15_000 } = {}) {
  await who.page.locator(selector).setVisibility('visible').setTimeout(timeoutMs).click();
}

export async function waitFor(what, fn, timeoutMs = 30_000, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = null;
  for (;;) {
    try {
      if (await fn()) return;
      lastErr = null;
    } catch (e) {
      if (/went to error/.test(String(e && e.message))) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await sleep(everyMs);
  }
}

/**
 * Runs a test body; on failure prints every participant's diagnostics
 * (window.tuxa state and log, stats, console) before rethrowing.
 */
export async function withDiagnostics(participants, fn) {
  try {
    return await fn();
  } catch (err) {
    const list = typeof participants === 'function' ? participants() : participants;
    for (const p of list) {
      try {
        console.error(await p.diagnostics());
      } catch (e) {
        console.error(`diagnostics of ${p.name} failed: ${e}`);
      }
    }
    throw err;
  }
}

export function uniqueTitle(prefix) {
  return `${prefix} ${new Date().toISOString().slice(11, 19)} ${Math.random().toString(36).slice(2, 6)}`;
}

// ---------------------------------------------------------------------------
// Directory, on-call queues and staff sign-in (docs/api.md "Staff and
// directory", "On-call queues and rosters"), for the queue page and the
// staff console.

import { createHmac } from 'node:crypto'; // (imports are hoisted)

/** POST with the admin key; returns the JSON body, or throws with the answer. */
export async function adminPost(path, body, status = 201) {
  const res = await request('POST', path, body);
  return expectStatus(res, status, `POST ${path}`);
}

/** Decodes RFC 4648 base32 (as `POST /api/v1/staff` returns the TOTP secret). */
export function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of String(text).toUpperCase().replace(/[\s=]/g, '')) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/**
 * The 6-digit code an authenticator app shows (RFC 6238: HMAC-SHA1 over the
 * 8-byte big-endian count of 30-second steps, dynamic truncation).
 */
export function totpCode(secretBase32, unixSecs = Date.now() / 1000, { step = 30, digits = 6 } = {}) {
  const counter = Math.floor(unixSecs / step);
  const msg = Buffer.alloc(8);
  msg.writeUInt32BE(Math.floor(counter / 2 ** 32), 0);
  msg.writeUInt32BE(counter >>> 0, 4);
  const mac = createHmac('sha1', base32Decode(secretBase32)).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(bin % 10 ** digits).padStart(digits, '0');
}

/**
 * A facility with a doctor (practitioner, staff account with a password) on
 * call all day for a new queue of that facility. Names are made unique, so
 * that tests sharing a server do not collide.
 * Returns {facility, practitioner, staff, username, password, secret, queue}.
 */
export async function setupOnCallDoctor({
  facilityName = 'BVĐK tỉnh', specialty = 'Nội khoa', doctorName = 'BS. Lê Hoàng Minh',
} = {}) {
  const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const facility = await adminPost('/api/v1/facilities', { name: `${facilityName} ${tag}`, tier: 'province' });
  const practitioner = await adminPost('/api/v1/practitioners', {
    name: doctorName, title: 'BSCKII', licence_number: `${tag.toUpperCase()}/AH-CCHN`,
    specialty, facility_id: facility.id,
  });
  const username = `bs.${tag}`.slice(0, 32);
  const password = `mat-khau-${tag}`;
  const created = await adminPost('/api/v1/staff', {
    username, name: doctorName, role: 'doctor', facility_id: facility.id,
    practitioner_id: practitioner.id, password,
  });
  const queue = await adminPost('/api/v1/queues', { facility_id: facility.id, specialty });
  await adminPost(`/api/v1/queues/${queue.id}/roster`, { staff_id: created.staff.id, start: '00:00', end: '24:00' });
  return {
    facility, practitioner, staff: created.staff, username, password, secret: created.totp.secret, queue,
  };
}

/**
 * Waits until a page's test global (`tuxaQueue`, `tuxaStaff`) is in `state`;
 * fails at once if it went to `error` instead.
 */
export async function waitForPageState(who, global, state, timeoutMs = 30_000) {
  await waitFor(`${who.name} (${global}) in state ${state}`, async () => {
    const r = await who.page.evaluate((g) => {
      const o = window[g];
      return o ? { state: o.state, error: o.error } : { state: `no ${g}` };
    }, global);
    if (r.state === 'error' && state !== 'error') throw new Error(`${who.name} went to error: ${r.error}`);
    return r.state === state;
  }, timeoutMs);
}

/** What a page's test global holds, with its log, for diagnostics. */
export async function pageGlobal(who, global) {
  return who.page.evaluate((g) => {
    const o = window[g];
    if (!o) return null;
    const { log, ...rest } = o;
    return { ...JSON.parse(JSON.stringify(rest)), log: (log || []).slice(-60), url: location.href };
  }, global);
}
