// @ts-check
// tuxa browser client: join page → camera preview → call.
//
// Flow (docs/protocol.md, docs/api.md):
//   room from /join/{room}, token from the #fragment → POST /api/v1/join-check
//   → preview (camera, microphone, who you are) → Join → WebSocket /ws:
//   hello → welcome → join → joined → our offer → server answer; server
//   offers for other participants' tracks, answered by us. We are the POLITE
//   peer of perfect negotiation: a server offer that arrives while our own
//   offer is outstanding makes us roll back, answer it, and offer again; a
//   `negotiation_glare` error only means "wait for the server's offer".
//
// Consent: a patient ticks, per purpose, what they agree to on the preview
// (nothing is ticked in advance); Join needs the remote-examination answer.
// The answers go in a `consent` message just before `join`. One consent: a
// patient who answered on the queue page (which hands the answers over in
// this tab's sessionStorage, never in the URL) or earlier in this tab for
// this room is not asked again; the answers are sent as given.
//
// Camera off stops the camera (its light goes off) and sends no video (the
// sender has no track); camera on opens it again and puts the new track on
// the same sender, simulcast encodings and all.
//
// Phones (under 600 px wide): the control bar holds the microphone, the
// camera, "Thêm" (a menu with the rest) and "Rời phòng"; wider screens show
// every control in the bar. Screen share and the second camera are for staff
// (doctors and nurses) on browsers that can do them.
//
// Lobby: patients and guests get `waiting` instead of `joined` and stay on
// the waiting screen (camera preview, keepalive pings, Leave) until a doctor
// admits them (`joined` follows, and the call starts as above) or refuses
// them (the fatal error `refused`). Doctors get `lobby` lists and admit or
// refuse from the lobby panel of the call screen.
//
// In the call (conferences above all): a participant list with the chair's
// and secretary's badges and licence numbers; whoever may moderate (the
// chair while present, otherwise any doctor: P.mayModerate) mutes, removes,
// names the secretary and locks the room from it; a chat panel; a screen
// share and a second camera, each its own sending transceiver (`sources`
// names them before the offer), shown to the others on a tile of its own.
//
// Bad networks: a dropped WebSocket, a server silent for too long, an ICE
// connection that failed, or the server's `media_failed` make the page
// rejoin by itself (state `reconnecting`, "Đang kết nối lại…"): it checks
// its link again (fresh TURN credentials), opens a new WebSocket with the
// same token (a patient re-sends the consent answers given) and starts its
// media afresh; the server gives the same place back (`joined` with
// `resumed`). Attempts back off from 0.5 s to 10 s. An ICE connection that
// goes `disconnected` while the WebSocket lives gets an ICE restart first.
// Every 5 s the page sends `stats` (its link as getStats() sees it);
// moderators get everyone's `link_quality` and see it on tiles.
//
// Care on bad networks: the camera is sent in three simulcast layers (q, h,
// f: 320x180, 640x360, 1280x720); the SFU forwards each subscriber the layer
// its link carries and tells us which layers nobody receives
// (`publish_layers`), which we pause. "Chỉ âm thanh" (audio only) stops our
// camera's encodings and asks the server (`audio_only`) to stop sending us
// video; the choice is sent again after a rejoin. When the server stops our
// video for a weak link, a banner says so ("Mạng yếu — chỉ âm thanh") and
// the remote tiles show their placeholder, not a frozen frame.
//
// For tests and kiosks: window.tuxa = {state, pc, participants, lobby, error, …} and
// `?autojoin=1` skips the Join click (not for patients: their consent is
// always an explicit tick and click).

import * as P from './protocol.js';
import {
  pageLog, safeJson, summarizeStats, cameraEncodings, setLayerActivity,
} from './session.js';
import { Connection } from './connection.js';
import {
  t, tf, errorText, roleName, getLang, applyLang, mountLang, locale,
} from './i18n.js';
import { mountCheck } from './check.js';
import { createTabFlag, fmtVnDateTime, $as } from './console-util.js';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// State visible to tests.

const tuxa = {
  state: 'loading', // loading | preview | joining | waiting | in-call | reconnecting | left | ended | error
  ended: null, // room_ended: {reason, by?, contact?} (or {} when the link's consultation had ended)
  history: ['loading'], // every state this page has been in
  pc: null,
  room: null, // {id, kind, title}
  you: null, // our Participant (after joined) or the join-check identity
  participants: {}, // the others, by id (decimal string keys)
  lobby: [], // hosts: the latest list of people waiting to be admitted
  error: null, // last error code
  errors: [], // every error code seen, in order
  log: [],
  negotiations: 0, // completed offer/answer exchanges
  consent: null, // patients: the answers sent, and the server's receipt time
  consentVia: null, // where they were given: 'form' (this page), 'queue' or 'call' (earlier in this tab)
  roomState: { ...P.DEFAULT_ROOM_STATE }, // {locked, chair, secretary} (room_state)
  chat: [], // every chat message received: {from, name, text, at}
  chatUnread: 0,
  notices: [], // every in-call notice shown (mute requests, removals), for tests
  reconnects: 0, // times this page lost its call and started rejoining
  iceRestarts: 0,
  reconnectingPeers: {}, // ids of others whose connection dropped (participant_reconnecting)
  linkQuality: {}, // moderators: the latest link_quality per participant id
  statsSent: 0,
  lastStats: null, // the last telemetry sample sent
  // Audio only: `requested` is the user's choice (kept across rejoins);
  // `server` is what the server last said it does (`audio_only`): null while
  // it sends us video, else its reason ('weak_network' | 'requested').
  audioOnly: { requested: false, server: null },
  simulcast: null, // layers the camera is sent in (3, or 1 when the browser refused), after the peer connection
  layers: {}, // mid → the rids of the latest publish_layers for it
  layerChanges: 0, // setParameters calls that changed our encodings
  /** @type {import('./protocol.js').Recording} */
  recording: { ...P.DEFAULT_RECORDING }, // issue 13: {state, since?, reason?, by?} (recording)
  recordingSeen: [], // every `recording` received: {state, reason, at: Date.now()}, for tests
};
window.tuxa = tuxa;

const log = pageLog(tuxa.log, '[tuxa]');

// ---------------------------------------------------------------------------
// Link.

const params = new URLSearchParams(location.search);
const AUTOJOIN = params.get('autojoin') === '1';
const pathMatch = location.pathname.match(/\/join\/([^/]+)\/?$/);
const ROOM = pathMatch ? decodeURIComponent(pathMatch[1]) : '';
let TOKEN = '';
try {
  TOKEN = decodeURIComponent(location.hash.replace(/^#/, '')).trim();
} catch {
  TOKEN = location.hash.replace(/^#/, '').trim();
}

// ---------------------------------------------------------------------------
// Screens.

const SCREENS = {
  loading: 'screen-loading',
  preview: 'screen-preview',
  joining: 'screen-call',
  waiting: 'screen-waiting',
  'in-call': 'screen-call',
  reconnecting: 'screen-call',
  left: 'screen-left',
  ended: 'screen-ended',
  error: 'screen-error',
};

function setState(state) {
  if (tuxa.state === state) return;
  log('state', tuxa.state, '→', state);
  tuxa.state = state;
  tuxa.history.push(state);
  document.body.dataset.state = state;
  const shown = SCREENS[state];
  for (const id of new Set(Object.values(SCREENS))) $(id).hidden = id !== shown;
  updateCallBanner();
  updateTitle();
  if ($('screen-btn')) updateExtraButtons();
  renderAudioOnly();
  if ($('rec-strip')) renderRecording();
}

let bannerText = null; // {key} or {code}
function setBanner(b) {
  bannerText = b;
  updateCallBanner();
}

function updateCallBanner() {
  const el = $('call-banner');
  if (!el) return;
  let text = null;
  if (tuxa.state === 'joining') text = t('connecting');
  else if (tuxa.state === 'reconnecting') text = t('reconnecting');
  else if (bannerText && bannerText.code) text = errorText(bannerText.code);
  else if (bannerText && bannerText.key) text = t(bannerText.key);
  el.hidden = !text;
  el.textContent = text || '';
}

// ---------------------------------------------------------------------------
// Errors.

let shownError = null;
const NO_RETRY = new Set([
  'token_malformed', 'token_invalid', 'token_expired', 'token_wrong_room',
  'room_not_found', 'room_ended', 'no_token', 'bad_link', 'replaced', 'refused', 'removed',
]);

/** Error screens with a title of their own (the default: "cannot join"). */
const ERROR_TITLES = { removed: 'call_removed_title', room_locked: 'call_locked_title' };

function fail(code) {
  log('fatal', code);
  // An ended consultation is not an error: the end screen says what next.
  if (code === 'room_ended') {
    showEnded({});
    return;
  }
  tuxa.error = code;
  shownError = code;
  teardown();
  renderError();
  setState('error');
}

function renderError() {
  if (!shownError) return;
  $('error-title').textContent = t(ERROR_TITLES[shownError] || 'error_title');
  $('error-text').textContent = errorText(shownError);
  // The code is for staff (a details line to quote to IT); patients and
  // guests get the words only.
  const role = tuxa.you ? tuxa.you.role : identity && identity.role;
  const staff = role === 'doctor' || role === 'nurse';
  $('error-code').textContent = staff ? `${t('error_details')} ${shownError}` : '';
  $('error-code').hidden = !staff;
  $('retry-btn').hidden = NO_RETRY.has(shownError);
}

// ---------------------------------------------------------------------------
// Local media.

const media = {
  stream: null, // MediaStream with our current tracks
  audio: null, // MediaStreamTrack
  video: null,
  micMuted: false,
  camOff: false, // the user's choice: off means no camera track at all
  camera: false, // a camera was opened once: the toggle can turn it on again
  videoDevice: '', // the camera in use, or to open when turned on again
  unavailable: false,
};
let camBusy = false; // turning the camera on or off: one at a time

const DEVICE_KEYS = { audio: 'tuxa.mic', video: 'tuxa.camera' };

function storedDevice(kind) {
  try { return localStorage.getItem(DEVICE_KEYS[kind]) || ''; } catch { return ''; }
}
function storeDevice(kind, id) {
  try { localStorage.setItem(DEVICE_KEYS[kind], id); } catch { /* ignore */ }
}

function constraintsFor(kind, deviceId, exact) {
  const c = kind === 'video'
    ? { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 } }
    : { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) c.deviceId = exact ? { exact: deviceId } : { ideal: deviceId };
  else if (kind === 'video') c.facingMode = 'user';
  return c;
}

async function openInitialMedia() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    media.unavailable = true;
    return;
  }
  const attempts = [
    { audio: constraintsFor('audio', storedDevice('audio')), video: constraintsFor('video', storedDevice('video')) },
    { audio: constraintsFor('audio', storedDevice('audio')) },
    { video: constraintsFor('video', storedDevice('video')) },
  ];
  for (const c of attempts) {
    try {
      const s = await md.getUserMedia(c);
      media.audio = s.getAudioTracks()[0] || null;
      media.video = s.getVideoTracks()[0] || null;
      media.camera = !!media.video;
      if (media.video) media.videoDevice = media.video.getSettings().deviceId || '';
      break;
    } catch (e) {
      log('getUserMedia failed', Object.keys(c).join('+'), e);
      // Refused by the user or by policy: asking again for less would only
      // show the same question again (Firefox asks every time).
      if (e && (e.name === 'NotAllowedError' || e.name === 'SecurityError')) break;
    }
  }
  media.unavailable = !media.audio && !media.video;
  applyTrackEnabled();
  rebuildLocalStream();
}

const LOCAL_VIDEOS = ['preview-video', 'waiting-video', 'self-video'];

function rebuildLocalStream() {
  const tracks = [media.audio, media.video].filter(Boolean);
  media.stream = new MediaStream(tracks);
  const videoOnly = media.video ? new MediaStream([media.video]) : null;
  for (const id of LOCAL_VIDEOS) {
    const v = $as('video', id);
    if (v.srcObject !== videoOnly) v.srcObject = videoOnly;
    if (videoOnly) v.play().catch(() => {});
  }
  updateLocalUi();
}

function applyTrackEnabled() {
  if (media.audio) media.audio.enabled = !media.micMuted;
  if (media.video) media.video.enabled = !media.camOff;
}

async function refreshDevices() {
  const md = navigator.mediaDevices;
  if (!md || !md.enumerateDevices) return;
  let devices = [];
  try { devices = await md.enumerateDevices(); } catch (e) { log('enumerateDevices failed', e); }
  fillSelect($('camera-select'), devices.filter((d) => d.kind === 'videoinput'), media.camera, media.videoDevice, 'camera');
  fillSelect($('mic-select'), devices.filter((d) => d.kind === 'audioinput'), !!media.audio,
    media.audio ? media.audio.getSettings().deviceId || '' : '', 'microphone');
  cameraCount = devices.filter((d) => d.kind === 'videoinput').length;
  $('flip-btn').hidden = cameraCount < 2 || !media.camera;
  updateExtraButtons();
}
let cameraCount = 0;

