// Checks web-client/protocol.js and i18n.js against the Rust side:
//   node --test web-client/test/
// - every client fixture in protocol/fixtures/messages.json is exactly what
//   protocol.js's constructor for that type produces;
// - every server fixture is accepted by parseServerMsg; unknown types and
//   malformed messages are rejected;
// - every error code of protocol/src/error.rs is in ERROR_CODES and has a
//   translation in both languages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import * as P from '../protocol.js';
import { ERROR_TEXTS, STRINGS, ROLE_NAMES, LANGS, errorText, t, setLang, getLang } from '../i18n.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const fixtures = JSON.parse(readFileSync(join(repo, 'protocol', 'fixtures', 'messages.json'), 'utf8'));
const errorRs = readFileSync(join(repo, 'protocol', 'src', 'error.rs'), 'utf8');

/** Builds a client message with protocol.js's constructor from a fixture's fields. */
function construct(f) {
  switch (f.type) {
    case 'hello': return P.hello(f.versions, f.client);
    case 'join': return P.join(f.room, f.token);
    case 'consent': return P.consent(f);
    case 'offer': return P.offer(f.sdp);
    case 'answer': return P.answer(f.sdp);
    case 'mute': return P.mute(f.kind, f.muted);
    case 'leave': return P.leave();
    case 'ping': return P.ping(f.seq);
    case 'admit': return P.admit(f.participant_id);
    case 'refuse': return P.refuse(f.participant_id);
    case 'queue_join': return P.queue_join(f);
    case 'queue_resume': return P.queue_resume(f.ticket);
    case 'queue_cancel': return P.queue_cancel(f.ticket);
    case 'available': return P.available(f.queues);
    case 'accept_patient': return P.accept_patient(f.ticket);
    case 'decline_patient': return P.decline_patient(f.ticket);
    case 'transfer': return P.transfer(f.ticket, { queue: f.queue, doctor: f.doctor });
    case 'doctor_free': return P.doctor_free();
    case 'sources': return P.sources(f.sources);
    case 'chat': return P.chat(f.text);
    case 'mute_participant': return P.mute_participant(f.participant_id, f.kind);
    case 'remove_participant': return P.remove_participant(f.participant_id);
    case 'lock_room': return P.lock_room(f.locked);
    case 'set_secretary': return P.set_secretary(f.participant_id);
    case 'stats': return P.stats(f.stats);
    case 'audio_only': return P.audio_only(f.on);
    case 'end_room': return P.end_room();
    case 'recording': return P.recording(f.action);
    default: throw new Error(`no constructor for ${f.type}`);
  }
}

/** The snake_case codes the Rust file maps its variants to (`=> "code"`). */
function rustErrorCodes() {
  const codes = [...errorRs.matchAll(/=>\s*"([a-z0-9_]+)"/g)].map((m) => m[1]);
  assert.ok(codes.length >= 20, `found only ${codes.length} codes in error.rs`);
  return codes;
}

test('fixtures cover every client and server type', () => {
  assert.deepEqual(new Set(fixtures.client.map((m) => m.type)), new Set(P.CLIENT_TYPES));
  assert.deepEqual(new Set(fixtures.server.map((m) => m.type)), new Set(P.SERVER_TYPES));
});

test('client constructors produce the golden JSON', () => {
  for (const f of fixtures.client) {
    const built = construct(f);
    assert.deepEqual(built, f, `constructor for ${f.type}`);
    // And the same bytes modulo key order: compare parsed encodings.
    assert.deepEqual(JSON.parse(P.encode(built)), f);
  }
});

test('hello defaults to the supported versions and this client name', () => {
  assert.deepEqual(P.hello(), { type: 'hello', versions: [1], client: P.CLIENT_NAME });
  assert.deepEqual(P.PROTOCOL_VERSIONS, [1]);
  assert.deepEqual(P.hello([1], null), { type: 'hello', versions: [1] });
});

test('clientMessages has a constructor for every client type', () => {
  assert.deepEqual(Object.keys(P.clientMessages).sort(), [...P.CLIENT_TYPES].sort());
});

test('mute rejects an unknown kind', () => {
  assert.throws(() => P.mute('smell', true), TypeError);
});

