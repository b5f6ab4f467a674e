// @ts-check
// tuxa signaling protocol, version 1 — the JavaScript mirror of
// protocol/src/msg.rs and protocol/src/error.rs (see docs/protocol.md).
//
// Pure ES module: no DOM, no browser globals, so that it runs both in the
// page and under Node (web-client/test/protocol.test.mjs checks it against
// protocol/fixtures/messages.json).

/** Protocol versions this client speaks, newest last. */
export const PROTOCOL_VERSIONS = Object.freeze([1]);

/** What this client calls itself in `hello`. */
export const CLIENT_NAME = 'tuxa-web/0.1';

/** Every `type` a client may send. */
export const CLIENT_TYPES = Object.freeze([
  'hello', 'join', 'consent', 'offer', 'answer', 'mute', 'leave', 'ping', 'admit', 'refuse',
  'queue_join', 'queue_resume', 'queue_cancel',
  'available', 'accept_patient', 'decline_patient', 'transfer', 'doctor_free',
  'sources', 'chat', 'mute_participant', 'remove_participant', 'lock_room', 'set_secretary',
  'stats', 'audio_only', 'end_room',
  'recording', // issue 13 (recording control)
]);

/** Every `type` the server may send. */
export const SERVER_TYPES = Object.freeze([
  'welcome', 'joined', 'waiting', 'lobby', 'participant_joined', 'participant_left',
  'track_published', 'track_unpublished', 'mute_changed',
  'offer', 'answer', 'pong', 'consent_recorded', 'error',
  'queue_status', 'queue_removed', 'patient_offer', 'patient_offer_withdrawn',
  'doctor_status', 'call_ready',
  'chat', 'mute_requested', 'room_state',
  'participant_reconnecting', 'participant_reconnected', 'link_quality',
  'audio_only', 'publish_layers', 'room_ended',
  'queue_counts', // issue 12 (console)
  'recording', // issue 13 (recording control)
]);

/** Stable error codes (protocol/src/error.rs). Clients translate them. */
export const ERROR_CODES = Object.freeze([
  'bad_json', 'unknown_message', 'invalid_message', 'message_too_large',
  'unsupported_version', 'hello_required', 'already_negotiated',
  'not_joined', 'already_joined',
  'token_malformed', 'token_invalid', 'token_expired', 'token_wrong_room', 'token_not_yet_valid',
  'room_not_found', 'room_ended', 'room_full',
  'sdp_invalid', 'negotiation_glare', 'no_pending_offer',
  'idle_timeout', 'replaced', 'media_failed', 'rate_limited',
  'forbidden', 'not_waiting', 'refused', 'removed', 'room_locked', 'consent_required',
  'login_failed', 'too_many_attempts', 'conflict', 'queue_refused', 'not_on_call',
  'unauthorized', 'bad_request', 'not_found', 'payload_too_large',
  'server_shutdown', 'internal',
  // Issue 13 (recording control).
  'recording_consent_missing', 'already_recording', 'not_recording', 'recording_unavailable',
]);

/** Errors after which the server closes the session. */
export const FATAL_ERROR_CODES = Object.freeze([
  'unsupported_version', 'room_ended', 'idle_timeout', 'replaced', 'refused', 'removed',
  'server_shutdown',
]);

export const ROLES = Object.freeze(['patient', 'doctor', 'nurse', 'guest']);
export const MEDIA_KINDS = Object.freeze(['audio', 'video']);
export const CONSULTATION_KINDS = Object.freeze(['visit', 'conference']);
/** Where the patient of a withdrawn offer went (`patient_offer_withdrawn.patient`). */
export const OFFER_AFTERWARDS = Object.freeze(['queued', 'offered_to_another', 'left']);
export const LEAVE_REASONS = Object.freeze(['left', 'disconnected', 'ended', 'removed']);
/** What a published track carries (`track.source`; absent = camera or microphone). */
export const TRACK_SOURCES = Object.freeze(['camera', 'microphone', 'screen', 'second_camera']);
/** The longest chat message, in characters (Unicode code points, as the server counts). */
export const MAX_CHAT_CHARS = 2000;

