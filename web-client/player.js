// @ts-check
// One consultation's recordings (docs/api.md "Recordings"): every recorded
// track of a session played together on the room's clock, with one play
// button and one seek bar, and each track downloadable as a standard file.
//
// Each track is its own file (one per published track and segment) and its
// own media element; `offset_ms` places it on the recording's clock. The
// elements are not locked to each other by the browser, so the page keeps
// one clock of its own and pulls any element that drifts from it back
// (`DRIFT_S`): a few tens of milliseconds apart is not heard or seen, a
// quarter of a second is. Streams are fetched by range: seeking a long
// recording reads only what it shows.
//
// The pure parts (`layout`, `placeAt`) use no DOM: web-client/test/player.test.mjs.

import { t, tf, mountLang, roleName } from './i18n.js';
import { h, fill, fmtVnDateTime } from './console-util.js';

/** An element further than this from the page's clock is moved back to it. */
export const DRIFT_S = 0.25;
/** How often the elements are compared with the page's clock. */
const SYNC_MS = 500;

/**
 * @typedef {{ id: number, participant_id: number, name: string, role: string, facility: string | null,
 *   kind: 'audio' | 'video', source: string, codec: string, segment: number, offset_ms: number,
 *   duration_ms: number, size: number, sha256: string, state: string, content_type: string,
 *   media_url: string, download_url: string }} Track
 * @typedef {{ id: number, state: string, started_at: number, ended_at: number | null,
 *   started_by: string, stop_reason: string | null, tracks: Track[] }} Recording
 * @typedef {{ key: string, participant_id: number, name: string, role: string, facility: string | null,
 *   source: string, video: Track[], audio: Track[] }} Tile
 */

/**
 * The tiles of one recording — one per participant and source (a camera and
 * a shared screen are two tiles), each with its video and audio segments in
 * time order — and its length in ms (the end of its last track).
 * @param {Recording} rec
 * @returns {{ tiles: Tile[], length_ms: number }}
 */
export function layout(rec) {
  /** @type {Map<string, Tile>} */
  const tiles = new Map();
  let length = 0;
  for (const tr of rec.tracks) {
    // A microphone belongs with its participant's camera.
    const source = tr.kind === 'audio' ? 'camera' : tr.source;
    const key = `${tr.participant_id}/${source}`;
    let tile = tiles.get(key);
    if (!tile) {
      tile = { key, participant_id: tr.participant_id, name: tr.name, role: tr.role, facility: tr.facility,
        source, video: [], audio: [] };
      tiles.set(key, tile);
    }
    (tr.kind === 'video' ? tile.video : tile.audio).push(tr);
    length = Math.max(length, tr.offset_ms + tr.duration_ms);
  }
  for (const tile of tiles.values()) {
    tile.video.sort((a, b) => a.offset_ms - b.offset_ms);
    tile.audio.sort((a, b) => a.offset_ms - b.offset_ms);
  }
  return { tiles: [...tiles.values()], length_ms: length };
}

/**
 * Which of a tile's segments plays at `ms` on the recording's clock, and
 * where in it (seconds): `null` when none covers that moment (before the
 * participant joined, after they left, during a pause). A file's blocks are
 * stamped on the recording's clock (its first one at `offset_ms`, which
 * Chromium and ffmpeg honour: such a file starts at `currentTime` =
 * offset), so the place in the file is the clock itself.
 * @param {Track[]} segments
 * @param {number} ms
 * @returns {{ track: Track, at_s: number } | null}
 */
export function placeAt(segments, ms) {
  for (const tr of segments) {
    if (ms >= tr.offset_ms && ms < tr.offset_ms + tr.duration_ms) {
      return { track: tr, at_s: ms / 1000 };
    }
  }
  return null;
}

