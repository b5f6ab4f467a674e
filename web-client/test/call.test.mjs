// The join page's in-call helpers (protocol.js): who may moderate, chat
// limits and times, and the new messages' constructors and schemas.
//   node --test web-client/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { readFileSync } from 'node:fs';

import * as P from '../protocol.js';
import { STRINGS, LANGS } from '../i18n.js';

const doctor = { id: 2, role: 'doctor' };
const nurse = { id: 3, role: 'nurse' };
const patient = { id: 4, role: 'patient' };

test('who may moderate: the chair while present, otherwise any doctor', () => {
  const noChair = { locked: false, chair: null, secretary: null };
  assert.equal(P.mayModerate(noChair, doctor), true);
  assert.equal(P.mayModerate(noChair, nurse), false);
  assert.equal(P.mayModerate(noChair, patient), false);
  assert.equal(P.mayModerate(P.DEFAULT_ROOM_STATE, doctor), true, 'before any room_state');

  const chaired = { locked: true, chair: 7, secretary: 3 };
  assert.equal(P.mayModerate(chaired, doctor), false, 'a doctor while the chair is present');
  assert.equal(P.mayModerate(chaired, { id: 7, role: 'doctor' }), true);
  // A nurse may chair (from the link); ids as strings compare the same.
  assert.equal(P.mayModerate({ ...chaired, chair: 3 }, { id: '3', role: 'nurse' }), true);
  assert.equal(P.mayModerate(chaired, null), false);
  assert.equal(P.mayModerate(noChair, { role: 'doctor' }), false, 'no id yet (before joined)');
  assert.equal(P.mayModerate({ locked: false }, doctor), true, 'chair field absent');
});

test('who may be secretary: doctors and nurses', () => {
  assert.equal(P.maySecretary(doctor), true);
  assert.equal(P.maySecretary(nurse), true);
  assert.equal(P.maySecretary(patient), false);
  assert.equal(P.maySecretary({ role: 'guest' }), false);
  assert.equal(P.maySecretary(undefined), false);
});

test('chat text: trimmed, 1 to 2000 characters as the server counts them', () => {
  assert.equal(P.chatTextProblem(''), 'empty');
  assert.equal(P.chatTextProblem('   \n\t'), 'empty');
  assert.equal(P.chatTextProblem(undefined), 'empty');
  assert.equal(P.chatTextProblem('Chào'), null);
  assert.equal(P.chatTextProblem('a'.repeat(2000)), null);
  assert.equal(P.chatTextProblem('a'.repeat(2001)), 'too_long');
  assert.equal(P.chatTextProblem(` ${'a'.repeat(2000)} `), null, 'spaces around are trimmed');
  // 2000 emoji are 4000 UTF-16 units but 2000 characters.
  assert.equal(P.charCount('🩺'.repeat(2000)), 2000);
  assert.equal(P.chatTextProblem('🩺'.repeat(2000)), null);
  assert.equal(P.chatTextProblem('🩺'.repeat(2001)), 'too_long');
  assert.equal(P.charCount('Việt'), 4);
  assert.deepEqual(P.chat('  Đề nghị chụp CT  '), { type: 'chat', text: 'Đề nghị chụp CT' });
  assert.throws(() => P.chat('  '), TypeError);
  assert.throws(() => P.chat('x'.repeat(2001)), TypeError);
});

test('chat times are Vietnam time, with the date when not today', () => {
  const at = 1764060300; // 2025-11-25 08:45 UTC = 15:45 in Hà Nội
  assert.equal(P.formatChatTime(at, 'vi-VN', at + 60), '15:45');
  assert.equal(P.formatChatTime(at, 'en-GB', at + 60), '15:45');
  // 23:30 UTC is 06:30 the next day in Vietnam: the same Vietnam day as 07:00.
  const late = Date.UTC(2025, 10, 25, 23, 30) / 1000;
  assert.equal(P.formatChatTime(late, 'vi-VN', late + 1800), '06:30');
  // A message from the day before shows its date.
  const shown = P.formatChatTime(at, 'en-GB', at + 86400);
  assert.match(shown, /^25\/11 15:45$/);
  assert.match(P.formatChatTime(at, 'vi-VN', at + 86400), /^25\/11 15:45$/);
});

