// 1:1 visit in Chromium: a doctor and a patient, each in their own window.
// The patient ticks their consent to the remote examination on the preview
// (Join stays disabled until then), then waits in the lobby (waiting screen, own camera preview)
// until the doctor clicks Admit in the lobby panel; then each decodes the
// other's video and receives their audio, and each page labels the other's
// tile with their name, role and facility.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  expectReceiving, tiles, withDiagnostics, uniqueTitle, waitFor, lobbyPanel, waitInLobby, history, clickSettled,
} from '../lib/harness.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

test('1:1 visit: the doctor admits the patient from the lobby, then they see and hear each other (Chromium)', { timeout: 120_000 }, async () => {
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
    assert.equal((await lobbyPanel(doctor)).visible, false, 'empty lobby panel shown');

    // The patient's preview asks for consent, one tick per purpose, none
    // ticked in advance; Join waits for the examination one.
    assert.equal(await doctor.page.evaluate(() => document.getElementById('consent').hidden), true, 'consent asked of a doctor');
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('preview');
    const consentForm = () => patient.page.evaluate(() => ({
      shown: !document.getElementById('consent').hidden,
      ticked: [...document.querySelectorAll('#consent input')].map((i) => i.checked),
      joinDisabled: document.getElementById('join-btn').disabled,
      hint: !document.getElementById('consent-needed').hidden,
    }));
    assert.deepEqual(await consentForm(), { shown: true, ticked: [false, false, false], joinDisabled: true, hint: true });
    await patient.page.click('#consent-exam');
    assert.deepEqual(await consentForm(), { shown: true, ticked: [true, false, false], joinDisabled: false, hint: false });
    await patient.page.click('#join-btn');

    // The patient waits: the waiting screen, with their name and role and
    // their own camera picture, and no call yet.
    await patient.waitForState('waiting');
    const consent = await patient.page.evaluate(() => window.tuxa.consent);
    assert.equal(consent.remote_examination, true);
    assert.equal(consent.third_parties, false);
    assert.equal(consent.recording, false);
    assert.match(consent.text_version, /^vi-/);
    assert.ok(consent.at > 0, 'no consent_recorded');
    const waiting = await patient.page.evaluate(() => ({
      shown: !document.getElementById('screen-waiting').hidden,
      callShown: !document.getElementById('screen-call').hidden,
      title: document.getElementById('waiting-title').textContent,
      name: document.getElementById('wait-name').textContent,
      role: document.getElementById('wait-role').textContent,
      leave: !document.getElementById('waiting-leave-btn').hidden,
      preview: (() => {
        const v = document.getElementById('waiting-video');
        return !!v.srcObject && v.srcObject.getVideoTracks().some((tr) => tr.readyState === 'live');
      })(),
      pc: !!window.tuxa.pc,
    }));
    assert.deepEqual(waiting, {
      shown: true, callShown: false, title: STRINGS.vi.waiting_title, name: 'Nguyễn Văn An',
      role: 'Bệnh nhân', leave: true, preview: true, pc: false,
    });
    assert.equal(waiting.title, 'Vui lòng chờ, bác sĩ sẽ mời bạn vào phòng');

    // The doctor's lobby panel lists the patient, with a count badge.
    const entry = await waitInLobby(doctor, 'Nguyễn Văn An');
    const panel = await lobbyPanel(doctor);
    assert.equal(panel.count, '1');
    assert.equal(panel.entries.length, 1);
    assert.match(entry.meta, /Bệnh nhân/);
    assert.match(entry.meta, /Trạm y tế xã Tân Lập/);
    assert.ok(entry.refuseVisible, 'no Refuse button');
    assert.deepEqual(panel.lobby.map((p) => String(p.id)), [entry.pid]);
    assert.deepEqual(await tiles(doctor), [], 'a waiting patient must not have a tile');
    // In English the panel's buttons say Admit / Refuse.
    await doctor.page.click('#lang-btn');
    assert.deepEqual(await doctor.page.$$eval('#lobby-list button', (bs) => bs.map((b) => b.textContent)), ['Admit', 'Refuse']);
    await doctor.page.click('#lang-btn');
    assert.deepEqual(await doctor.page.$$eval('#lobby-list button', (bs) => bs.map((b) => b.textContent)), ['Cho vào', 'Từ chối']);

    // Admit: the patient enters the call; the lobby panel empties.
    await clickSettled(doctor, `#lobby-list .lobby-entry[data-pid="${entry.pid}"] [data-action="admit"]`);
    await patient.waitForState('in-call');
    await waitFor('the lobby panel to empty', async () => {
      const p = await lobbyPanel(doctor);
      return !p.visible && p.entries.length === 0 && p.lobby.length === 0;
    }, 10_000);
    const states = await history(patient);
    assert.ok(states.indexOf('waiting') >= 0 && states.indexOf('waiting') < states.indexOf('in-call'), `patient states ${states}`);
    assert.ok(!(await history(doctor)).includes('waiting'), 'the doctor should enter directly');

    // Each window is a foreground page, not a throttled background tab.
    for (const p of all) {
      assert.equal(await p.page.evaluate(() => document.visibilityState), 'visible', `${p.name} page hidden`);
    }

    const doctorId = await doctor.id();
    const patientId = await patient.id();
    assert.ok(doctorId && patientId && doctorId !== patientId, `ids ${doctorId} ${patientId}`);
    assert.equal(patientId, entry.pid, 'the admitted participant keeps the id shown in the lobby');

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
    await clickSettled(patient, '#screen-call .mic-toggle');
    await doctor.page.waitForFunction(
      (pid) => {
        const b = document.querySelector(`.tile[data-pid="${pid}"] .badge-mic`);
        return b && !b.hidden;
      },
      { timeout: 10_000 }, patientId,
    );
    await clickSettled(patient, '#screen-call .mic-toggle');
    await doctor.page.waitForFunction(
      (pid) => document.querySelector(`.tile[data-pid="${pid}"] .badge-mic`)?.hidden === true,
      { timeout: 10_000 }, patientId,
    );

    // Camera off: the doctor sees initials and the camera badge, then the picture again.
    const tileState = (pid) => doctor.page.evaluate((id) => {
      const el = document.querySelector(`.tile[data-pid="${id}"]`);
      return { noVideo: el.classList.contains('no-video'), camBadge: !el.querySelector('.badge-cam').hidden };
    }, pid);
    await clickSettled(patient, '#screen-call .cam-toggle');
    await waitFor('camera-off shown', async () => {
      const st = await tileState(patientId);
      return st.noVideo && st.camBadge;
    }, 10_000);
    await clickSettled(patient, '#screen-call .cam-toggle');
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
