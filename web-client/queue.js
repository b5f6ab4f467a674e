// @ts-check
// tuxa patient queue page: /q/{queue id}.
//
// Flow (docs/api.md "On-call queues and rosters", docs/protocol.md):
//   GET /api/v1/queues/{id}/public (name, facility) → the form (name, phone,
//   reason for the visit, consent per purpose: nothing pre-ticked, the remote
//   examination needed) → WebSocket /ws: hello → welcome → consent →
//   queue_join → queue_status (position and estimate, or offered, or
//   waiting_for_doctor) … → call_ready {url} → this tab goes to the call.
//
// One consent: the answers given here go with the patient to the call page
// (sessionStorage of this tab, under the call's room, written when the call
// is ready; never in the URL), which sends them as given instead of asking
// again. The server records them once there, with the consultation.
//
// The ticket is kept in localStorage with the time it was last known alive:
// reopening the link (or a reload, or a dropped connection) within the
// server's 2-minute grace sends queue_resume and keeps the place.
//
// For tests: window.tuxaQueue = {state, position, estimateSecs, ticket, error, …}.

import * as P from './protocol.js';
import { pageLog, safeJson } from './session.js';
import { Connection } from './connection.js';
import { $as } from './console-util.js';
import {
  t, tf, errorText, getLang, applyLang, mountLang,
} from './i18n.js';

const $ = (id) => document.getElementById(id);

/** The server keeps a disconnected patient's place this long. */
const RESUME_GRACE_MS = 120_000;
/** Give up reconnecting after this (the place is gone by then). */
const RECONNECT_GIVE_UP_MS = RESUME_GRACE_MS + 10_000;

// ---------------------------------------------------------------------------
// State visible to tests.

const tq = {
  // loading | form | connecting | queued | offered | waiting_for_doctor |
  // call_ready | left | error
  state: 'loading',
  history: ['loading'],
  queueId: null,
  queue: null, // the public info {id, name, facility, specialty}
  position: null,
  estimateSecs: null,
  ticket: null,
  resumed: false, // this page took a stored ticket back
  connection: 'closed', // open | reconnecting | closed
  callUrl: null,
  removedReason: null,
  consent: null, // the answers sent, and the server's receipt time
  error: null,
  errors: [],
  log: [],
};
window.tuxaQueue = tq;

const log = pageLog(tq.log, '[tuxa-queue]');

// ---------------------------------------------------------------------------
// Screens.

const SCREENS = {
  loading: 'screen-loading',
  form: 'screen-form',
  connecting: 'screen-wait',
  queued: 'screen-wait',
  offered: 'screen-wait',
  waiting_for_doctor: 'screen-wait',
  call_ready: 'screen-wait',
  left: 'screen-left',
  error: 'screen-error',
};

function setState(state) {
  if (tq.state !== state) {
    log('state', tq.state, '→', state);
    tq.state = state;
    tq.history.push(state);
    document.body.dataset.state = state;
    const shown = SCREENS[state];
    for (const id of new Set(Object.values(SCREENS))) $(id).hidden = id !== shown;
  }
  render();
}

// ---------------------------------------------------------------------------
// The stored ticket (localStorage: survives closing the tab) and the form's
// contents (sessionStorage: this tab only, for a reload or a lost place).

const ticketKey = () => `tuxa.queue.${tq.queueId}.ticket`;
const cardKey = () => `tuxa.queue.${tq.queueId}.card`;
const consentKey = () => `tuxa.queue.${tq.queueId}.consent`;
/** Where the call page looks for answers already given (app.js, readGiven). */
const callConsentKey = (room) => `tuxa.consent.${room}`;

function readStored() {
  try {
    const v = JSON.parse(localStorage.getItem(ticketKey()) || 'null');
    if (v && typeof v.ticket === 'string' && Number.isFinite(v.at)) return v;
  } catch { /* ignore */ }
  return null;
}

/** Remembers the ticket as alive now (and, once known, the call's link). */
function storeTicket(extra = {}) {
  if (!tq.ticket) return;
  const prev = readStored();
  const rec = {
    ticket: tq.ticket,
    at: Date.now(),
    url: prev && prev.ticket === tq.ticket ? prev.url || null : null,
    ...extra,
  };
  try { localStorage.setItem(ticketKey(), JSON.stringify(rec)); } catch { /* ignore */ }
}

function forgetTicket() {
  try { localStorage.removeItem(ticketKey()); } catch { /* ignore */ }
}

