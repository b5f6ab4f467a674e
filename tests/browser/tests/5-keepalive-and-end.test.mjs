// A doctor alone in a call, and a patient left waiting in the lobby, for
// longer than the server's idle timeout: both stay (the pages ping every
// keepalive_interval_ms, the waiting one too); then the consultation is ended
// through the API and both pages show the end screen "Buổi khám đã kết thúc"
// (room_ended), the waiting patient without ever entering the call.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, endConsultation, joinUrl, launchChromium, openParticipant,
  closeAllBrowsers, withDiagnostics, uniqueTitle, sleep, waitInLobby, lobbyPanel, history, openJoinPage,
} from '../lib/harness.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

// 45 s is the protocol's IDLE_TIMEOUT_MS; stay a little longer.
const STAY_MS = Number(process.env.TUXA_KEEPALIVE_TEST_MS || 50_000);

test('pings keep quiet sessions alive, in the call and in the lobby; ending the consultation shows room_ended', { timeout: STAY_MS + 90_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Chờ bệnh nhân'));
  const link = await mintLink(room.id, { role: 'doctor', name: 'BS. Kiên Nhẫn', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Đinh Văn Chờ' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor (alone)');
  const patient = await openParticipant(browser, 'patient (never admitted)');

  await withDiagnostics([doctor, patient], async () => {
    await doctor.goto(joinUrl(link));
    await doctor.waitForState('in-call');
    const timers = await doctor.page.evaluate(() => window.tuxa.log.find((l) => l.includes('← welcome')));
    console.log('welcome:', timers);
    await openJoinPage(patient, patientLink);
    await patient.waitForState('waiting');
    await waitInLobby(doctor, 'Đinh Văn Chờ');

    await sleep(STAY_MS);
    const read = (p) => p.page.evaluate(() => ({ state: window.tuxa.state, lastPong: window.tuxa.lastPong, errors: window.tuxa.errors }));
    const s = await read(doctor);
    const w = await read(patient);
    console.log('after', STAY_MS, 'ms: doctor', JSON.stringify(s), 'patient', JSON.stringify(w));
    assert.equal(s.state, 'in-call');
    assert.ok(s.lastPong >= 2, `doctor pongs: ${s.lastPong}`);
    assert.equal(w.state, 'waiting');
    assert.ok(w.lastPong >= 2, `patient pongs: ${w.lastPong}`);
    await doctor.assertNoErrors();
    await patient.assertNoErrors();
    // Still waiting for the other side, who still waits in the lobby.
    assert.equal(await doctor.page.evaluate(() => document.getElementById('waiting').hidden), false);
    assert.deepEqual((await lobbyPanel(doctor)).entries.map((e) => e.name), ['Đinh Văn Chờ']);

    await endConsultation(room.id);
    for (const p of [doctor, patient]) {
      await p.waitForState('ended', 15_000);
      const r = await p.page.evaluate(() => ({
        reason: window.tuxa.ended && window.tuxa.ended.reason,
        title: document.getElementById('ended-title').textContent,
      }));
      assert.equal(r.reason, 'ended', p.name);
      assert.equal(r.title, STRINGS.vi.ended_title, p.name);
    }
    assert.ok(!(await history(patient)).includes('in-call'), 'the waiting patient entered the call');
  });
});
