// The pre-call check's pure parts (web-client/check.js): the median round
// trip, the server's ports from its SDP answer, the TCP-only answer, the
// verdict and the advice, and their strings in both languages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  median, candidatePorts, keepCandidates, verdictOf, adviceFor, VIDEO_MIN_BPS, AUDIO_MIN_BPS,
} from '../check.js';
import { STRINGS, LANGS, tf } from '../i18n.js';

const ANSWER = [
  'v=0', 'o=- 1 2 IN IP4 0.0.0.0', 's=-', 't=0 0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0',
  'a=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host',
  'a=candidate:2 1 tcp 1694498815 127.0.0.1 8444 typ host tcptype passive',
  'a=candidate:3 1 UDP 2130706430 10.0.0.5 8443 typ host',
  'a=end-of-candidates', '',
].join('\r\n');

test('median', () => {
  assert.equal(median([]), null);
  assert.equal(median([30, 10, 20]), 20);
  assert.equal(median([40, 10, 20, 30]), 25);
  assert.equal(median([5, NaN, 7]), 6);
});

test('the server\'s ports, per protocol, from the answer', () => {
  assert.deepEqual(candidatePorts(ANSWER), { udp: [8443], tcp: [8444] });
  assert.deepEqual(candidatePorts('v=0\r\n'), { udp: [], tcp: [] });
});

test('testing TCP alone: the answer keeps only its TCP candidates', () => {
  const tcp = keepCandidates(ANSWER, 'tcp');
  assert.deepEqual(candidatePorts(tcp), { udp: [], tcp: [8444] });
  assert.ok(tcp.includes('a=end-of-candidates'));
  assert.ok(tcp.startsWith('v=0\r\n'));
  assert.equal(keepCandidates(ANSWER, 'udp').split('\r\n').length, ANSWER.split('\r\n').length - 1);
});

test('the verdict', () => {
  const ws = { ok: true, rttMs: 40 };
  const up = { connected: true, arrived: true, protocol: 'udp' };
  assert.equal(verdictOf({ ws, media: up, bps: 2_000_000 }), 'video');
  assert.equal(verdictOf({ ws, media: up, bps: VIDEO_MIN_BPS - 1 }), 'audio');
  assert.equal(verdictOf({ ws, media: up, bps: null }), 'audio', 'no estimate: do not promise video');
  assert.equal(verdictOf({ ws, media: up, bps: AUDIO_MIN_BPS - 1 }), 'none');
  assert.equal(verdictOf({ ws: { ok: true, rttMs: 3000 }, media: up, bps: 2_000_000 }), 'audio');
  assert.equal(verdictOf({ ws, media: { ...up, arrived: false }, bps: 2_000_000 }), 'none');
  assert.equal(verdictOf({ ws, media: { connected: false }, bps: null }), 'none');
  assert.equal(verdictOf({ ws: { ok: false }, media: null, bps: null }), 'none');
});

test('the advice names the ports to open', () => {
  const ports = { udp: [8443], tcp: [8444] };
  const keys = (list) => list.map(([k]) => k);
  assert.deepEqual(keys(adviceFor('none', { ports, wsOk: true })),
    ['check_try_move', 'check_try_mobile', 'check_try_it_both']);
  assert.deepEqual(keys(adviceFor('none', { ports: { udp: [8443], tcp: [] }, wsOk: true })),
    ['check_try_move', 'check_try_mobile', 'check_try_it_udp']);
  assert.deepEqual(keys(adviceFor('none', { ports: null, wsOk: false })), ['check_try_internet']);
  assert.deepEqual(keys(adviceFor('video', { protocol: 'udp', ports, tcpOnlyWorks: true, wsOk: true })), []);
  assert.deepEqual(keys(adviceFor('video', { protocol: 'tcp', ports, wsOk: true })), ['check_try_it_udp']);
  assert.deepEqual(keys(adviceFor('video', { protocol: 'udp', ports, tcpOnlyWorks: false, wsOk: true })),
    ['check_note_tcp_closed']);
  const [, vars] = adviceFor('none', { ports, wsOk: true })[2];
  assert.match(tf('check_try_it_both', vars, 'vi'), /UDP 8443 \(hoặc TCP 8444\)/);
  assert.match(tf('check_try_it_both', vars, 'en'), /UDP port 8443 \(or TCP 8444\)/);
});

test('every check string in Vietnamese and English', () => {
  const keys = Object.keys(STRINGS.vi).filter((k) => k.startsWith('check_'));
  assert.ok(keys.length >= 30, `${keys.length} keys`);
  for (const key of keys) {
    for (const lang of LANGS) assert.ok(STRINGS[lang][key], `${lang}: no string ${key}`);
  }
  for (const key of keys) {
    assert.notEqual(STRINGS.vi[key], STRINGS.en[key], `${key}: vi and en are identical`);
  }
});