function storeCard(card) {
  try { sessionStorage.setItem(cardKey(), JSON.stringify(card)); } catch { /* ignore */ }
}

function readCard() {
  try { return JSON.parse(sessionStorage.getItem(cardKey()) || 'null'); } catch { return null; }
}

/** The answers sent with queue_join: a reload that resumes the ticket still has them for the call. */
function storeConsent(answers) {
  try { sessionStorage.setItem(consentKey(), JSON.stringify(answers)); } catch { /* ignore */ }
}

function readConsent() {
  try {
    const v = JSON.parse(sessionStorage.getItem(consentKey()) || 'null');
    if (v && typeof v.text_version === 'string' && v.remote_examination === true) return v;
  } catch { /* ignore */ }
  return null;
}

/** Hands the answers to the call page of `url` (same origin, same tab). */
function carryConsent(url) {
  const answers = tq.consent || readConsent();
  const m = /\/join\/([^/?#]+)/.exec(new URL(url, location.href).pathname);
  if (!answers || !m) return;
  const { text_version, remote_examination, third_parties, recording } = answers;
  try {
    sessionStorage.setItem(callConsentKey(decodeURIComponent(m[1])), JSON.stringify({
      text_version, remote_examination, third_parties, recording, via: 'queue',
    }));
  } catch { /* ignore */ }
}

// ---------------------------------------------------------------------------
// Rendering.

let formNote = null; // a key shown above the form (e.g. the place was lost)
let bannerKey = null;
let shownError = null; // {code} or {key}

function render() {
  const q = tq.queue;
  for (const [n, f] of [['q-name', 'q-facility'], ['q-name-2', 'q-facility-2']]) {
    $(n).textContent = q ? q.name : '';
    $(f).textContent = q && q.facility ? q.facility : '';
    $(f).hidden = !(q && q.facility);
  }
  $('q-form-note').hidden = !formNote;
  $('q-form-note').textContent = formNote ? t(formNote) : '';
  renderStatus();
  renderError();
  updateJoinButton();
  updateTitle();
}

function renderStatus() {
  const s = tq.state;
  let title = '';
  let position = '';
  let estimate = '';
  switch (s) {
    case 'connecting':
      title = tq.resumed ? t('q_resuming') : t('q_connecting');
      break;
    case 'queued':
      title = t('q_in_queue');
      position = tq.position != null ? tf('q_position', { n: tq.position }) : '';
      estimate = tq.estimateSecs != null
        ? tf('q_estimate', { n: Math.max(1, Math.ceil(tq.estimateSecs / 60)) })
        : t('q_estimate_unknown');
      break;
    case 'offered':
      title = t('q_offered');
      break;
    case 'waiting_for_doctor':
      title = t('q_waiting_for_doctor');
      break;
    case 'call_ready':
      title = t('q_call_ready');
      break;
    default:
      break;
  }
  $('q-status-title').textContent = title;
  $('q-position').textContent = position;
  $('q-position').hidden = !position;
  $('q-estimate').textContent = estimate;
  $('q-estimate').hidden = !estimate;
  const link = $as('a', 'q-call-link');
  link.hidden = !(s === 'call_ready' && tq.callUrl);
  if (tq.callUrl) link.href = tq.callUrl;
  // No cancelling once the doctor took the patient (the server refuses it).
  $('q-cancel-box').hidden = !(s === 'queued' || s === 'offered' || s === 'waiting_for_doctor');
  if ($('q-cancel-box').hidden) showConfirm(false);
  document.body.dataset.qstate = s;
  const showBanner = !!bannerKey && s !== 'call_ready';
  $('q-banner').hidden = !showBanner;
  $('q-banner').textContent = showBanner ? t(bannerKey) : '';
  const reason = tq.removedReason;
  $('q-left-text').textContent = reason ? t(`q_removed_${reason}`) : '';
}

function renderError() {
  if (!shownError) return;
  $('error-text').textContent = shownError.key ? t(shownError.key) : errorText(shownError.code);
  // Patients never see raw error codes: the words say what to do.
  $('error-code').textContent = '';
  $('error-code').hidden = true;
}

function updateTitle() {
  const base = t('q_title');
  document.title = tq.state === 'queued' && tq.position != null
    ? `(${tq.position}) ${base} — tuxa` : `${base} — tuxa`;
}

/** What this page draws itself, in the new language (after i18n's applyLang). */
function renderLang() {
  if (formErrorKey) $('q-form-error').textContent = t(formErrorKey);
  render();
}

// ---------------------------------------------------------------------------
// Errors.

function fail(code, key = null) {
  log('failed', code, key || '');
  tq.error = code;
  shownError = { code, key };
  closeSocket();
  setState('error');
  // A bad link stays bad; anything else may work on a second try.
  $('retry-btn').hidden = code === 'bad_link' || code === 'not_found';
}

// ---------------------------------------------------------------------------
// The form.

let formErrorKey = null;

function consentAnswers() {
  return {
    text_version: P.consentTextVersion(getLang()),
    remote_examination: $as('input', 'consent-exam').checked,
    third_parties: $as('input', 'consent-third').checked,
    recording: $as('input', 'consent-recording').checked,
  };
}

/** Nothing is ticked for the patient: not even a browser restoring a reloaded form. */
function resetConsent() {
  for (const id of ['consent-exam', 'consent-third', 'consent-recording']) $as('input', id).checked = false;
  updateJoinButton();
}

function updateJoinButton() {
  const blocked = !$as('input', 'consent-exam').checked;
  $as('button', 'q-join-btn').disabled = blocked || tq.state !== 'form';
  $('consent-needed').hidden = !blocked;
}

function setFormError(key, field = null) {
  formErrorKey = key;
  $('q-form-error').hidden = !key;
  $('q-form-error').textContent = key ? t(key) : '';
  for (const id of ['f-name', 'f-phone', 'f-reason']) $(id).removeAttribute('aria-invalid');
  if (field) {
    $(field).setAttribute('aria-invalid', 'true');
    $(field).focus();
  }
}

function readForm() {
  const name = $as('input', 'f-name').value.trim().replace(/\s+/g, ' ');
  const phone = $as('input', 'f-phone').value.trim();
  const reason = $as('textarea', 'f-reason').value.trim();
  if (!name) return { error: 'q_fill_needed', field: 'f-name' };
  if (!reason) return { error: 'q_fill_needed', field: 'f-reason' };
  const digits = phone.replace(/\D/g, '');
  if (phone && (!/^[0-9+()\-.\s]+$/.test(phone) || digits.length < 8 || digits.length > 15)) {
    return { error: 'q_phone_invalid', field: 'f-phone' };
  }
  return { card: { name: name.slice(0, 100), phone: phone.slice(0, 30), reason: reason.slice(0, 500) } };
}

let pendingCard = null; // what queue_join will send

function onSubmit(ev) {
  ev.preventDefault();
  if (tq.state !== 'form') return;
  if (!$as('input', 'consent-exam').checked) {
    updateJoinButton();
    return;
  }
  const r = readForm();
  if (r.error) {
    setFormError(r.error, r.field);
    return;
  }
  setFormError(null);
  formNote = null;
  pendingCard = r.card;
  storeCard(r.card);
  tq.consent = consentAnswers();
  storeConsent(tq.consent);
  tq.resumed = false;
  tq.ticket = null;
  connect('join');
}

// ---------------------------------------------------------------------------
// Signaling.

let mode = 'join'; // join | resume: what the next welcome leads to
let lostSince = 0; // when the connection holding our ticket dropped

// One session to /ws (connection.js): hello, keepalive and the backoff of
// reconnects (1 s doubling to 8 s: the place is kept for 2 minutes, and a
// patient waiting should come back at once); this page reconnects only
// while it holds a place.
const conn = new Connection({
  log,
  backoff: (attempt) => Math.min(8000, 1000 * 2 ** attempt),
  onMessage: (msg) => onServerMsg(msg),
  onLost: (lost) => onSocketGone(lost.opened),
});

/** @param {{ type: string, [k: string]: any }} msg */
function send(msg) {
  return conn.send(msg);
}

/** @param {'join' | 'resume'} how */
function connect(how) {
  mode = how;
  closeSocket();
  if (!tq.ticket || !isWaitingState(tq.state)) setState('connecting');
  conn.connect();
}

function closeSocket() {
  conn.close(1000);
  tq.connection = 'closed';
}

const isWaitingState = (s) => s === 'queued' || s === 'offered' || s === 'waiting_for_doctor';

/**
 * The socket closed without us asking.
 * @param {boolean} opened
 */
function onSocketGone(opened) {
  tq.connection = 'closed';
  if (tq.state === 'left' || tq.state === 'error' || tq.state === 'call_ready' || tq.state === 'form') return;
  if (tq.ticket) {
    // We hold a place: it is kept for 2 minutes. Keep trying.
    if (!lostSince) lostSince = Date.now();
    if (Date.now() - lostSince > RECONNECT_GIVE_UP_MS) {
      forgetTicket();
      fail('connection_lost');
      return;
    }
    tq.connection = 'reconnecting';
    bannerKey = 'q_reconnecting';
    render();
    conn.retryLater(() => {
      tq.resumed = true;
      connect('resume');
    });
    return;
  }
  // No place yet (the join was never confirmed): say so; Retry goes back to the form.
  fail(opened ? 'connection_lost' : 'network_error');
}

function onServerMsg(msg) {
  if (msg.type !== 'pong') log('←', msg.type, describe(msg));
  switch (msg.type) {
    case 'welcome':
      tq.connection = 'open';
      if (mode === 'resume' && tq.ticket) {
        send(P.queue_resume(tq.ticket));
      } else {
        // The hub handles a session's messages in order: the consent is
        // recorded before the queue_join is looked at.
        send(P.consent(tq.consent));
        send(P.queue_join({ queue: tq.queueId, ...pendingCard }));
      }
      break;
    case 'consent_recorded':
      if (tq.consent) tq.consent.at = msg.at;
      break;
    case 'queue_status':
      onStatus(msg);
      break;
    case 'queue_removed':
      onRemoved(msg);
      break;
    case 'call_ready':
      onCallReady(msg);
      break;
    case 'pong':
      tq.lastPong = msg.seq;
      if (isWaitingState(tq.state)) storeTicket();
      break;
    case 'error':
      onServerError(msg);
      break;
    default:
      break;
  }
}

function describe(msg) {
  const { type, ticket, url, ...rest } = msg;
  // Tickets and link tokens stay out of the log.
  if (ticket) rest.ticket = `${ticket.slice(0, 4)}…`;
  if (url) rest.url = `${url.split('#')[0]}#…`;
  return safeJson(rest);
}

function onStatus(msg) {
  tq.ticket = msg.ticket;
  tq.position = msg.state === 'queued' && msg.position != null ? msg.position : null;
  tq.estimateSecs = msg.state === 'queued' && msg.estimate_secs != null ? msg.estimate_secs : null;
  lostSince = 0;
  conn.resetBackoff();
  bannerKey = null;
  mode = 'resume'; // from now on, a new connection takes this place back
  storeTicket();
  setState(msg.state);
}

function onRemoved(msg) {
  if (tq.ticket && msg.ticket !== tq.ticket) return;
  tq.removedReason = ['cancelled', 'queue_closed', 'replaced', 'call_ended', 'cleared'].includes(msg.reason)
    ? msg.reason : 'cancelled';
  // `replaced`: the place lives on in another window; that one keeps the ticket.
  if (msg.reason !== 'replaced') forgetTicket();
  tq.ticket = null;
  tq.position = null;
  tq.estimateSecs = null;
  bannerKey = null;
  closeSocket();
  setState('left');
}

/** The call's link, on the origin this page came from (it answers for it). */
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
  const prev = readStored();
  // A resumed page that already sent the patient into this call once (they
  // came back with the Back button): show the way in, do not jump again.
  const again = !!(prev && prev.url === url);
  tq.ticket = msg.ticket;
  tq.callUrl = url;
  bannerKey = null;
  storeTicket({ url });
  carryConsent(url);
  closeSocket();
  setState('call_ready');
  if (!again) {
    log('going to the call');
    location.assign(url);
  }
}

function queueRefusedReason(msg) {
  const m = /^([a-z_]+):/.exec(msg.message || '');
  return m ? m[1] : '';
}

function onServerError(msg) {
  tq.error = msg.code;
  tq.errors.push(msg.code);
  if (msg.code === 'queue_refused') {
    const reason = queueRefusedReason(msg);
    if (msg.in_reply_to === 'resume' || (mode === 'resume' && reason === 'unknown_ticket')) {
      // The place is gone (grace over, or the call ended): start afresh.
      forgetTicket();
      tq.ticket = null;
      tq.resumed = false;
      closeSocket();
      formNote = 'q_resume_lost';
      resetConsent();
      setState('form');
      return;
    }
    if (msg.in_reply_to === 'cancel') {
      // Already gone (e.g. the doctor took the patient meanwhile): the
      // status or call_ready that follows says where we are.
      return;
    }
    const key = REFUSED_REASONS.has(reason) ? `q_refused_${reason}` : null;
    fail('queue_refused', key);
    return;
  }
  if (P.isFatalError(msg.code)) {
    // Holding a place, a lost session is not the end: the close that
    // follows reconnects and resumes.
    if (tq.ticket && (msg.code === 'idle_timeout' || msg.code === 'server_shutdown')) return;
    fail(msg.code);
    return;
  }
  if (!tq.ticket) {
    // The join itself failed (consent_required, invalid_message, …).
    fail(msg.code);
  }
}

/** Reasons of a queue_refused error that have their own explanation. */
const REFUSED_REASONS = new Set([
  'unknown_queue', 'queue_closed', 'queue_full', 'bad_card', 'already_queued', 'unknown_ticket',
  'too_many_tickets',
]);

// ---------------------------------------------------------------------------
// Cancelling.

function showConfirm(on) {
  $('q-confirm').hidden = !on;
  $('q-cancel-btn').hidden = on;
  if (on) $('q-cancel-no').focus();
}

function cancel() {
  if (!tq.ticket) return;
  log('cancelling');
  if (!send(P.queue_cancel(tq.ticket))) {
    // No connection: the place is given up anyway when the grace ends.
    forgetTicket();
    tq.ticket = null;
    tq.removedReason = 'cancelled';
    closeSocket();
    setState('left');
  }
  showConfirm(false);
}

// ---------------------------------------------------------------------------
// Start.

async function loadQueue() {
  let res;
  try {
    res = await fetch(`/api/v1/queues/${tq.queueId}/public`, { cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    log('queue info failed', e);
    return { error: 'network_error' };
  }
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const code = body && body.error && typeof body.error.code === 'string' ? body.error.code
      : res.status >= 500 ? 'internal' : 'unknown_error';
    return { error: code };
  }
  if (!body || typeof body.name !== 'string') return { error: 'internal' };
  return { ok: body };
}

async function start() {
  resetConsent();
  applyLang();
  renderLang();
  document.body.dataset.state = tq.state;
  const m = location.pathname.match(/^\/q\/(\d{1,15})\/?$/);
  if (!m) {
    fail('bad_link', 'q_refused_unknown_queue');
    return;
  }
  tq.queueId = Number(m[1]);
  const info = await loadQueue();
  if (info.error) {
    fail(info.error, info.error === 'not_found' ? 'q_refused_unknown_queue' : null);
    return;
  }
  tq.queue = info.ok;
  const card = readCard();
  if (card) {
    $as('input', 'f-name').value = card.name || '';
    $as('input', 'f-phone').value = card.phone || '';
    $as('textarea', 'f-reason').value = card.reason || '';
  }
  const stored = readStored();
  if (stored && Date.now() - stored.at < RESUME_GRACE_MS) {
    // Reopened within the grace: take the place back.
    log('resuming a stored ticket');
    tq.ticket = stored.ticket;
    tq.resumed = true;
    tq.consent = readConsent();
    connect('resume');
    return;
  }
  if (stored) forgetTicket();
  setState('form');
}

function wireUi() {
  mountLang(renderLang);
  $('q-form').addEventListener('submit', onSubmit);
  $('consent-exam').addEventListener('change', updateJoinButton);
  for (const id of ['f-name', 'f-phone', 'f-reason']) {
    $(id).addEventListener('input', () => { if (formErrorKey) setFormError(null); });
  }
  $('q-cancel-btn').addEventListener('click', () => showConfirm(true));
  $('q-cancel-no').addEventListener('click', () => { showConfirm(false); $('q-cancel-btn').focus(); });
  $('q-cancel-yes').addEventListener('click', cancel);
  $('retry-btn').addEventListener('click', () => {
    if (tq.queue && (tq.error === 'connection_lost' || tq.error === 'network_error' || tq.error === 'queue_refused')) {
      shownError = null;
      tq.error = null;
      resetConsent();
      setState('form');
      return;
    }
    location.reload();
  });
  $('q-again-btn').addEventListener('click', () => {
    tq.removedReason = null;
    tq.resumed = false;
    formNote = null;
    resetConsent();
    setState('form');
  });
  // Leaving or hiding the page: the place is alive as of now.
  const touch = () => { if (isWaitingState(tq.state)) storeTicket(); };
  window.addEventListener('pagehide', touch);
  document.addEventListener('visibilitychange', touch);
}

// For tests and debugging: drop the connection as a flaky network would.
tq.debug = {
  dropConnection() {
    conn.drop(4000, 'dropped for a test');
  },
};

wireUi();
start().catch((e) => {
  log('start failed', e);
  fail('unknown_error');
});
