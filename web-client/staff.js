// @ts-check
// tuxa staff console: /staff.
//
// Sign-in (username, password, the authenticator's 6-digit code) →
// POST /api/v1/auth/login (the server sets the session cookie) → who is
// signed in (GET /api/v1/me), the queues they may see (GET /api/v1/queues),
// and, for doctors, a WebSocket /ws (the cookie identifies them; the server
// reads their rosters when it opens): hello → one switch per queue
// ("Sẵn sàng nhận bệnh nhân") sends `available {queues}`; `doctor_status`
// is the server's word on the switches. A `patient_offer` shows a card with
// a countdown and Accept / Decline; `call_ready {url}` opens the call in a
// new tab (the console stays) and shows "Đang khám" with a button that
// sends `doctor_free` for the next patient.
//
// After sign-in the console shows tabs by role (`tab`): "Trực" (on call,
// above; doctors and nurses), "Hội chẩn" (case conferences, everyone:
// console-conf.js) and "Điều phối" (coordination: coordinators and
// administrators, console-coord.js). Any API answer 401 returns to sign-in.
//
// For tests: window.tuxaStaff = {state, tab, tabs, offer, available, error, callUrl, conf, coord, …};
// `?noopen=1` keeps the call from opening (read callUrl instead).

import * as P from './protocol.js';
import { pageLog, safeJson } from './session.js';
import { Connection } from './connection.js';
import {
  t, tf, errorText, roleName, getLang, applyLang, mountLang, STRINGS,
} from './i18n.js';
import {
  apiErrorCode, flaggedTitle, createTabFlag, shareOrCopy, $as,
} from './console-util.js';
import { createConferences } from './console-conf.js';
import { createCoordination } from './console-coord.js';

const $ = (id) => document.getElementById(id);

const params = new URLSearchParams(location.search);
const NOOPEN = params.get('noopen') === '1';

/** How often an open console shows the server it is still in use. */
const SESSION_CHECK_MS = 10 * 60_000;

// ---------------------------------------------------------------------------
// State visible to tests.

const ts = {
  // loading | signed-out | signing-in | connecting | ready | available |
  // offered | accepting | in-call | error
  state: 'loading',
  history: ['loading'],
  me: null, // the /api/v1/me answer
  queues: [], // the queues this account may see
  available: false, // the server says we take patients …
  availableQueues: [], // … from these queues
  onCall: false,
  offer: null, // the patient_offer being shown
  callUrl: null, // the latest call's link
  popupBlocked: false,
  connection: 'closed', // open | connecting | closed
  notice: null, // a key of STRINGS shown above the queues
  error: null,
  errors: [],
  counts: {}, // queue id → {waiting, offered, doctors_available} (queue_counts, on-call queues only)
  chimes: 0, // chimes played (an AudioContext running: unlocked by a click)
  tab: null, // oncall | conf | coord
  tabs: [], // the tabs this role has
  log: [],
};
window.tuxaStaff = ts;

const log = pageLog(ts.log, '[tuxa-staff]');

const isDoctor = () => !!(ts.me && ts.me.staff && ts.me.staff.role === 'doctor');

// ---------------------------------------------------------------------------
// State and screens.

let fatal = null; // {code, key}: replaced by another window, …
let accepting = false;

function deriveState() {
  if (fatal) return 'error';
  if (!ts.me) {
    if (!checked) return 'loading';
    return signingIn ? 'signing-in' : 'signed-out';
  }
  if (!isDoctor()) return 'ready';
  if (ts.connection !== 'open') return 'connecting';
  if (accepting) return 'accepting';
  if (ts.offer) return 'offered';
  if (ts.onCall) return 'in-call';
  if (ts.available) return 'available';
  return 'ready';
}

const SCREEN_OF = (state) => {
  if (state === 'loading') return 'screen-loading';
  if (state === 'signed-out' || state === 'signing-in') return 'screen-signin';
  if (state === 'error') return 'screen-error';
  return 'screen-console';
};

function update() {
  const state = deriveState();
  if (state !== ts.state) {
    log('state', ts.state, '→', state);
    ts.state = state;
    ts.history.push(state);
    document.body.dataset.state = state;
  }
  const shown = SCREEN_OF(state);
  for (const id of ['screen-loading', 'screen-signin', 'screen-console', 'screen-error']) $(id).hidden = id !== shown;
  render();
}