/** Largest frame the server accepts (bytes). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const KEEPALIVE_INTERVAL_MS = 15000;
export const IDLE_TIMEOUT_MS = 45000;

const ROOM_ID_RE = /^[a-z2-7]{16}$/;

/** A room id is 16 characters of a-z and 2-7. */
export function isRoomId(s) {
  return typeof s === 'string' && ROOM_ID_RE.test(s);
}

export function isFatalError(code) {
  return FATAL_ERROR_CODES.includes(code);
}

// ---------------------------------------------------------------------------
// Client → server constructors. Each returns the plain object that goes on
// the wire (JSON.stringify it, or use encode()).

/** `hello {versions, client?}` — the first message of a session. */
export function hello(versions = PROTOCOL_VERSIONS, client = CLIENT_NAME) {
  const msg = { type: 'hello', versions: [...versions] };
  if (client !== undefined && client !== null) msg.client = String(client);
  return msg;
}

// Consent text versions: the one place that names the wording a patient
// answered (per language: `vi-2026-11`, and `vi-conf-2026-11` for the
// conference consent a doctor records for a patient in the console). Change
// it with the wording in i18n.js.

/** The date of the consent wording shown on the call and queue pages and the console. */
export const CONSENT_TEXT_DATE = '2026-11';

/**
 * The `text_version` of a consent answered in `lang`: the call and queue
 * pages' wording, or with `conference` the console's conference consent.
 * @param {string} lang
 * @param {{ conference?: boolean }} [which]
 */
export function consentTextVersion(lang, { conference = false } = {}) {
  return `${lang}-${conference ? 'conf-' : ''}${CONSENT_TEXT_DATE}`;
}

/** `join {room, token}` — enter a room with the token from the link. */
export function join(room, token) {
  return { type: 'join', room: String(room), token: String(token) };
}

/**
 * `consent {text_version, remote_examination, third_parties, recording}` —
 * the patient's answer, per purpose, to the consent text of that version.
 * Patients send it before `join`; it may be sent again to change an answer.
 */
export function consent({ text_version, remote_examination, third_parties, recording }) {
  const v = String(text_version ?? '');
  if (v.length < 1 || v.length > 64) throw new TypeError('consent: text_version must be 1 to 64 characters');
  return {
    type: 'consent',
    text_version: v,
    remote_examination: Boolean(remote_examination),
    third_parties: Boolean(third_parties),
    recording: Boolean(recording),
  };
}

/** `offer {sdp}` — what the client publishes. */
export function offer(sdp) {
  return { type: 'offer', sdp: String(sdp) };
}

/** `answer {sdp}` — the answer to a server offer. */
export function answer(sdp) {
  return { type: 'answer', sdp: String(sdp) };
}

/** `mute {kind, muted}` — kind is "audio" or "video". */
export function mute(kind, muted) {
  if (!MEDIA_KINDS.includes(kind)) throw new TypeError(`mute: bad kind ${kind}`);
  return { type: 'mute', kind, muted: Boolean(muted) };
}

/** `leave` — leave the room; the server closes the session. */
export function leave() {
  return { type: 'leave' };
}

/** `ping {seq}` — keepalive, answered by `pong` with the same seq. */
export function ping(seq = 0) {
  return { type: 'ping', seq: Number(seq) };
}

