// 1:1 between Firefox ESR (WebDriver BiDi) and Chromium. Firefox has no
// H.264 here, so the call must work with VP8. The Firefox patient joins
// first and waits in the lobby; the Chromium doctor admits them on arrival.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, launchFirefox, openParticipant,
  closeAllBrowsers, expectReceiving, tiles, withDiagnostics, uniqueTitle, decideInLobby, openJoinPage,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

test('1:1 visit between Firefox ESR and Chromium', { timeout: 150_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám từ xa — Firefox'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Đỗ Thu Trang', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Bùi Văn Bình' });

  const [chromium, firefox] = await Promise.all([launchChromium(), launchFirefox()]);
  const doctor = await openParticipant(chromium, 'doctor (chromium)', 'chromium');
  const patient = await openParticipant(firefox, 'patient (firefox)', 'firefox');
  const all = [doctor, patient];

  await withDiagnostics(all, async () => {
    await openJoinPage(patient, patientLink, { timeoutMs: 45_000 });
    await patient.waitForState('waiting', 45_000);
    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    // The lobby list comes right after the doctor's `joined`.
    await decideInLobby(doctor, 'Bùi Văn Bình', 'admit');
    await patient.waitForState('in-call', 45_000);

    const doctorId = await doctor.id();
    const patientId = await patient.id();

    const [atDoctor, atPatient] = await Promise.all([
      expectReceiving(doctor, [patientId], { timeoutMs: 40_000 }),
      expectReceiving(patient, [doctorId], { timeoutMs: 40_000 }),
    ]);
    console.log('chromium receives', JSON.stringify(atDoctor));
    console.log('firefox receives', JSON.stringify(atPatient));

    // Which video codec each side decodes (VP8 expected with Firefox here).
    const codecs = await Promise.all(all.map((p) => p.page.evaluate(async () => {
      const out = [];
      const report = await window.tuxa.pc.getStats();
      report.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && r.codecId && report.get(r.codecId)) {
          out.push(report.get(r.codecId).mimeType);
        }
      });
      return out;
    })));
    console.log('decoded video codecs: chromium', codecs[0], 'firefox', codecs[1]);

    for (const p of all) await p.assertNoErrors();
    assert.equal((await tiles(doctor))[0]?.name, 'Bùi Văn Bình');
    assert.equal((await tiles(patient))[0]?.name, 'BS. Đỗ Thu Trang');
  });
});