// ---------------------------------------------------------------------------
// Rendering.

function staffRoleName(role) {
  if (role === 'coordinator' || role === 'admin') return t(`st_role_${role}`);
  return roleName(role);
}

function render() {
  renderSignin();
  renderWho();
  renderTabs();
  renderQueues();
  renderOffer();
  renderCall();
  renderError();
  const banner = $('conn-banner');
  const showConn = !!ts.me && isDoctor() && ts.connection !== 'open' && !fatal;
  banner.hidden = !showConn;
  banner.textContent = showConn ? t(everConnected ? 'st_reconnecting' : 'st_connecting') : '';
  $('notice').hidden = !ts.notice;
  $('notice').textContent = ts.notice ? t(ts.notice) : '';
  // "(1) Bệnh nhân mới": an offer waits for an answer, whether or not the
  // tab is looked at; the favicon's dot (tabFlag) goes once it is.
  document.title = ts.offer ? flaggedTitle(`${t('st_offer_title')} — tuxa`, 1) : `${t('st_title')} — tuxa`;
}

function renderWho() {
  if (!ts.me) return;
  const s = ts.me.staff || {};
  const p = ts.me.practitioner;
  $('who-name').textContent = [p && p.title, s.name].filter(Boolean).join(' ');
  $('who-meta').textContent = [
    `${t('st_signed_in_as')}: ${s.username || ''}`,
    staffRoleName(s.role),
    ts.me.facility && ts.me.facility.name,
  ].filter(Boolean).join(' · ');
}

const queueRows = new Map(); // queue id → {li, input, name, label}

function renderQueues() {
  const list = $('queue-list');
  const ids = new Set(ts.queues.map((q) => q.id));
  for (const [id, row] of queueRows) {
    if (!ids.has(id)) {
      row.li.remove();
      queueRows.delete(id);
    }
  }
  const doctor = isDoctor();
  const connected = ts.connection === 'open';
  for (const q of ts.queues) {
    let row = queueRows.get(q.id);
    if (!row) {
      const li = document.createElement('li');
      li.className = 'st-queue';
      li.dataset.queue = String(q.id);
      const name = document.createElement('p');
      name.className = 'st-queue-name';
      const label = document.createElement('label');
      label.className = 'st-switch';
      const input = document.createElement('input');
      input.type = 'checkbox';
      input.setAttribute('role', 'switch');
      input.dataset.queue = String(q.id);
      input.addEventListener('change', onSwitch);
      const text = document.createElement('span');
      label.append(input, text);
      const count = document.createElement('p');
      count.className = 'st-queue-count';
      count.setAttribute('aria-live', 'polite');
      const tools = queueTools(q.id);
      li.append(name, count, label, tools.box);
      row = { li, input, name, text, count, tools };
      queueRows.set(q.id, row);
    }
    row.name.textContent = q.name;
    row.text.textContent = t('st_available');
    const c = ts.counts[q.id];
    row.count.hidden = !c;
    row.count.textContent = c ? countText(c) : '';
    row.tools.poster.textContent = t('st_poster');
    row.tools.share.textContent = t('st_share_link');
    const on = pendingAvailable ? pendingAvailable.queues.includes(q.id)
      : ts.available && ts.availableQueues.includes(q.id);
    row.input.checked = on;
    row.input.setAttribute('aria-checked', String(on));
    row.input.disabled = !doctor || !connected || !!pendingAvailable;
    row.li.classList.toggle('is-on', ts.available && ts.availableQueues.includes(q.id));
    list.append(row.li);
  }
  $('no-queues').hidden = !ts.me || ts.queues.length > 0 || !queuesLoaded;
  $('doctors-only').hidden = !ts.me || doctor;
  const status = $('avail-status');
  status.hidden = !doctor || ts.queues.length === 0;
  status.textContent = ts.available ? t('st_status_available') : t('st_status_unavailable');
  status.classList.toggle('is-on', ts.available);
  $('queues-error').hidden = !queuesError;
  $('queues-error').textContent = queuesError || '';
}

/** "3 người đang chờ · 1 bác sĩ sẵn sàng" for a queue's counts. */
function countText(c) {
  const waiting = c.waiting + c.offered;
  const parts = [waiting > 0 ? tf('st_count_waiting', { n: waiting }) : t('st_count_none')];
  parts.push(tf('st_count_doctors', { n: c.doctors_available }));
  return parts.join(' · ');
}

