// A patient whose browser refuses the camera and microphone can still join:
// the preview says so, the page publishes nothing and receives the doctor's
// video and audio; the doctor sees the patient's tile with initials.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  expectReceiving, tiles, withDiagnostics, uniqueTitle, decideInLobby,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

test('a participant without camera and microphone receives (Chromium)', { timeout: 120_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám từ xa — không camera'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Ngô Thanh Tâm', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Lý Thị Mai' });

  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const patient = await openParticipant(browser, 'patient (camera refused)');
  // As if the user had answered "Block" to the permission prompt.
  await patient.page.evaluateOnNewDocument(() => {
    const refuse = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    Object.defineProperty(navigator.mediaDevices, 'getUserMedia', { value: refuse });
  });

  await withDiagnostics([doctor, patient], async () => {
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('preview');
    assert.equal(await patient.page.evaluate(() => document.getElementById('media-warning').hidden), false,
      'no warning about the camera');
    await patient.page.click('#consent-exam');
    await patient.page.click('#join-btn');
    await patient.waitForState('waiting');
    // Without a camera the waiting screen says so instead of a black picture.
    assert.equal(await patient.page.evaluate(() => document.getElementById('waiting-off').hidden), false);

    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    await decideInLobby(doctor, 'Lý Thị Mai', 'admit');
    await patient.waitForState('in-call');
    const doctorId = await doctor.id();
    const patientId = await patient.id();

    console.log('patient receives', JSON.stringify(await expectReceiving(patient, [doctorId])));
    const shown = await tiles(doctor);
    assert.deepEqual(shown.map((x) => x.pid), [patientId]);
    assert.equal(shown[0].name, 'Lý Thị Mai');
    assert.ok(await doctor.page.evaluate(
      (pid) => document.querySelector(`.tile[data-pid="${pid}"]`).classList.contains('no-video'), patientId,
    ), 'the patient tile should show initials, not video');
    await patient.assertNoErrors();
    await doctor.assertNoErrors();
  });
});