test('admit and refuse take a participant id (number or decimal string)', () => {
  assert.deepEqual(P.admit('12'), { type: 'admit', participant_id: 12 });
  assert.deepEqual(P.refuse(3), { type: 'refuse', participant_id: 3 });
  for (const bad of [undefined, null, '', 'abc', -1, 1.5, '1e3', {}]) {
    assert.throws(() => P.admit(bad), TypeError, String(bad));
    assert.throws(() => P.refuse(bad), TypeError, String(bad));
  }
});

test('stats leaves out what the browser did not measure and clamps the rest', () => {
  assert.deepEqual(P.stats({ rtt_ms: 123.6, loss_pct: NaN, audio_only: 0 }), {
    type: 'stats', stats: { rtt_ms: 124, audio_only: false },
  });
  assert.deepEqual(P.stats({ rtt_ms: 1e9, loss_pct: 104.2, jitter_ms: -3, frame_height: 9999, audio_only: true }), {
    type: 'stats', stats: { rtt_ms: 60000, loss_pct: 100, jitter_ms: 0, frame_height: 4320, audio_only: true },
  });
  assert.deepEqual(P.stats({ loss_pct: 2.345 }).stats, { loss_pct: 2.3, audio_only: false });
});

test('encode refuses non-client messages', () => {
  assert.throws(() => P.encode({ type: 'welcome' }), TypeError);
});

test('every server fixture parses', () => {
  for (const f of fixtures.server) {
    const text = JSON.stringify(f);
    const msg = P.parseServerMsg(text);
    assert.deepEqual(msg, f, text);
  }
});

test('unknown server types are rejected', () => {
  for (const text of [
    '{"type":"launch_missiles"}',
    '{"type":"hello","versions":[1]}', // a client type
    '{"type":"__proto__"}',
    '{"type":"toString"}',
  ]) {
    assert.throws(() => P.parseServerMsg(text), P.ProtocolParseError, text);
  }
});

test('malformed server messages are rejected', () => {
  for (const text of [
    'not json',
    '[1,2]',
    'null',
    '{"type":5}',
    '{"version":1}',
    '{"type":"welcome","version":1}',
    '{"type":"pong"}',
    '{"type":"pong","seq":"7"}',
    '{"type":"offer"}',
    '{"type":"participant_left","participant_id":3,"reason":"vanished"}',
    '{"type":"mute_changed","participant_id":1,"kind":"smell","muted":true}',
    '{"type":"joined","room":{"id":"abcdefghijklmnop","kind":"visit","title":"x"},"you":{"id":1,"name":"a","role":"chief","audio_muted":false,"video_muted":false},"participants":[]}',
    '{"type":"error","message":"no code"}',
    '{"type":"waiting","room":{"id":"abcdefghijklmnop","kind":"visit","title":"x"}}',
    '{"type":"waiting","room":{"id":"abcdefghijklmnop","kind":"visit","title":"x"},"you":{"id":1,"name":"a","role":"chief","audio_muted":false,"video_muted":false}}',
    '{"type":"lobby"}',
    '{"type":"lobby","waiting":{}}',
    '{"type":"lobby","waiting":[{"id":"1","name":"a","role":"patient","audio_muted":false,"video_muted":false}]}',
  ]) {
    assert.throws(() => P.parseServerMsg(text), P.ProtocolParseError, text);
  }
});

test('ERROR_CODES matches protocol/src/error.rs', () => {
  assert.deepEqual([...P.ERROR_CODES].sort(), [...new Set(rustErrorCodes())].sort());
});

test('fatal codes match is_fatal in error.rs', () => {
  const body = errorRs.slice(errorRs.indexOf('fn is_fatal'));
  const variants = [...body.slice(0, body.indexOf('}')).matchAll(/ErrorCode::(\w+)/g)].map((m) => m[1]);
  const snake = variants.map((v) => v.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase());
  assert.deepEqual([...P.FATAL_ERROR_CODES].sort(), snake.sort());
});