/** A queue's public link: its poster (QR, print) and the share sheet. */
function queueTools(id) {
  const box = document.createElement('p');
  box.className = 'st-queue-tools';
  const poster = document.createElement('a');
  poster.className = 'st-queue-poster';
  poster.href = `/q/${id}/poster`;
  poster.target = '_blank';
  poster.rel = 'noopener';
  const share = document.createElement('button');
  share.type = 'button';
  share.className = 'btn btn-secondary btn-small st-queue-share';
  const status = document.createElement('span');
  status.className = 'muted-text';
  status.setAttribute('role', 'status');
  share.addEventListener('click', async () => {
    const how = await shareOrCopy({ url: `${location.origin}/q/${id}`, title: queueName(id) });
    ts.lastShare = how;
    status.textContent = how === 'copied' ? t('st_link_copied') : how === 'failed' ? t('st_copy_failed') : '';
  });
  box.append(poster, share, status);
  return { box, poster, share, status };
}

function queueName(id) {
  const q = ts.queues.find((x) => x.id === id);
  return q ? q.name : `#${id}`;
}

function fmtDuration(secs) {
  return secs >= 60 ? tf('st_minutes', { n: Math.floor(secs / 60) }) : tf('st_seconds', { n: secs });
}

let offerDeadline = 0; // performance.now() ms
let offerTotal = 0;
let offerTimer = null;

function offerLeftSecs() {
  return Math.max(0, Math.ceil((offerDeadline - performance.now()) / 1000));
}

function renderOffer() {
  const o = ts.offer;
  $('offer-card').hidden = !o;
  if (!o) return;
  $('offer-name').textContent = o.name;
  $('offer-reason').textContent = o.reason || '—';
  const phone = $as('a', 'offer-phone');
  phone.textContent = o.phone || '—';
  if (o.phone) phone.href = `tel:${o.phone.replace(/[^0-9+]/g, '')}`;
  else phone.removeAttribute('href');
  const waitedNow = o.waited_secs + Math.max(0, Math.floor((performance.now() - o.receivedAt) / 1000));
  $('offer-waited').textContent = fmtDuration(waitedNow);
  $('offer-queue').textContent = queueName(o.queue);
  $('offer-transferred').hidden = !o.transferred;
  const left = offerLeftSecs();
  ts.offer.leftSecs = left;
  $('offer-countdown').textContent = accepting ? t('st_accepting')
    : left > 0 ? tf('st_expires', { n: left }) : t('st_expired');
  $('offer-bar').style.width = `${offerTotal > 0 ? Math.max(0, Math.min(100, ((offerDeadline - performance.now()) / offerTotal) * 100)) : 0}%`;
  $as('button', 'accept-btn').disabled = accepting || left <= 0;
  $as('button', 'decline-btn').disabled = accepting || left <= 0;
}

function renderCall() {
  $('call-panel').hidden = !ts.onCall;
  const link = $as('a', 'open-call');
  link.hidden = !ts.callUrl;
  if (ts.callUrl) link.href = ts.callUrl;
  $('popup-blocked').hidden = !ts.popupBlocked;
  $as('button', 'done-btn').disabled = pendingFree;
}

function renderError() {
  if (!fatal) return;
  $('error-text').textContent = fatal.key ? t(fatal.key) : errorText(fatal.code);
  $('error-code').textContent = `(${fatal.code})`;
  $('retry-btn').textContent = fatal.code === 'replaced' ? t('st_use_here') : t('retry');
}

/** @type {{ key?: string, code?: string, retryAfter?: number | null } | null} */
let signinError = null; // {key} | {code, retryAfter}
let signinNote = null; // a key

function renderSignin() {
  const el = $('signin-error');
  if (signinError) {
    let text = signinError.key ? t(signinError.key) : errorText(signinError.code);
    if (signinError.retryAfter) text += ` ${tf('st_retry_after', { n: signinError.retryAfter })}`;
    el.textContent = text;
  }
  el.hidden = !signinError;
  $('signin-note').hidden = !signinNote;
  $('signin-note').textContent = signinNote ? t(signinNote) : '';
  $as('button', 'signin-btn').disabled = signingIn;
  $('signin-btn').textContent = signingIn ? t('st_signing_in') : t('st_signin');
}