function fillSelect(select, devices, have, current, labelKey) {
  select.textContent = '';
  if (devices.length === 0 || !have && devices.every((d) => !d.deviceId)) {
    const o = document.createElement('option');
    o.value = '';
    o.textContent = t('no_device');
    select.append(o);
    select.disabled = true;
    return;
  }
  select.disabled = false;
  devices.forEach((d, i) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label || `${t(labelKey)} ${i + 1}`;
    if (d.deviceId && d.deviceId === current) o.selected = true;
    select.append(o);
  });
}

async function switchDevice(kind, deviceId) {
  if (!deviceId) return;
  if (kind === 'video' && media.camOff) {
    // The camera stays off (and its light too): the choice is for when it is turned on.
    media.videoDevice = deviceId;
    storeDevice('video', deviceId);
    refreshDevices();
    return;
  }
  const old = media[kind];
  if (old && old.getSettings().deviceId === deviceId) return;
  // Phones often cannot open two cameras at once: release the old one first.
  if (old) old.stop();
  let track = null;
  try {
    const s = await navigator.mediaDevices.getUserMedia({ [kind]: constraintsFor(kind, deviceId, true) });
    track = s.getTracks()[0];
  } catch (e) {
    log('switching', kind, 'failed', e);
    try {
      const s = await navigator.mediaDevices.getUserMedia({ [kind]: constraintsFor(kind, '') });
      track = s.getTracks()[0];
    } catch (e2) {
      log('reopening', kind, 'failed', e2);
    }
  }
  media[kind] = track;
  if (track) storeDevice(kind, track.getSettings().deviceId || deviceId);
  if (track && kind === 'video') media.videoDevice = track.getSettings().deviceId || deviceId;
  applyTrackEnabled();
  rebuildLocalStream();
  const sender = senders[kind];
  if (sender && track) {
    try { await sender.replaceTrack(track); } catch (e) { log('replaceTrack failed', e); }
  }
  refreshDevices();
}

// Next camera, for phones (front/back).
async function nextCamera() {
  const cams = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  if (cams.length < 2) return;
  const cur = media.video ? media.video.getSettings().deviceId : media.videoDevice;
  const i = cams.findIndex((d) => d.deviceId === cur);
  await switchDevice('video', cams[(i + 1) % cams.length].deviceId);
}

function toggleMic() {
  media.micMuted = !media.micMuted;
  applyTrackEnabled();
  updateLocalUi();
  if (tuxa.state === 'in-call') send(P.mute('audio', media.micMuted));
}

function toggleCam() {
  if (camBusy) return;
  camBusy = true;
  const done = () => { camBusy = false; updateLocalUi(); };
  (media.camOff ? cameraOn() : cameraOff()).then(done, (e) => { log('camera toggle failed', e); done(); });
}

/**
 * Camera off: the track stops (the camera's light goes off) and the sender
 * sends nothing (a disabled track would still send black frames, ≈ 0.7
 * Mbit/s of the patient's mobile data). The transceiver and its simulcast
 * encodings stay for camera on.
 */
async function cameraOff() {
  media.camOff = true;
  const track = media.video;
  if (track) {
    media.videoDevice = track.getSettings().deviceId || media.videoDevice;
    track.stop();
  }
  media.video = null;
  rebuildLocalStream();
  if (tuxa.state === 'in-call') send(P.mute('video', true));
  const sender = senders.video;
  if (sender && pc && pc.signalingState !== 'closed') {
    updateSenderLayers(sender);
    if (sender.track) await sender.replaceTrack(null);
  }
}

/** Camera on: the same camera again, on the same sender. Stays off if it cannot open. */
async function cameraOn() {
  let track = null;
  try {
    const s = await navigator.mediaDevices.getUserMedia({ video: constraintsFor('video', media.videoDevice) });
    track = s.getVideoTracks()[0] || null;
  } catch (e) {
    log('camera on failed', e);
  }
  if (!track) {
    if (tuxa.state === 'in-call') showNotice(t('camera_failed'));
    else $('media-warning').hidden = false;
    return;
  }
  if (['left', 'ended', 'error'].includes(tuxa.state)) {
    track.stop();
    return;
  }
  media.camOff = false;
  media.video = track;
  media.videoDevice = track.getSettings().deviceId || media.videoDevice;
  rebuildLocalStream();
  const sender = senders.video;
  if (sender && pc && pc.signalingState !== 'closed') {
    await sender.replaceTrack(track);
    // Layers nobody receives stay paused; audio only keeps every one paused.
    updateSenderLayers(sender);
  }
  if (tuxa.state === 'in-call') send(P.mute('video', false));
}

function updateLocalUi() {
  for (const b of /** @type {NodeListOf<HTMLButtonElement>} */ (document.querySelectorAll('.mic-toggle'))) {
    const off = media.micMuted || !media.audio;
    b.setAttribute('aria-pressed', String(off));
    b.classList.toggle('is-off', off);
    b.disabled = !media.audio;
    b.querySelector('.ctl-label').textContent = media.micMuted ? t('unmute_mic') : t('mute_mic');
  }
  for (const b of /** @type {NodeListOf<HTMLButtonElement>} */ (document.querySelectorAll('.cam-toggle'))) {
    const off = media.camOff || !media.video;
    b.setAttribute('aria-pressed', String(off));
    b.classList.toggle('is-off', off);
    b.disabled = !media.camera || camBusy;
    b.querySelector('.ctl-label').textContent = media.camOff ? t('camera_on') : t('camera_off');
  }
  const noVideo = media.camOff || !media.video;
  $('preview-off').hidden = !noVideo;
  $('preview-off-text').textContent = media.camera ? t('cam_muted') : t('no_camera');
  $('waiting-off').hidden = !noVideo;
  $('waiting-off-text').textContent = media.camera ? t('cam_muted') : t('no_camera');
  $('self-off').hidden = !noVideo;
  // The label under the picture already says "Bạn": the picture says why it is dark.
  $('self-off-text').textContent = media.camera ? t('cam_muted') : t('no_camera');
  $('media-warning').hidden = !media.unavailable;
  if (tuxa.state === 'in-call') renderPeople();
}

function stopLocalMedia() {
  for (const tr of [media.audio, media.video]) if (tr) tr.stop();
  for (const id of LOCAL_VIDEOS) $as('video', id).srcObject = null;
}

// ---------------------------------------------------------------------------
// Signaling.

// One session to /ws (connection.js): hello, keepalive, the silence watch
// and the backoff of rejoins; this page decides when to rejoin (in a call
// or the lobby) and checks its link first.
const conn = new Connection({
  log,
  watchSilence: true,
  describeSent: (msg) => (msg.type === 'offer' || msg.type === 'answer' ? `${msg.sdp.length}B` : ''),
  onMessage: (msg) => onServerMsg(msg),
  onLost: (lost) => {
    if (['left', 'ended', 'error'].includes(tuxa.state)) return;
    onSocketLost(lost.opened);
  },
  onSilent: () => {
    if (['in-call', 'waiting'].includes(tuxa.state)) startReconnect('server silent');
  },
});
// Tests close the live socket as a network would.
Object.defineProperty(tuxa, 'ws', { get: () => conn.socket, enumerable: true });

/** @param {{ type: string, [k: string]: any }} msg */
function send(msg) {
  return conn.send(msg);
}

// ---------------------------------------------------------------------------
// Consent (patients).

function needsConsent() {
  return !!identity && identity.role === 'patient';
}

// Answers given before, in this tab, for this room: by the queue page (it
// writes them when the doctor accepts and it sends the patient here) or by
// this page before a reload. sessionStorage: this tab and origin only, and
// never in a URL that a server or proxy would log.
const givenKey = () => `tuxa.consent.${ROOM}`;
let given = null; // {answers, via: 'queue' | 'call'} while the form is not reopened

function readGiven() {
  let v = null;
  try { v = JSON.parse(sessionStorage.getItem(givenKey()) || 'null'); } catch { /* ignore */ }
  const ok = v && typeof v.text_version === 'string' && v.text_version.length > 0 && v.text_version.length <= 64
    && v.remote_examination === true && typeof v.third_parties === 'boolean' && typeof v.recording === 'boolean';
  if (!ok) return null;
  return {
    answers: {
      text_version: v.text_version, remote_examination: true, third_parties: v.third_parties, recording: v.recording,
    },
    via: v.via === 'queue' ? 'queue' : 'call',
  };
}

function storeGiven(answers, via) {
  try { sessionStorage.setItem(givenKey(), JSON.stringify({ ...answers, via })); } catch { /* ignore */ }
}

function consentAnswers() {
  if (given) return { ...given.answers };
  return {
    text_version: P.consentTextVersion(getLang()),
    remote_examination: $as('input', 'consent-exam').checked,
    third_parties: $as('input', 'consent-third').checked,
    recording: $as('input', 'consent-recording').checked,
  };
}

/** "Xem hoặc thay đổi": the form again, with the patient's own answers in it. */
function reopenConsent() {
  if (!given) return;
  $as('input', 'consent-exam').checked = given.answers.remote_examination;
  $as('input', 'consent-third').checked = given.answers.third_parties;
  $as('input', 'consent-recording').checked = given.answers.recording;
  given = null;
  updateJoinButton();
  $('consent-exam').focus();
}

function consented() {
  return !needsConsent() || !!given || $as('input', 'consent-exam').checked;
}

function updateJoinButton() {
  const blocked = !consented();
  $('consent').hidden = !needsConsent() || !!given;
  $('screen-preview').classList.toggle('asks-consent', !$('consent').hidden);
  $('consent-given').hidden = !(needsConsent() && given);
  $('consent-given-text').textContent = given ? t(given.via === 'queue' ? 'consent_given_queue' : 'consent_given_before') : '';
  $as('button', 'join-btn').disabled = blocked;
  $('consent-needed').hidden = !blocked;
}

function connect() {
  if (tuxa.state !== 'preview') return;
  if (!consented()) {
    updateJoinButton();
    return;
  }
  setState('joining');
  openSocket();
}

function openSocket() {
  conn.connect();
}

/** The WebSocket closed or could not open. In a call (or the lobby): rejoin. */
function onSocketLost(opened) {
  if (['in-call', 'waiting', 'reconnecting'].includes(tuxa.state)) {
    startReconnect(opened ? 'socket closed' : 'socket did not open');
    return;
  }
  fail(opened ? 'connection_lost' : 'network_error');
}

// ---------------------------------------------------------------------------
// Reconnecting (docs/protocol.md, "Reconnecting"): the server keeps our place
// for its grace window; a join with the same token takes it back.

function startReconnect(reason) {
  if (['left', 'ended', 'error'].includes(tuxa.state)) return;
  log('reconnecting:', reason);
  dropCall();
  if (tuxa.state !== 'reconnecting') {
    tuxa.reconnects += 1;
    conn.resetBackoff();
    setState('reconnecting');
  }
  scheduleRetry();
}

function runRetry() {
  retry().catch((e) => { log('retry failed', e); scheduleRetry(); });
}

function scheduleRetry() {
  const delay = conn.retryLater(runRetry);
  log('next attempt in', delay, 'ms');
}

async function retry() {
  if (tuxa.state !== 'reconnecting') return;
  // The link again: the consultation may have ended or the link expired
  // meanwhile (then there is nothing to retry), and TURN credentials renew.
  const check = await joinCheck();
  if (tuxa.state !== 'reconnecting') return;
  if (check.error === 'room_ended') {
    showEnded({ reason: check.ended && check.ended.reason, contact: check.ended && check.ended.contact });
    return;
  }
  if (check.error) {
    if (NO_RETRY.has(check.error)) {
      fail(check.error);
      return;
    }
    scheduleRetry();
    return;
  }
  identity = check.ok;
  openSocket();
}

/** Closes the WebSocket and the peer connection, keeping camera and microphone. */
function dropCall() {
  conn.close(1000);
  stopStats();
  clearTimeout(iceTimer);
  iceTimer = null;
  if (pc) {
    try { pc.close(); } catch { /* ignore */ }
  }
  senders.audio = null;
  senders.video = null;
  offerWanted = false;
  resetLayerState();
  for (const pid of Object.keys(tuxa.participants)) removeParticipant(pid);
  for (const key of [...tiles.keys()]) removeTile(key);
  trackOwner.clear();
  publishedTracks.clear();
  stopAllExtras();
  clearLobby();
  tuxa.reconnectingPeers = {};
  tuxa.linkQuality = {};
  setBanner(null);
}

window.addEventListener('online', () => {
  if (tuxa.state === 'reconnecting' && conn.retryPending) {
    log('network back: retrying now');
    conn.retryNow();
  }
});