// A participant id: a number, or its decimal string (tile and lobby entries
// keep ids as strings).
function checkParticipantId(what, id) {
  const n = typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : id;
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${what}: bad participant id ${id}`);
  return n;
}

/** `admit {participant_id}` — a host lets a waiting participant in. */
export function admit(participantId) {
  return { type: 'admit', participant_id: checkParticipantId('admit', participantId) };
}

/** `refuse {participant_id}` — a host turns a waiting participant away. */
export function refuse(participantId) {
  return { type: 'refuse', participant_id: checkParticipantId('refuse', participantId) };
}

function checkStr(what, v, max) {
  if (typeof v !== 'string' || v.length > max) throw new TypeError(`${what}: expected a string of at most ${max}`);
  return v;
}

function checkUint(what, v) {
  if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${what}: expected a whole number`);
  return v;
}

/** `queue_join` — a patient takes a place in an on-call queue (after `consent`). */
export function queue_join({ queue, name, phone = '', reason = '' }) {
  return {
    type: 'queue_join',
    queue: checkUint('queue_join', queue),
    name: checkStr('queue_join name', name, 100),
    phone: checkStr('queue_join phone', phone, 30),
    reason: checkStr('queue_join reason', reason, 500),
  };
}

/** `queue_resume` — takes a place back after the link dropped (2 minutes). */
export function queue_resume(ticket) {
  return { type: 'queue_resume', ticket: checkStr('queue_resume', ticket, 128) };
}

/** `queue_cancel` — gives the place up. */
export function queue_cancel(ticket) {
  return { type: 'queue_cancel', ticket: checkStr('queue_cancel', ticket, 128) };
}

/** `available` — a signed-in doctor on call takes patients from these queues ([] = stops). */
export function available(queues) {
  if (!Array.isArray(queues)) throw new TypeError('available: expected a list of queue ids');
  return { type: 'available', queues: queues.map((q) => checkUint('available', q)) };
}

export function accept_patient(ticket) {
  return { type: 'accept_patient', ticket: checkStr('accept_patient', ticket, 128) };
}

export function decline_patient(ticket) {
  return { type: 'decline_patient', ticket: checkStr('decline_patient', ticket, 128) };
}

/**
 * `transfer` — to a queue ({queue}) or a doctor ({doctor}), exactly one.
 * @param {string} ticket
 * @param {{ queue?: number, doctor?: number }} [to]
 */
export function transfer(ticket, { queue, doctor } = {}) {
  if ((queue === undefined) === (doctor === undefined)) {
    throw new TypeError('transfer: name exactly one of queue or doctor');
  }
  /** @type {{ type: 'transfer', ticket: string, queue?: number, doctor?: number }} */
  const msg = { type: 'transfer', ticket: checkStr('transfer', ticket, 128) };
  if (queue !== undefined) msg.queue = checkUint('transfer queue', queue);
  if (doctor !== undefined) msg.doctor = checkUint('transfer doctor', doctor);
  return msg;
}

export function doctor_free() {
  return { type: 'doctor_free' };
}

/**
 * `sources {sources: {mid: source}}` — what each of our sending m-lines
 * carries. Sent before the offer that adds a screen share or second camera;
 * m-lines not named are the camera (video) or microphone (audio).
 */
export function sources(map) {
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw new TypeError('sources: expected {mid: source}');
  const out = {};
  for (const [mid, src] of Object.entries(map)) {
    if (mid.length < 1 || mid.length > 32) throw new TypeError(`sources: bad mid ${mid}`);
    if (!TRACK_SOURCES.includes(src)) throw new TypeError(`sources: bad source ${src}`);
    out[mid] = src;
  }
  if (Object.keys(out).length > 16) throw new TypeError('sources: at most 16');
  return { type: 'sources', sources: out };
}

/**
 * `chat {text}` — a message to everyone in the room. The text is trimmed
 * (as the server does) and must then be 1 to MAX_CHAT_CHARS characters.
 */
export function chat(text) {
  const v = chatTextProblem(text);
  if (v) throw new TypeError(`chat: ${v}`);
  return { type: 'chat', text: String(text).trim() };
}

/** `mute_participant {participant_id, kind}` — the chair asks someone to mute. */
export function mute_participant(participantId, kind) {
  if (!MEDIA_KINDS.includes(kind)) throw new TypeError(`mute_participant: bad kind ${kind}`);
  return { type: 'mute_participant', participant_id: checkParticipantId('mute_participant', participantId), kind };
}