/** What this page draws itself, in the new language (after i18n's applyLang). */
function renderLang() {
  if (lastQueuesErr) queuesError = describeQueuesError(lastQueuesErr);
  if (ts.me) {
    conferences.relabel();
    if (ts.tabs.includes('coord')) coordination.relabel();
  }
  render();
}

// ---------------------------------------------------------------------------
// HTTP.

async function api(method, path, body) {
  /** @type {RequestInit & { headers: Record<string, string> }} */
  const init = { method, cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    log(method, path, 'failed', e);
    return { status: 0, json: null, headers: null };
  }
  let json = null;
  try { json = await res.json(); } catch { /* not JSON (e.g. 204) */ }
  return { status: res.status, json, headers: res.headers };
}

let checked = false;

/** Who is signed in (null: nobody), or undefined when the server cannot be reached. */
async function fetchMe() {
  const r = await api('GET', '/api/v1/me');
  if (r.status === 200 && r.json && r.json.staff) return r.json;
  if (r.status === 401 || r.status === 403) return null;
  return undefined;
}

let queuesLoaded = false;

async function loadQueues() {
  const r = await api('GET', '/api/v1/queues');
  if (r.status === 200 && r.json && Array.isArray(r.json.queues)) {
    ts.queues = r.json.queues.filter((q) => q && Number.isSafeInteger(q.id));
    queuesLoaded = true;
    return true;
  }
  if (r.status === 401) sessionExpired();
  return false;
}

// ---------------------------------------------------------------------------
// Signing in and out.

let signingIn = false;

async function onSignin(ev) {
  ev.preventDefault();
  primeAudio(); // a click: a later chime may play
  if (signingIn) return;
  const username = $as('input', 'username').value.trim().toLowerCase();
  const password = $as('input', 'password').value;
  const code = $as('input', 'totp').value.replace(/\s+/g, '');
  signinNote = null;
  if (!username || !password || !code) {
    signinError = { key: 'st_fields_needed' };
    update();
    (!username ? $('username') : !password ? $('password') : $('totp')).focus();
    return;
  }
  if (!/^\d{6}$/.test(code)) {
    signinError = { key: 'st_code_invalid' };
    update();
    $('totp').focus();
    return;
  }
  signinError = null;
  signingIn = true;
  update();
  const r = await api('POST', '/api/v1/auth/login', { username, password, totp: code });
  signingIn = false;
  if (r.status === 200 && r.json && r.json.staff) {
    log('signed in as', r.json.staff.username);
    $as('input', 'password').value = '';
    $as('input', 'totp').value = '';
    await enterConsole(r.json);
    return;
  }
  if (r.status === 0) signinError = { code: 'network_error' };
  else if (r.status === 429) {
    const after = Number(r.headers && r.headers.get('Retry-After'));
    signinError = { code: 'too_many_attempts', retryAfter: Number.isFinite(after) && after > 0 ? Math.ceil(after) : null };
  } else if (r.status === 403) signinError = { code: 'account_disabled' };
  else if (r.status === 401) signinError = { code: 'login_failed' };
  else if (r.status === 400) signinError = { code: 'login_failed' };
  else signinError = { code: r.json && r.json.error && r.json.error.code ? r.json.error.code : 'internal' };
  log('sign-in failed', r.status, signinError.code || signinError.key);
  $as('input', 'totp').value = '';
  update();
  $('totp').focus();
}

let sessionTimer = null;

async function enterConsole(me) {
  ts.me = me;
  ts.error = null;
  fatal = null;
  setupTabs();
  update();
  conferences.enter();
  await loadQueues();
  if (!ts.me) return; // the session ended meanwhile
  update();
  clearInterval(sessionTimer);
  sessionTimer = setInterval(checkSession, SESSION_CHECK_MS);
  if (isDoctor()) connect();
}

/**
 * While on duty (taking patients, offered one, or in a call) the console
 * keeps the sign-in alive and notices when it ends; off duty it lets the
 * server's one-hour idle rule apply.
 */
async function checkSession() {
  if (!ts.me || !isDoctor()) return;
  if (!ts.available && !ts.onCall && !ts.offer) return;
  const me = await fetchMe();
  if (me === null) sessionExpired();
}