function onServerMsg(msg) {
  if (msg.type !== 'pong') log('←', msg.type, describe(msg));
  switch (msg.type) {
    case 'welcome':
      // The connection has started the keepalive at the welcome's interval.
      if (needsConsent()) {
        // The hub handles a session's messages in order: the consent is
        // recorded before the join is looked at. On a rejoin the answers
        // the patient gave are sent again, as given.
        const sent = tuxa.consent;
        tuxa.consent = sent ? {
          text_version: sent.text_version,
          remote_examination: sent.remote_examination,
          third_parties: sent.third_parties,
          recording: sent.recording,
        } : consentAnswers();
        if (!sent) {
          tuxa.consentVia = given ? given.via : 'form';
          // A reload of this tab (or "Vào lại") sends these again without asking.
          storeGiven(tuxa.consent, given ? given.via : 'call');
        }
        send(P.consent(tuxa.consent));
      }
      send(P.join(ROOM, TOKEN));
      break;
    case 'consent_recorded':
      if (tuxa.consent) tuxa.consent.at = msg.at;
      break;
    case 'waiting':
      onWaiting(msg);
      break;
    case 'joined':
      onJoined(msg);
      break;
    case 'lobby':
      onLobby(msg.waiting);
      break;
    case 'participant_joined':
      upsertParticipant(msg.participant);
      break;
    case 'participant_reconnecting':
      tuxa.reconnectingPeers[String(msg.participant_id)] = true;
      onPeerLinkChanged(String(msg.participant_id));
      break;
    case 'participant_reconnected':
      delete tuxa.reconnectingPeers[String(msg.participant_id)];
      onPeerLinkChanged(String(msg.participant_id));
      break;
    case 'link_quality':
      tuxa.linkQuality[String(msg.participant_id)] = { stats: msg.stats, grade: msg.grade, at: Date.now() };
      onPeerLinkChanged(String(msg.participant_id));
      break;
    case 'participant_left':
      delete tuxa.reconnectingPeers[String(msg.participant_id)];
      delete tuxa.linkQuality[String(msg.participant_id)];
      if (msg.reason === 'removed') {
        const gone = tuxa.participants[String(msg.participant_id)];
        if (gone) showNotice(tf('call_left_removed', { name: gone.name }));
      }
      removeParticipant(String(msg.participant_id));
      break;
    case 'track_published':
      publishedTracks.set(msg.track.id, {
        pid: String(msg.participant_id), kind: msg.track.kind, source: msg.track.source,
      });
      break;
    case 'room_state':
      onRoomState(msg);
      break;
    case 'room_ended':
      showEnded(msg);
      break;
    case 'recording':
      onRecording(msg);
      break;
    case 'chat':
      onChat(msg);
      break;
    case 'mute_requested':
      onMuteRequested(msg);
      break;
    case 'track_unpublished':
      publishedTracks.delete(msg.track_id);
      break;
    case 'mute_changed':
      onMuteChanged(msg);
      break;
    case 'audio_only':
      onServerAudioOnly(msg);
      break;
    case 'publish_layers':
      onPublishLayers(msg);
      break;
    case 'offer':
      enqueue('server offer', () => onServerOffer(msg.sdp));
      break;
    case 'answer':
      enqueue('server answer', () => onServerAnswer(msg.sdp));
      break;
    case 'pong':
      tuxa.lastPong = msg.seq;
      break;
    case 'error':
      onServerError(msg);
      break;
    default:
      break;
  }
}

function describe(msg) {
  switch (msg.type) {
    case 'offer':
    case 'answer':
      return `${msg.sdp.length}B`;
    case 'welcome':
      return `${msg.server}, keepalive ${msg.keepalive_interval_ms} ms, idle timeout ${msg.idle_timeout_ms} ms`;
    case 'joined':
      return `as ${msg.you.id} with [${msg.participants.map((p) => p.id).join(', ')}]`;
    case 'waiting':
      return `as ${msg.you.id} (${msg.you.role})`;
    case 'lobby':
      return `[${msg.waiting.map((p) => p.id).join(', ')}]`;
    default: {
      const { type, ...rest } = msg;
      return safeJson(rest);
    }
  }
}

function onServerError(msg) {
  tuxa.error = msg.code;
  tuxa.errors.push(msg.code);
  if (msg.code === 'media_failed' && tuxa.state === 'in-call') {
    // The server dropped our transport: a new session brings a new one.
    startReconnect('media transport failed on the server');
    return;
  }
  if (P.isFatalError(msg.code)) {
    fail(msg.code);
    return;
  }
  if (msg.in_reply_to === 'recording') {
    // forbidden (the chair came back), recording_consent_missing, …: the call goes on.
    recPending = false;
    renderRecording();
    flashBanner(msg.code);
    return;
  }
  if (msg.in_reply_to === 'admit' || msg.in_reply_to === 'refuse') {
    // forbidden, not_waiting (someone else decided first, or they left),
    // room_full: the call goes on; say so for a moment.
    onLobbyActionFailed(msg.code);
    return;
  }
  if (MODERATION_TYPES.has(msg.in_reply_to) || msg.in_reply_to === 'chat' || msg.in_reply_to === 'sources') {
    // forbidden (the chair came back), not_found (they left), invalid_message:
    // the call goes on; say so for a moment.
    flashBanner(msg.code);
    return;
  }
  switch (msg.code) {
    case 'negotiation_glare':
      // The server had an offer outstanding and ignored ours. Its offer is
      // already on its way (or was handled): when it comes we answer and
      // offer again (see onServerOffer). Nothing to do here.
      break;
    case 'already_joined':
    case 'no_pending_offer':
      break;
    case 'sdp_invalid':
    case 'internal':
      if (tuxa.state === 'in-call') {
        setBanner({ code: msg.code });
        break;
      }
      fail(msg.code);
      break;
    default:
      // A failed join (bad token, room gone or full, …) ends the page.
      if (msg.in_reply_to === 'join' || msg.in_reply_to === 'hello' || tuxa.state === 'joining') {
        fail(msg.code);
      }
  }
}

function onWaiting(msg) {
  // The server says `recording` after this when it is not off.
  tuxa.recording = { ...P.DEFAULT_RECORDING };
  renderRecording();
  tuxa.room = msg.room;
  tuxa.you = msg.you;
  $('room-title').textContent = msg.room.title;
  renderWaiting();
  setState('waiting');
}

function renderWaiting() {
  const you = tuxa.you;
  if (!you) return;
  $('wait-name').textContent = you.name;
  $('wait-role').textContent = roleName(you.role);
  $('wait-facility').textContent = you.facility || '';
  $('wait-facility').hidden = !you.facility;
  $('wait-facility-dt').hidden = !you.facility;
  $('wait-room').textContent = tuxa.room ? tuxa.room.title : '';
}

function onJoined(msg) {
  if (tuxa.state === 'reconnecting') {
    conn.cancelRetry();
    conn.resetBackoff();
    log(msg.resumed ? 'reconnected: our place was kept' : 'reconnected as a new participant');
  }
  tuxa.room = msg.room;
  tuxa.you = msg.you;
  // The server says `recording` after this when it is not off.
  tuxa.recording = { ...P.DEFAULT_RECORDING };
  $('room-title').textContent = msg.room.title;
  for (const p of msg.participants) upsertParticipant(p);
  setState('in-call');
  renderChatKept();
  renderPeople();
  updateExtraButtons();
  // A resumed place keeps the mute state the server last heard: the camera
  // or microphone may have been turned on or off while we were away.
  if (media.micMuted || msg.resumed) send(P.mute('audio', media.micMuted));
  if (media.camOff || msg.resumed) send(P.mute('video', media.camOff));
  resetLayerState();
  createPeerConnection();
  enqueue('initial offer', sendOffer);
  updateGrid();
  startStats();
}

// ---------------------------------------------------------------------------
// Link telemetry: our link every 5 s (`stats`); moderators see everyone's.

const STATS_EVERY_MS = 5000;
let statsTimer = null;
let statsPrev = null;

function startStats() {
  stopStats();
  statsTimer = setInterval(() => { sendStats().catch((e) => log('stats failed', e)); }, STATS_EVERY_MS);
}

function stopStats() {
  clearInterval(statsTimer);
  statsTimer = null;
  statsPrev = null;
}

async function sendStats() {
  if (tuxa.state !== 'in-call' || !pc || pc.signalingState === 'closed') return;
  const report = await pc.getStats();
  const { sample, state } = summarizeStats(report, statsPrev);
  statsPrev = state;
  // Audio only, chosen or imposed, is audio only even in the sample where
  // the last frames still went by.
  if (tuxa.audioOnly.requested || tuxa.audioOnly.server) sample.audio_only = true;
  tuxa.lastStats = sample;
  if (send(P.stats(sample))) tuxa.statsSent += 1;
}

/** A link figure for people: "Kết nối kém · 900 ms · 12 % mất gói". */
function linkText(pid) {
  if (tuxa.reconnectingPeers[pid]) return t('peer_reconnecting');
  const q = tuxa.linkQuality[pid];
  // A figure older than three samples says nothing about now.
  if (!q || Date.now() - q.at > 3 * STATS_EVERY_MS + 2000) return '';
  const parts = [t(`link_${q.grade}`)];
  if (q.stats.rtt_ms != null) parts.push(`${q.stats.rtt_ms} ms`);
  if (q.stats.loss_pct != null && q.stats.loss_pct >= 1) parts.push(tf('link_loss', { pct: Math.round(q.stats.loss_pct) }));
  if (q.stats.audio_only) parts.push(t('link_audio_only'));
  return parts.join(' · ');
}

function onPeerLinkChanged(pid) {
  for (const tile of tiles.values()) if (tile.pid === pid) renderTile(tile);
  renderPeople();
}

// ---------------------------------------------------------------------------
// Lobby panel (hosts): who is waiting, with Admit and Refuse.

const lobbyPending = new Set(); // ids we sent admit/refuse for, still listed
let lobbyBannerTimer = null;

function onLobby(waiting) {
  const before = new Set(tuxa.lobby.map((p) => String(p.id)));
  tuxa.lobby = waiting.map((p) => ({ ...p }));
  // A decision sent stays pending until its person leaves the list (or an
  // error about it comes back): a list sent for someone else's arrival in
  // between must not re-enable the buttons.
  const ids = new Set(tuxa.lobby.map((p) => String(p.id)));
  for (const pid of [...lobbyPending]) if (!ids.has(pid)) lobbyPending.delete(pid);
  const arrived = tuxa.lobby.filter((p) => !before.has(String(p.id)));
  renderLobby(new Set(arrived.map((p) => String(p.id))));
  if (arrived.length) {
    $('lobby-announce').textContent = arrived.map((p) => `${p.name} ${t('lobby_arrived')}`).join('. ');
    chime();
    tabFlag.raise(); // a dot on the favicon until the tab is looked at
  }
}

const lobbyEntries = new Map(); // pid → {li, name, meta, buttons}

/** Draws the lobby panel, reusing each person's entry (a button under a finger stays put). */
function renderLobby(fresh = new Set()) {
  const list = $('lobby-list');
  const n = tuxa.lobby.length;
  $('lobby-panel').hidden = n === 0;
  $('lobby-count').textContent = String(n);
  const ids = new Set(tuxa.lobby.map((p) => String(p.id)));
  // Every doctor sees who waits; while the chair is in the room only the
  // chair decides (the others' buttons would only get `forbidden`).
  const decides = canModerate();
  $('lobby-panel').classList.toggle('is-readonly', !decides);
  $('lobby-note').hidden = decides || n === 0;
  for (const [pid, entry] of lobbyEntries) {
    if (!ids.has(pid)) {
      entry.li.remove();
      lobbyEntries.delete(pid);
    }
  }
  for (const p of tuxa.lobby) {
    const pid = String(p.id);
    const entry = lobbyEntries.get(pid) || makeLobbyEntry(pid);
    entry.name.textContent = p.name;
    entry.meta.textContent = [roleName(p.role), p.facility].filter(Boolean).join(' · ');
    const pending = lobbyPending.has(pid);
    for (const b of entry.buttons) {
      const { key } = b.dataset;
      b.textContent = t(key);
      b.setAttribute('aria-label', `${t(key)}: ${p.name}`);
      b.disabled = pending;
      b.hidden = !decides;
    }
    entry.li.toggleAttribute('aria-busy', pending);
    if (fresh.has(pid)) {
      // A short highlight (also without animations: prefers-reduced-motion).
      entry.li.classList.add('is-new');
      setTimeout(() => entry.li.classList.remove('is-new'), 4000);
    }
    list.append(entry.li); // keeps the server's order (oldest first)
  }
  updateTitle();
}

function makeLobbyEntry(pid) {
  const li = document.createElement('li');
  li.className = 'lobby-entry';
  li.dataset.pid = pid;
  const who = document.createElement('div');
  who.className = 'lobby-who';
  const name = document.createElement('span');
  name.className = 'lobby-name';
  const meta = document.createElement('span');
  meta.className = 'lobby-meta';
  who.append(name, meta);
  const actions = document.createElement('div');
  actions.className = 'lobby-actions';
  const buttons = [
    { action: 'admit', key: 'admit', cls: 'btn-admit' },
    { action: 'refuse', key: 'refuse', cls: 'btn-refuse' },
  ].map(({ action, key, cls }) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `btn ${cls}`;
    b.dataset.action = action;
    b.dataset.key = key;
    b.addEventListener('click', () => decide(pid, action));
    return b;
  });
  actions.append(...buttons);
  li.append(who, actions);
  const entry = { li, name, meta, buttons };
  lobbyEntries.set(pid, entry);
  return entry;
}

function decide(pid, action) {
  if (lobbyPending.has(pid)) return;
  const msg = action === 'admit' ? P.admit(pid) : P.refuse(pid);
  if (!send(msg)) return;
  lobbyPending.add(pid);
  renderLobby();
}

function onLobbyActionFailed(code) {
  lobbyPending.clear();
  renderLobby();
  flashBanner(code);
}

