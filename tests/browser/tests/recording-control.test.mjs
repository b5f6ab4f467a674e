// Recording control (issue 13), in Chromium: the doctor of a visit starts
// recording; the patient (on a 390 x 844 phone viewport) and a guest see the
// steady "● Đang ghi hình" indicator; a guest opening the link sees "Buổi
// tư vấn này đang được ghi hình" on the preview and in the lobby, before
// entering; the patient withdraws consent from the call and the indicator
// goes away on every page at once; the doctor cannot start it again without
// consent; the record's audit entries say who started and why it stopped.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  createConsultation, mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  withDiagnostics, uniqueTitle, waitFor, decideInLobby, request, sleep,
} from '../lib/harness.mjs';
import { STRINGS, ERROR_TEXTS } from '../../../web-client/i18n.js';

const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 };
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 11; SM-A115F) AppleWebKit/537.36 (KHTML, like Gecko) '
  + 'Chrome/124.0.0.0 Mobile Safari/537.36';
const DESKTOP = { width: 1366, height: 768 };

const SHOTS = process.env.TUXA_SHOTS || '';
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
async function shot(who, name) {
  if (SHOTS) await who.page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

let browser;
before(async () => {
  browser = await launchChromium();
});
after(closeAllBrowsers);

/** What a page shows of the recording. */
function recView(who) {
  return who.page.evaluate(() => {
    const el = (id) => document.getElementById(id);
    const shown = (id) => !!el(id) && !el(id).hidden && el(id).getBoundingClientRect().height > 0;
    return {
      state: window.tuxa.recording.state,
      reason: window.tuxa.recording.reason ?? null,
      strip: shown('rec-strip'),
      // As read on screen: the red dot, then the words.
      text: shown('rec-strip')
        ? [...el('rec-strip').querySelectorAll('.rec-dot, #rec-strip-text')].map((e) => e.textContent).join(' ') : '',
      button: shown('rec-btn') ? el('rec-label').textContent : null,
      withdraw: shown('rec-withdraw-btn'),
      lobby: shown('waiting-rec') ? el('waiting-rec-text').textContent : null,
      preview: shown('preview-rec') ? el('preview-rec-text').textContent : null,
    };
  });
}

/** Whether an element fits the viewport across (a phone must not scroll sideways for it). */
function fits(who, id) {
  return who.page.evaluate((id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return {
      page: document.documentElement.scrollWidth <= window.innerWidth,
      inside: r.left >= 0 && r.right <= window.innerWidth && r.width > 0,
    };
  }, id);
}

test('the doctor records a visit; everyone sees it; the patient withdraws and it stops everywhere', { timeout: 180_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám từ xa — ghi hình'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Lê Thu Hà', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Phạm Văn Đồng Ý' });
  const guestLink = await mintLink(room.id, { role: 'guest', name: 'Người nhà Khách', facility: 'Gia đình' });

  const doctor = await openParticipant(browser, 'doctor');
  await doctor.page.setViewport(DESKTOP);
  const patient = await openParticipant(browser, 'patient (phone)');
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);
  const guest = await openParticipant(browser, 'guest');
  await guest.page.setViewport(DESKTOP);

  await withDiagnostics([doctor, patient, guest], async () => {
    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    // Nothing recorded yet: no indicator, and the doctor's button offers to start.
    assert.deepEqual(await recView(doctor), {
      state: 'off', reason: null, strip: false, text: '', button: STRINGS.vi.rec_start,
      withdraw: false, lobby: null, preview: null,
    });

    // The patient consents to the examination and to recording, on the phone.
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('preview');
    assert.equal((await recView(patient)).preview, null, 'not recorded: the preview says nothing');
    await patient.page.click('#consent-exam');
    await patient.page.click('#consent-recording');
    await patient.page.click('#join-btn');
    await patient.waitForState('waiting');
    await decideInLobby(doctor, 'Phạm Văn Đồng Ý');
    await patient.waitForState('in-call');
    assert.equal((await recView(patient)).button, null, 'a patient has no start button');

    // The doctor starts it: every page in the room shows the indicator.
    await doctor.page.click('#rec-btn');
    for (const who of [doctor, patient]) {
      await waitFor(`${who.name} to show the indicator`, async () => (await recView(who)).strip, 10_000);
    }
    const dv = await recView(doctor);
    assert.equal(dv.state, 'on');
    assert.equal(dv.text, `● ${STRINGS.vi.rec_on}`);
    assert.match(await doctor.page.evaluate(() => document.getElementById('rec-strip').innerText), /^●\s+Đang ghi hình/);
    assert.equal(dv.text, '● Đang ghi hình');
    assert.equal(dv.button, STRINGS.vi.rec_stop);
    const pv = await recView(patient);
    assert.equal(pv.text, '● Đang ghi hình');
    assert.equal(pv.withdraw, true, 'the consenting patient may withdraw from the call');
    // On the phone the strip and its button fit across.
    assert.deepEqual(await fits(patient, 'rec-strip'), { page: true, inside: true });
    assert.deepEqual(await fits(patient, 'rec-withdraw-btn'), { page: true, inside: true });
    await shot(patient, 'rec-phone-on');
    await shot(doctor, 'rec-desktop-on');

    // A guest is told before entering: on the preview, then in the lobby.
    await guest.goto(joinUrl(guestLink, { autojoin: false }));
    await guest.waitForState('preview');
    assert.equal((await recView(guest)).preview, STRINGS.vi.rec_notice);
    assert.equal(STRINGS.vi.rec_notice, 'Buổi tư vấn này đang được ghi hình');
    await shot(guest, 'rec-preview');
    await guest.page.click('#join-btn');
    await guest.waitForState('waiting');
    await waitFor('the lobby notice', async () => (await recView(guest)).lobby === STRINGS.vi.rec_notice, 10_000);
    await guest.page.click('#lang-btn');
    assert.equal((await recView(guest)).lobby, STRINGS.en.rec_notice);
    await guest.page.click('#lang-btn');
    await decideInLobby(doctor, 'Người nhà Khách');
    await guest.waitForState('in-call');
    await waitFor('the guest to show the indicator', async () => (await recView(guest)).strip, 10_000);
    assert.equal((await recView(guest)).text, '● Đang ghi hình');

    // The patient withdraws: the indicator goes on every page, within a second or so.
    // (Pages of one browser share a clock: the click's time and each page's
    // receipt are comparable. Logged, not asserted: speed is a benchmark.)
    const t0 = await patient.page.evaluate(() => {
      const at = Date.now();
      document.getElementById('rec-withdraw-btn').click();
      return at;
    });
    for (const who of [doctor, patient, guest]) {
      await waitFor(`${who.name} to drop the indicator`, async () => {
        const v = await recView(who);
        return !v.strip && v.state === 'off' && v.reason === 'consent_withdrawn';
      }, 5_000);
    }
    for (const who of [doctor, patient, guest]) {
      const seen = await who.page.evaluate(() => window.tuxa.recordingSeen.at(-1));
      console.log(`${who.name}: recording off ${seen.at - t0} ms after the patient's click`);
    }
    assert.equal((await recView(doctor)).button, STRINGS.vi.rec_start);
    const consent = await patient.page.evaluate(() => window.tuxa.consent);
    assert.equal(consent.recording, false);
    assert.equal(consent.remote_examination, true, 'only the recording answer changed');
    // Everyone is told why.
    const notices = await doctor.page.evaluate(() => window.tuxa.notices);
    assert.ok(notices.includes(STRINGS.vi.rec_stopped_withdrawn), JSON.stringify(notices));
    await shot(patient, 'rec-phone-off');

    // It cannot be started again without the patient's consent.
    await doctor.page.click('#rec-btn');
    await waitFor('the refusal', async () => (await doctor.page.evaluate(() => window.tuxa.errors))
      .includes('recording_consent_missing'), 10_000);
    assert.equal(await doctor.page.evaluate(() => document.getElementById('call-banner').textContent),
      ERROR_TEXTS.vi.recording_consent_missing);
    await sleep(500);
    for (const who of [doctor, patient, guest]) assert.equal((await recView(who)).strip, false, who.name);

    // The audit chain has the start, the stop and why, and the refusal.
    const res = await request('GET', `/api/v1/consultations/${room.id}/record.json`);
    assert.equal(res.status, 200, res.text);
    const actions = res.json.audit.map((e) => [e.action, e.detail]);
    const started = actions.find(([a]) => a === 'recording_started');
    const stopped = actions.find(([a]) => a === 'recording_stopped');
    const refused = actions.find(([a]) => a === 'recording_refused');
    assert.ok(started, JSON.stringify(actions));
    assert.equal(stopped && stopped[1].reason, 'consent_withdrawn', JSON.stringify(actions));
    assert.equal(refused && refused[1].code, 'recording_consent_missing', JSON.stringify(actions));

    for (const who of [patient, guest]) await who.assertNoErrors();
    await doctor.assertNoErrors(['negotiation_glare', 'recording_consent_missing']);
  });
});