test('moderation and sources constructors check their input', () => {
  assert.deepEqual(P.mute_participant('4', 'audio'), { type: 'mute_participant', participant_id: 4, kind: 'audio' });
  assert.throws(() => P.mute_participant(4, 'smell'), TypeError);
  assert.throws(() => P.remove_participant('x'), TypeError);
  assert.deepEqual(P.lock_room(1), { type: 'lock_room', locked: true });
  assert.deepEqual(P.set_secretary(undefined), { type: 'set_secretary', participant_id: null });
  assert.deepEqual(P.set_secretary('3'), { type: 'set_secretary', participant_id: 3 });
  assert.deepEqual(P.sources({ 3: 'screen' }), { type: 'sources', sources: { 3: 'screen' } });
  assert.throws(() => P.sources({ 3: 'projector' }), TypeError);
  assert.throws(() => P.sources({ '': 'screen' }), TypeError);
  assert.throws(() => P.sources([]), TypeError);
  assert.equal(P.isExtraSource('screen'), true);
  assert.equal(P.isExtraSource('second_camera'), true);
  assert.equal(P.isExtraSource('camera'), false);
  assert.equal(P.isExtraSource(undefined), false);
});

test('the new server messages parse, and malformed ones do not', () => {
  const ok = [
    '{"type":"room_state","locked":false,"chair":null,"secretary":null}',
    '{"type":"room_state","locked":true,"chair":1,"secretary":3}',
    '{"type":"chat","from":3,"name":"BS. Bình","text":"<b>x</b>","at":1764060300}',
    '{"type":"mute_requested","kind":"video","by":1}',
    '{"type":"track_published","participant_id":3,"track":{"id":"3-2","kind":"video","source":"second_camera"}}',
    '{"type":"participant_left","participant_id":6,"reason":"removed"}',
    '{"type":"participant_joined","participant":{"id":5,"name":"A","role":"doctor","licence_number":"000733/AH-CCHN","audio_muted":false,"video_muted":false}}',
  ];
  for (const text of ok) assert.deepEqual(P.parseServerMsg(text), JSON.parse(text), text);
  const bad = [
    '{"type":"room_state","locked":"yes","chair":null,"secretary":null}',
    '{"type":"room_state","locked":false,"chair":"1","secretary":null}',
    '{"type":"chat","from":3,"name":"x","at":1}',
    '{"type":"chat","from":3,"name":"x","text":5,"at":1}',
    '{"type":"mute_requested","kind":"smell","by":1}',
    '{"type":"track_published","participant_id":3,"track":{"id":"3-2","kind":"video","source":"projector"}}',
    '{"type":"participant_joined","participant":{"id":5,"name":"A","role":"doctor","licence_number":7,"audio_muted":false,"video_muted":false}}',
  ];
  for (const text of bad) assert.throws(() => P.parseServerMsg(text), P.ProtocolParseError, text);
  assert.equal(P.isFatalError('removed'), true);
  assert.equal(P.isFatalError('room_locked'), false);
});

// The phone's control bar and the one-consent join screen (index.html): what
// the bar holds directly stays four buttons on a phone (style.css folds the
// rest into "Thêm"); screen share and the second camera are in the menu.
test('the call bar: microphone, camera, "Thêm" and "Rời phòng" in the bar, the rest in the menu', () => {
  const html = readFileSync(new URL('../index.html', import.meta.url), 'utf8');
  const nav = html.slice(html.indexOf('<nav class="controls"'), html.indexOf('</nav>'));
  const menu = nav.slice(nav.indexOf('<div class="more-menu"'), nav.indexOf('</div>', nav.indexOf('id="chat-unread"')));
  const outside = nav.replace(menu, '');
  const ids = (text) => [...text.matchAll(/<button[^>]*\bid="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(ids(outside), ['more-btn', 'leave-btn']);
  assert.match(outside, /class="ctl mic-toggle"/);
  assert.match(outside, /class="ctl cam-toggle"/);
  assert.deepEqual(ids(menu), ['flip-btn', 'audio-only-btn', 'screen-btn', 'cam2-btn', 'rec-btn', 'people-btn', 'chat-btn']);
  // The pages are served with a CSP without 'unsafe-inline'.
  assert.doesNotMatch(html, /\sstyle=|<style|\son[a-z]+=/i);
});

test('the phone and one-consent strings exist in both languages', () => {
  const keys = ['consent_given_queue', 'consent_given_before', 'consent_change', 'join_as', 'devices_title',
    'camera_failed', 'call_more', 'call_more_label'];
  for (const key of keys) {
    for (const lang of LANGS) assert.ok(STRINGS[lang][key], `${lang}: no string ${key}`);
    assert.notEqual(STRINGS.vi[key], STRINGS.en[key], `${key}: vi and en are identical`);
  }
  assert.equal(STRINGS.vi.call_more, 'Thêm');
  assert.equal(STRINGS.vi.leave, 'Rời phòng');
  for (const lang of LANGS) assert.match(STRINGS[lang].join_as, /\{name\}.*\{role\}/);
});
