// The join page's reconnect backoff and telemetry summary (session.js),
// without a browser: stats reports are plain arrays of stats objects.

import test from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs, summarizeStats } from '../session.js';

test('backoff doubles from half a second and stops growing at ten', () => {
  const mid = () => 0.5; // no jitter
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50].map((a) => backoffMs(a, mid)),
    [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  // ±20 % jitter, never outside it.
  assert.equal(backoffMs(0, () => 0), 400);
  assert.equal(backoffMs(0, () => 1), 600);
  assert.equal(backoffMs(-3, mid), 500);
});

const pair = { type: 'candidate-pair', state: 'succeeded', nominated: true, currentRoundTripTime: 0.25 };

test('stats: loss is counted since the previous sample, video both ways', () => {
  const first = summarizeStats([
    pair,
    { type: 'inbound-rtp', id: 'a', kind: 'audio', packetsLost: 5, packetsReceived: 95, jitter: 0.02 },
    { type: 'inbound-rtp', id: 'v', kind: 'video', packetsLost: 0, packetsReceived: 100, framesDecoded: 30, frameHeight: 360, jitter: 0.005 },
    { type: 'outbound-rtp', id: 'o', kind: 'video', framesEncoded: 40 },
    { type: 'candidate-pair', state: 'failed', nominated: false, currentRoundTripTime: 9 },
  ]);
  assert.deepEqual(first.sample, { rtt_ms: 250, loss_pct: 2.5, jitter_ms: 20, frame_height: 360, audio_only: false });
  // Five seconds later: 10 more lost of 50 more expected, no video at all.
  const second = summarizeStats([
    pair,
    { type: 'inbound-rtp', id: 'a', kind: 'audio', packetsLost: 15, packetsReceived: 135, jitter: 0.03 },
    { type: 'inbound-rtp', id: 'v', kind: 'video', packetsLost: 0, packetsReceived: 100, framesDecoded: 30, frameHeight: 360 },
    { type: 'outbound-rtp', id: 'o', kind: 'video', framesEncoded: 40 },
  ], first.state);
  assert.equal(second.sample.loss_pct, 20);
  assert.equal(second.sample.frame_height, undefined);
  assert.equal(second.sample.audio_only, true);
});

test('stats: nothing measured yet gives nothing but audio_only', () => {
  const { sample } = summarizeStats([]);
  assert.deepEqual(sample, {
    rtt_ms: undefined, loss_pct: undefined, jitter_ms: undefined, frame_height: undefined, audio_only: true,
  });
  // A Map (what getStats returns) works too.
  const m = new Map([['p', pair]]);
  assert.equal(summarizeStats(m).sample.rtt_ms, 250);
});