function sessionExpired() {
  if (!ts.me) return;
  log('session expired');
  resetConsole();
  signinNote = 'st_session_expired';
  update();
}

function resetConsole() {
  conferences.reset();
  coordination.reset();
  ts.tab = null;
  ts.tabs = [];
  clearInterval(sessionTimer);
  sessionTimer = null;
  closeSocket();
  clearOffer();
  ts.me = null;
  ts.queues = [];
  queuesLoaded = false;
  ts.available = false;
  ts.availableQueues = [];
  ts.onCall = false;
  ts.notice = null;
  ts.popupBlocked = false;
  wantAvailable = [];
  pendingAvailable = null;
  pendingFree = false;
  queuesError = null;
  lastQueuesErr = null;
  everConnected = false;
}

async function signOut() {
  log('signing out');
  resetConsole();
  update();
  await api('POST', '/api/v1/auth/logout', {});
  $('username').focus();
}

// ---------------------------------------------------------------------------
// Signaling.

// One session to /ws (connection.js): hello, keepalive and the backoff of
// reconnects (1 s doubling to 15 s); this page reconnects while signed in,
// after checking that the sign-in still holds.
const conn = new Connection({
  log,
  backoff: (attempt) => Math.min(15_000, 1000 * 2 ** attempt),
  describeSent: (msg) => (msg.type === 'available' ? msg.queues : ''),
  onMessage: (msg) => onServerMsg(msg),
  onLost: (lost) => {
    if (lost.created) onSocketGone();
    else scheduleReconnect();
  },
});
let everConnected = false;
let connectedAt = 0;
let wantAvailable = []; // queues to be available for again after a reconnect
let pendingAvailable = null; // {queues, retried}: sent, no answer yet
let pendingFree = false;
let queuesError = null; // text shown above the switches
let lastQueuesErr = null; // {code, queue}: to translate again on a language switch

/** @param {{ type: string, [k: string]: any }} msg */
function send(msg) {
  return conn.send(msg);
}

function connect() {
  closeSocket();
  if (!ts.me || fatal) return;
  ts.connection = 'connecting';
  update();
  conn.connect();
}

function closeSocket() {
  conn.close(1000);
  ts.connection = 'closed';
}

function onSocketGone() {
  ts.connection = 'closed';
  // Counts from a closed connection may be stale: the next welcome brings them again.
  ts.counts = {};
  // The server withdrew a pending offer and made us unavailable; a call in
  // progress stays ours.
  clearOffer();
  accepting = false;
  pendingFree = false;
  if (pendingAvailable) {
    wantAvailable = pendingAvailable.queues;
    pendingAvailable = null;
  }
  update();
  if (!ts.me || fatal) return;
  scheduleReconnect();
}

function scheduleReconnect() {
  ts.connection = 'closed';
  conn.retryLater(async () => {
    // A dead sign-in would connect as a stranger: check it first.
    const me = await fetchMe();
    if (me === null) {
      sessionExpired();
      return;
    }
    if (me) ts.me = me;
    connect();
  });
  update();
}

function onServerMsg(msg) {
  if (msg.type !== 'pong') log('←', msg.type, describe(msg));
  switch (msg.type) {
    case 'welcome':
      ts.connection = 'open';
      everConnected = true;
      connectedAt = performance.now();
      conn.resetBackoff();
      if (retryAfterReconnect) {
        const queues = retryAfterReconnect;
        retryAfterReconnect = null;
        requestAvailable(queues, true);
      } else if (wantAvailable.length) {
        // Back after a dropped connection: take patients again as before.
        requestAvailable(wantAvailable, false);
      }
      update();
      break;
    case 'doctor_status':
      onDoctorStatus(msg);
      break;
    case 'queue_counts':
      ts.counts[msg.queue] = {
        waiting: msg.waiting, offered: msg.offered, doctors_available: msg.doctors_available,
      };
      renderQueues();
      break;
    case 'patient_offer':
      onOffer(msg);
      break;
    case 'patient_offer_withdrawn':
      onOfferWithdrawn(msg);
      break;
    case 'call_ready':
      onCallReady(msg);
      break;
    case 'pong':
      ts.lastPong = msg.seq;
      break;
    case 'error':
      onServerError(msg);
      break;
    default:
      break;
  }
}