/** `remove_participant {participant_id}` — the chair removes someone (their link is barred). */
export function remove_participant(participantId) {
  return { type: 'remove_participant', participant_id: checkParticipantId('remove_participant', participantId) };
}

/** `lock_room {locked}` — nobody new enters while locked. */
export function lock_room(locked) {
  return { type: 'lock_room', locked: Boolean(locked) };
}

/** `set_secretary {participant_id | null}` — a doctor or nurse in the room, or nobody. */
export function set_secretary(participantId) {
  return {
    type: 'set_secretary',
    participant_id: participantId === null || participantId === undefined
      ? null : checkParticipantId('set_secretary', participantId),
  };
}

/** Bounds the server enforces on `stats` (protocol/src/msg.rs, LinkStats). */
export const STATS_LIMITS = Object.freeze({ rtt_ms: 60000, jitter_ms: 60000, frame_height: 4320 });
export const LINK_GRADES = Object.freeze(['good', 'fair', 'poor']);

/**
 * `stats {stats: {rtt_ms?, loss_pct?, jitter_ms?, frame_height?, audio_only}}`
 * — what the client measures of its link. Figures the browser did not give
 * (undefined, NaN) are left out; figures are clamped to the server's bounds
 * and rounded (integers but loss, a percentage).
 */
/**
 * @param {{ rtt_ms?: number, loss_pct?: number, jitter_ms?: number, frame_height?: number, audio_only?: boolean }} [sample]
 */
export function stats({ rtt_ms, loss_pct, jitter_ms, frame_height, audio_only } = {}) {
  /** @type {{ rtt_ms?: number, loss_pct?: number, jitter_ms?: number, frame_height?: number, audio_only?: boolean }} */
  const out = {};
  const int = (v, max) => Math.min(max, Math.max(0, Math.round(v)));
  if (Number.isFinite(rtt_ms)) out.rtt_ms = int(rtt_ms, STATS_LIMITS.rtt_ms);
  if (Number.isFinite(loss_pct)) out.loss_pct = Math.min(100, Math.max(0, Math.round(loss_pct * 10) / 10));
  if (Number.isFinite(jitter_ms)) out.jitter_ms = int(jitter_ms, STATS_LIMITS.jitter_ms);
  if (Number.isFinite(frame_height)) out.frame_height = int(frame_height, STATS_LIMITS.frame_height);
  out.audio_only = Boolean(audio_only);
  return { type: 'stats', stats: out };
}

/**
 * `audio_only {on}` — the participant wants audio only (`true`) or video
 * again: the server stops (resumes) sending them video; the client stops
 * (resumes) sending its camera.
 */
export function audio_only(on) {
  return { type: 'audio_only', on: Boolean(on) };
}

/**
 * `end_room {}` — ends the consultation for everyone (the doctor of a visit,
 * the chair of a conference or, with no chair in the room, a doctor).
 */
export function end_room() {
  return { type: 'end_room' };
}

// ---- issue 13 (recording control) ----
/** What `recording` asks for. */
export const RECORDING_ACTIONS = Object.freeze(['start', 'stop']);
/** A room's recording (`recording.state`). */
export const RECORDING_STATES = Object.freeze(['off', 'on', 'paused']);
/** Why recording is paused or stopped (`recording.reason`). */
export const RECORDING_REASONS = Object.freeze([
  'stopped', 'consent_withdrawn', 'patient_without_consent', 'fault', 'room_ended', 'server_shutdown',
]);

/**
 * `recording {action}` — starts or stops recording the room (the chair of a
 * conference or, with no chair in the room, a doctor; the doctor of a visit).
 */
export function recording(action) {
  if (!RECORDING_ACTIONS.includes(action)) throw new TypeError(`recording action: ${action}`);
  return { type: 'recording', action };
}