/** Shows an error code's text in the call banner for a few seconds. */
function flashBanner(code) {
  setBanner({ code });
  clearTimeout(lobbyBannerTimer);
  lobbyBannerTimer = setTimeout(() => {
    if (bannerText && bannerText.code === code) setBanner(null);
  }, 6000);
}

/** The page title shows how many wait, for a doctor whose tab is in the background. */
function updateTitle() {
  const n = tuxa.state === 'in-call' ? tuxa.lobby.length : 0;
  document.title = n > 0 ? `(${n}) ${t('app_name')}` : t('app_name');
}

let audioCtx = null;
const tabFlag = createTabFlag(window);

/** Creates the audio context during a click (Join): browsers let a chime play only after a gesture. */
function primeChime() {
  try {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    if (!audioCtx) audioCtx = new AC();
    if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  } catch { /* no sound, then */ }
}

/** A soft two-note chime: someone is waiting. */
function chime() {
  try {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    if (!audioCtx) audioCtx = new AC();
    if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
    const now = audioCtx.currentTime;
    [[660, 0], [880, 0.18]].forEach(([freq, at]) => {
      const osc = audioCtx.createOscillator();
      const gain = audioCtx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.15, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.35);
      osc.connect(gain).connect(audioCtx.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.4);
    });
  } catch (e) {
    log('chime failed', e);
  }
  try { if (navigator.vibrate) navigator.vibrate(150); } catch { /* ignore */ }
}

// ---------------------------------------------------------------------------
// Peer connection and perfect negotiation (polite side).

let pc = null;
const senders = { audio: null, video: null };
let queue = Promise.resolve();

/** Runs negotiation steps one at a time, in arrival order. */
function enqueue(what, fn) {
  queue = queue.then(async () => {
    if (!pc || pc.signalingState === 'closed') return;
    await fn();
  }).catch((e) => {
    log(what, 'failed:', e);
    if (tuxa.state === 'in-call') setBanner({ code: 'media_failed' });
  });
  return queue;
}

function createPeerConnection() {
  // The server is ICE-lite and offers its host candidates; a TURN server,
  // when tuxa has one, is for networks that block UDP to them.
  const iceServers = identity && Array.isArray(identity.ice_servers) ? identity.ice_servers : [];
  pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers });
  tuxa.pc = pc;
  for (const kind of ['audio', 'video']) {
    const track = media[kind];
    // A camera turned off has no track, but its m-line is there from the
    // start: turning it on is a replaceTrack, no renegotiation.
    if (!track && !(kind === 'video' && media.camera)) continue;
    // addTransceiver (not addTrack) so that a server offer never reuses our
    // sending transceivers for someone else's media.
    const tr = kind === 'video' ? addCameraTransceiver(track || 'video') : pc.addTransceiver(track, { direction: 'sendonly', streams: [media.stream] });
    senders[kind] = tr.sender;
  }
  if (!senders.audio && !senders.video) {
    // Nothing to publish (no camera or microphone, or no permission): one
    // receive-only m-line, so that the first offer still sets up a
    // transport (an offer without m-lines has no BUNDLE group to use).
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  pc.ontrack = onTrack;
  pc.onconnectionstatechange = () => {
    log('pc connection', pc.connectionState);
    onConnectionState();
  };
  pc.oniceconnectionstatechange = () => {
    log('ice', pc.iceConnectionState);
    onConnectionState();
  };
}

/**
 * The camera's transceiver: three simulcast layers, lowest first (paused
 * from the start in audio only); one layer if the browser refuses them.
 * `track` is the kind ('video') while the camera is off.
 */
function addCameraTransceiver(track) {
  const paused = tuxa.audioOnly.requested || media.camOff;
  const tries = [
    cameraEncodings({ paused }),
    [{ maxBitrate: 800_000, active: !paused }],
    null,
  ];
  for (const sendEncodings of tries) {
    const init = { direction: 'sendonly', streams: [media.stream] };
    if (sendEncodings) init.sendEncodings = sendEncodings;
    try {
      const tr = pc.addTransceiver(track, init);
      let n = 1;
      try { n = tr.sender.getParameters().encodings.length || 1; } catch { /* ignore */ }
      tuxa.simulcast = n;
      log('camera sent in', n, n > 1 ? 'simulcast layers' : 'layer');
      // Paused without encodings to say so (the plain fallback): pause now.
      if (paused && !sendEncodings) updateSenderLayers(tr.sender);
      return tr;
    } catch (e) {
      log('addTransceiver', sendEncodings ? `with ${sendEncodings.length} encoding(s)` : 'plain', 'failed', e);
    }
  }
  throw new Error('cannot send the camera');
}

// ---------------------------------------------------------------------------
// Simulcast layers and audio only.

let paramsChain = Promise.resolve(); // getParameters/setParameters, one pair at a time
let audioOnlySentOn = null; // the peer connection our audio_only(true) was sent for
let offeredOn = null; // the peer connection whose first offer went out (the server knows our media from then)

function resetLayerState() {
  tuxa.layers = {};
  tuxa.audioOnly.server = null;
  audioOnlySentOn = null;
  renderAudioOnly();
}

/**
 * Brings a sender's encodings in line with the layers anyone receives
 * (publish_layers for its mid) and with audio only (the camera: all off).
 * Serialized: a getParameters() must be followed by its own setParameters().
 */
function updateSenderLayers(sender) {
  const forPc = pc;
  paramsChain = paramsChain.then(async () => {
    if (!forPc || forPc !== pc || forPc.signalingState === 'closed') return;
    const tr = forPc.getTransceivers().find((x) => x.sender === sender);
    if (!tr || tr.stopped) return;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length === 0) return;
    const allowed = tr.mid != null && tuxa.layers[tr.mid] ? tuxa.layers[tr.mid] : null;
    // Camera off pauses every layer too: a sender without a track still sends
    // padding (≈ 40 kbit/s in Chromium) on an active layer.
    const paused = sender === senders.video && (tuxa.audioOnly.requested || media.camOff);
    if (!setLayerActivity(params.encodings, { allowed, paused })) return;
    await sender.setParameters(params);
    tuxa.layerChanges += 1;
    log('mid', tr.mid, 'encodings', params.encodings.map((e) => `${e.rid || '-'}:${e.active ? 'on' : 'off'}`).join(' '));
  }).catch((e) => log('setParameters failed', e));
  return paramsChain;
}

/** Whether a sender is one of ours (the camera's has no track while it is off). */
function ours(sender) {
  return !!sender && (!!sender.track || sender === senders.video);
}

/** After a negotiation (mids may be new): layers the server named before we knew the mid. */
function applyKnownLayers() {
  if (!pc || Object.keys(tuxa.layers).length === 0) return;
  for (const tr of pc.getTransceivers()) {
    if (tr.mid != null && tuxa.layers[tr.mid] && ours(tr.sender)) updateSenderLayers(tr.sender);
  }
}

/** The server says which simulcast layers of one of our m-lines anyone receives. */
function onPublishLayers(msg) {
  tuxa.layers[msg.mid] = [...msg.active];
  const tr = pc && pc.signalingState !== 'closed'
    ? pc.getTransceivers().find((x) => x.mid === msg.mid && ours(x.sender))
    : null;
  if (!tr) {
    log('publish_layers for mid', msg.mid, 'which we do not send: ignored');
    return;
  }
  updateSenderLayers(tr.sender);
}

/** What the server does about our video: stopped (weak link, or as we asked) or resumed. */
function onServerAudioOnly(msg) {
  tuxa.audioOnly.server = msg.on ? msg.reason : null;
  renderAudioOnly();
  for (const tile of tiles.values()) renderTile(tile);
}

/** The "Chỉ âm thanh" toggle. */
function toggleAudioOnly() {
  setAudioOnly(!tuxa.audioOnly.requested);
}

function setAudioOnly(on) {
  tuxa.audioOnly.requested = on;
  log('audio only', on ? 'on' : 'off');
  if (senders.video) updateSenderLayers(senders.video);
  // Before our first offer the server's media side does not know us yet:
  // resendAudioOnly() tells it then.
  if (tuxa.state === 'in-call' && pc && offeredOn === pc && send(P.audio_only(on))) audioOnlySentOn = on ? pc : null;
  renderAudioOnly();
  for (const tile of tiles.values()) renderTile(tile);
}

/** After our first offer on a new peer connection: the server learns our choice again. */
function resendAudioOnly() {
  offeredOn = pc;
  if (tuxa.audioOnly.requested && audioOnlySentOn !== pc && send(P.audio_only(true))) audioOnlySentOn = pc;
}

/** The server sends us no video (whatever the reason): remote tiles show their placeholder. */
function videoStopped() {
  return tuxa.audioOnly.requested || !!tuxa.audioOnly.server;
}

function renderAudioOnly() {
  const inCall = tuxa.state === 'in-call';
  const b = $('audio-only-btn');
  if (!b) return;
  b.hidden = !inCall;
  b.classList.toggle('is-active', tuxa.audioOnly.requested);
  b.setAttribute('aria-pressed', String(tuxa.audioOnly.requested));
  $('weak-strip').hidden = !(inCall && tuxa.audioOnly.server === 'weak_network');
  $('audio-only-strip').hidden = !(inCall && tuxa.audioOnly.requested);
}

function onConnectionState() {
  if (!pc || tuxa.state !== 'in-call') return;
  const s = pc.connectionState || pc.iceConnectionState;
  const ice = pc.iceConnectionState;
  if (s === 'connected' || s === 'completed') {
    clearTimeout(iceTimer);
    iceTimer = null;
    if (bannerText && (bannerText.key === 'reconnecting_media' || bannerText.code === 'media_failed')) setBanner(null);
  } else if (s === 'failed' || ice === 'failed') {
    startReconnect('ICE failed');
  } else if (s === 'disconnected' || ice === 'disconnected') {
    setBanner({ key: 'reconnecting_media' });
    armIceRecovery();
  }
}

// The network changed or blinked under a live WebSocket: after 2 s still
// disconnected, an ICE restart (str0m, ICE-lite, accepts the new ufrag in
// our offer while it still has our transport); 8 s later still not back,
// or the WebSocket gone too: a full rejoin.
let iceTimer = null;

function armIceRecovery() {
  if (iceTimer) return;
  iceTimer = setTimeout(() => {
    iceTimer = null;
    if (tuxa.state !== 'in-call' || !pc || ['connected', 'completed'].includes(pc.iceConnectionState)) return;
    if (!conn.isOpen || typeof pc.restartIce !== 'function') {
      startReconnect('ICE disconnected');
      return;
    }
    log('ICE restart');
    tuxa.iceRestarts += 1;
    pc.restartIce();
    enqueue('ICE restart', requestOffer);
    iceTimer = setTimeout(() => {
      iceTimer = null;
      if (tuxa.state === 'in-call' && pc && !['connected', 'completed'].includes(pc.iceConnectionState)) {
        startReconnect('ICE restart did not bring the media back');
      }
    }, 8000);
  }, 2000);
}

async function sendOffer() {
  offerWanted = false;
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  // The mids are known once the offer is set: name the screen share and the
  // second camera before the offer that carries them (every offer, as a
  // rollback may have renumbered them). Nothing to name: nothing sent.
  const map = {};
  for (const [source, out] of Object.entries(outgoing)) {
    if (out.transceiver && out.transceiver.mid != null) map[out.transceiver.mid] = source;
  }
  if (Object.keys(map).length) send(P.sources(map));
  send(P.offer(pc.localDescription.sdp));
  // The server's media side knows us from our first offer on: audio only,
  // chosen before a rejoin (or before this peer connection), goes after it.
  resendAudioOnly();
}

let offerWanted = false; // an offer of ours waits for the signaling state to be stable

/** Offers now if nothing is outstanding, or as soon as the exchange under way ends. */
async function requestOffer() {
  if (pc.signalingState === 'stable') await sendOffer();
  else offerWanted = true;
}

async function offerIfWanted() {
  if (offerWanted && pc && pc.signalingState === 'stable') await sendOffer();
}

async function onServerOffer(sdp) {
  let reoffer = false;
  if (pc.signalingState === 'have-local-offer') {
    // Glare: we are polite. Drop our offer, take theirs, offer again after.
    log('glare: rolling back our offer');
    await pc.setLocalDescription({ type: 'rollback' });
    reoffer = true;
  }
  await pc.setRemoteDescription({ type: 'offer', sdp });
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  send(P.answer(pc.localDescription.sdp));
  tuxa.negotiations += 1;
  reconcileRemoteTracks();
  if (reoffer) await sendOffer();
  else await offerIfWanted();
}

async function onServerAnswer(sdp) {
  if (pc.signalingState !== 'have-local-offer') {
    log('ignoring an answer in state', pc.signalingState);
    return;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp });
  tuxa.lastAnswerSdp = sdp; // for tests: what the server accepted of our offer
  tuxa.negotiations += 1;
  reconcileRemoteTracks();
  applyKnownLayers();
  await offerIfWanted();
}

// ---------------------------------------------------------------------------
// Remote participants and their media.

const publishedTracks = new Map(); // track id (protocol) → {pid, kind, source}
// Every remote track we show → the key of its tile: the participant id for
// their camera and microphone, `${pid}:${source}` for a screen share or a
// second camera (each of those has its own tile, on the stage).
const trackOwner = new Map();
const tiles = new Map(); // tile key → tile

