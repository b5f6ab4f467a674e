import test from 'node:test';
import assert from 'node:assert/strict';
import { layout, placeAt, fmtClock } from '../player.js';

const track = (id, pid, kind, source, offset, duration) => ({
  id, participant_id: pid, name: `p${pid}`, role: 'doctor', facility: null, kind, source, codec: kind === 'audio' ? 'opus' : 'vp8',
  segment: 0, offset_ms: offset, duration_ms: duration, size: 1, sha256: 'x', state: 'complete', content_type: 'video/webm',
  media_url: `/m/${id}`, download_url: `/m/${id}?download=1`,
});

test('a participant\'s camera and microphone share a tile; a screen share has its own', () => {
  const rec = { id: 1, state: 'complete', started_at: 0, ended_at: 10, started_by: 'x', stop_reason: null, tracks: [
    track(1, 7, 'video', 'camera', 0, 60_000), track(2, 7, 'audio', 'camera', 0, 60_500),
    track(3, 7, 'video', 'screen', 5_000, 10_000), track(4, 9, 'audio', 'camera', 2_000, 70_000),
  ] };
  const { tiles, length_ms } = layout(rec);
  assert.equal(length_ms, 72_000);
  assert.deepEqual(tiles.map((t) => [t.key, t.video.map((v) => v.id), t.audio.map((a) => a.id)]),
    [['7/camera', [1], [2]], ['7/screen', [3], []], ['9/camera', [], [4]]]);
});

test('segments are placed on the recording clock, with gaps where nothing was recorded', () => {
  const segs = [track(2, 1, 'video', 'camera', 10_000, 5_000), track(1, 1, 'video', 'camera', 0, 4_000)];
  const rec = { tracks: segs };
  const [tile] = layout(/** @type {any} */ (rec)).tiles;
  assert.deepEqual(tile.video.map((v) => v.id), [1, 2], 'in time order');
  assert.equal(placeAt(tile.video, 0)?.track.id, 1);
  assert.equal(placeAt(tile.video, 3_999)?.at_s, 3.999, 'a file is stamped on the recording clock');
  assert.equal(placeAt(tile.video, 4_000), null, 'between segments (a pause)');
  assert.deepEqual(placeAt(tile.video, 12_500), { track: tile.video[1], at_s: 12.5 });
  assert.equal(placeAt(tile.video, 15_000), null, 'after the end');
});

test('clock format', () => {
  assert.equal(fmtClock(0), '0:00');
  assert.equal(fmtClock(61_999), '1:01');
  assert.equal(fmtClock(3_723_000), '1:02:03');
});