function describe(msg) {
  const { type, ticket, phone, reason, name, url, ...rest } = msg;
  // Patient details, tickets and link tokens stay out of the log.
  if (ticket) rest.ticket = `${ticket.slice(0, 4)}…`;
  if (url) rest.url = `${url.split('#')[0]}#…`;
  return safeJson(rest);
}

// ---------------------------------------------------------------------------
// Availability.

let retryAfterReconnect = null; // queues to ask for again on the next session

function onSwitch() {
  primeAudio();
  const queues = [...queueRows.entries()].filter(([, row]) => row.input.checked).map(([id]) => id);
  requestAvailable(queues, false);
}

let pendingTimer = null;

function requestAvailable(queues, retried) {
  queuesError = null;
  lastQueuesErr = null;
  const req = { queues, retried };
  pendingAvailable = req;
  if (!send(P.available(queues))) {
    pendingAvailable = null;
    wantAvailable = queues;
  }
  // The server answers with doctor_status (or an error) at once; should
  // neither come, show its last word rather than a switch stuck disabled.
  clearTimeout(pendingTimer);
  pendingTimer = setTimeout(() => {
    if (pendingAvailable === req) {
      log('no answer to available');
      pendingAvailable = null;
      update();
    }
  }, 5000);
  update();
}

function onDoctorStatus(msg) {
  ts.available = msg.available;
  ts.availableQueues = [...msg.queues];
  if (!msg.on_call) pendingFree = false;
  ts.onCall = msg.on_call;
  pendingAvailable = null;
  wantAvailable = msg.available ? [...msg.queues] : [];
  update();
}

function describeQueuesError({ code, queue }) {
  const text = errorText(code);
  return queue != null ? `${queueName(queue)}: ${text}` : text;
}

async function onAvailableRefused(msg) {
  const sent = pendingAvailable;
  pendingAvailable = null;
  const m = /queue (\d+)/.exec(msg.message || '');
  const queue = m ? Number(m[1]) : null;
  if (msg.code === 'not_on_call' && sent && !sent.retried && /roster/.test(msg.message || '')
      && performance.now() - connectedAt > 20_000 && !ts.offer && !ts.onCall && !accepting) {
    // Rosters are read when the connection opens: a shift that started
    // since needs a fresh one. Reconnect once and ask again.
    log('not on call: reconnecting to read the rosters again');
    retryAfterReconnect = sent.queues;
    connect();
    return;
  }
  if (msg.code === 'not_on_call' && /sign in/.test(msg.message || '')) {
    const me = await fetchMe();
    if (me === null) {
      sessionExpired();
      return;
    }
  }
  lastQueuesErr = { code: msg.code, queue };
  queuesError = describeQueuesError(lastQueuesErr);
  update();
}

// ---------------------------------------------------------------------------
// Offers and calls.

function onOffer(msg) {
  clearOffer();
  ts.offer = { ...msg, receivedAt: performance.now(), leftSecs: msg.expires_in_secs };
  offerTotal = msg.expires_in_secs * 1000;
  offerDeadline = performance.now() + offerTotal;
  accepting = false;
  ts.notice = null;
  offerTimer = setInterval(() => {
    if (!ts.offer) return;
    renderOffer();
  }, 250);
  $('offer-announce').textContent = `${t('st_offer_title')}: ${msg.name}. ${msg.reason}`;
  chime();
  tabFlag.raise();
  update();
  $('accept-btn').focus({ preventScroll: true });
  $('offer-card').scrollIntoView({ block: 'nearest' });
}

function clearOffer() {
  clearInterval(offerTimer);
  offerTimer = null;
  ts.offer = null;
  $('offer-announce').textContent = '';
}

function accept() {
  if (!ts.offer || accepting) return;
  primeAudio();
  if (send(P.accept_patient(ts.offer.ticket))) {
    accepting = true;
    update();
  }
}

function decline() {
  if (!ts.offer || accepting) return;
  if (send(P.decline_patient(ts.offer.ticket))) {
    clearOffer();
    update();
  }
}

const WITHDRAW_REASONS = new Set([
  'expired', 'patient_cancelled', 'patient_gone', 'doctor_unavailable', 'doctor_gone', 'queue_closed',
]);

