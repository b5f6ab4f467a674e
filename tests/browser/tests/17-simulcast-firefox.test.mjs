// Care on bad networks, Firefox: a Firefox ESR doctor sends its camera in the
// same three simulcast layers (q, h, f, lowest first) as Chromium, the server
// accepts them (a=simulcast recv), a Chromium nurse decodes the doctor, and
// audio only works from Firefox too (every camera encoding inactive through
// setParameters, the server's confirmation, video back after).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, launchChromium, launchFirefox, openParticipant, closeAllBrowsers,
  expectReceiving, withDiagnostics, uniqueTitle, waitFor, openJoinPage, sleep,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

async function outboundByRid(who) {
  return who.page.evaluate(async () => {
    const out = {};
    (await window.tuxa.pc.getStats()).forEach((r) => {
      if (r.type !== 'outbound-rtp' || r.kind !== 'video') return;
      out[r.rid || '-'] = { bytesSent: r.bytesSent || 0, framesEncoded: r.framesEncoded || 0, frameHeight: r.frameHeight || 0 };
    });
    return out;
  });
}

test('a Firefox publisher sends q, h and f; audio only from Firefox', { timeout: 150_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Simulcast — Firefox'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Nông Thị Xuân', facility: 'BVĐK tỉnh' });
  const nurseLink = await mintLink(room.id, { role: 'nurse', name: 'ĐD. Hoàng Văn Pao', facility: 'TYT xã' });
  const [chromium, firefox] = await Promise.all([launchChromium(), launchFirefox()]);
  const doctor = await openParticipant(firefox, 'doctor (firefox)', 'firefox');
  const nurse = await openParticipant(chromium, 'nurse (chromium)', 'chromium');
  const all = [doctor, nurse];

  await withDiagnostics(all, async () => {
    await openJoinPage(doctor, doctorLink, { timeoutMs: 45_000 });
    await doctor.waitForState('in-call', 45_000);
    await openJoinPage(nurse, nurseLink);
    await nurse.waitForState('in-call');
    const doctorId = await doctor.id();
    const nurseId = await nurse.id();
    assert.equal(await doctor.page.evaluate(() => window.tuxa.simulcast), 3, 'Firefox took the three encodings');

    await expectReceiving(nurse, [doctorId], { timeoutMs: 40_000 });
    let before = null;
    await waitFor('Firefox to send frames on q, h and f', async () => {
      const cur = await outboundByRid(doctor);
      const ok = ['q', 'h', 'f'].every((rid) => cur[rid] && cur[rid].bytesSent > (before && before[rid] ? before[rid].bytesSent : 0));
      const all3 = ['q', 'h', 'f'].every((rid) => cur[rid] && cur[rid].bytesSent > 0);
      const done = ok && before !== null;
      if (all3) before = cur;
      return done;
    }, 30_000, 1_000);
    // What each layer carries now (informational: the rates follow the
    // bandwidth estimate the SFU gives Firefox).
    const w0 = await outboundByRid(doctor);
    await sleep(5_000);
    const layers = await outboundByRid(doctor);
    const rates = Object.fromEntries(['q', 'h', 'f'].map((rid) => [rid, {
      kbps: Math.round(((layers[rid].bytesSent - w0[rid].bytesSent) * 8) / 5_000),
      fps: (layers[rid].framesEncoded - w0[rid].framesEncoded) / 5,
      height: layers[rid].frameHeight,
    }]));
    const aob = await doctor.page.evaluate(async () => {
      let v = null;
      (await window.tuxa.pc.getStats()).forEach((r) => { if (r.type === 'candidate-pair' && r.availableOutgoingBitrate) v = r.availableOutgoingBitrate; });
      return v;
    });
    console.log('firefox outbound video by rid over 5 s:', JSON.stringify(rates), 'availableOutgoingBitrate:', aob);
    assert.ok(rates.q.height < rates.h.height && rates.h.height < rates.f.height, JSON.stringify(rates));
    const answer = await doctor.page.evaluate(() => window.tuxa.lastAnswerSdp);
    assert.match(answer, /a=simulcast:recv /);

    // Audio only, from Firefox: no camera bytes, the server confirms.
    await doctor.page.evaluate(() => document.getElementById('audio-only-btn').click());
    await waitFor('the server to confirm audio only', () => doctor.page.evaluate(
      () => window.tuxa.audioOnly.server === 'requested'), 10_000);
    const enc = await doctor.page.evaluate(() => window.tuxa.pc.getSenders()
      .filter((s) => s.track && s.track.kind === 'video').map((s) => s.getParameters().encodings.map((e) => e.active)));
    assert.deepEqual(enc, [[false, false, false]]);
    await sleep(2_000);
    const a = await outboundByRid(doctor);
    await sleep(3_000);
    const b = await outboundByRid(doctor);
    const sent = ['q', 'h', 'f'].reduce((n, rid) => n + (b[rid].bytesSent - a[rid].bytesSent), 0);
    console.log('firefox camera bytes in 3 s of audio only:', sent);
    assert.ok(sent < 2_000, `Firefox's camera sends nothing in audio only: ${sent} bytes`);
    await doctor.page.evaluate(() => document.getElementById('audio-only-btn').click());
    await waitFor('video again', () => doctor.page.evaluate(() => window.tuxa.audioOnly.server === null), 10_000);
    await Promise.all([
      expectReceiving(nurse, [doctorId], { timeoutMs: 30_000 }),
      expectReceiving(doctor, [nurseId], { timeoutMs: 30_000 }),
    ]);
    for (const p of all) await p.assertNoErrors();
  });
});