/** `m:ss` (or `h:mm:ss`) of a duration in ms. */
export function fmtClock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** `12.3 MB` */
export function fmtSize(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

// ---------------------------------------------------------------------------
// The page (DOM from here on).

/** What the browser tests read: `window.__tuxaPlayer`. */
const ts = /** @type {any} */ ({ ready: false, recordings: 0, tracks: 0, errors: [] });

/**
 * One recording: its tiles and its transport (play, seek).
 * @param {Recording} rec
 */
function recordingView(rec) {
  const { tiles, length_ms } = layout(rec);
  let clockMs = 0; // the page's clock, on the recording's time line
  let playing = false;
  // While an element that should show something cannot play on yet (its
  // file is opening, it seeks, it buffers), the clock holds and the others
  // wait for it: otherwise the clock runs ahead of an element that is still
  // loading, which then lags by its load time and is pulled back by a seek
  // that loads again.
  let waiting = false;
  let startedAt = 0; // performance.now() when play began…
  let startedMs = 0; // …and the clock then
  /** @type {{ tile: Tile, video: HTMLVideoElement, audio: HTMLAudioElement }[]} */
  const views = [];
  // Every moment a segment begins or ends, in order: at each the elements
  // are seated again then, not at the next periodic sync (a tile would show
  // its last frame, or nothing, for up to SYNC_MS).
  const bounds = [...new Set(rec.tracks.flatMap((tr) => [tr.offset_ms, tr.offset_ms + tr.duration_ms]))]
    .sort((a, b) => a - b);
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let boundTimer;

  const now = () => (playing && !waiting ? Math.min(length_ms, startedMs + (performance.now() - startedAt)) : clockMs);

  /** Puts one element on the segment covering `ms`, at its place. */
  const seat = (el, segments, ms, play) => {
    const p = placeAt(segments, ms);
    if (!p) {
      if (!el.paused) el.pause();
      el.dataset.track = '';
      return false;
    }
    if (el.dataset.track !== String(p.track.id)) {
      el.dataset.track = String(p.track.id);
      el.src = p.track.media_url;
      el.currentTime = p.at_s;
    } else if (Math.abs(el.currentTime - p.at_s) > DRIFT_S) {
      el.currentTime = p.at_s;
    }
    if (play && el.paused) {
      // A pause() while play() was pending rejects it with AbortError: not a fault.
      el.play().catch((e) => { if (e && e.name !== 'AbortError') ts.errors.push(String(e)); });
    }
    if (!play && !el.paused) el.pause();
    return true;
  };

  /**
   * An element seated on a segment that cannot play on from where it is yet
   * (one at its file's end, or broken, holds nobody up).
   */
  const behind = (el) => el.dataset.track !== '' && !el.ended && !el.error
    && (el.seeking || el.readyState < HTMLMediaElement.HAVE_FUTURE_DATA);

  const sync = () => {
    let ms = now();
    const seated = [];
    for (const v of views) {
      const shown = seat(v.video, v.tile.video, ms, playing && !waiting);
      v.video.closest('.pl-tile')?.classList.toggle('pl-off', !shown);
      seat(v.audio, v.tile.audio, ms, playing && !waiting);
      seated.push(v.video, v.audio);
    }
    if (playing) {
      const stalled = seated.some(behind);
      if (stalled && !waiting) {
        // Hold the clock where it is and the elements with it.
        clockMs = ms;
        waiting = true;
        for (const el of seated) if (!el.paused) el.pause();
      } else if (!stalled && waiting) {
        waiting = false;
        startedMs = clockMs;
        startedAt = performance.now();
        ms = clockMs;
        for (const el of seated) if (el.dataset.track !== '' && el.paused) {
          el.play().catch((e) => { if (e && e.name !== 'AbortError') ts.errors.push(String(e)); });
        }
      }
    }
    clearTimeout(boundTimer);
    if (playing && !waiting) {
      const next = bounds.find((b) => b > ms);
      if (next !== undefined) boundTimer = setTimeout(sync, next - ms + 1);
    }
    seek.value = String(Math.round(ms));
    clock.textContent = `${fmtClock(ms)} / ${fmtClock(length_ms)}`;
    if (playing && ms >= length_ms) pause();
  };

  const play = () => {
    if (clockMs >= length_ms) clockMs = 0;
    playing = true;
    waiting = false;
    startedAt = performance.now();
    startedMs = clockMs;
    playBtn.textContent = t('pl_pause');
    sync();
  };
  const pause = () => {
    clockMs = now();
    playing = false;
    waiting = false;
    playBtn.textContent = t('pl_play');
    sync();
  };

  const playBtn = h('button', { type: 'button', class: 'btn', onclick: () => (playing ? pause() : play()) }, t('pl_play'));
  const seek = /** @type {HTMLInputElement} */ (h('input', {
    type: 'range', class: 'pl-seek', min: '0', max: String(length_ms), step: '100', value: '0',
    'aria-label': t('pl_seek'),
    oninput: () => {
      clockMs = Number(seek.value);
      waiting = false;
      startedMs = clockMs;
      startedAt = performance.now();
      sync();
    },
  }));
  const clock = h('span', { class: 'pl-clock' }, `${fmtClock(0)} / ${fmtClock(length_ms)}`);

  const grid = h('div', { class: 'pl-grid' }, tiles.map((tile) => {
    const video = /** @type {HTMLVideoElement} */ (h('video', { playsInline: true, muted: true, preload: 'metadata' }));
    const audio = /** @type {HTMLAudioElement} */ (h('audio', { preload: 'metadata' }));
    views.push({ tile, video, audio });
    // An element that was waiting may let the clock go on as soon as it can.
    for (const el of [video, audio]) {
      el.addEventListener('canplay', () => { if (waiting) sync(); });
      el.addEventListener('seeked', () => { if (waiting) sync(); });
    }
    const label = [tile.name, roleName(tile.role), tile.facility, tile.source === 'camera' ? null : t(`pl_source_${tile.source}`) || tile.source]
      .filter(Boolean).join(' · ');
    return h('figure', { class: 'pl-tile', dataset: { participant: String(tile.participant_id), source: tile.source } },
      video, audio, h('figcaption', {}, label));
  }));

  const files = h('ul', { class: 'pl-files' }, rec.tracks.map((tr) => h('li', {},
    h('a', { href: tr.download_url, download: '' },
      `${tr.name} — ${t(`pl_kind_${tr.kind}`)}${tr.segment > 0 ? ` (${tr.segment + 1})` : ''}`),
    ` ${fmtClock(tr.duration_ms)}, ${fmtSize(tr.size)}`,
    tr.state === 'complete' ? null : h('span', { class: 'pl-warn' }, ` ${t(`pl_state_${tr.state}`) || tr.state}`),
    h('code', { class: 'pl-hash', title: 'SHA-256' }, tr.sha256.slice(0, 16)))));

  const period = rec.ended_at ? `${fmtVnDateTime(rec.started_at)} – ${fmtVnDateTime(rec.ended_at)}` : fmtVnDateTime(rec.started_at);
  setInterval(() => { if (playing) sync(); }, SYNC_MS);
  const section = h('section', { class: 'pl-recording card', dataset: { recording: String(rec.id) } },
    h('h2', {}, tf('pl_recording', { when: period })),
    h('p', { class: 'pl-meta' }, tf('pl_started_by', { who: rec.started_by }),
      rec.state === 'complete' ? null : h('span', { class: 'pl-warn' }, ` — ${t(`pl_state_${rec.state}`) || rec.state}`)),
    h('div', { class: 'pl-transport' }, playBtn, seek, clock),
    grid,
    h('h3', {}, t('pl_files')), files);
  sync();
  // `now`: the page's clock (ms on the recording's time line), which the
  // browser test compares each element with.
  return {
    section, play, pause, now, length_ms,
    seekTo: (ms) => { clockMs = ms; waiting = false; startedMs = ms; startedAt = performance.now(); sync(); },
  };
}

async function main() {
  mountLang();
  const status = /** @type {HTMLElement} */ (document.getElementById('pl-status'));
  const list = /** @type {HTMLElement} */ (document.getElementById('pl-recordings'));
  const m = location.pathname.match(/^\/consultations\/([^/]+)\/recordings$/);
  if (!m) return;
  let res = null;
  try {
    res = await fetch(`/api/v1/consultations/${m[1]}/recordings`, { credentials: 'same-origin', cache: 'no-store' });
  } catch { /* shown below */ }
  if (!res || !res.ok) {
    status.textContent = res && (res.status === 401 || res.status === 403) ? t('pl_forbidden') : t('pl_failed');
    ts.ready = true;
    ts.status = res ? res.status : 0;
    return;
  }
  const body = await res.json();
  /** @type {Recording[]} */
  const recs = body.recordings || [];
  status.textContent = recs.length ? '' : t('pl_none');
  const views = recs.map(recordingView);
  fill(list, views.map((v) => v.section));
  ts.recordings = recs.length;
  ts.tracks = recs.reduce((n, r) => n + r.tracks.length, 0);
  ts.views = views;
  ts.ready = true;
}

if (typeof document !== 'undefined') {
  /** @type {any} */ (globalThis).__tuxaPlayer = ts;
  main();
}