test('a patient who joins without consent pauses the recording, and it resumes when they leave', { timeout: 150_000 }, async () => {
  const room = await createConsultation('conference', uniqueTitle('Hội chẩn — tạm dừng ghi hình'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Ngô Minh Trí', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Bệnh Nhân Chưa Đồng Ý' });
  const doctor = await openParticipant(browser, 'doctor (conference)');
  await doctor.page.setViewport(DESKTOP);
  const patient = await openParticipant(browser, 'patient without consent (phone)');
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);

  await withDiagnostics([doctor, patient], async () => {
    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    await doctor.page.click('#rec-btn');
    await waitFor('recording', async () => (await recView(doctor)).state === 'on', 10_000);

    // The phone's preview says it before the patient joins.
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('preview');
    assert.equal((await recView(patient)).preview, STRINGS.vi.rec_notice);
    assert.deepEqual(await fits(patient, 'preview-rec'), { page: true, inside: true });
    await shot(patient, 'rec-phone-preview');
    // Only the examination is consented to.
    await patient.page.click('#consent-exam');
    await patient.page.click('#join-btn');
    await patient.waitForState('waiting');
    assert.equal((await recView(patient)).lobby, STRINGS.vi.rec_notice);
    await decideInLobby(doctor, 'Bệnh Nhân Chưa Đồng Ý');
    await patient.waitForState('in-call');
    for (const who of [doctor, patient]) {
      await waitFor(`${who.name}: paused`, async () => {
        const v = await recView(who);
        return v.state === 'paused' && v.strip && v.text === `● ${STRINGS.vi.rec_paused}`;
      }, 10_000);
    }
    assert.equal((await recView(patient)).withdraw, false, 'nothing to withdraw');
    assert.equal(await doctor.page.evaluate(() => document.getElementById('rec-strip-hint').textContent),
      STRINGS.vi.rec_paused_patient);
    assert.deepEqual(await fits(patient, 'rec-strip'), { page: true, inside: true });
    await shot(patient, 'rec-phone-paused');
    await shot(doctor, 'rec-desktop-paused');

    await patient.page.click('#leave-btn');
    await patient.waitForState('left');
    await waitFor('resumed', async () => {
      const v = await recView(doctor);
      return v.state === 'on' && v.text === '● Đang ghi hình';
    }, 10_000);
    await doctor.assertNoErrors();
  });
});