const tileKey = (pid, source) => (P.isExtraSource(source) ? `${pid}:${source}` : pid);

function upsertParticipant(p) {
  const pid = String(p.id);
  if (tuxa.you && String(tuxa.you.id) === pid) return;
  tuxa.participants[pid] = { ...p };
  const tile = ensureTile(pid);
  renderTile(tile);
  for (const tl of tiles.values()) if (tl.pid === pid && tl !== tile) renderTile(tl);
  updateGrid();
  renderPeople();
}

function removeParticipant(pid) {
  delete tuxa.participants[pid];
  for (const tile of [...tiles.values()]) {
    if (tile.pid !== pid) continue;
    for (const tr of [...tile.tracks]) detachTrack(tr, false);
    removeTile(tile.key);
  }
  updateGrid();
  renderPeople();
}

function onMuteChanged(msg) {
  const pid = String(msg.participant_id);
  const p = tuxa.participants[pid];
  if (!p) return;
  if (msg.kind === 'audio') p.audio_muted = msg.muted;
  else p.video_muted = msg.muted;
  const tile = tiles.get(pid);
  if (tile) renderTile(tile);
  renderPeople();
}

/**
 * What a received track carries: `track_published` names it by track id;
 * when the browser does not keep the sender's track id (older Firefox), the
 * msid of its m-line in the server's offer does.
 */
function sourceOf(track, transceiver) {
  let info = publishedTracks.get(track.id);
  if (!info && transceiver && transceiver.mid != null && pc && pc.remoteDescription) {
    const sections = pc.remoteDescription.sdp.split(/\r?\nm=/);
    for (const sec of sections) {
      if (!new RegExp(`\\r?\\na=mid:${transceiver.mid}\\r?(\\n|$)`).test(`\n${sec}`)) continue;
      const m = sec.match(/\na=msid:(\S+) (\S+)/);
      if (m) info = publishedTracks.get(m[2]);
      break;
    }
  }
  return info ? info.source : undefined;
}

function onTrack(ev) {
  const track = ev.track;
  const stream = ev.streams && ev.streams[0];
  const pid = stream ? stream.id : '';
  if (!/^\d+$/.test(pid)) {
    // Not someone's media (the server names every forwarded stream by its
    // publisher's id): e.g. our own receive-only placeholder m-line.
    log('ignoring a track without a participant stream id:', pid || '(none)', track.kind);
    return;
  }
  const source = sourceOf(track, ev.transceiver);
  log('remote track', track.kind, 'from', pid, source || '');
  attachTrack(track, pid, source);
  track.addEventListener('ended', () => detachTrack(track, true));
  track.addEventListener('mute', () => { const tl = tiles.get(trackOwner.get(track)); if (tl) renderTile(tl); });
  track.addEventListener('unmute', () => { const tl = tiles.get(trackOwner.get(track)); if (tl) renderTile(tl); });
  if (stream && !stream.tuxaWatched) {
    stream.tuxaWatched = true;
    stream.addEventListener('removetrack', (e) => {
      const tl = tiles.get(trackOwner.get(e.track));
      if (tl && tl.pid === stream.id) detachTrack(e.track, true);
    });
  }
}

function attachTrack(track, pid, source) {
  const key = tileKey(pid, source);
  const prev = trackOwner.get(track);
  if (prev === key) return;
  if (prev !== undefined) detachTrack(track, true);
  trackOwner.set(track, key);
  const tile = ensureTile(pid, source);
  tile.tracks.add(track);
  refreshTileMedia(tile);
  updateGrid();
}

function detachTrack(track, maybeRemoveTile) {
  const key = trackOwner.get(track);
  if (key === undefined) return;
  trackOwner.delete(track);
  const tile = tiles.get(key);
  if (!tile) return;
  tile.tracks.delete(track);
  // A camera tile with no media left stays while its participant is in the
  // room (it shows their initials); otherwise it goes. A screen or second
  // camera tile goes with its track.
  if (maybeRemoveTile && tile.tracks.size === 0 && (tile.extra || !tuxa.participants[tile.pid])) {
    removeTile(key);
  } else {
    refreshTileMedia(tile);
  }
  updateGrid();
}

/** After each negotiation: drop tracks whose transceiver stopped receiving. */
function reconcileRemoteTracks() {
  if (!pc) return;
  for (const tr of pc.getTransceivers()) {
    const track = tr.receiver && tr.receiver.track;
    if (!track || !trackOwner.has(track)) continue;
    const dir = tr.currentDirection;
    const receiving = !tr.stopped && (dir === 'recvonly' || dir === 'sendrecv');
    if (!receiving) {
      log('transceiver', tr.mid, 'no longer receiving:', dir);
      detachTrack(track, true);
    }
  }
}

function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  const first = words.length > 1 ? words[words.length - 2][0] : '';
  return (first + words[words.length - 1][0]).toUpperCase();
}

function ensureTile(pid, source) {
  const key = tileKey(pid, source);
  let tile = tiles.get(key);
  if (tile) return tile;
  const extra = P.isExtraSource(source);
  const el = document.createElement('div');
  el.className = extra ? 'tile tile-extra' : 'tile';
  el.dataset.pid = pid;
  if (extra) el.dataset.source = source;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound plays through the <audio> below
  video.setAttribute('playsinline', '');
  const audio = document.createElement('audio');
  audio.autoplay = true;
  const avatar = document.createElement('div');
  avatar.className = 'avatar';
  const avatarText = document.createElement('span');
  avatar.append(avatarText);
  const label = document.createElement('div');
  label.className = 'label';
  const name = document.createElement('span');
  name.className = 'name';
  const roles = document.createElement('span');
  roles.className = 'role-badges';
  const meta = document.createElement('span');
  meta.className = 'meta';
  const licence = document.createElement('span');
  licence.className = 'meta licence';
  const link = document.createElement('span');
  link.className = 'meta link';
  label.append(name, roles, meta, licence, link);
  const badges = document.createElement('div');
  badges.className = 'badges';
  const micBadge = document.createElement('span');
  micBadge.className = 'badge badge-mic';
  micBadge.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M19 11h-2a5 5 0 0 1-.6 2.4l1.5 1.5A7 7 0 0 0 19 11zM15 11V5a3 3 0 0 0-5.9-.8L15 10.1V11zM4.3 3 3 4.3l6 6V11a3 3 0 0 0 4.6 2.5l1.6 1.6A5 5 0 0 1 7 11H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 3.6-1.5l3.1 3.1 1.3-1.3z"/></svg>';
  const camBadge = document.createElement('span');
  camBadge.className = 'badge badge-cam';
  camBadge.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M21 6.5l-4 4V7a1 1 0 0 0-1-1H9.8L21 17.2zM3.3 2 2 3.3 4.7 6H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12c.2 0 .4-.1.5-.2l3.2 3.2 1.3-1.3z"/></svg>';
  badges.append(micBadge, camBadge);
  el.append(video, avatar, audio, label, badges);
  $(extra ? 'stage' : 'grid').append(el);
  tile = {
    key, pid, source: extra ? source : undefined, extra, el, video, audio, avatarText, name, roles, meta, licence, link,
    micBadge, camBadge, tracks: new Set(), videoStream: null, audioStream: null,
    // Frames decoded at the last check, and when they last grew, for the
    // video track `watched` (see checkExtraTiles).
    frames: 0, framesAt: performance.now(), stalled: false, watched: null,
  };
  tiles.set(key, tile);
  renderTile(tile);
  startExtraWatch();
  return tile;
}

function removeTile(key) {
  const tile = tiles.get(key);
  if (!tile) return;
  tile.video.srcObject = null;
  tile.audio.srcObject = null;
  tile.el.remove();
  tiles.delete(key);
  updateGrid();
}

function refreshTileMedia(tile) {
  const live = [...tile.tracks].filter((tr) => tr.readyState === 'live');
  const v = live.find((tr) => tr.kind === 'video');
  const a = live.find((tr) => tr.kind === 'audio');
  const curV = tile.videoStream && tile.videoStream.getVideoTracks()[0];
  if (curV !== v) {
    tile.videoStream = v ? new MediaStream([v]) : null;
    tile.video.srcObject = tile.videoStream;
    if (v) tile.video.play().catch((e) => log('video play failed', e));
  }
  const curA = tile.audioStream && tile.audioStream.getAudioTracks()[0];
  if (curA !== a) {
    tile.audioStream = a ? new MediaStream([a]) : null;
    tile.audio.srcObject = tile.audioStream;
    if (a) playAudio(tile.audio);
  }
  renderTile(tile);
}

function playAudio(el) {
  const p = el.play();
  if (p && p.catch) {
    p.catch((e) => {
      log('audio autoplay blocked', e);
      $('sound-btn').hidden = false;
    });
  }
}

function renderTile(tile) {
  const p = tuxa.participants[tile.pid];
  const name = p ? p.name : t('unknown_participant');
  const vt = tile.videoStream && tile.videoStream.getVideoTracks()[0];
  tile.avatarText.textContent = p ? initials(p.name) : '?';
  if (tile.extra) {
    tile.name.textContent = tf('call_tile_extra', { name, source: t(`call_source_${tile.source}`) });
    tile.meta.textContent = p && p.facility ? p.facility : '';
    tile.licence.textContent = '';
    tile.link.textContent = '';
    tile.roles.textContent = '';
    tile.el.classList.toggle('no-video', !vt || vt.muted || videoStopped());
    tile.el.hidden = tile.stalled;
    tile.micBadge.hidden = true;
    tile.camBadge.hidden = true;
    return;
  }
  tile.name.textContent = name;
  tile.meta.textContent = p ? [roleName(p.role), p.facility].filter(Boolean).join(' · ') : '';
  tile.licence.textContent = p && p.licence_number ? `${t('call_licence')}: ${p.licence_number}` : '';
  renderRoleBadges(tile.roles, tile.pid);
  const lt = linkText(tile.pid);
  tile.link.textContent = lt;
  tile.link.hidden = !lt;
  tile.el.classList.toggle('reconnecting', !!tuxa.reconnectingPeers[tile.pid]);
  const grade = tuxa.linkQuality[tile.pid] && lt ? tuxa.linkQuality[tile.pid].grade : '';
  if (grade) tile.el.dataset.link = grade;
  else delete tile.el.dataset.link;
  // A remote track is `muted` until its first frames arrive: show the
  // initials rather than a black picture until then.
  // No frames for a while (the publisher chose audio only, or its layer
  // stalled) or no video sent to us at all: the initials, not a frozen frame.
  const videoOff = !vt || vt.muted || (p && p.video_muted) || tile.stalled || videoStopped();
  tile.el.classList.toggle('no-video', videoOff);
  tile.el.classList.toggle('video-paused', !!vt && !vt.muted && !(p && p.video_muted) && (tile.stalled || videoStopped()));
  tile.el.classList.toggle('has-media', tile.tracks.size > 0);
  tile.micBadge.hidden = !(p && p.audio_muted);
  tile.micBadge.title = t('mic_muted');
  tile.micBadge.setAttribute('aria-label', t('mic_muted'));
  tile.camBadge.hidden = !(p && p.video_muted);
  tile.camBadge.title = t('cam_muted');
  tile.camBadge.setAttribute('aria-label', t('cam_muted'));
  if (p) tile.el.dataset.role = p.role;
}

/** The chair and secretary badges of a participant (tile label, list entry). */
function renderRoleBadges(el, pid) {
  el.textContent = '';
  const st = tuxa.roomState;
  const add = (key, cls) => {
    const b = document.createElement('span');
    b.className = `role-badge ${cls}`;
    b.textContent = t(key);
    el.append(b);
  };
  if (st.chair != null && String(st.chair) === String(pid)) add('call_chair', 'is-chair');
  if (st.secretary != null && String(st.secretary) === String(pid)) add('call_secretary', 'is-secretary');
  el.hidden = el.childElementCount === 0;
}

function updateGrid() {
  const grid = $('grid');
  let n = 0;
  let shown = 0;
  for (const tile of tiles.values()) {
    if (!tile.extra) n += 1;
    else if (!tile.stalled) shown += 1;
  }
  let local = 0; // our own screen or second camera: a small preview
  for (const lt of Object.values(outgoing)) if (lt.tile && !lt.tile.hidden) local += 1;
  grid.dataset.count = String(n);
  $('stage').dataset.count = String(shown + local);
  // Others' screens and second cameras take the room; the camera tiles shrink.
  $('screen-call').classList.toggle('has-stage', shown > 0);
  $('waiting').hidden = n > 0 || tuxa.state !== 'in-call';
  $('people-count').textContent = String(n + (tuxa.state === 'in-call' ? 1 : 0));
}

// ---------------------------------------------------------------------------
// Room state: chair, secretary, lock — and who may moderate.

const MODERATION_TYPES = new Set(['mute_participant', 'remove_participant', 'lock_room', 'set_secretary']);

/** Whether we may moderate now (the server's rule, P.mayModerate). */
function canModerate() {
  return tuxa.state === 'in-call' && P.mayModerate(tuxa.roomState, tuxa.you);
}

