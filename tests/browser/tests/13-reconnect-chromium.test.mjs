// Bad networks in Chromium: a patient's WebSocket dies in the middle of a
// visit (the page's socket is closed under it, as when a 3G link drops).
// The page shows "Đang kết nối lại…" and rejoins by itself with the same link
// (consent answers sent again); the server gives the same place back
// (`joined` with `resumed`), and doctor and patient see and hear each other
// again. The doctor does nothing: their page shows the patient as
// reconnecting, then back, never as gone. Meanwhile both pages send their
// link telemetry, and the doctor (a moderator) sees the patient's.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, launchChromium, openParticipant, closeAllBrowsers, expectReceiving,
  withDiagnostics, uniqueTitle, waitFor, openJoinPage, decideInLobby, history,
} from '../lib/harness.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

test('a dropped WebSocket: the patient page rejoins by itself, keeps its place, media flows again (Chromium)', { timeout: 150_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám từ xa — vùng núi'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Hà Giang', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Lò Thị Mai', facility: 'Trạm y tế xã Lũng Cú' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const patient = await openParticipant(browser, 'patient');
  const all = [doctor, patient];

  await withDiagnostics(all, async () => {
    await openJoinPage(doctor, doctorLink);
    await doctor.waitForState('in-call');
    await openJoinPage(patient, patientLink);
    await patient.waitForState('waiting');
    await decideInLobby(doctor, 'Lò Thị Mai');
    await patient.waitForState('in-call');
    const doctorId = await doctor.id();
    const patientId = await patient.id();
    await Promise.all([expectReceiving(doctor, [patientId]), expectReceiving(patient, [doctorId])]);

    // The doctor gets the patient's link figures (every 5 s), graded.
    await waitFor('the doctor to see the patient\'s link quality', async () => doctor.page.evaluate(
      (pid) => !!window.tuxa.linkQuality[pid], patientId), 20_000);
    const lq = await doctor.page.evaluate((pid) => ({
      q: window.tuxa.linkQuality[pid],
      tile: document.querySelector(`#grid .tile[data-pid="${pid}"] .meta.link`)?.textContent || '',
    }), patientId);
    console.log('doctor sees the patient link:', JSON.stringify(lq));
    assert.ok(['good', 'fair', 'poor'].includes(lq.q.grade), JSON.stringify(lq));
    assert.equal(typeof lq.q.stats.audio_only, 'boolean');
    assert.ok(lq.tile.length > 0, 'the tile shows the link');
    assert.equal(await patient.page.evaluate(() => Object.keys(window.tuxa.linkQuality).length), 0,
      'a patient is not a moderator: no link_quality');
    assert.ok(await patient.page.evaluate(() => window.tuxa.statsSent) >= 1);

    // The patient's WebSocket dies.
    const t0 = Date.now();
    await patient.page.evaluate(() => window.tuxa.ws.close());
    await waitFor('the patient page to say it reconnects', async () => patient.page.evaluate(() => (
      window.tuxa.history.includes('reconnecting'))), 10_000);
    await patient.waitForState('in-call', 30_000);
    const back = await patient.page.evaluate(() => ({
      id: String(window.tuxa.you.id), reconnects: window.tuxa.reconnects,
      consents: window.tuxa.log.filter((l) => l.includes('→ consent')).length,
      resumed: window.tuxa.log.some((l) => l.includes('reconnected: our place was kept')),
    }));
    assert.equal(back.id, patientId, 'the same participant');
    assert.equal(back.reconnects, 1);
    assert.equal(back.consents, 2, 'consent sent again on the new session');
    assert.ok(back.resumed, 'joined said resumed');
    assert.ok((await history(patient)).join(' ').includes('in-call reconnecting in-call'));

    // The doctor saw "reconnecting" (or the page was back before the tile
    // was drawn) and never lost the patient.
    const seen = await doctor.page.evaluate((pid) => ({
      log: window.tuxa.log.filter((l) => l.includes('participant_reconnect') || l.includes('participant_left')),
      present: !!window.tuxa.participants[pid],
      stillMarked: !!window.tuxa.reconnectingPeers[pid],
    }), patientId);
    console.log('doctor saw:', JSON.stringify(seen));
    assert.ok(seen.log.some((l) => l.includes('participant_reconnecting')), JSON.stringify(seen.log));
    assert.ok(seen.log.some((l) => l.includes('participant_reconnected')), JSON.stringify(seen.log));
    assert.ok(!seen.log.some((l) => l.includes('participant_left')), JSON.stringify(seen.log));
    assert.ok(seen.present && !seen.stillMarked);

    // Media again both ways.
    const [atDoctor, atPatient] = await Promise.all([
      expectReceiving(doctor, [patientId], { timeoutMs: 40_000 }),
      expectReceiving(patient, [doctorId], { timeoutMs: 40_000 }),
    ]);
    console.log(`media both ways again ${((Date.now() - t0) / 1000).toFixed(1)} s after the socket died`,
      JSON.stringify(atDoctor), JSON.stringify(atPatient));
    assert.equal(STRINGS.vi.reconnecting, 'Đang kết nối lại…');
    await doctor.assertNoErrors();
    await patient.assertNoErrors();
  });
});
