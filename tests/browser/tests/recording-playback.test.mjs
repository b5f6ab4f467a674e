// A three-site conference recorded, withdrawn and played back, in Chromium
// (issue 13, "Done when"): the chair at the province, a district doctor and
// the patient (the chair's guest link, consenting to recording on the
// preview) are in the call, each with the fake camera and microphone; the
// chair starts recording and every page shows "● Đang ghi hình"; some
// seconds later the patient withdraws consent and the indicator goes on
// every page. Then the chair, who may read the record, opens the player page
// with their staff session: the recording is listed with an audio and a
// video track for each of the three; played, every tile's video decodes
// frames and stays within 0.3 s of the page's clock; seeking to the middle
// moves every element there; one track downloaded through its link is a
// WebM file (EBML magic 1A 45 DF A3), whole. The page fits a
// 390 x 844 phone and a desktop (screenshots under TUXA_SHOTS).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  BASE, joinUrl, launchChromium, openParticipant, closeAllBrowsers, withDiagnostics, waitFor,
  decideInLobby, expectReceiving, request, sleep,
} from '../lib/harness.mjs';
import { scheduledConference } from '../lib/conference.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 };
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 11; SM-A115F) AppleWebKit/537.36 (KHTML, like Gecko) '
  + 'Chrome/124.0.0.0 Mobile Safari/537.36';
const DESKTOP = { width: 1366, height: 768 };
/** How far a playing element may be from the page's clock (the task's bound). */
const IN_STEP_S = 0.3;