function onRoomState(msg) {
  tuxa.roomState = { locked: msg.locked, chair: msg.chair ?? null, secretary: msg.secretary ?? null };
  renderRoomState();
}

function renderRoomState() {
  $('lock-strip').hidden = !(tuxa.state === 'in-call' && tuxa.roomState.locked);
  renderRecording(); // who may start it follows the chair
  for (const tile of tiles.values()) renderTile(tile);
  renderLobby();
  renderPeople();
}

/** The chair's request: mute that track here, say so, and tell the others. */
function onMuteRequested(msg) {
  const by = tuxa.participants[String(msg.by)];
  const name = by ? by.name : t('call_chair');
  if (msg.kind === 'audio') {
    media.micMuted = true;
    applyTrackEnabled();
    send(P.mute('audio', true));
  } else if (!media.camOff) {
    // Off as the user's own button would (light off, nothing sent); cameraOff says so to the server.
    camBusy = true;
    cameraOff().catch((e) => log('camera off failed', e)).finally(() => { camBusy = false; updateLocalUi(); });
  } else {
    send(P.mute('video', true));
  }
  updateLocalUi();
  showNotice(tf(msg.kind === 'audio' ? 'call_muted_by' : 'call_cam_off_by', { name }));
}

let noticeTimer = null;

/** A short notice on the call screen (read out by screen readers). */
function showNotice(text) {
  tuxa.notices.push(text);
  const el = $('call-notice');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 10_000);
}

// ---------------------------------------------------------------------------
// Recording (issue 13; docs/protocol.md, "Recording"): a steady indicator for
// everyone, the chair's (or doctor's) start/stop, a patient's withdrawal, the
// lobby's and the preview's notice.

let recPending = false; // our start/stop is on its way

function mayRecord() {
  return tuxa.state === 'in-call' && P.mayRecord(tuxa.roomState, tuxa.you);
}

function onRecording(msg) {
  const before = tuxa.recording;
  tuxa.recording = { state: msg.state, since: msg.since ?? null, reason: msg.reason ?? null, by: msg.by ?? null };
  tuxa.recordingSeen.push({ state: msg.state, reason: msg.reason ?? null, at: Date.now() });
  recPending = false;
  if (tuxa.state === 'in-call' && before.state !== msg.state) {
    if (msg.state === 'on' && before.state === 'off') showNotice(t('rec_started_notice'));
    else if (msg.state === 'off' && msg.reason === 'consent_withdrawn') {
      showNotice(t(isOwnWithdrawal() ? 'rec_withdrawn_notice' : 'rec_stopped_withdrawn'));
    } else if (msg.state === 'off' && msg.reason === 'stopped') {
      showNotice(tf('rec_stopped_by', { name: msg.by || t('call_chair') }));
    } else if (msg.state === 'off' && msg.reason === 'fault') {
      // The chair or doctor gets the alert in the strip (it stays); the
      // others only see the indicator go, with a word why.
      if (!mayRecord()) showNotice(t('rec_fault_short'));
    }
  }
  renderRecording();
}

function isOwnWithdrawal() {
  return !!(tuxa.you && tuxa.you.role === 'patient' && tuxa.consent && tuxa.consent.recording === false && withdrew);
}

let withdrew = false; // this page sent the withdrawal

function renderRecording() {
  const r = tuxa.recording;
  const running = r.state === 'on' || r.state === 'paused';
  const fault = r.state === 'off' && r.reason === 'fault' && mayRecord();
  // In the call: a steady indicator; for the chair or doctor, a fault alert.
  const strip = $('rec-strip');
  strip.hidden = !(tuxa.state === 'in-call' && (running || fault));
  strip.classList.toggle('is-paused', r.state === 'paused');
  strip.classList.toggle('is-fault', fault);
  strip.setAttribute('role', fault ? 'alert' : 'status');
  let text = '';
  let hint = '';
  if (r.state === 'on') {
    text = t('rec_on');
    hint = r.since ? tf('rec_on_since', { time: P.formatChatTime(r.since, locale()) }) : '';
  } else if (r.state === 'paused') {
    text = t('rec_paused');
    hint = r.reason === 'patient_without_consent' ? t('rec_paused_patient') : '';
  } else if (fault) {
    text = t('rec_fault');
  }
  $('rec-strip-text').textContent = text;
  $('rec-strip-hint').textContent = hint;
  $('rec-strip-hint').hidden = !hint;
  // A patient who consented may withdraw, at any time, from the call.
  const consents = !!(tuxa.consent && tuxa.consent.recording);
  const patient = !!(tuxa.you && tuxa.you.role === 'patient' && tuxa.consent);
  $('rec-withdraw-btn').hidden = !(running && patient && consents);
  // A patient whose missing consent pauses it may give it (never asked twice: a button, no dialog).
  $('rec-consent-btn').hidden = !(r.state === 'paused' && patient && !consents);
  // The chair's (or doctor's) button.
  const btn = $as('button', 'rec-btn');
  btn.hidden = !mayRecord();
  btn.disabled = recPending;
  btn.setAttribute('aria-pressed', String(running));
  $('rec-label').textContent = t(running ? 'rec_stop' : 'rec_start');
  // Before entering: the lobby and the preview.
  const notice = running ? t(r.state === 'paused' ? 'rec_notice_paused' : 'rec_notice') : '';
  $('waiting-rec').hidden = !running;
  $('waiting-rec-text').textContent = notice;
  const pre = identity && identity.recording;
  const preRunning = !!pre && (pre.state === 'on' || pre.state === 'paused');
  $('preview-rec').hidden = !preRunning;
  $('preview-rec-text').textContent = preRunning ? t(pre.state === 'paused' ? 'rec_notice_paused' : 'rec_notice') : '';
}

function toggleRecording() {
  if (!mayRecord() || recPending) return;
  const running = tuxa.recording.state !== 'off';
  recPending = send(P.recording(running ? 'stop' : 'start'));
  renderRecording();
}

/**
 * The patient changes their answer on recording from the call: `false` takes
 * it back (the server stops the recording at once), `true` gives it (a pause
 * for their sake ends).
 */
function setRecordingConsent(recording) {
  if (!tuxa.consent || tuxa.consent.recording === recording) return;
  const answers = {
    text_version: tuxa.consent.text_version,
    remote_examination: tuxa.consent.remote_examination,
    third_parties: tuxa.consent.third_parties,
    recording,
  };
  if (!send(P.consent(answers))) return;
  withdrew = !recording;
  tuxa.consent = { ...answers, at: tuxa.consent.at };
  // A rejoin (reload, reconnect) sends the answers as they now stand.
  storeGiven(answers, tuxa.consentVia || 'call');
  renderRecording();
}

// ---------------------------------------------------------------------------
// Participants panel: everyone with role, facility, licence number and
// badges; the moderator's buttons per person; the lock toggle.

const peopleEntries = new Map(); // pid → entry

function renderPeople() {
  const list = $('people-list');
  if (!list) return;
  const moderate = canModerate();
  $('mod-bar').hidden = !moderate;
  const lock = $('lock-btn');
  lock.textContent = t(tuxa.roomState.locked ? 'call_unlock' : 'call_lock');
  lock.setAttribute('aria-pressed', String(!!tuxa.roomState.locked));
  const people = [];
  if (tuxa.you && tuxa.you.id != null && tuxa.state === 'in-call') people.push({ ...tuxa.you, self: true });
  for (const p of Object.values(tuxa.participants)) people.push(p);
  const ids = new Set(people.map((p) => String(p.id)));
  for (const [pid, entry] of peopleEntries) {
    if (!ids.has(pid)) {
      entry.li.remove();
      peopleEntries.delete(pid);
    }
  }
  for (const p of people) {
    const pid = String(p.id);
    const entry = peopleEntries.get(pid) || makePeopleEntry(pid);
    entry.name.textContent = p.self ? `${p.name} (${t('you')})` : p.name;
    renderRoleBadges(entry.roles, pid);
    entry.meta.textContent = [roleName(p.role), p.facility].filter(Boolean).join(' · ');
    entry.licence.textContent = p.licence_number ? `${t('call_licence')}: ${p.licence_number}` : '';
    entry.licence.hidden = !p.licence_number;
    const muted = p.self ? { audio: media.micMuted || !media.audio, video: media.camOff || !media.camera }
      : { audio: p.audio_muted, video: p.video_muted };
    entry.state.textContent = [muted.audio ? t('mic_muted') : '', muted.video ? t('cam_muted') : '',
      p.self ? '' : linkText(pid)]
      .filter(Boolean).join(' · ');
    const isSecretary = tuxa.roomState.secretary != null && String(tuxa.roomState.secretary) === pid;
    const b = entry.buttons;
    entry.actions.hidden = !moderate;
    b.mic.hidden = p.self;
    b.mic.disabled = !!p.audio_muted;
    b.cam.hidden = p.self;
    b.cam.disabled = !!p.video_muted;
    b.remove.hidden = p.self;
    b.secretary.hidden = !P.maySecretary(p);
    const labels = {
      mic: 'call_mute_mic_of', cam: 'call_mute_cam_of', remove: 'call_remove',
      secretary: isSecretary ? 'call_unmake_secretary' : 'call_make_secretary',
    };
    for (const [k, key] of Object.entries(labels)) {
      b[k].textContent = t(key);
      b[k].setAttribute('aria-label', `${t(key)}: ${p.name}`);
    }
    b.secretary.dataset.on = String(isSecretary);
    list.append(entry.li); // keeps our order: us first, then by arrival
  }
}

function makePeopleEntry(pid) {
  const li = document.createElement('li');
  li.className = 'people-entry';
  li.dataset.pid = pid;
  const who = document.createElement('div');
  who.className = 'people-who';
  const name = document.createElement('span');
  name.className = 'people-name';
  const roles = document.createElement('span');
  roles.className = 'role-badges';
  const meta = document.createElement('span');
  meta.className = 'people-meta';
  const licence = document.createElement('span');
  licence.className = 'people-meta people-licence';
  const state = document.createElement('span');
  state.className = 'people-state';
  who.append(name, roles, meta, licence, state);
  const actions = document.createElement('div');
  actions.className = 'people-actions';
  const mk = (action, cls, fn) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `btn btn-small ${cls}`;
    b.dataset.action = action;
    b.addEventListener('click', fn);
    actions.append(b);
    return b;
  };
  const buttons = {
    mic: mk('mute-audio', 'btn-secondary', () => send(P.mute_participant(pid, 'audio'))),
    cam: mk('mute-video', 'btn-secondary', () => send(P.mute_participant(pid, 'video'))),
    secretary: mk('secretary', 'btn-secondary', () => {
      const on = tuxa.roomState.secretary != null && String(tuxa.roomState.secretary) === pid;
      send(P.set_secretary(on ? null : pid));
    }),
    remove: mk('remove', 'btn-refuse', () => confirmRemove(pid)),
  };
  li.append(who, actions);
  const entry = { li, name, roles, meta, licence, state, actions, buttons };
  peopleEntries.set(pid, entry);
  return entry;
}

let confirmAction = null;

function confirmRemove(pid) {
  const p = tuxa.participants[pid];
  if (!p) return;
  $('confirm-text').textContent = tf('call_remove_confirm', { name: p.name });
  $('confirm-yes').textContent = t('call_remove_yes');
  confirmAction = () => send(P.remove_participant(pid));
  openModal('confirm', 'confirm-no');
}

let modalReturn = null; // the element that had focus before a modal opened

function openModal(id, focusId) {
  modalReturn = document.activeElement;
  $(id).hidden = false;
  $(focusId).focus();
}

function closeModal(id) {
  $(id).hidden = true;
  if (modalReturn && modalReturn.focus) modalReturn.focus();
  modalReturn = null;
}

// ---------------------------------------------------------------------------
// Side panels (participants, chat): one open at a time; an overlay sheet on
// phones, a column on wide screens.

function openPanel(which) {
  for (const [name, ids] of Object.entries(PANELS)) {
    const open = name === which && $(ids.panel).hidden;
    $(ids.panel).hidden = !open;
    $(ids.button).setAttribute('aria-expanded', String(open));
    $(ids.button).classList.toggle('is-active', open);
  }
  const chatOpen = !$('chat-panel').hidden;
  document.body.classList.toggle('side-open', chatOpen || !$('people-panel').hidden);
  if (chatOpen) {
    tuxa.chatUnread = 0;
    renderUnread();
    scrollChat();
  }
}

const PANELS = {
  people: { panel: 'people-panel', button: 'people-btn' },
  chat: { panel: 'chat-panel', button: 'chat-btn' },
};

// ---------------------------------------------------------------------------
// The control bar on phones: mic, camera, "Thêm" and "Rời phòng" in the bar;
// the rest in the "Thêm" menu, which closes after a choice, on Escape and on
// a tap elsewhere. Wider screens: every control in the bar (style.css).

const PHONE_BAR = window.matchMedia('(max-width: 599px)');

function setMoreOpen(open, { focus = true } = {}) {
  const nav = $('more-btn').closest('.controls');
  const was = nav.classList.contains('more-open');
  nav.classList.toggle('more-open', open);
  $('more-btn').setAttribute('aria-expanded', String(open));
  $('more-btn').classList.toggle('is-active', open);
  if (open && focus) {
    const first = [...$('more-menu').querySelectorAll('button')].find((b) => !b.hidden);
    if (first) first.focus();
  } else if (!open && was && focus && nav.contains(document.activeElement)) {
    $('more-btn').focus();
  }
}

