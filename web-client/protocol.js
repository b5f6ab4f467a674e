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
  'hello', 'join', 'offer', 'answer', 'mute', 'leave', 'ping',
]);

/** Every `type` the server may send. */
export const SERVER_TYPES = Object.freeze([
  'welcome', 'joined', 'participant_joined', 'participant_left',
  'track_published', 'track_unpublished', 'mute_changed',
  'offer', 'answer', 'pong', 'error',
]);

/** Stable error codes (protocol/src/error.rs). Clients translate them. */
export const ERROR_CODES = Object.freeze([
  'bad_json', 'unknown_message', 'invalid_message', 'message_too_large',
  'unsupported_version', 'hello_required', 'already_negotiated',
  'not_joined', 'already_joined',
  'token_malformed', 'token_invalid', 'token_expired', 'token_wrong_room',
  'room_not_found', 'room_ended', 'room_full',
  'sdp_invalid', 'negotiation_glare', 'no_pending_offer',
  'idle_timeout', 'replaced',
  'unauthorized', 'bad_request', 'not_found',
  'server_shutdown', 'internal',
]);

/** Errors after which the server closes the session. */
export const FATAL_ERROR_CODES = Object.freeze([
  'unsupported_version', 'room_ended', 'idle_timeout', 'replaced', 'server_shutdown',
]);

export const ROLES = Object.freeze(['patient', 'doctor', 'nurse', 'guest']);
export const MEDIA_KINDS = Object.freeze(['audio', 'video']);
export const CONSULTATION_KINDS = Object.freeze(['visit', 'conference']);
export const LEAVE_REASONS = Object.freeze(['left', 'disconnected', 'ended']);

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

/** `join {room, token}` — enter a room with the token from the link. */
export function join(room, token) {
  return { type: 'join', room: String(room), token: String(token) };
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

/** The constructors by message type. */
export const clientMessages = Object.freeze({ hello, join, offer, answer, mute, leave, ping });

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
    && isOptStr(p.facility) && isBool(p.audio_muted) && isBool(p.video_muted);
}

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
  participant_joined: { participant: isParticipant },
  participant_left: { participant_id: isUint, reason: oneOf(LEAVE_REASONS) },
  track_published: {
    participant_id: isUint,
    track: (t) => isObj(t) && isStr(t.id) && MEDIA_KINDS.includes(t.kind),
  },
  track_unpublished: { participant_id: isUint, track_id: isStr },
  mute_changed: { participant_id: isUint, kind: oneOf(MEDIA_KINDS), muted: isBool },
  offer: { sdp: isStr },
  answer: { sdp: isStr },
  pong: { seq: isUint },
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