function onOfferWithdrawn(msg) {
  if (ts.offer && ts.offer.ticket !== msg.ticket) return;
  clearOffer();
  accepting = false;
  // An expired offer says where the patient went (back in the line, or to
  // another doctor): never "to another doctor" when nobody else was free.
  if (msg.reason === 'expired' && P.OFFER_AFTERWARDS.includes(msg.patient)) ts.notice = `st_withdrawn_expired_${msg.patient}`;
  else ts.notice = WITHDRAW_REASONS.has(msg.reason) ? `st_withdrawn_${msg.reason}` : 'st_withdrawn_other';
  update();
}

/** The call's link, on the origin this console came from (it answers for it). */
function sameOriginUrl(url) {
  try {
    const u = new URL(url, location.href);
    if (/^\/join\//.test(u.pathname)) return `${location.origin}${u.pathname}${u.search}${u.hash}`;
    return u.href;
  } catch {
    return url;
  }
}

function onCallReady(msg) {
  const url = sameOriginUrl(msg.url);
  clearOffer();
  accepting = false;
  ts.callUrl = url;
  ts.onCall = true;
  ts.notice = null;
  ts.popupBlocked = false;
  if (!NOOPEN) {
    let w = null;
    try { w = window.open(url, '_blank'); } catch (e) { log('window.open failed', e); }
    ts.popupBlocked = !w;
    if (!w) log('the new window was blocked');
  }
  update();
}

function doctorFree() {
  if (pendingFree) return;
  if (send(P.doctor_free())) {
    pendingFree = true;
    ts.notice = null;
    update();
  }
}

function onServerError(msg) {
  ts.error = msg.code;
  ts.errors.push(msg.code);
  const about = msg.in_reply_to;
  if (msg.code === 'replaced') {
    fatal = { code: 'replaced', key: 'st_replaced' };
    clearOffer();
    closeSocket();
    update();
    return;
  }
  if (P.isFatalError(msg.code)) {
    // idle_timeout, server_shutdown, …: the close that follows reconnects.
    if (msg.code === 'unsupported_version') {
      fatal = { code: msg.code };
      closeSocket();
      update();
    }
    return;
  }
  if (about === 'available' || about === 'unavailable') {
    onAvailableRefused(msg);
    return;
  }
  if (about === 'accept' || about === 'accept_patient' || about === 'decline' || about === 'decline_patient') {
    // The offer is gone (expired, the patient left, …).
    clearOffer();
    accepting = false;
    ts.notice = 'st_offer_gone';
    update();
    return;
  }
  if (about === 'doctor_free') {
    // Not on a call any more (the consultation ended meanwhile).
    pendingFree = false;
    ts.onCall = false;
    update();
  }
}

// ---------------------------------------------------------------------------
// A short chime for a new patient.

let audioCtx = null;
const tabFlag = createTabFlag(window);
ts.tabFlag = tabFlag;

/** Creates the audio context during a click, so that a later chime may play. */
function primeAudio() {
  try {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    if (!audioCtx) audioCtx = new AC();
    if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  } catch { /* ignore */ }
}

function chime() {
  try {
    primeAudio();
    if (!audioCtx) return;
    if (audioCtx.state === 'running') ts.chimes += 1;
    const now = audioCtx.currentTime;
    [[660, 0], [880, 0.18], [990, 0.36]].forEach(([freq, at]) => {
      const osc = audioCtx.createOscillator();
      const gain = audioCtx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.2, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.35);
      osc.connect(gain).connect(audioCtx.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.4);
    });
  } catch (e) {
    log('chime failed', e);
  }
  try { if (navigator.vibrate) navigator.vibrate([150, 80, 150]); } catch { /* ignore */ }
}

// ---------------------------------------------------------------------------
// Tabs by role, and what the tabs' modules share.

const TAB_ORDER = ['oncall', 'conf', 'coord'];
const TAB_STORE = 'tuxa.staff.tab';

function tabsForRole(role) {
  if (role === 'doctor' || role === 'nurse') return ['oncall', 'conf'];
  if (role === 'coordinator' || role === 'admin') return ['conf', 'coord'];
  return ['conf'];
}

function setupTabs() {
  const role = ts.me && ts.me.staff && ts.me.staff.role;
  ts.tabs = tabsForRole(role);
  let stored = null;
  try { stored = sessionStorage.getItem(`${TAB_STORE}.${ts.me.staff.username}`); } catch { /* ignore */ }
  const wanted = params.get('tab') || stored;
  const byRole = role === 'doctor' ? 'oncall' : role === 'coordinator' || role === 'admin' ? 'coord' : 'conf';
  selectTab(ts.tabs.includes(wanted) ? wanted : byRole, false);
}