// ---------------------------------------------------------------------------
// Chat.

function renderChatKept() {
  const kept = tuxa.room && tuxa.room.kind === 'conference';
  $('chat-kept').textContent = t(kept ? 'call_chat_kept' : 'call_chat_not_kept');
  $('chat-kept').classList.toggle('is-kept', !!kept);
}

function onChat(msg) {
  tuxa.chat.push({ from: msg.from, name: msg.name, text: msg.text, at: msg.at });
  appendChat(msg);
  const mine = tuxa.you && String(msg.from) === String(tuxa.you.id);
  if (!mine && $('chat-panel').hidden) {
    tuxa.chatUnread += 1;
    renderUnread();
  }
}

function appendChat(msg) {
  const mine = tuxa.you && String(msg.from) === String(tuxa.you.id);
  const li = document.createElement('li');
  li.className = mine ? 'chat-msg is-mine' : 'chat-msg';
  li.dataset.from = String(msg.from);
  const head = document.createElement('div');
  head.className = 'chat-head';
  const name = document.createElement('span');
  name.className = 'chat-name';
  name.textContent = mine ? t('you') : msg.name;
  const time = document.createElement('time');
  time.className = 'chat-time';
  time.dateTime = new Date(msg.at * 1000).toISOString();
  time.dataset.at = String(msg.at);
  time.textContent = P.formatChatTime(msg.at, locale());
  head.append(name, time);
  const text = document.createElement('p');
  text.className = 'chat-text';
  text.textContent = msg.text; // text, never markup
  li.append(head, text);
  $('chat-list').append(li);
  $('chat-empty').hidden = true;
  scrollChat();
}

function scrollChat() {
  const list = $('chat-list');
  list.scrollTop = list.scrollHeight;
}

function renderUnread() {
  const n = tuxa.chatUnread;
  const badge = $('chat-unread');
  badge.hidden = n === 0;
  badge.textContent = n > 99 ? '99+' : String(n);
  // Phones: chat is in the "Thêm" menu; its button says a message waits.
  $('more-unread').hidden = n === 0;
  $('more-unread').textContent = badge.textContent;
  $('more-btn').classList.toggle('has-unread', n > 0);
  $('chat-btn').setAttribute('aria-label', n ? `${t('call_chat')}: ${tf('call_chat_unread', { n })}` : t('call_chat'));
}

function renderChatCount() {
  const input = $as('textarea', 'chat-input');
  const left = P.MAX_CHAT_CHARS - P.charCount(input.value.trim());
  const el = $('chat-count');
  el.hidden = left > 200;
  el.classList.toggle('is-over', left < 0);
  el.textContent = left < 0 ? tf('call_chat_too_long', { max: P.MAX_CHAT_CHARS }) : tf('call_chat_chars_left', { n: left });
  $as('button', 'chat-send').disabled = P.chatTextProblem(input.value) !== null;
}

function sendChat(ev) {
  if (ev) ev.preventDefault();
  const input = $as('textarea', 'chat-input');
  if (P.chatTextProblem(input.value) !== null) {
    renderChatCount();
    return;
  }
  if (send(P.chat(input.value))) {
    input.value = '';
    renderChatCount();
  }
}

function renderChatTimes() {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('#chat-list .chat-time'))) {
    el.textContent = P.formatChatTime(Number(el.dataset.at), locale());
  }
  for (const li of document.querySelectorAll('#chat-list .chat-msg.is-mine .chat-name')) li.textContent = t('you');
}

// ---------------------------------------------------------------------------
// Screen share and second camera: each its own sending transceiver. Started
// once, then stopped and restarted with replaceTrack (no renegotiation).

const outgoing = {
  screen: { track: null, transceiver: null, tile: null },
  second_camera: { track: null, transceiver: null, tile: null },
};

async function startExtra(source, track) {
  const out = outgoing[source];
  if (out.track) out.track.stop();
  out.track = track;
  track.addEventListener('ended', () => {
    // The browser's own "Stop sharing", or the device went away.
    if (out.track === track) stopExtra(source);
  });
  showLocalExtra(source);
  updateExtraButtons();
  await enqueue(`start ${source}`, async () => {
    if (out.track !== track) return;
    if (out.transceiver && !out.transceiver.stopped) {
      await out.transceiver.sender.replaceTrack(track);
      if (out.transceiver.direction !== 'sendonly') {
        out.transceiver.direction = 'sendonly';
        await requestOffer();
      }
      return;
    }
    const init = {
      direction: 'sendonly',
      streams: [new MediaStream([track])],
      sendEncodings: [{ maxBitrate: source === 'screen' ? 1_000_000 : 800_000 }],
    };
    try {
      out.transceiver = pc.addTransceiver(track, init);
    } catch (e) {
      log('addTransceiver with encodings failed, retrying plain', e);
      delete init.sendEncodings;
      out.transceiver = pc.addTransceiver(track, init);
    }
    await requestOffer();
  });
}

function stopExtra(source) {
  const out = outgoing[source];
  const track = out.track;
  if (!track) return;
  out.track = null;
  track.stop();
  // Keep the transceiver (and its m-line): a later start reuses it.
  if (out.transceiver && pc && pc.signalingState !== 'closed') {
    out.transceiver.sender.replaceTrack(null).catch((e) => log('replaceTrack(null) failed', e));
  }
  showLocalExtra(source);
  updateExtraButtons();
}

async function toggleScreen() {
  if (outgoing.screen.track) {
    stopExtra('screen');
    return;
  }
  let track;
  try {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 10, max: 15 } }, audio: false });
    track = s.getVideoTracks()[0];
  } catch (e) {
    log('getDisplayMedia failed', e);
    if (!(e && e.name === 'NotAllowedError')) showNotice(t('call_screen_failed'));
    return;
  }
  if (!track || tuxa.state !== 'in-call') {
    if (track) track.stop();
    return;
  }
  try { track.contentHint = 'detail'; } catch { /* ignore */ }
  await startExtra('screen', track);
}

async function openCam2Picker() {
  if (outgoing.second_camera.track) {
    stopExtra('second_camera');
    return;
  }
  const select = $('cam2-select');
  select.textContent = '';
  let cams = [];
  try {
    cams = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  } catch (e) { log('enumerateDevices failed', e); }
  const main = media.video ? media.video.getSettings().deviceId : '';
  // Another device first; the main camera last (some capture cards show as
  // the same device in a second mode, and a fake or virtual camera may too).
  cams.sort((a, b) => Number(a.deviceId === main) - Number(b.deviceId === main));
  cams.forEach((d, i) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label || `${t('camera')} ${i + 1}`;
    select.append(o);
  });
  $('cam2-note').hidden = cams.some((d) => d.deviceId !== main);
  $('cam2-note').textContent = t('call_no_second_camera');
  $as('button', 'cam2-start').disabled = cams.length === 0;
  openModal('cam2-picker', 'cam2-select');
}

async function startCam2() {
  const deviceId = $as('select', 'cam2-select').value;
  closeModal('cam2-picker');
  if (!deviceId) return;
  let track;
  try {
    const s = await navigator.mediaDevices.getUserMedia({
      video: { deviceId: { exact: deviceId }, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { max: 30 } },
    });
    track = s.getVideoTracks()[0];
  } catch (e) {
    log('second camera failed', e);
    showNotice(t('call_camera2_failed'));
    return;
  }
  if (!track || tuxa.state !== 'in-call') {
    if (track) track.stop();
    return;
  }
  await startExtra('second_camera', track);
}

/** Screen share and the second camera: for doctors and nurses (a patient's phone has no use for them). */
function isStaff() {
  const role = tuxa.you ? tuxa.you.role : identity && identity.role;
  return role === 'doctor' || role === 'nurse';
}

function updateExtraButtons() {
  const inCall = tuxa.state === 'in-call';
  const md = navigator.mediaDevices;
  const staff = isStaff();
  const sb = $('screen-btn');
  sb.hidden = !inCall || !staff || !md || typeof md.getDisplayMedia !== 'function';
  const sharing = !!outgoing.screen.track;
  sb.classList.toggle('is-active', sharing);
  sb.setAttribute('aria-pressed', String(sharing));
  $('screen-label').textContent = t(sharing ? 'call_stop_screen' : 'call_share_screen');
  const cb = $('cam2-btn');
  cb.hidden = !inCall || !staff || !md || !md.getUserMedia || cameraCount < 1;
  const cam2 = !!outgoing.second_camera.track;
  cb.classList.toggle('is-active', cam2);
  cb.setAttribute('aria-pressed', String(cam2));
  $('cam2-label').textContent = t(cam2 ? 'call_stop_second_camera' : 'call_second_camera');
}

/** Our own screen share or second camera, as the others see it, on the stage. */
function showLocalExtra(source) {
  const out = outgoing[source];
  if (!out.tile) {
    const el = document.createElement('div');
    el.className = 'tile tile-extra tile-local';
    el.dataset.source = source;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    const label = document.createElement('div');
    label.className = 'label';
    const name = document.createElement('span');
    name.className = 'name';
    label.append(name);
    el.append(video, label);
    $('stage').append(el);
    out.tile = el;
  }
  const el = out.tile;
  const video = el.querySelector('video');
  el.hidden = !out.track;
  el.querySelector('.name').textContent = tf('call_tile_extra', { name: t('you'), source: t(`call_source_${source}`) });
  const want = out.track ? out.track : null;
  const cur = video.srcObject && video.srcObject.getVideoTracks()[0];
  if (cur !== want) {
    video.srcObject = want ? new MediaStream([want]) : null;
    if (want) video.play().catch(() => {});
  }
  updateGrid();
}

function stopAllExtras() {
  for (const source of Object.keys(outgoing)) {
    const out = outgoing[source];
    if (out.track) out.track.stop();
    out.track = null;
    out.transceiver = null;
    if (out.tile) {
      out.tile.querySelector('video').srcObject = null;
      out.tile.remove();
      out.tile = null;
    }
  }
  stopExtraWatch();
}

// A stopped screen share or second camera is not unpublished (the server
// only withdraws a participant's tracks when they leave): its tile here is
// hidden while its track decodes nothing, and comes back with the frames.
// A camera whose frames stop (its sender chose audio only, or our link
// lost its layer) keeps its tile, with the initials instead of a frozen
// picture, until frames come again.
let extraWatch = null;
const STALL_MS = 6000;
const CAMERA_STALL_MS = 3000;

function startExtraWatch() {
  if (!extraWatch) extraWatch = setInterval(() => { checkExtraTiles().catch((e) => log('extra watch', e)); }, 2000);
}

function stopExtraWatch() {
  clearInterval(extraWatch);
  extraWatch = null;
}

async function checkExtraTiles() {
  const watched = [...tiles.values()];
  if (watched.length === 0) {
    stopExtraWatch();
    return;
  }
  if (!pc || pc.signalingState === 'closed') return;
  const now = performance.now();
  let changed = false;
  for (const tile of watched) {
    const track = [...tile.tracks].find((tr) => tr.kind === 'video');
    if (!tile.extra && !track) {
      if (tile.stalled) {
        tile.stalled = false;
        renderTile(tile);
      }
      continue;
    }
    if ((track || null) !== tile.watched) {
      // Another track (the publisher rejoined): count its frames afresh.
      tile.watched = track || null;
      tile.frames = 0;
      tile.framesAt = now;
    }
    const receiver = track && pc.getReceivers().find((r) => r.track === track);
    let frames = 0;
    if (receiver) {
      const stats = await receiver.getStats();
      stats.forEach((r) => { if (r.type === 'inbound-rtp') frames = Math.max(frames, r.framesDecoded || 0); });
    }
    if (frames > tile.frames) {
      tile.frames = frames;
      tile.framesAt = now;
    }
    // A camera tile before its first frame shows the initials anyway (the
    // track is muted until then).
    const stalled = tile.extra ? now - tile.framesAt > STALL_MS
      : tile.frames > 0 && now - tile.framesAt > CAMERA_STALL_MS;
    if (stalled !== tile.stalled) {
      tile.stalled = stalled;
      log(`${tile.key}`, stalled ? `stalled: ${tile.extra ? 'hidden' : 'initials shown'}` : 'decoding again: shown');
      renderTile(tile);
      changed = true;
    }
  }
  if (changed) updateGrid();
}

// ---------------------------------------------------------------------------
// Leaving and tearing down.

function teardown() {
  stopStats();
  clearTimeout(iceTimer);
  if (pc) {
    try { pc.close(); } catch { /* ignore */ }
  }
  conn.close(1000);
  for (const pid of [...tiles.keys()]) removeTile(pid);
  trackOwner.clear();
  stopAllExtras();
  stopLocalMedia();
  setBanner(null);
  clearLobby();
  closeCallUi();
}

/** Panels, dialogs and strips of the call screen go with the call. */
function closeCallUi() {
  for (const id of ['people-panel', 'chat-panel', 'cam2-picker', 'confirm', 'end-confirm', 'lock-strip', 'call-notice']) $(id).hidden = true;
  document.body.classList.remove('side-open');
  setMoreOpen(false, { focus: false });
  updateExtraButtons();
}