/**
 * A room's recording as `recording` says it.
 * @typedef {{ state: string, since?: number | null, reason?: string | null, by?: string | null }} Recording
 */

/**
 * The recording a client assumes until `recording` says otherwise.
 * @type {Readonly<Recording>}
 */
export const DEFAULT_RECORDING = Object.freeze({ state: 'off' });

/**
 * Whether `you` may start or stop recording: the server's rule is the one
 * for ending the room (the chair while one is in the room, otherwise a doctor).
 */
export function mayRecord(roomState, you) {
  return mayEnd(roomState, you);
}
// ---- end issue 13 (recording control) ----

/** Why a consultation ended (`room_ended.reason`). */
export const END_REASONS = Object.freeze(['ended', 'abandoned', 'server_restart']);

/** Why the server sends a subscriber no video (`audio_only.reason`). */
export const AUDIO_ONLY_REASONS = Object.freeze(['weak_network', 'requested']);

/** The constructors by message type. */
export const clientMessages = Object.freeze({
  hello, join, consent, offer, answer, mute, leave, ping, admit, refuse,
  queue_join, queue_resume, queue_cancel,
  available, accept_patient, decline_patient, transfer, doctor_free,
  sources, chat, mute_participant, remove_participant, lock_room, set_secretary,
  stats, audio_only, end_room,
  recording, // issue 13
});

/** Serialises a client message for the WebSocket. */
export function encode(msg) {
  if (!msg || !CLIENT_TYPES.includes(msg.type)) {
    throw new TypeError(`not a client message: ${msg && msg.type}`);
  }
  return JSON.stringify(msg);
}

// ---------------------------------------------------------------------------
// Server → client parsing.

export class ProtocolParseError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolParseError';
  }
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStr = (v) => typeof v === 'string';
const isBool = (v) => typeof v === 'boolean';
const isUint = (v) => Number.isSafeInteger(v) && v >= 0;
const isOptStr = (v) => v === undefined || v === null || isStr(v);
const oneOf = (list) => (v) => list.includes(v);

function isParticipant(p) {
  return isObj(p) && isUint(p.id) && isStr(p.name) && ROLES.includes(p.role)
    && isOptStr(p.facility) && isOptStr(p.licence_number)
    && isBool(p.audio_muted) && isBool(p.video_muted);
}

const isOptId = (v) => v === undefined || v === null || isUint(v);

function isRoom(r) {
  return isObj(r) && isStr(r.id) && CONSULTATION_KINDS.includes(r.kind) && isStr(r.title);
}

