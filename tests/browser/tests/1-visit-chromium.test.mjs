// 1:1 visit in Chromium: a doctor and a patient, each in their own window,
// each decodes the other's video and receives their audio, and each page
// labels the other's tile with their name, role and facility.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  expectReceiving, tiles, withDiagnostics, uniqueTitle, waitFor,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

test('1:1 visit: doctor and patient see and hear each other (Chromium)', { timeout: 120_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám từ xa — Nội khoa'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Trần Thị Lan', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Nguyễn Văn An', facility: 'Trạm y tế xã Tân Lập' });

  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const patient = await openParticipant(browser, 'patient');
  const all = [doctor, patient];

  await withDiagnostics(all, async () => {
    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    await patient.goto(joinUrl(patientLink));
    await patient.waitForState('in-call');

    // Each window is a foreground page, not a throttled background tab.
    for (const p of all) {
      assert.equal(await p.page.evaluate(() => document.visibilityState), 'visible', `${p.name} page hidden`);
    }

    const doctorId = await doctor.id();
    const patientId = await patient.id();
    assert.ok(doctorId && patientId && doctorId !== patientId, `ids ${doctorId} ${patientId}`);

    const [atDoctor, atPatient] = await Promise.all([
      expectReceiving(doctor, [patientId]),
      expectReceiving(patient, [doctorId]),
    ]);
    console.log('doctor receives', JSON.stringify(atDoctor));
    console.log('patient receives', JSON.stringify(atPatient));

    // The tile labels carry the other's name, translated role and facility.
    const dTiles = await tiles(doctor);
    assert.deepEqual(dTiles.map((x) => x.pid), [patientId]);
    assert.equal(dTiles[0].name, 'Nguyễn Văn An');
    assert.match(dTiles[0].meta, /Bệnh nhân/);
    assert.match(dTiles[0].meta, /Trạm y tế xã Tân Lập/);
    const pTiles = await tiles(patient);
    assert.deepEqual(pTiles.map((x) => x.pid), [doctorId]);
    assert.equal(pTiles[0].name, 'BS. Trần Thị Lan');
    assert.match(pTiles[0].meta, /Bác sĩ/);

    // Mute: the patient turns the microphone off; the doctor sees the indicator.
    await patient.page.click('#screen-call .mic-toggle');
    await doctor.page.waitForFunction(
      (pid) => {
        const b = document.querySelector(`.tile[data-pid="${pid}"] .badge-mic`);
        return b && !b.hidden;
      },
      { timeout: 10_000 }, patientId,
    );
    await patient.page.click('#screen-call .mic-toggle');
    await doctor.page.waitForFunction(
      (pid) => document.querySelector(`.tile[data-pid="${pid}"] .badge-mic`)?.hidden === true,
      { timeout: 10_000 }, patientId,
    );

    // Camera off: the doctor sees initials and the camera badge, then the picture again.
    const tileState = (pid) => doctor.page.evaluate((id) => {
      const el = document.querySelector(`.tile[data-pid="${id}"]`);
      return { noVideo: el.classList.contains('no-video'), camBadge: !el.querySelector('.badge-cam').hidden };
    }, pid);
    await patient.page.click('#screen-call .cam-toggle');
    await waitFor('camera-off shown', async () => {
      const st = await tileState(patientId);
      return st.noVideo && st.camBadge;
    }, 10_000);
    await patient.page.click('#screen-call .cam-toggle');
    await waitFor('camera back on', async () => {
      const st = await tileState(patientId);
      return !st.noVideo && !st.camBadge;
    }, 10_000);
    await expectReceiving(doctor, [patientId]);

    for (const p of all) await p.assertNoErrors();

    // The language switch re-labels the tile in English.
    await doctor.page.click('#lang-btn');
    assert.match((await tiles(doctor))[0].meta, /Patient/);
    await doctor.page.click('#lang-btn');
    assert.match((await tiles(doctor))[0].meta, /Bệnh nhân/);
  });
});