function clearLobby() {
  tuxa.lobby = [];
  lobbyPending.clear();
  renderLobby();
}

// ---------------------------------------------------------------------------
// Ending (docs/protocol.md, "Ending"): the doctor of a visit, or the chair of
// a conference, ends it for everyone; everyone then sees the end screen.

/** "Rời phòng": those who may end the consultation are asked which they mean. */
function onLeaveClick() {
  if (tuxa.state === 'in-call' && P.mayEnd(tuxa.roomState, tuxa.you)) {
    $('end-confirm-title').textContent = t(tuxa.room && tuxa.room.kind === 'conference' ? 'end_confirm_title_conf' : 'end_confirm_title');
    openModal('end-confirm', 'end-cancel-btn');
    return;
  }
  leave();
}

function endForEveryone() {
  closeModal('end-confirm');
  log('ending the consultation for everyone');
  if (!send(P.end_room())) showNotice(t('end_failed'));
}

/** The consultation is over: stop everything and say what happens next. */
function showEnded(msg) {
  if (tuxa.state === 'ended') return;
  log('ended', msg.reason || '(before joining)');
  tuxa.ended = { reason: msg.reason || null, by: msg.by || null, contact: msg.contact || null };
  teardown();
  renderEnded();
  setState('ended');
}

function renderEnded() {
  const e = tuxa.ended;
  if (!e) return;
  const conf = tuxa.room && tuxa.room.kind === 'conference';
  $('ended-title').textContent = t(conf ? 'ended_title_conf' : 'ended_title');
  let why = '';
  if (e.reason === 'ended') why = e.by ? tf('ended_by', { name: e.by }) : t('ended_by_staff');
  else if (e.reason === 'abandoned') why = t('ended_abandoned');
  else if (e.reason === 'server_restart') why = t('ended_server_restart');
  else if (e.reason === 'cancelled') why = t('ended_cancelled');
  $('ended-why').textContent = why;
  $('ended-why').hidden = !why;
  const staff = tuxa.you && ['doctor', 'nurse'].includes(tuxa.you.role);
  $('ended-next').textContent = t(staff ? 'ended_next_staff' : 'ended_next_patient');
  const c = $('ended-contact');
  c.replaceChildren();
  if (e.contact && e.contact.name) {
    c.append(`${t('ended_contact')} ${e.contact.name}`);
    if (e.contact.phone) {
      const a = document.createElement('a');
      a.href = `tel:${e.contact.phone.replace(/[^0-9+]/g, '')}`;
      a.textContent = e.contact.phone;
      a.className = 'ended-phone';
      c.append(' — ', a);
    }
  }
  c.hidden = !(e.contact && e.contact.name);
}

function leave() {
  log('leaving');
  stopStats();
  clearTimeout(iceTimer);
  if (conn.isOpen) send(P.leave());
  // Let the leave frame go out before the close.
  conn.close(1000, { lingerMs: 200 });
  if (pc) {
    try { pc.close(); } catch { /* ignore */ }
  }
  for (const pid of [...tiles.keys()]) removeTile(pid);
  stopAllExtras();
  stopLocalMedia();
  setBanner(null);
  clearLobby();
  closeCallUi();
  setState('left');
}

// ---------------------------------------------------------------------------
// Language.

/** What this page draws itself, in the new language (after i18n's applyLang). */
function renderLang() {
  if (tuxa.room) $('room-title').textContent = tuxa.room.title;
  renderIdentity();
  updateJoinButton();
  renderWaiting();
  renderLobby();
  renderError();
  renderEnded();
  updateLocalUi();
  for (const tile of tiles.values()) renderTile(tile);
  for (const source of Object.keys(outgoing)) if (outgoing[source].tile) showLocalExtra(source);
  renderPeople();
  renderChatKept();
  renderChatTimes();
  renderUnread();
  renderChatCount();
  updateExtraButtons();
  updateCallBanner();
  renderRecording();
  $('leave-btn').setAttribute('aria-label', t('leave'));
  $('more-btn').setAttribute('aria-label', t('call_more_label'));
  updateTitle();
}

let identity = null; // the join-check answer

function renderIdentity() {
  if (!identity) return;
  $('join-as').textContent = tf('join_as', { name: identity.name, role: roleName(identity.role) });
  $('id-name').textContent = identity.name;
  $('id-role').textContent = roleName(identity.role);
  const hasFacility = !!identity.facility;
  $('id-facility').textContent = identity.facility || '';
  $('id-facility').hidden = !hasFacility;
  $('id-facility-dt').hidden = !hasFacility;
  $('id-room').textContent = identity.room ? identity.room.title : '';
  if (identity.expires_at) {
    // dd/mm/yyyy HH:MM, Vietnam time: the way every other date in tuxa reads.
    $('link-expiry').textContent = `${t('link_valid_until')}: ${fmtVnDateTime(identity.expires_at)}`;
  }
}

// ---------------------------------------------------------------------------
// Start.

async function joinCheck() {
  let res;
  try {
    res = await fetch('/api/v1/join-check', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ room: ROOM, token: TOKEN }),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    log('join-check failed', e);
    return { error: 'network_error' };
  }
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const code = body && body.error && typeof body.error.code === 'string' ? body.error.code
      : res.status >= 500 ? 'internal' : 'unknown_error';
    log('join-check', res.status, code);
    // An ended consultation: why, and whom to call (the end screen).
    if (code === 'room_ended' && body && body.ended && typeof body.ended === 'object') {
      return { error: code, ended: body.ended };
    }
    return { error: code };
  }
  if (!body || typeof body.name !== 'string') return { error: 'internal' };
  return { ok: body };
}

async function start() {
  applyLang();
  renderLang();
  document.body.dataset.state = tuxa.state;
  if (!ROOM || !P.isRoomId(ROOM)) {
    fail('bad_link');
    return;
  }
  if (!TOKEN) {
    fail('no_token');
    return;
  }
  const check = await joinCheck();
  if (check.error === 'room_ended') {
    showEnded({ reason: check.ended && check.ended.reason, contact: check.ended && check.ended.contact });
    return;
  }
  if (check.error) {
    fail(check.error);
    return;
  }
  identity = check.ok;
  if (needsConsent()) given = readGiven();
  tuxa.room = identity.room || null;
  tuxa.you = { name: identity.name, role: identity.role, facility: identity.facility };
  if (identity.room && identity.room.title) $('room-title').textContent = identity.room.title;
  renderIdentity();
  updateJoinButton();
  renderRecording();
  await openInitialMedia();
  await refreshDevices();
  updateLocalUi();
  setState('preview');
  if (AUTOJOIN && !needsConsent()) connect();
}

function wireUi() {
  mountLang(renderLang);
  // The click is the user gesture that lets remote audio autoplay.
  $('join-btn').addEventListener('click', primeChime);
  $('join-btn').addEventListener('click', connect);
  // Consent is never implied: not even by a browser restoring ticked boxes.
  for (const id of ['consent-exam', 'consent-third', 'consent-recording']) $as('input', id).checked = false;
  $('consent-exam').addEventListener('change', updateJoinButton);
  $('leave-btn').addEventListener('click', onLeaveClick);
  $('end-all-btn').addEventListener('click', endForEveryone);
  $('end-leave-only-btn').addEventListener('click', () => { closeModal('end-confirm'); leave(); });
  $('end-cancel-btn').addEventListener('click', () => closeModal('end-confirm'));
  $('waiting-leave-btn').addEventListener('click', leave);
  $('retry-btn').addEventListener('click', () => location.reload());
  $('rejoin-btn').addEventListener('click', () => location.reload());
  $('sound-btn').addEventListener('click', () => {
    $('sound-btn').hidden = true;
    for (const tile of tiles.values()) if (tile.audio.srcObject) playAudio(tile.audio);
  });
  for (const b of document.querySelectorAll('.mic-toggle')) b.addEventListener('click', toggleMic);
  for (const b of document.querySelectorAll('.cam-toggle')) b.addEventListener('click', toggleCam);
  $('camera-select').addEventListener('change', () => switchDevice('video', $as('select', 'camera-select').value));
  $('mic-select').addEventListener('change', () => switchDevice('audio', $as('select', 'mic-select').value));
  $('flip-btn').addEventListener('click', () => nextCamera());
  // In the call: panels, chat, chairing, screen share and second camera.
  $('people-btn').addEventListener('click', () => openPanel('people'));
  $('people-close').addEventListener('click', () => openPanel(null));
  $('chat-btn').addEventListener('click', () => {
    openPanel('chat');
    if (!$('chat-panel').hidden) $('chat-input').focus();
  });
  $('chat-close').addEventListener('click', () => openPanel(null));
  $('chat-form').addEventListener('submit', sendChat);
  $('chat-input').addEventListener('input', renderChatCount);
  $('chat-input').addEventListener('keydown', (e) => {
    // Enter sends; Shift+Enter is a new line.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) sendChat(e);
  });
  $('lock-btn').addEventListener('click', () => send(P.lock_room(!tuxa.roomState.locked)));
  $('confirm-no').addEventListener('click', () => { confirmAction = null; closeModal('confirm'); });
  $('confirm-yes').addEventListener('click', () => {
    const act = confirmAction;
    confirmAction = null;
    closeModal('confirm');
    if (act) act();
  });
  $('audio-only-btn').addEventListener('click', toggleAudioOnly);
  $('rec-btn').addEventListener('click', toggleRecording);
  $('rec-withdraw-btn').addEventListener('click', () => setRecordingConsent(false));
  $('rec-consent-btn').addEventListener('click', () => setRecordingConsent(true));
  $('more-btn').addEventListener('click', () => setMoreOpen($('more-btn').getAttribute('aria-expanded') !== 'true'));
  // A choice in the menu closes it (its own handler ran first: the click bubbles here after).
  $('more-menu').addEventListener('click', (e) => {
    if (e.target instanceof Element && e.target.closest('button') && PHONE_BAR.matches) setMoreOpen(false, { focus: false });
  });
  document.addEventListener('click', (e) => {
    if (!(e.target instanceof Element && e.target.closest('.controls'))) setMoreOpen(false, { focus: false });
  });
  // (Safari before 14 has only the old addListener.)
  const onBarChange = () => setMoreOpen(false, { focus: false });
  if (PHONE_BAR.addEventListener) PHONE_BAR.addEventListener('change', onBarChange);
  else if (PHONE_BAR.addListener) PHONE_BAR.addListener(onBarChange);
  $('consent-change').addEventListener('click', reopenConsent);
  // Wide screens show the device pickers; phones keep them folded under the join button.
  if (window.matchMedia('(min-width: 760px)').matches) $as('details', 'devices').open = true;
  $('screen-btn').addEventListener('click', () => { toggleScreen().catch((e) => log('screen share failed', e)); });
  $('cam2-btn').addEventListener('click', () => { openCam2Picker().catch((e) => log('camera 2 failed', e)); });
  $('cam2-cancel').addEventListener('click', () => closeModal('cam2-picker'));
  $('cam2-start').addEventListener('click', () => { startCam2().catch((e) => log('camera 2 failed', e)); });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if ($('more-btn').getAttribute('aria-expanded') === 'true') { setMoreOpen(false); return; }
    if (!$('end-confirm').hidden) closeModal('end-confirm');
    else if (!$('confirm').hidden) { confirmAction = null; closeModal('confirm'); } else if (!$('cam2-picker').hidden) closeModal('cam2-picker');
  });
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', () => refreshDevices());
  }
  // Closing the tab: say goodbye so the others see "left", not "disconnected".
  window.addEventListener('pagehide', () => {
    if ((tuxa.state === 'in-call' || tuxa.state === 'waiting') && conn.isOpen) {
      try { send(P.leave()); } catch { /* ignore */ }
    }
  });
}

// The pre-call check, folded under the join button: it tests with the
// preview's own tracks, and follows the microphone once opened.
function wirePrecheck() {
  const check = mountCheck($('precheck-body'), {
    getTracks: () => [media.audio, media.video].filter(Boolean),
    log: (...a) => log('check:', ...a),
  });
  tuxa.check = check;
  $('precheck').addEventListener('toggle', () => {
    if ($as('details', 'precheck').open) check.startMeter();
    else check.stop();
  });
}

wireUi();
wirePrecheck();
start().catch((e) => {
  log('start failed', e);
  fail('unknown_error');
});

// For tests: every remote track we show, with the participant it belongs to.
tuxa.remoteTracks = () => {
  const mids = new Map();
  if (pc && pc.signalingState !== 'closed') {
    for (const tr of pc.getTransceivers()) if (tr.receiver && tr.receiver.track) mids.set(tr.receiver.track, tr.mid);
  }
  return [...trackOwner].map(([track, key]) => {
    const tile = tiles.get(key);
    return {
      pid: tile ? tile.pid : String(key).split(':')[0],
      source: tile && tile.source ? tile.source : undefined,
      kind: track.kind, trackId: track.id, mid: mids.get(track) ?? null, readyState: track.readyState,
    };
  });
};

// For debugging in the console.
tuxa.debug = { media, senders, tiles, publishedTracks, outgoing, onServerMsg };