test('a patient whose missing consent pauses it may give it from the call, and it goes on', { timeout: 150_000 }, async () => {
  const room = await createConsultation('conference', uniqueTitle('Hội chẩn — đồng ý trong phòng'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Đỗ Quang Vinh', facility: 'BVĐK tỉnh' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Bệnh Nhân Nghĩ Lại' });
  const doctor = await openParticipant(browser, 'doctor (consent in call)');
  await doctor.page.setViewport(DESKTOP);
  const patient = await openParticipant(browser, 'patient who consents later (phone)');
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);

  await withDiagnostics([doctor, patient], async () => {
    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    await doctor.page.click('#rec-btn');
    await waitFor('recording', async () => (await recView(doctor)).state === 'on', 10_000);
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('preview');
    await patient.page.click('#consent-exam');
    await patient.page.click('#join-btn');
    await patient.waitForState('waiting');
    await decideInLobby(doctor, 'Bệnh Nhân Nghĩ Lại');
    await patient.waitForState('in-call');
    await waitFor('paused, with the consent button', async () => {
      const shown = await patient.page.evaluate(() => !document.getElementById('rec-consent-btn').hidden);
      return (await recView(patient)).state === 'paused' && shown;
    }, 10_000);
    assert.equal(await patient.page.evaluate(() => document.getElementById('rec-consent-btn').textContent),
      STRINGS.vi.rec_consent);
    assert.deepEqual(await fits(patient, 'rec-consent-btn'), { page: true, inside: true });
    await patient.page.click('#rec-consent-btn');
    for (const who of [doctor, patient]) {
      await waitFor(`${who.name}: recording again`, async () => {
        const v = await recView(who);
        return v.state === 'on' && v.text === '● Đang ghi hình';
      }, 10_000);
    }
    assert.equal(await patient.page.evaluate(() => window.tuxa.consent.recording), true);
    // Now theirs to withdraw.
    assert.equal((await recView(patient)).withdraw, true);
    assert.equal(await patient.page.evaluate(() => document.getElementById('rec-consent-btn').hidden), true);
    await doctor.assertNoErrors();
    await patient.assertNoErrors();
  });
});
