// Care on bad networks, 2: audio only, chosen. A nurse (the subscriber here)
// presses "Chỉ âm thanh": the server answers audio_only {reason: requested}
// and stops sending her video (her framesDecoded of the doctor stops
// growing) while audio keeps flowing (packetsReceived grows); her camera
// stops too (no outbound video bytes; the doctor's tile of her shows the
// initials, not a frozen frame); her telemetry says audio_only. The choice
// survives the page's automatic rejoin (sent again after the new offer).
// Pressing it again brings video back both ways. Then the weak-network
// banner, from a server message handed to the page (the SFU's own choice is
// tested in 16): "Mạng yếu — chỉ âm thanh", remote tiles as placeholders.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, launchChromium, openParticipant, closeAllBrowsers, expectReceiving,
  withDiagnostics, uniqueTitle, waitFor, openJoinPage, sleep, clickSettled,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

/** Frames decoded and audio packets received from `pid`, and our own outbound video bytes. */
async function counters(who, pid) {
  const s = await who.stats();
  const p = s.byParticipant[pid] || { video: [], audio: [] };
  const outBytes = await who.page.evaluate(async () => {
    let n = 0;
    (await window.tuxa.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') n += r.bytesSent || 0; });
    return n;
  });
  return {
    frames: p.video.reduce((a, v) => a + v.framesDecoded, 0),
    audio: p.audio.reduce((a, v) => a + v.packetsReceived, 0),
    outBytes,
  };
}

/** Whether `who` shows `pid`'s camera tile with the initials (no picture). */
async function tilePlaceholder(who, pid) {
  return who.page.evaluate((id) => {
    const el = document.querySelector(`#grid .tile[data-pid="${id}"]`);
    return !!el && el.classList.contains('no-video') && getComputedStyle(el.querySelector('.avatar')).display !== 'none';
  }, pid);
}

const visible = (who, id) => who.page.evaluate((x) => {
  const el = document.getElementById(x);
  return !!el && !el.hidden && el.getClientRects().length > 0;
}, id);

test('audio only: chosen, kept across a rejoin, and undone; the weak-network banner (Chromium)', { timeout: 180_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Chỉ âm thanh'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Đinh Lan', facility: 'BVĐK tỉnh' });
  const nurseLink = await mintLink(room.id, { role: 'nurse', name: 'ĐD. Sùng A Páo', facility: 'TYT xã Pả Vi' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const nurse = await openParticipant(browser, 'nurse');

  await withDiagnostics([doctor, nurse], async () => {
    await openJoinPage(doctor, doctorLink);
    await openJoinPage(nurse, nurseLink);
    await Promise.all([doctor.waitForState('in-call'), nurse.waitForState('in-call')]);
    const doctorId = await doctor.id();
    const nurseId = await nurse.id();
    await Promise.all([expectReceiving(doctor, [nurseId]), expectReceiving(nurse, [doctorId])]);

    // The toggle is there, in Vietnamese, not pressed.
    const btn = await nurse.page.evaluate(() => {
      const b = document.getElementById('audio-only-btn');
      return { text: b.textContent.trim(), pressed: b.getAttribute('aria-pressed'), shown: !b.hidden };
    });
    assert.deepEqual(btn, { text: 'Chỉ âm thanh', pressed: 'false', shown: true });

    // ---- On.
    await clickSettled(nurse, '#audio-only-btn');
    await waitFor('the server to confirm audio only (requested)', () => nurse.page.evaluate(
      () => window.tuxa.audioOnly.server === 'requested'), 10_000);
    assert.ok(await nurse.page.evaluate(() => window.tuxa.log.some((l) => l.includes('← audio_only {"on":true,"reason":"requested"}'))));
    assert.equal(await nurse.page.evaluate(() => document.getElementById('audio-only-btn').getAttribute('aria-pressed')), 'true');
    assert.ok(await visible(nurse, 'audio-only-strip'), 'the audio-only note is shown');
    assert.ok(!(await visible(nurse, 'weak-strip')), 'no weak-network banner for a choice');
    assert.ok(await tilePlaceholder(nurse, doctorId), 'the nurse sees the doctor\'s initials, not a frozen frame');

    await sleep(2_000); // what was on its way
    const a = await counters(nurse, doctorId);
    const da = await counters(doctor, nurseId);
    await sleep(4_000);
    const b = await counters(nurse, doctorId);
    const db = await counters(doctor, nurseId);
    console.log('audio only, nurse from doctor:', JSON.stringify({ a, b }), 'doctor from nurse:', JSON.stringify({ da, db }));
    assert.equal(b.frames, a.frames, 'no video decoded while audio only');
    assert.ok(b.audio > a.audio, 'audio keeps flowing');
    assert.ok(b.outBytes - a.outBytes < 2_000, `the nurse's camera sends nothing: ${b.outBytes - a.outBytes} bytes in 4 s`);
    assert.equal(db.frames, da.frames, 'the doctor decodes no video of the nurse');
    assert.ok(db.audio > da.audio, 'the doctor still hears the nurse');
    await waitFor('the doctor to show the nurse\'s initials', () => tilePlaceholder(doctor, nurseId), 10_000);
    await waitFor('the nurse\'s telemetry to say audio only', () => nurse.page.evaluate(
      () => window.tuxa.lastStats && window.tuxa.lastStats.audio_only === true), 12_000);
    const enc = await nurse.page.evaluate(() => window.tuxa.debug.media && window.tuxa.pc.getSenders()
      .filter((s) => s.track && s.track.kind === 'video').map((s) => s.getParameters().encodings.map((e) => e.active)));
    assert.deepEqual(enc, [[false, false, false]], 'every camera encoding inactive');

    // ---- The WebSocket dies: the page rejoins and asks for audio only again.
    await nurse.page.evaluate(() => window.tuxa.ws.close());
    await waitFor('the nurse page to reconnect', () => nurse.page.evaluate(() => window.tuxa.history.includes('reconnecting')), 10_000);
    await nurse.waitForState('in-call', 30_000);
    await waitFor('audio only again after the rejoin', () => nurse.page.evaluate(
      () => window.tuxa.audioOnly.server === 'requested' && window.tuxa.audioOnly.requested), 20_000);
    const sent = await nurse.page.evaluate(() => window.tuxa.log.filter((l) => l.includes('→ audio_only')).length);
    assert.equal(sent, 2, 'audio_only sent once by the click and once after the rejoin');
    // Audio again, still no video either way.
    await waitFor('the nurse to hear the doctor again', async () => {
      const x = await counters(nurse, doctorId);
      await sleep(1_500);
      const y = await counters(nurse, doctorId);
      return y.audio > x.audio;
    }, 30_000, 500);
    const c = await counters(nurse, doctorId);
    await sleep(3_000);
    const d = await counters(nurse, doctorId);
    console.log('after the rejoin:', JSON.stringify({ c, d }));
    assert.equal(d.frames, c.frames, 'still no video after the rejoin');
    assert.ok(d.outBytes - c.outBytes < 2_000, 'the camera still sends nothing after the rejoin');

    // ---- Off: video comes back both ways.
    await clickSettled(nurse, '#audio-only-btn');
    await waitFor('the server to resume video', () => nurse.page.evaluate(
      () => window.tuxa.audioOnly.server === null && !window.tuxa.audioOnly.requested), 10_000);
    assert.ok(await nurse.page.evaluate(() => window.tuxa.log.some((l) => l.includes('← audio_only {"on":false,"reason":"requested"}'))));
    const [atNurse, atDoctor] = await Promise.all([
      expectReceiving(nurse, [doctorId], { timeoutMs: 20_000 }),
      expectReceiving(doctor, [nurseId], { timeoutMs: 20_000 }),
    ]);
    console.log('video back:', JSON.stringify(atNurse), JSON.stringify(atDoctor));
    assert.ok(!(await visible(nurse, 'audio-only-strip')));
    await waitFor('the nurse to show the doctor\'s picture again', async () => !(await tilePlaceholder(nurse, doctorId)), 10_000);
    await waitFor('the doctor to show the nurse\'s picture again', async () => !(await tilePlaceholder(doctor, nurseId)), 10_000);

    // ---- Weak network, as the server would say it (the page's side only).
    await nurse.page.evaluate(() => window.tuxa.debug.onServerMsg({ type: 'audio_only', on: true, reason: 'weak_network' }));
    assert.ok(await visible(nurse, 'weak-strip'), 'the weak-network banner is shown');
    const banner = await nurse.page.evaluate(() => document.getElementById('weak-strip').textContent.replace(/\s+/g, ' ').trim());
    assert.match(banner, /^Mạng yếu — chỉ âm thanh/);
    assert.ok(await tilePlaceholder(nurse, doctorId), 'remote tiles show the initials under a weak network');
    await nurse.page.click('#lang-btn');
    const bannerEn = await nurse.page.evaluate(() => document.getElementById('weak-strip').textContent.replace(/\s+/g, ' ').trim());
    assert.match(bannerEn, /^Weak network — audio only/);
    assert.equal(await nurse.page.evaluate(() => document.getElementById('audio-only-btn').textContent.trim()), 'Audio only');
    await nurse.page.evaluate(() => window.tuxa.debug.onServerMsg({ type: 'audio_only', on: false, reason: 'weak_network' }));
    assert.ok(!(await visible(nurse, 'weak-strip')), 'the banner goes with on:false');
    assert.ok(!(await tilePlaceholder(nurse, doctorId)), 'the picture is back');

    await doctor.assertNoErrors();
    await nurse.assertNoErrors();
  });
});
