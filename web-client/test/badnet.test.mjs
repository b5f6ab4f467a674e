// Care on bad networks, without a browser: the camera's simulcast layers,
// pausing layers nobody receives (publish_layers) and audio only, the new
// messages' constructors and schemas, and their texts in both languages.
//   node --test web-client/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import * as P from '../protocol.js';
import { CAMERA_LAYERS, cameraEncodings, setLayerActivity } from '../session.js';
import { STRINGS, LANGS, t, setLang } from '../i18n.js';

const here = dirname(fileURLToPath(import.meta.url));

test('the camera goes in three layers, lowest first: q, h, f', () => {
  assert.deepEqual(CAMERA_LAYERS.map((l) => l.rid), ['q', 'h', 'f']);
  assert.deepEqual(CAMERA_LAYERS.map((l) => l.scaleResolutionDownBy), [4, 2, 1]);
  const rates = CAMERA_LAYERS.map((l) => l.maxBitrate);
  assert.deepEqual(rates, [...rates].sort((a, b) => a - b), 'bitrates grow with the layer');
  assert.ok(rates[0] <= 200_000 && rates[2] >= 1_000_000, String(rates));
  const enc = cameraEncodings();
  assert.ok(enc.every((e) => e.active === true));
  assert.ok(cameraEncodings({ paused: true }).every((e) => e.active === false));
  enc[0].active = false; // a copy: the constants stay as they are
  assert.equal(cameraEncodings()[0].active, true);
});

test('publish_layers pauses the layers nobody receives; audio only pauses all', () => {
  const enc = cameraEncodings();
  assert.equal(setLayerActivity(enc, { allowed: null }), false, 'before any publish_layers: all on, nothing to change');
  assert.equal(setLayerActivity(enc, { allowed: ['q', 'h'] }), true);
  assert.deepEqual(enc.map((e) => e.active), [true, true, false]);
  assert.equal(setLayerActivity(enc, { allowed: ['q', 'h'] }), false, 'the same again: no setParameters');
  assert.equal(setLayerActivity(enc, { allowed: [] }), true);
  assert.deepEqual(enc.map((e) => e.active), [false, false, false]);
  assert.equal(setLayerActivity(enc, { allowed: ['f', 'x'] }), true, 'unknown rids are ignored');
  assert.deepEqual(enc.map((e) => e.active), [false, false, true]);
  // Audio only wins over the server's list, and gives it back after.
  assert.equal(setLayerActivity(enc, { allowed: ['q', 'h', 'f'], paused: true }), true);
  assert.deepEqual(enc.map((e) => e.active), [false, false, false]);
  assert.equal(setLayerActivity(enc, { allowed: ['q', 'h', 'f'] }), true);
  assert.deepEqual(enc.map((e) => e.active), [true, true, true]);
  // One layer without a rid (a browser that refused simulcast, a screen
  // share): only audio only turns it off.
  const single = [{ maxBitrate: 800_000, active: true }];
  assert.equal(setLayerActivity(single, { allowed: ['q'] }), false);
  assert.equal(setLayerActivity(single, { paused: true }), true);
  assert.equal(single[0].active, false);
  assert.equal(setLayerActivity(undefined, { paused: true }), false);
});

test('audio_only and publish_layers: constructor and schemas', () => {
  assert.deepEqual(P.audio_only(true), { type: 'audio_only', on: true });
  assert.deepEqual(P.audio_only(0), { type: 'audio_only', on: false });
  assert.deepEqual(JSON.parse(P.encode(P.audio_only(true))), { type: 'audio_only', on: true });
  assert.deepEqual(P.parseServerMsg('{"type":"audio_only","on":true,"reason":"weak_network"}'),
    { type: 'audio_only', on: true, reason: 'weak_network' });
  assert.deepEqual(P.parseServerMsg('{"type":"publish_layers","mid":"1","active":[]}'),
    { type: 'publish_layers', mid: '1', active: [] });
  for (const bad of [
    '{"type":"audio_only","on":true}',
    '{"type":"audio_only","on":"yes","reason":"requested"}',
    '{"type":"audio_only","on":true,"reason":"tired"}',
    '{"type":"publish_layers","mid":1,"active":["q"]}',
    '{"type":"publish_layers","mid":"1","active":"q"}',
    '{"type":"publish_layers","mid":"1","active":[1]}',
  ]) assert.throws(() => P.parseServerMsg(bad), P.ProtocolParseError, bad);
});

test('the audio-only texts, in both languages', () => {
  for (const key of ['call_audio_only', 'call_audio_only_on', 'call_weak_network', 'call_weak_network_hint']) {
    for (const lang of LANGS) assert.ok(STRINGS[lang][key], `${lang}: no string ${key}`);
    assert.notEqual(STRINGS.vi[key], STRINGS.en[key], `${key}: vi and en are identical`);
  }
  assert.equal(STRINGS.vi.call_audio_only, 'Chỉ âm thanh');
  assert.equal(STRINGS.en.call_audio_only, 'Audio only');
  assert.equal(STRINGS.vi.call_weak_network, 'Mạng yếu — chỉ âm thanh');
  assert.equal(STRINGS.en.call_weak_network, 'Weak network — audio only');
  setLang('en');
  assert.equal(t('call_weak_network'), 'Weak network — audio only');
  setLang('vi');
  // The page carries the toggle and the banner, translated by key.
  const html = readFileSync(join(here, '..', 'index.html'), 'utf8');
  for (const id of ['audio-only-btn', 'weak-strip', 'audio-only-strip']) assert.match(html, new RegExp(`id="${id}"`));
  for (const key of ['call_audio_only', 'call_audio_only_on', 'call_weak_network', 'call_weak_network_hint']) {
    assert.match(html, new RegExp(`data-i18n="${key}"`));
  }
});