const SHOTS = process.env.TUXA_SHOTS || '';
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
async function shot(who, name) {
  if (SHOTS) await who.page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

after(closeAllBrowsers);

/** What a call page shows of the recording. */
function recView(who) {
  return who.page.evaluate(() => {
    const el = document.getElementById('rec-strip');
    const shown = !!el && !el.hidden && el.getBoundingClientRect().height > 0;
    return {
      state: window.tuxa.recording.state,
      reason: window.tuxa.recording.reason ?? null,
      strip: shown,
      text: shown ? [...el.querySelectorAll('.rec-dot, #rec-strip-text')].map((e) => e.textContent).join(' ') : '',
    };
  });
}

/** Each tile of the player page: its video element's state, next to the page's clock. */
function tilesNow(who) {
  return who.page.evaluate(() => {
    const pl = window.__tuxaPlayer;
    const view = pl.views[0];
    const clock = view.now() / 1000;
    return [...document.querySelectorAll('.pl-recording .pl-tile')].map((fig) => {
      const v = fig.querySelector('video');
      const q = v.getVideoPlaybackQuality();
      return {
        participant: fig.dataset.participant,
        source: fig.dataset.source,
        track: v.dataset.track,
        clock,
        seeking: v.seeking,
        currentTime: v.currentTime,
        paused: v.paused,
        readyState: v.readyState,
        frames: q.totalVideoFrames,
        width: v.videoWidth,
        error: v.error ? `${v.error.code} ${v.error.message}` : null,
        off: fig.classList.contains('pl-off'),
      };
    });
  });
}

test('a three-site conference is recorded, the patient withdraws, and the recording plays back in step', { timeout: 300_000 }, async () => {
  const conf = await scheduledConference({
    names: { province: 'BVĐK tỉnh Nghệ An', district: 'TTYT huyện Diễn Châu', commune: 'Trạm y tế xã Diễn Kim' },
    people: {
      chair: { role: 'doctor', title: 'BS.CKII', name: 'Phan Thị Ghi', at: 'province' },
      district: { role: 'doctor', title: 'BS.', name: 'Võ Văn Hình', at: 'district' },
    },
    requester: 'district',
    chair: 'chair',
  });
  const PATIENT = 'Lê Thị Đồng Ý';
  const patientLink = await conf.guestLink('patient', PATIENT);

  const browser = await launchChromium();
  const chair = await openParticipant(browser, 'chair (tỉnh)');
  await chair.page.setViewport(DESKTOP);
  const district = await openParticipant(browser, 'district doctor (huyện)');
  await district.page.setViewport(DESKTOP);
  const patient = await openParticipant(browser, 'patient (phone)');
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);
  const viewer = await openParticipant(browser, 'chair reading the record');
  const all = [chair, district, patient, viewer];

  await withDiagnostics(all, async () => {
    // ---- The three sites in the call; the patient consents to recording.
    await chair.goto(joinUrl(conf.people.chair.link));
    await chair.waitForState('in-call');
    await district.goto(joinUrl(conf.people.district.link));
    await district.waitForState('in-call');
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('preview');
    await patient.page.click('#consent-exam');
    await patient.page.click('#consent-recording');
    await patient.page.click('#join-btn');
    await patient.waitForState('waiting');
    await decideInLobby(chair, PATIENT);
    await patient.waitForState('in-call');
    const calls = [chair, district, patient];
    const ids = [];
    for (const c of calls) ids.push(await c.id());
    // Everyone publishes and receives before the recording starts, so each
    // has a track to record from its first second.
    await Promise.all(calls.map((c, i) => expectReceiving(c, ids.filter((_, j) => j !== i), { timeoutMs: 45_000 })));

    // ---- The chair records; everyone sees it.
    await chair.page.click('#rec-btn');
    for (const who of calls) {
      await waitFor(`${who.name} to show the indicator`, async () => {
        const v = await recView(who);
        return v.state === 'on' && v.strip && v.text === '● Đang ghi hình';
      }, 10_000);
    }
    await sleep(5_000);

    // ---- The patient withdraws: it stops on every page.
    await patient.page.click('#rec-withdraw-btn');
    for (const who of calls) {
      await waitFor(`${who.name} to drop the indicator`, async () => {
        const v = await recView(who);
        return !v.strip && v.state === 'off' && v.reason === 'consent_withdrawn';
      }, 5_000);
    }

    // ---- The files are finished (the recorder closes them off the media task).
    let listed;
    await waitFor('the recording finished', async () => {
      const res = await request('GET', `/api/v1/consultations/${conf.room}/recordings`);
      assert.equal(res.status, 200, res.text);
      listed = res.json;
      const rec = listed.recordings[0];
      return listed.recordings.length === 1 && rec.state !== 'recording'
        && rec.tracks.length > 0 && rec.tracks.every((tr) => tr.state !== 'open');
    }, 20_000);
    const rec = listed.recordings[0];
    assert.equal(rec.state, 'complete', JSON.stringify(rec));
    assert.equal(rec.stop_reason, 'consent_withdrawn');
    // One audio and one video track for each of the three sites.
    const byWho = {};
    for (const tr of rec.tracks) {
      assert.equal(tr.state, 'complete', JSON.stringify(tr));
      // A simulcast switch early in the call can leave a segment of one
      // frame: it has no duration of its own, but it is a whole file.
      assert.ok(tr.size > 0 && (tr.duration_ms > 0 || tr.frames === 1), JSON.stringify(tr));
      (byWho[tr.participant_id] ||= []).push(`${tr.kind}/${tr.codec}`);
    }
    assert.deepEqual(Object.keys(byWho).sort(), [...ids].sort(), JSON.stringify(rec.tracks));
    for (const kinds of Object.values(byWho)) {
      assert.ok(kinds.includes('audio/opus') && kinds.some((k) => k.startsWith('video/')), kinds.join(', '));
    }
    const lengthMs = Math.max(...rec.tracks.map((tr) => tr.offset_ms + tr.duration_ms));
    // About the five seconds it ran (logged: a slow machine may add some).
    console.log(`recording: ${rec.tracks.length} tracks, ${lengthMs} ms; ${rec.tracks
      .map((tr) => `${tr.name} ${tr.kind} @${tr.offset_ms}+${tr.duration_ms} ms ${tr.size} B`).join('; ')}`);
    assert.ok(lengthMs >= 3_000, `recorded only ${lengthMs} ms`);

    // ---- The chair reads it: the player page with their staff session.
    const [name, value] = conf.people.chair.cookie.split(/=(.*)/s);
    await viewer.page.setCookie({ name, value, url: BASE });
    await viewer.page.setViewport(DESKTOP);
    await viewer.goto(`${BASE}/consultations/${conf.room}/recordings`);
    await waitFor('the player ready', async () => viewer.page.evaluate(() => window.__tuxaPlayer.ready), 15_000);
    const pl = await viewer.page.evaluate(() => ({
      recordings: window.__tuxaPlayer.recordings,
      tracks: window.__tuxaPlayer.tracks,
      status: document.getElementById('pl-status').textContent,
      tiles: document.querySelectorAll('.pl-recording .pl-tile').length,
      links: [...document.querySelectorAll('.pl-recording .pl-files a')].map((a) => a.getAttribute('href')),
    }));
    assert.equal(pl.recordings, 1, JSON.stringify(pl));
    assert.equal(pl.tracks, rec.tracks.length);
    assert.equal(pl.tiles, 3, 'a tile per site (camera and microphone together)');
    assert.deepEqual(pl.links.sort(), rec.tracks.map((tr) => tr.download_url).sort());

    // Which video segment of a site the list says plays at `ms` (none in a
    // gap: a new segment begins at a keyframe after a change of resolution).
    const videoAt = (pid, ms) => rec.tracks.find((tr) => tr.kind === 'video' && String(tr.participant_id) === pid
      && ms >= tr.offset_ms && ms < tr.offset_ms + tr.duration_ms);

    // Played to its end (a real click: audio may play only after a gesture),
    // sampled as it goes: each tile decodes frames, and each element showing
    // something is within IN_STEP_S of the page's clock.
    await viewer.page.click('.pl-recording .pl-transport button');
    const frames = {};
    const checked = {};
    const started = Date.now();
    let last = null;
    for (;;) {
      await sleep(250);
      const now = await tilesNow(viewer);
      for (const t of now) {
        assert.equal(t.error, null, JSON.stringify(t));
        frames[t.participant] = Math.max(frames[t.participant] || 0, t.width > 0 ? t.frames : 0);
        if (t.off) continue;
        assert.ok(Math.abs(t.currentTime - t.clock) <= IN_STEP_S,
          `tile ${t.participant}/${t.source} at ${t.currentTime.toFixed(3)} s, the page at ${t.clock.toFixed(3)} s: ${JSON.stringify(now)}`);
        checked[t.participant] = (checked[t.participant] || 0) + 1;
      }
      const clock = now[0].clock * 1000;
      if (clock >= lengthMs || (last !== null && clock === last && clock > 0 && clock >= lengthMs - 300)) break;
      assert.ok(Date.now() - started < 30_000, `still playing after 30 s, at ${clock} ms of ${lengthMs}`);
      last = clock;
    }
    console.log(`played in ${Date.now() - started} ms; frames per tile ${JSON.stringify(frames)}; in-step samples ${JSON.stringify(checked)}`);
    for (const pid of ids) {
      assert.ok(frames[pid] > 0, `tile ${pid} decoded no frame: ${JSON.stringify(frames)}`);
      assert.ok(checked[pid] >= 2, `tile ${pid} was compared with the clock only ${checked[pid] || 0} times`);
    }
    assert.equal(await viewer.page.evaluate(() => document.querySelector('.pl-recording .pl-transport button').textContent),
      STRINGS.vi.pl_play, 'at its end it stops');
    await shot(viewer, 'rec-player-desktop');

    // Seeking to the middle: every element follows, to the segment the list
    // says covers that moment.
    // On the seek bar's step (100 ms), so that it can show the very place.
    const middle = Math.round(lengthMs / 200) * 100;
    await viewer.page.evaluate((ms) => window.__tuxaPlayer.views[0].seekTo(ms), middle);
    await waitFor('every tile at the middle', async () => {
      const now = await tilesNow(viewer);
      return now.every((t) => t.off || (Math.abs(t.currentTime - middle / 1000) <= IN_STEP_S && t.readyState >= 2));
    }, 10_000);
    const atMiddle = await tilesNow(viewer);
    for (const t of atMiddle) {
      const seg = videoAt(t.participant, middle);
      assert.equal(t.off, !seg, `tile ${t.participant} at ${middle} ms: ${JSON.stringify(t)}`);
      if (seg) assert.equal(t.track, String(seg.id));
    }
    assert.ok(atMiddle.some((t) => !t.off), 'some tile shows the middle');
    assert.ok(Math.abs(atMiddle[0].clock * 1000 - middle) < 1, 'paused: the clock stays');
    const seekValue = await viewer.page.evaluate(() => Number(document.querySelector('.pl-recording .pl-seek').value));
    assert.equal(seekValue, middle, 'the seek bar shows where it is');

    // ---- One track downloaded through its link: a WebM file, whole.
    const video = rec.tracks.find((tr) => tr.kind === 'video');
    const got = await viewer.page.evaluate(async (href) => {
      const a = [...document.querySelectorAll('.pl-files a')].find((x) => x.getAttribute('href') === href);
      const res = await fetch(a.href, { credentials: 'same-origin', cache: 'no-store' });
      const bytes = new Uint8Array(await res.arrayBuffer());
      return {
        status: res.status,
        type: res.headers.get('content-type'),
        disposition: res.headers.get('content-disposition'),
        contentLength: res.headers.get('content-length'),
        length: bytes.length,
        head: [...bytes.slice(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' '),
      };
    }, video.download_url);
    assert.equal(got.status, 200, JSON.stringify(got));
    assert.equal(got.head, '1a 45 df a3', 'the WebM (EBML) magic');
    assert.match(got.type || '', /^video\/webm/);
    assert.match(got.disposition || '', /^attachment/);
    assert.equal(String(got.length), got.contentLength, 'the whole file');
    // The list's size and SHA-256 are the sealed file's as stored (docs/api.md
    // "Recordings"), which carries its chunks' tags: a little more than the WebM.
    assert.ok(got.length > 0 && got.length <= video.size, `${got.length} B downloaded, ${video.size} B sealed`);
    // Without a session: refused.
    const anon = await request('GET', video.media_url, undefined, { admin: false });
    assert.ok(anon.status === 401 || anon.status === 403, `anonymous: HTTP ${anon.status}`);

    // ---- On a phone: nothing wider than the screen.
    await viewer.page.setUserAgent(PHONE_UA);
    await viewer.page.setViewport(PHONE);
    await viewer.goto(`${BASE}/consultations/${conf.room}/recordings`);
    await waitFor('the player ready (phone)', async () => viewer.page.evaluate(() => window.__tuxaPlayer.ready), 15_000);
    const phone = await viewer.page.evaluate(() => ({
      page: document.documentElement.scrollWidth <= window.innerWidth,
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      outside: [...document.querySelectorAll('.pl-recording .pl-tile, .pl-recording .pl-transport, .pl-recording .pl-files li')]
        .map((e) => e.getBoundingClientRect())
        .filter((r) => r.left < 0 || r.right > window.innerWidth + 0.5)
        .map((r) => `${r.left}..${r.right}`),
    }));
    assert.ok(phone.page, `page ${phone.scrollWidth} px wide on a ${phone.innerWidth} px screen`);
    assert.deepEqual(phone.outside, [], 'every tile, the transport and the files fit across');
    await shot(viewer, 'rec-player-phone');

    const errors = await viewer.page.evaluate(() => window.__tuxaPlayer.errors);
    assert.deepEqual(errors, [], 'the player had no errors');
    for (const who of calls) await who.assertNoErrors();
  });
});