// Field checks per server message type. Extra fields are tolerated (a newer
// server may add optional ones); missing or wrongly typed ones are not.
const SERVER_SCHEMAS = {
  welcome: {
    version: isUint, server: isStr, keepalive_interval_ms: isUint, idle_timeout_ms: isUint,
  },
  joined: {
    room: isRoom, you: isParticipant,
    participants: (v) => Array.isArray(v) && v.every(isParticipant),
  },
  // Patients and guests, instead of `joined`: wait for a host to admit them.
  waiting: { room: isRoom, you: isParticipant },
  // To hosts: everyone waiting, oldest first.
  lobby: { waiting: (v) => Array.isArray(v) && v.every(isParticipant) },
  participant_joined: { participant: isParticipant },
  participant_left: { participant_id: isUint, reason: oneOf(LEAVE_REASONS) },
  track_published: {
    participant_id: isUint,
    track: (t) => isObj(t) && isStr(t.id) && MEDIA_KINDS.includes(t.kind)
      && (t.source === undefined || TRACK_SOURCES.includes(t.source)),
  },
  track_unpublished: { participant_id: isUint, track_id: isStr },
  mute_changed: { participant_id: isUint, kind: oneOf(MEDIA_KINDS), muted: isBool },
  offer: { sdp: isStr },
  answer: { sdp: isStr },
  pong: { seq: isUint },
  consent_recorded: { text_version: isStr, at: isUint },
  queue_status: {
    ticket: isStr, queue: isUint, state: oneOf(['queued', 'offered', 'waiting_for_doctor']),
    position: (v) => v === undefined || isUint(v),
    estimate_secs: (v) => v === undefined || isUint(v),
  },
  queue_removed: { ticket: isStr, reason: isStr },
  patient_offer: {
    ticket: isStr, queue: isUint, name: isStr, phone: isStr, reason: isStr,
    waited_secs: isUint, expires_in_secs: isUint, transferred: isBool,
  },
  patient_offer_withdrawn: {
    ticket: isStr, reason: isStr,
    patient: (v) => v === undefined || OFFER_AFTERWARDS.includes(v),
  },
  doctor_status: { available: isBool, queues: (v) => Array.isArray(v) && v.every(isUint), on_call: isBool },
  call_ready: { ticket: isStr, url: isStr },
  // In the room: chat (to everyone, the sender too), the chair's mute
  // request (to its target), and who chairs / takes minutes / whether locked.
  chat: { from: isUint, name: isStr, text: isStr, at: isUint },
  mute_requested: { kind: oneOf(MEDIA_KINDS), by: isUint },
  room_state: { locked: isBool, chair: isOptId, secretary: isOptId },
  // A participant's connection dropped (their place is kept for a while),
  // and came back; to moderators, a participant's link as they measure it.
  participant_reconnecting: { participant_id: isUint },
  participant_reconnected: { participant_id: isUint },
  link_quality: {
    participant_id: isUint,
    stats: (v) => isObj(v) && isBool(v.audio_only)
      && ['rtt_ms', 'jitter_ms', 'frame_height'].every((k) => v[k] === undefined || isUint(v[k]))
      && (v.loss_pct === undefined || (typeof v.loss_pct === 'number' && v.loss_pct >= 0 && v.loss_pct <= 100)),
    grade: oneOf(LINK_GRADES),
  },
  // To a subscriber: the server stopped (on) or resumed sending it video,
  // and why; to a publisher: which simulcast layers (rids) of an m-line
  // anyone receives (the others are paused).
  audio_only: { on: isBool, reason: oneOf(AUDIO_ONLY_REASONS) },
  publish_layers: { mid: isStr, active: (v) => Array.isArray(v) && v.every(isStr) },
  // The consultation is over: who ended it (if a person did) and how to
  // reach the facility; the server closes the session after it.
  room_ended: {
    reason: oneOf(END_REASONS),
    by: isOptStr,
    contact: (v) => v === undefined || (isObj(v) && isStr(v.name) && isOptStr(v.phone)),
  },
  // Issue 13: whether the room is recorded (to the room and its lobby).
  recording: {
    state: oneOf(RECORDING_STATES),
    since: (v) => v === undefined || isUint(v),
    reason: (v) => v === undefined || RECORDING_REASONS.includes(v),
    by: isOptStr,
  },
  // Issue 12 (console): to staff on call, a queue's counts (no patient data).
  queue_counts: {
    queue: isUint, waiting: isUint, offered: isUint, doctors_available: isUint,
  },
  // An unknown code from a newer server is still an error to show.
  error: { code: isStr, message: isStr, in_reply_to: isOptStr },
};

/**
 * Parses one text frame from the server. Returns the message object, or
 * throws ProtocolParseError if it is not JSON, not an object with a known
 * `type`, or has missing / wrongly typed fields.
 */
export function parseServerMsg(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ProtocolParseError(`not JSON: ${e.message}`);
  }
  if (!isObj(value) || !isStr(value.type)) {
    throw new ProtocolParseError('expected a JSON object with a string "type"');
  }
  const schema = Object.prototype.hasOwnProperty.call(SERVER_SCHEMAS, value.type)
    ? SERVER_SCHEMAS[value.type] : null;
  if (!schema) {
    throw new ProtocolParseError(`unknown server message type ${JSON.stringify(value.type.slice(0, 40))}`);
  }
  for (const [field, check] of Object.entries(schema)) {
    if (!check(value[field])) {
      throw new ProtocolParseError(`malformed ${value.type} message: bad or missing "${field}"`);
    }
  }
  return value;
}

