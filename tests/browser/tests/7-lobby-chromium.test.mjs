// The lobby's other ways out (Chromium): a patient refused by the doctor sees
// "Bác sĩ chưa cho bạn vào phòng" (the fatal `refused`) and never reaches the
// call; a guest who gives up waiting leaves with the Leave button of the
// waiting screen, and the doctor's lobby panel forgets them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  withDiagnostics, uniqueTitle, waitFor, sleep, lobbyPanel, waitInLobby, decideInLobby, tiles, history,
  openJoinPage,
} from '../lib/harness.mjs';
import { ERROR_TEXTS, STRINGS } from '../../../web-client/i18n.js';

let browser;
before(async () => {
  browser = await launchChromium();
});
after(closeAllBrowsers);

async function doctorInRoom(kind, title, name) {
  const room = await createConsultation(kind, uniqueTitle(title));
  const link = await mintLink(room.id, { role: 'doctor', name, facility: 'BVĐK tỉnh' });
  const doctor = await openParticipant(browser, `doctor ${name}`);
  await doctor.goto(joinUrl(link));
  await doctor.waitForState('in-call');
  return { room, doctor };
}

test('a patient refused by the doctor sees the refusal and never enters the call', { timeout: 90_000 }, async () => {
  const { room, doctor } = await doctorInRoom('visit', 'Khám từ xa — từ chối', 'BS. Vũ Hải Nam');
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Trịnh Văn Lạ' });
  const patient = await openParticipant(browser, 'patient (refused)');

  await withDiagnostics([doctor, patient], async () => {
    await openJoinPage(patient, patientLink);
    await patient.waitForState('waiting');
    await decideInLobby(doctor, 'Trịnh Văn Lạ', 'refuse');

    await patient.waitForState('error', 15_000);
    await sleep(1_000); // would a late message still take it into the call?
    const r = await patient.page.evaluate(() => ({
      state: window.tuxa.state,
      code: window.tuxa.error,
      text: document.getElementById('error-text').textContent,
      shown: !document.getElementById('screen-error').hidden,
      retry: !document.getElementById('retry-btn').hidden,
      pc: !!window.tuxa.pc,
    }));
    assert.deepEqual(r, {
      state: 'error', code: 'refused', text: ERROR_TEXTS.vi.refused, shown: true, retry: false, pc: false,
    });
    assert.match(r.text, /^Bác sĩ chưa cho bạn vào phòng/);
    const states = await history(patient);
    assert.ok(states.includes('waiting'), `patient states ${states}`);
    assert.ok(!states.includes('in-call'), `the refused patient reached in-call: ${states}`);

    await patient.page.click('#lang-btn');
    assert.equal(await patient.page.evaluate(() => document.getElementById('error-text').textContent), ERROR_TEXTS.en.refused);
    assert.match(ERROR_TEXTS.en.refused, /^The doctor did not let you in/);

    // The doctor's side: the lobby is empty again, no tile, still in the call.
    await waitFor('the lobby panel to empty', async () => {
      const p = await lobbyPanel(doctor);
      return !p.visible && p.lobby.length === 0;
    }, 10_000);
    assert.deepEqual(await tiles(doctor), []);
    assert.equal(await doctor.state(), 'in-call');
    await doctor.assertNoErrors();
  });
});

test('a guest who gives up waiting leaves from the waiting screen', { timeout: 90_000 }, async () => {
  const { room, doctor } = await doctorInRoom('conference', 'Hội chẩn — khách về sớm', 'BS. Mai Anh Tuấn');
  const guestLink = await mintLink(room.id, { role: 'guest', name: 'Khách Vội Vàng', facility: 'Sở Y tế' });
  const guest = await openParticipant(browser, 'guest (leaves while waiting)');

  await withDiagnostics([doctor, guest], async () => {
    await openJoinPage(guest, guestLink);
    await guest.waitForState('waiting');
    // Consent is asked of patients only.
    assert.equal(await guest.page.evaluate(() => window.tuxa.consent), null);
    const entry = await waitInLobby(doctor, 'Khách Vội Vàng');
    assert.match(entry.meta, /Khách mời · Sở Y tế/);
    assert.equal((await lobbyPanel(doctor)).count, '1');
    // The page title counts who waits (for a doctor whose tab is behind another).
    assert.match(await doctor.page.title(), /^\(1\) /);

    // The waiting screen in English.
    await guest.page.click('#lang-btn');
    assert.equal(await guest.page.evaluate(() => document.getElementById('waiting-title').textContent),
      STRINGS.en.waiting_title);
    assert.equal(STRINGS.en.waiting_title, 'Please wait — the doctor will let you in');
    assert.equal(await guest.page.evaluate(() => document.getElementById('wait-role').textContent), 'Guest');

    await guest.page.click('#waiting-leave-btn');
    await guest.waitForState('left', 10_000);
    assert.ok(!(await history(guest)).includes('in-call'));
    await waitFor('the lobby panel to forget the guest', async () => !(await lobbyPanel(doctor)).visible, 10_000);
    assert.doesNotMatch(await doctor.page.title(), /^\(/);
    assert.equal(await doctor.state(), 'in-call');
    await doctor.assertNoErrors();
    await guest.assertNoErrors();
  });
});