function selectTab(tab, focus) {
  if (!ts.tabs.includes(tab)) return;
  const before = ts.tab;
  ts.tab = tab;
  try { sessionStorage.setItem(`${TAB_STORE}.${ts.me.staff.username}`, tab); } catch { /* ignore */ }
  renderTabs();
  if (before !== tab) {
    if (tab === 'conf') conferences.show(); else conferences.hide();
    if (tab === 'coord') coordination.show(); else coordination.hide();
  }
  if (focus) $(`tab-btn-${tab}`).focus();
}

function renderTabs() {
  for (const tab of TAB_ORDER) {
    const btn = $(`tab-btn-${tab}`);
    const has = !!ts.me && ts.tabs.includes(tab);
    btn.hidden = !has;
    const on = has && ts.tab === tab;
    btn.setAttribute('aria-selected', String(on));
    btn.tabIndex = on ? 0 : -1;
    $(`tab-${tab}`).hidden = !on;
  }
  $('console-tabs').hidden = !ts.me || ts.tabs.length < 2;
  if (ts.me) conferences.render();
}

function onTabKey(ev) {
  const i = ts.tabs.indexOf(ts.tab);
  let next = null;
  if (ev.key === 'ArrowRight') next = ts.tabs[(i + 1) % ts.tabs.length];
  else if (ev.key === 'ArrowLeft') next = ts.tabs[(i - 1 + ts.tabs.length) % ts.tabs.length];
  else if (ev.key === 'Home') next = ts.tabs[0];
  else if (ev.key === 'End') next = ts.tabs[ts.tabs.length - 1];
  if (!next) return;
  ev.preventDefault();
  selectTab(next, true);
}

/** An API error for the console: its translation, then its code. */
function consoleErrorText(code) {
  const own = STRINGS[getLang()]?.[`console_err_${code}`] ?? STRINGS.vi[`console_err_${code}`];
  return `${own || errorText(code)} (${code})`;
}

/** The tabs' API calls: `code` is the error to show; a 401 ends the sign-in. */
async function consoleApi(method, path, body) {
  const r = await api(method, path, body);
  r.code = r.status >= 200 && r.status < 300 ? null : apiErrorCode(r.status, r.json);
  if (r.status === 401) sessionExpired();
  else if (r.code) log(method, path.split('?')[0], '→', r.status, r.code);
  return r;
}

const ctx = {
  ts,
  me: () => ts.me,
  api: consoleApi,
  codeOf: apiErrorCode,
  errorText: consoleErrorText,
  unauthorized: () => sessionExpired(),
  sameOriginUrl: (url) => sameOriginUrl(url),
  noopen: NOOPEN,
  log: (...a) => log(...a),
};
const conferences = createConferences(ctx);
const coordination = createCoordination(ctx);

// ---------------------------------------------------------------------------
// Start.

async function start() {
  applyLang();
  renderLang();
  document.body.dataset.state = ts.state;
  const me = await fetchMe();
  checked = true;
  if (me) {
    await enterConsole(me);
    return;
  }
  if (me === undefined) signinError = { code: 'network_error' };
  update();
  $('username').focus();
}

function wireUi() {
  mountLang(renderLang);
  $('signin-form').addEventListener('submit', onSignin);
  $('signout-btn').addEventListener('click', signOut);
  $('accept-btn').addEventListener('click', accept);
  $('decline-btn').addEventListener('click', decline);
  $('done-btn').addEventListener('click', doctorFree);
  $('open-call').addEventListener('click', () => { ts.popupBlocked = false; render(); });
  $('retry-btn').addEventListener('click', () => location.reload());
  for (const tab of TAB_ORDER) $(`tab-btn-${tab}`).addEventListener('click', () => selectTab(tab, false));
  $('console-tabs').addEventListener('keydown', onTabKey);
}

// For tests and debugging: drop the connection as a flaky network would.
ts.debug = {
  dropConnection() {
    conn.drop(4000, 'dropped for a test');
  },
};

wireUi();
start().catch((e) => {
  log('start failed', e);
  fatal = { code: 'unknown_error' };
  update();
});