/**
 * Parses one server frame and hands it to `handle`. A malformed frame or a
 * handler that throws is logged, never thrown on: one bad message must not
 * stop the page.
 */
export function dispatchServerFrame(data, handle, log) {
  let msg;
  try {
    msg = parseServerMsg(data);
  } catch (e) {
    log('bad server message:', e.message, String(data).slice(0, 200));
    return;
  }
  try {
    handle(msg);
  } catch (e) {
    log('handling', msg.type, 'failed', e);
  }
}

// ---------------------------------------------------------------------------
// In-call helpers (pure, tested under Node): who may moderate, chat limits,
// chat times.

/** The room state a client assumes until `room_state` says otherwise. */
export const DEFAULT_ROOM_STATE = Object.freeze({ locked: false, chair: null, secretary: null });

/**
 * Whether `you` may moderate (admit, refuse, mute others, remove, lock, name
 * the secretary) — the server's rule: the chair, while a chair is in the
 * room; otherwise any doctor. `you` is our participant record (`id`, `role`).
 */
export function mayModerate(roomState, you) {
  if (!you || you.id === undefined || you.id === null) return false;
  const chair = roomState && roomState.chair !== undefined ? roomState.chair : null;
  if (chair !== null) return String(chair) === String(you.id);
  return you.role === 'doctor';
}

/**
 * Whether `you` may end the consultation for everyone (`end_room`): the
 * server's rule is the moderators' — the chair while one is in the room,
 * otherwise a doctor (in a visit, its doctor).
 */
export function mayEnd(roomState, you) {
  return mayModerate(roomState, you);
}

/** Who may be named secretary: a doctor or nurse in the room. */
export function maySecretary(participant) {
  return !!participant && (participant.role === 'doctor' || participant.role === 'nurse');
}

/** Characters as the server counts them (Unicode scalar values, not UTF-16 units). */
export function charCount(text) {
  let n = 0;
  for (const _ of String(text)) n += 1; // eslint-disable-line no-unused-vars
  return n;
}

/** Why a chat text cannot be sent ('empty' | 'too_long'), or null if it can. */
export function chatTextProblem(text) {
  if (typeof text !== 'string') return 'empty';
  const n = charCount(text.trim());
  if (n === 0) return 'empty';
  if (n > MAX_CHAT_CHARS) return 'too_long';
  return null;
}

/** The time zone chat times are shown in (the province's). */
export const CHAT_TIME_ZONE = 'Asia/Ho_Chi_Minh';

/**
 * A chat message's time (`at`, Unix seconds) in Vietnam time: "14:05", or
 * "24/11 14:05" when it is not the same Vietnam day as `nowSecs`.
 */
export function formatChatTime(at, localeTag = 'vi-VN', nowSecs = Date.now() / 1000) {
  const d = new Date(at * 1000);
  const day = (x) => new Intl.DateTimeFormat('en-CA', { timeZone: CHAT_TIME_ZONE, year: 'numeric', month: '2-digit', day: '2-digit' }).format(x);
  const hm = new Intl.DateTimeFormat(localeTag, {
    timeZone: CHAT_TIME_ZONE, hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).format(d);
  if (day(d) === day(new Date(nowSecs * 1000))) return hm;
  // Day/month (both languages write the day first; ICU's vi pattern is 25-11).
  const [y, m, dd] = day(d).split('-'); // eslint-disable-line no-unused-vars
  return `${dd}/${m} ${hm}`;
}

/** Sources that get their own tile (not the participant's camera or microphone). */
export function isExtraSource(source) {
  return source === 'screen' || source === 'second_camera';
}