test('every error code has a translation in both languages', () => {
  for (const code of rustErrorCodes()) {
    for (const lang of LANGS) {
      const text = ERROR_TEXTS[lang][code];
      assert.ok(typeof text === 'string' && text.length > 3, `${lang}: no translation for ${code}`);
    }
    assert.notEqual(ERROR_TEXTS.vi[code], ERROR_TEXTS.en[code], `${code}: vi and en are identical`);
  }
  assert.match(errorText('token_expired', 'vi'), /^Đường dẫn đã hết hạn/);
  assert.match(errorText('token_expired', 'en'), /^This link has expired/);
});

test('both languages have the same UI keys, roles and error keys', () => {
  assert.deepEqual(Object.keys(STRINGS.en).sort(), Object.keys(STRINGS.vi).sort());
  assert.deepEqual(Object.keys(ERROR_TEXTS.en).sort(), Object.keys(ERROR_TEXTS.vi).sort());
  for (const lang of LANGS) assert.deepEqual(Object.keys(ROLE_NAMES[lang]).sort(), [...P.ROLES].sort());
});

test('language switching works without a DOM', () => {
  assert.equal(getLang(), 'vi');
  assert.equal(t('leave'), 'Rời phòng');
  setLang('en');
  assert.equal(t('leave'), 'Leave');
  setLang('xx');
  assert.equal(getLang(), 'en');
  setLang('vi');
});

test('room ids', () => {
  assert.ok(P.isRoomId('abcdefghijklmnop'));
  assert.ok(P.isRoomId('k3x9q2m4a7b5c6d8') === false); // 9, 8 and 0/1 are not base32 here
  assert.ok(P.isRoomId('k3x2q2m4a7b5c6d7'));
  assert.ok(!P.isRoomId('ABCDEFGHIJKLMNOP'));
  assert.ok(!P.isRoomId('short'));
});

test('every error code app.js can show has a translation', () => {
  const app = readFileSync(join(here, '..', 'app.js'), 'utf8');
  const codes = new Set([
    // fail('x'), fail(cond ? 'x' : 'y'), {code: 'x'}, {error: 'x'}, … ? 'x' : 'unknown_error'
    ...[...app.matchAll(/fail\(([^)]*)\)/g)].flatMap((m) => [...m[1].matchAll(/'([a-z_]+)'/g)].map((q) => q[1])),
    ...[...app.matchAll(/(?:code|error): '([a-z_]+)'/g)].map((m) => m[1]),
    ...[...app.matchAll(/\? '([a-z_]+)' : '(unknown_error)'/g)].flatMap((m) => [m[1], m[2]]),
  ]);
  assert.ok(codes.size >= 4, `found ${[...codes]}`);
  for (const code of codes) {
    for (const lang of LANGS) assert.ok(ERROR_TEXTS[lang][code], `${lang}: no text for ${code}`);
  }
});

test('every UI string key used by index.html and app.js exists in both languages', () => {
  const html = readFileSync(join(here, '..', 'index.html'), 'utf8');
  const app = readFileSync(join(here, '..', 'app.js'), 'utf8');
  const keys = new Set([
    ...[...html.matchAll(/data-i18n="([a-z_]+)"/g)].map((m) => m[1]),
    ...[...app.matchAll(/\bt\('([a-z_]+)'\)/g)].map((m) => m[1]),
    ...[...app.matchAll(/key: '([a-z_]+)'/g)].map((m) => m[1]),
  ]);
  assert.ok(keys.size > 20, `found only ${keys.size} keys`);
  for (const key of keys) {
    for (const lang of LANGS) assert.ok(STRINGS[lang][key], `${lang}: no string ${key}`);
  }
});

test('the consent text version is named in one place, per language and wording', () => {
  // The server records what it is given; the browser tests and the console's
  // records compare these exact strings.
  assert.equal(P.consentTextVersion('vi'), 'vi-2026-11');
  assert.equal(P.consentTextVersion('en'), 'en-2026-11');
  assert.equal(P.consentTextVersion('vi', { conference: true }), 'vi-conf-2026-11');
  for (const lang of LANGS) {
    const v = P.consentTextVersion(lang, { conference: true });
    assert.doesNotThrow(() => P.consent({ text_version: v, remote_examination: true }));
  }
});
