// A phone is a first-class device: a queued visit on a 390 x 844 patient
// viewport (a mobile user agent, touch, device scale 3), in Chromium.
//
// The patient queues from the link on the phone, consents there once; the
// doctor (signed in on the console, a desktop window) accepts; the phone goes
// to the call page, which does not ask for consent again (the queue page's
// answers carry over, "already agreed" is said instead) and whose join
// button is on the first screen; the server records the answers once. In the
// call, the phone's control bar fits the width (no sideways scrolling) with
// "Rời phòng" always in view, the rest in "Thêm"; the patient is offered no
// screen share and no second camera (the doctor is). Camera off stops the
// camera (the track ends) and sends under 10 kbit/s of video over 4 s; camera
// on sends again in its simulcast layers and the doctor decodes it. Leave,
// then "Vào lại": the answers are sent again without asking.
//
// Screenshots: TUXA_SHOTS=/some/dir writes each screen as a PNG there.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  BASE, launchChromium, openParticipant, closeAllBrowsers, expectReceiving, withDiagnostics, waitFor,
  sleep, history, setupOnCallDoctor, totpCode, waitForPageState, pageGlobal, request,
  createConsultation, mintLink, joinUrl, uniqueTitle, openJoinPage, decideInLobby,
} from '../lib/harness.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 };
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 11; SM-A115F) AppleWebKit/537.36 (KHTML, like Gecko) '
  + 'Chrome/124.0.0.0 Mobile Safari/537.36';
const DESKTOP = { width: 1366, height: 768 };

const SHOTS = process.env.TUXA_SHOTS || '';
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
async function shot(who, name) {
  if (SHOTS) await who.page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

function withGlobal(p, global) {
  return {
    name: p.name,
    async diagnostics() {
      let extra;
      try { extra = JSON.stringify(await pageGlobal(p, global), null, 2); } catch (e) { extra = String(e); }
      return `${await p.diagnostics()}\n--- window.${global} ---\n${extra}`;
    },
  };
}

/**
 * Whether the page fits its width, and where each control is: shown (laid
 * out, not hidden), its box, and whether that box is inside the viewport.
 */
const layout = (who, ids) => who.page.evaluate((list) => {
  const vw = window.innerWidth;
  const vh = window.innerHeight;
  const out = {
    scrollWidth: document.documentElement.scrollWidth, innerWidth: vw, innerHeight: vh, scrollY: window.scrollY,
    controls: {},
  };
  for (const id of list) {
    const el = document.getElementById(id);
    const shown = !!el && !el.closest('[hidden]') && el.getClientRects().length > 0
      && getComputedStyle(el).visibility !== 'hidden';
    const r = shown ? el.getBoundingClientRect() : null;
    out.controls[id] = {
      shown,
      inView: !!r && r.left >= 0 && r.right <= vw && r.top >= 0 && r.bottom <= vh,
      box: r && [Math.round(r.left), Math.round(r.top), Math.round(r.right), Math.round(r.bottom)],
    };
  }
  return out;
}, ids);

/** Outbound video bytes (payload and headers) of the page, summed over its encodings. */
const videoBytesOut = async (who) => (await videoOut(who)).reduce((a, r) => a + r.bytes + r.header, 0);

/** Each outbound video stream of the page: rid, payload and header bytes, packets. */
const videoOut = (who) => who.page.evaluate(async () => {
  const out = [];
  (await window.tuxa.pc.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      out.push({
        ssrc: r.ssrc, mid: r.mid, rid: r.rid || null, bytes: r.bytesSent || 0, header: r.headerBytesSent || 0,
        packets: r.packetsSent || 0, retx: r.retransmittedBytesSent || 0, frames: r.framesEncoded || 0,
      });
    }
  });
  return out;
});

/** The camera's sender on the page: its track's state and its encodings. */
const cameraSender = (who) => who.page.evaluate(() => {
  const tx = window.tuxa;
  const s = tx.debug.senders.video;
  return {
    track: s && s.track ? { readyState: s.track.readyState, id: s.track.id } : null,
    encodings: s ? s.getParameters().encodings.map((e) => ({ rid: e.rid || null, active: e.active })) : [],
    localTrack: tx.debug.media.video ? tx.debug.media.video.readyState : null,
    previewSrc: !!document.getElementById('self-video').srcObject,
  };
});

test('phone: a queued visit on a 390 x 844 patient viewport, one consent, the bar fits, camera off sends nothing (Chromium)', { timeout: 200_000 }, async () => {
  const d = await setupOnCallDoctor({ facilityName: 'BVĐK tỉnh Lào Cai', specialty: 'Nội khoa', doctorName: 'Vũ Thị Hằng' });
  const browser = await launchChromium();
  const doctorPage = await openParticipant(browser, 'doctor console');
  const patient = await openParticipant(browser, 'patient phone');
  await doctorPage.page.setViewport(DESKTOP);
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);
  const all = [withGlobal(doctorPage, 'tuxaStaff'), withGlobal(patient, 'tuxaQueue')];

  await withDiagnostics(() => all, async () => {
    // ---- The doctor signs in on the console.
    await doctorPage.goto(`${BASE}/staff?noopen=1`);
    await waitForPageState(doctorPage, 'tuxaStaff', 'signed-out');
    await doctorPage.page.type('#username', d.username);
    await doctorPage.page.type('#password', d.password);
    if (Date.now() / 1000 % 30 > 27) await sleep(3_500);
    await doctorPage.page.type('#totp', totpCode(d.secret));
    await doctorPage.page.click('#signin-btn');
    await waitForPageState(doctorPage, 'tuxaStaff', 'ready', 20_000);

    // ---- The patient queues on the phone, and consents there.
    await patient.goto(`${BASE}/q/${d.queue.id}`);
    await waitForPageState(patient, 'tuxaQueue', 'form');
    const qForm = await layout(patient, ['q-join-btn', 'consent-exam']);
    assert.ok(qForm.scrollWidth <= qForm.innerWidth, `the queue form scrolls sideways: ${JSON.stringify(qForm)}`);
    await shot(patient, 'phone-1-queue-form');
    await patient.page.type('#f-name', 'Hoàng Thị Mai');
    await patient.page.type('#f-reason', 'Đau bụng, sốt nhẹ');
    await patient.page.tap('#consent-exam');
    await patient.page.tap('#consent-third');
    await patient.page.tap('#q-join-btn');
    await waitForPageState(patient, 'tuxaQueue', 'queued', 15_000);
    const queueConsent = await patient.page.evaluate(() => window.tuxaQueue.consent);
    assert.deepEqual(
      [queueConsent.remote_examination, queueConsent.third_parties, queueConsent.recording], [true, true, false],
    );
    await shot(patient, 'phone-2-queued');

    // ---- The doctor takes the patient.
    await doctorPage.page.click(`#queue-list input[data-queue="${d.queue.id}"]`);
    await waitFor('the offer', async () => doctorPage.page.evaluate(
      () => window.tuxaStaff.state === 'offered' && window.tuxaStaff.offer && window.tuxaStaff.offer.name === 'Hoàng Thị Mai',
    ), 20_000);
    await doctorPage.page.click('#accept-btn');
    await waitFor('the console to have the call link', async () => doctorPage.page.evaluate(
      () => window.tuxaStaff.state === 'in-call' && !!window.tuxaStaff.callUrl,
    ), 20_000);
    const callUrl = await doctorPage.page.evaluate(() => window.tuxaStaff.callUrl);

    // ---- The phone is on the call page: no second consent, the button on the first screen.
    await waitFor('the phone to go to the call', async () => /\/join\/[a-z2-7]{16}/.test(patient.page.url()), 20_000);
    const room = patient.page.url().match(/\/join\/([a-z2-7]{16})/)[1];
    assert.ok(!/[?&]consent|remote_examination/.test(patient.page.url()), 'consent answers in the URL');
    await patient.waitForState('preview');
    all.push(patient);
    const pre = await layout(patient, ['join-btn', 'preview-video', 'join-as', 'consent-given']);
    const preForm = await patient.page.evaluate(() => ({
      formShown: !document.getElementById('consent').hidden,
      given: document.getElementById('consent-given-text').textContent,
      joinDisabled: document.getElementById('join-btn').disabled,
      needed: !document.getElementById('consent-needed').hidden,
      joinAs: document.getElementById('join-as').textContent,
      devicesOpen: document.getElementById('devices').open,
    }));
    await shot(patient, 'phone-3-call-preview');
    assert.equal(preForm.formShown, false, 'the call page asks for consent again');
    assert.equal(preForm.given, STRINGS.vi.consent_given_queue);
    assert.equal(preForm.joinDisabled, false);
    assert.equal(preForm.needed, false);
    assert.match(preForm.joinAs, /Hoàng Thị Mai/);
    assert.equal(preForm.devicesOpen, false, 'device pickers unfolded on a phone');
    assert.ok(pre.scrollWidth <= pre.innerWidth, `the call page scrolls sideways: ${JSON.stringify(pre)}`);
    assert.equal(pre.scrollY, 0);
    for (const id of ['join-btn', 'preview-video', 'join-as', 'consent-given']) {
      assert.ok(pre.controls[id].shown && pre.controls[id].inView, `${id} is not on the first screen: ${JSON.stringify(pre.controls[id])}`);
    }

    await patient.page.tap('#join-btn');
    await patient.waitForState('in-call');
    assert.ok(!(await history(patient)).includes('waiting'), 'the accepted patient waited in the lobby');
    const sent = await patient.page.evaluate(() => ({
      consent: window.tuxa.consent,
      via: window.tuxa.consentVia,
      sends: window.tuxa.log.filter((l) => l.includes('→ consent')).length,
    }));
    assert.deepEqual(
      { ...sent.consent, at: undefined },
      { ...queueConsent, at: undefined },
      'the call page did not send the queue page\'s answers as given',
    );
    assert.equal(sent.via, 'queue');
    assert.equal(sent.sends, 1);
    assert.ok(sent.consent.at > 0, 'no consent_recorded');
    // Recorded once, with the consultation.
    let record = null;
    await waitFor('the consent in the record', async () => {
      const res = await request('GET', `/api/v1/consultations/${room}/record.json`);
      record = res.json;
      return res.status === 200 && Array.isArray(record.consents) && record.consents.length > 0;
    }, 10_000);
    const patientId = await patient.id();
    const mine = record.consents.filter((c) => String(c.participant_id) === patientId);
    assert.equal(mine.length, 1, `consent recorded ${mine.length} times: ${JSON.stringify(record.consents)}`);
    assert.equal(mine[0].remote_examination, true);
    assert.equal(mine[0].third_parties, true);
    assert.equal(mine[0].recording, false);
    assert.equal(mine[0].text_version, queueConsent.text_version);

    // The doctor joins from a desktop window.
    const doctorCall = await openParticipant(browser, 'doctor call');
    all.push(doctorCall);
    await doctorCall.page.setViewport(DESKTOP);
    await doctorCall.goto(callUrl.replace(/^https:\/\/[^/]+/, BASE));
    await doctorCall.waitForState('preview');
    await doctorCall.page.click('#join-btn');
    await doctorCall.waitForState('in-call');
    const doctorId = await doctorCall.id();
    await Promise.all([expectReceiving(doctorCall, [patientId]), expectReceiving(patient, [doctorId])]);

    // ---- The phone's bar: fits, "Rời phòng" in view, the rest in "Thêm".
    const bar = ['leave-btn', 'more-btn', 'screen-btn', 'cam2-btn', 'chat-btn', 'people-btn', 'audio-only-btn'];
    const inCall = await layout(patient, bar);
    const mic = await patient.page.evaluate(() => {
      const r = document.querySelector('.controls .mic-toggle').getBoundingClientRect();
      const c = document.querySelector('.controls .cam-toggle').getBoundingClientRect();
      return { mic: r.left >= 0 && r.right <= innerWidth && r.height > 0, cam: c.left >= 0 && c.right <= innerWidth && c.height > 0 };
    });
    await shot(patient, 'phone-4-in-call');
    assert.ok(inCall.scrollWidth <= inCall.innerWidth, `the call scrolls sideways: ${JSON.stringify(inCall)}`);
    assert.deepEqual(mic, { mic: true, cam: true });
    assert.ok(inCall.controls['leave-btn'].shown && inCall.controls['leave-btn'].inView, `leave: ${JSON.stringify(inCall.controls['leave-btn'])}`);
    assert.equal(await patient.page.evaluate(() => document.getElementById('leave-btn').textContent.trim()), 'Rời phòng');
    assert.ok(inCall.controls['more-btn'].shown && inCall.controls['more-btn'].inView);
    for (const id of ['chat-btn', 'people-btn', 'audio-only-btn']) assert.equal(inCall.controls[id].shown, false, `${id} in the phone's bar`);
    const extras = await patient.page.evaluate(() => ({
      screen: document.getElementById('screen-btn').hidden, cam2: document.getElementById('cam2-btn').hidden,
    }));
    assert.deepEqual(extras, { screen: true, cam2: true }, 'screen share or second camera offered to a patient');

    await patient.page.tap('#more-btn');
    const menu = await layout(patient, bar);
    await shot(patient, 'phone-5-more-menu');
    for (const id of ['chat-btn', 'people-btn', 'audio-only-btn']) {
      assert.ok(menu.controls[id].shown && menu.controls[id].inView, `${id} not in the open menu: ${JSON.stringify(menu.controls[id])}`);
    }
    assert.equal(menu.controls['screen-btn'].shown, false);
    assert.equal(menu.controls['cam2-btn'].shown, false);
    assert.ok(menu.scrollWidth <= menu.innerWidth);
    // A choice closes the menu: the chat opens.
    await patient.page.tap('#chat-btn');
    const afterChat = await patient.page.evaluate(() => ({
      menuOpen: document.getElementById('more-btn').getAttribute('aria-expanded'),
      chat: !document.getElementById('chat-panel').hidden,
    }));
    assert.deepEqual(afterChat, { menuOpen: 'false', chat: true });
    await shot(patient, 'phone-6-chat');
    await patient.page.tap('#chat-close');

    // The doctor's desktop bar: every control in it, screen share and camera 2 included.
    const desk = await layout(doctorCall, bar);
    await shot(doctorCall, 'desktop-doctor-in-call');
    assert.ok(desk.scrollWidth <= desk.innerWidth);
    assert.equal(desk.controls['more-btn'].shown, false, '"Thêm" on a desktop');
    for (const id of ['leave-btn', 'screen-btn', 'cam2-btn', 'chat-btn', 'people-btn', 'audio-only-btn']) {
      assert.ok(desk.controls[id].shown && desk.controls[id].inView, `${id} not in the doctor's bar: ${JSON.stringify(desk.controls[id])}`);
    }

    // ---- Camera off: the camera stops, no video goes out.
    const before = await cameraSender(patient);
    assert.equal(before.track && before.track.readyState, 'live');
    await patient.page.evaluate(() => { window.__camTrack = window.tuxa.debug.media.video; });
    await patient.page.tap('.controls .cam-toggle');
    await waitFor('the camera to stop', async () => patient.page.evaluate(
      () => window.__camTrack.readyState === 'ended' && !window.tuxa.pc.getSenders().some((s) => s.track && s.track.kind === 'video'),
    ), 10_000);
    const off = await cameraSender(patient);
    assert.equal(off.localTrack, null, 'a camera track is still open');
    assert.equal(off.previewSrc, false);
    await waitFor('the doctor to see the camera off', async () => doctorCall.page.evaluate((pid) => {
      const el = document.querySelector(`.tile[data-pid="${pid}"]`);
      return !!el && el.classList.contains('no-video') && !el.querySelector('.badge-cam').hidden;
    }, patientId), 10_000);
    await sleep(1_500); // what was on its way
    const s0 = await videoOut(patient);
    const b0 = await videoBytesOut(patient);
    const t0 = Date.now();
    await sleep(4_000);
    const b1 = await videoBytesOut(patient);
    const kbps = ((b1 - b0) * 8) / (Date.now() - t0);
    console.log(`camera off: ${b1 - b0} bytes of video in ${Date.now() - t0} ms = ${kbps.toFixed(2)} kbit/s`);
    console.log('outbound video, before and after:', JSON.stringify(s0), JSON.stringify(await videoOut(patient)));
    assert.ok(kbps < 10, `camera off still sends ${kbps.toFixed(1)} kbit/s of video`);
    await shot(patient, 'phone-7-camera-off');

    // ---- Camera on: a new track on the same sender, its layers as before.
    await patient.page.tap('.controls .cam-toggle');
    await waitFor('the camera to be back', async () => (await cameraSender(patient)).track?.readyState === 'live', 10_000);
    const on = await cameraSender(patient);
    assert.notEqual(on.track.id, before.track.id);
    assert.equal(on.encodings.length, before.encodings.length, 'the simulcast encodings changed');
    assert.deepEqual(on.encodings.map((e) => e.rid), before.encodings.map((e) => e.rid));
    assert.ok(on.encodings.some((e) => e.active), 'every encoding paused after camera on');
    const b2 = await videoBytesOut(patient);
    await sleep(2_000);
    assert.ok(await videoBytesOut(patient) - b2 > 10_000, 'no video sent after camera on');
    await expectReceiving(doctorCall, [patientId], { timeoutMs: 20_000 });
    await waitFor('the doctor to see the picture again', async () => doctorCall.page.evaluate((pid) => {
      const el = document.querySelector(`.tile[data-pid="${pid}"]`);
      return !!el && !el.classList.contains('no-video') && el.querySelector('.badge-cam').hidden;
    }, patientId), 10_000);

    // ---- Leave (always in view), then "Vào lại": the answers go again, unasked.
    await patient.page.tap('#leave-btn');
    await patient.waitForState('left');
    await patient.page.tap('#rejoin-btn');
    await patient.page.waitForNavigation({ waitUntil: 'load' }).catch(() => {});
    await patient.waitForState('preview');
    const again = await patient.page.evaluate(() => ({
      formShown: !document.getElementById('consent').hidden,
      given: !document.getElementById('consent-given').hidden,
      joinDisabled: document.getElementById('join-btn').disabled,
    }));
    assert.deepEqual(again, { formShown: false, given: true, joinDisabled: false }, 'asked again on a rejoin');
    await patient.page.tap('#join-btn');
    await patient.waitForState('in-call');
    const resent = await patient.page.evaluate(() => window.tuxa.consent);
    assert.equal(resent.third_parties, true);
    assert.equal(resent.text_version, queueConsent.text_version);
    await patient.assertNoErrors();
    await doctorCall.assertNoErrors();
    await patient.page.tap('#leave-btn');
    await patient.waitForState('left');
  });
});

test('phone: a patient who was not queued answers the consent on the call page, the join button still on the first screen; the lobby\'s leave button too (Chromium)', { timeout: 60_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám qua điện thoại'));
  const link = await mintLink(room.id, { role: 'patient', name: 'Lò Văn Sáng', facility: 'Trạm y tế xã Bản Lầu' });
  const browser = await launchChromium();
  const phone = await openParticipant(browser, 'patient phone');
  const desk = await openParticipant(browser, 'patient desktop');
  await phone.page.setUserAgent(PHONE_UA);
  await phone.page.setViewport(PHONE);
  await desk.page.setViewport(DESKTOP);

  await withDiagnostics([phone, desk], async () => {
    await phone.goto(joinUrl(link, { autojoin: false }));
    await phone.waitForState('preview');
    const form = () => phone.page.evaluate(() => ({
      form: !document.getElementById('consent').hidden,
      given: !document.getElementById('consent-given').hidden,
      ticked: [...document.querySelectorAll('#consent input')].map((i) => i.checked),
      joinDisabled: document.getElementById('join-btn').disabled,
    }));
    assert.deepEqual(await form(), { form: true, given: false, ticked: [false, false, false], joinDisabled: true });
    const pre = await layout(phone, ['join-btn', 'consent-exam', 'consent-recording', 'preview-video', 'join-as']);
    await shot(phone, 'phone-8-visit-consent');
    assert.ok(pre.scrollWidth <= pre.innerWidth, `the join page scrolls sideways: ${JSON.stringify(pre)}`);
    for (const id of ['join-btn', 'consent-exam', 'consent-recording', 'preview-video', 'join-as']) {
      assert.ok(pre.controls[id].shown && pre.controls[id].inView, `${id} is not on the first screen: ${JSON.stringify(pre.controls[id])}`);
    }
    await phone.page.tap('#consent-exam');
    assert.deepEqual(await form(), { form: true, given: false, ticked: [true, false, false], joinDisabled: false });

    // The lobby on the phone: "Rời phòng" on the first screen; it works.
    await phone.page.tap('#join-btn');
    await phone.waitForState('waiting');
    const lobby = await layout(phone, ['waiting-leave-btn', 'waiting-video']);
    await shot(phone, 'phone-9-lobby');
    assert.ok(lobby.scrollWidth <= lobby.innerWidth);
    assert.ok(lobby.controls['waiting-leave-btn'].shown && lobby.controls['waiting-leave-btn'].inView,
      `leave below the fold in the lobby: ${JSON.stringify(lobby.controls['waiting-leave-btn'])}`);
    await phone.page.tap('#waiting-leave-btn');
    await phone.waitForState('left');

    // The same page on a desktop: the device pickers open.
    await desk.goto(joinUrl(link, { autojoin: false }));
    await desk.waitForState('preview');
    const wide = await layout(desk, ['join-btn', 'consent-exam', 'camera-select']);
    await shot(desk, 'desktop-visit-preview');
    assert.ok(wide.scrollWidth <= wide.innerWidth);
    assert.equal(await desk.page.evaluate(() => document.getElementById('devices').open), true);
    assert.ok(wide.controls['camera-select'].shown);
    // A 1366 x 768 laptop: the questions and the button without scrolling too.
    for (const id of ['join-btn', 'consent-exam']) {
      assert.ok(wide.controls[id].shown && wide.controls[id].inView, `${id} below the fold on a laptop: ${JSON.stringify(wide.controls[id])}`);
    }
  });
});

test('phone: camera off before joining: the camera stays off (no track, no video sent) in the call until turned on (Chromium)', { timeout: 90_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Camera tắt từ đầu'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Nông Văn Dũng', facility: 'TTYT huyện Bát Xát' });
  const patientLink = await mintLink(room.id, { role: 'patient', name: 'Giàng Thị Pà', facility: 'Trạm y tế xã Y Tý' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const phone = await openParticipant(browser, 'patient phone');
  await doctor.page.setViewport(DESKTOP);
  await phone.page.setUserAgent(PHONE_UA);
  await phone.page.setViewport(PHONE);

  await withDiagnostics([doctor, phone], async () => {
    await openJoinPage(doctor, doctorLink);
    await doctor.waitForState('in-call');
    await phone.goto(joinUrl(patientLink, { autojoin: false }));
    await phone.waitForState('preview');
    await phone.page.evaluate(() => { window.__camTrack = window.tuxa.debug.media.video; });
    await phone.page.tap('#screen-preview .cam-toggle');
    await waitFor('the preview camera to stop', async () => phone.page.evaluate(
      () => window.__camTrack.readyState === 'ended' && !window.tuxa.debug.media.video,
    ), 10_000);
    assert.equal(await phone.page.evaluate(() => !document.getElementById('preview-off').hidden), true);
    await phone.page.tap('#consent-exam');
    await phone.page.tap('#join-btn');
    await phone.waitForState('waiting');
    assert.equal(await phone.page.evaluate(() => window.tuxa.debug.media.video), null, 'the camera opened in the lobby');
    await decideInLobby(doctor, 'Giàng Thị Pà', 'admit');
    await phone.waitForState('in-call');
    const patientId = await phone.id();
    await expectReceiving(doctor, [patientId], { audio: true, timeoutMs: 5_000 }).then(
      () => assert.fail('the doctor decodes video of a camera that is off'),
      () => {},
    );
    const sender = await cameraSender(phone);
    assert.equal(sender.track, null);
    assert.ok(sender.encodings.length >= 1 && sender.encodings.every((e) => !e.active), `encodings: ${JSON.stringify(sender.encodings)}`);
    // Chromium probes the new link's bandwidth in its first seconds with
    // padding on the video RTP stream (counted in headerBytesSent), camera or
    // not: measure what the camera costs once that is over, as test 19a does.
    await sleep(3_000);
    const b0 = await videoBytesOut(phone);
    const t0 = Date.now();
    await sleep(4_000);
    const kbps = (((await videoBytesOut(phone)) - b0) * 8) / (Date.now() - t0);
    console.log(`joined with the camera off: ${kbps.toFixed(2)} kbit/s of video`);
    assert.ok(kbps < 10, `the camera that is off sends ${kbps.toFixed(1)} kbit/s`);
    await waitFor('the doctor to see the camera-off badge', async () => doctor.page.evaluate(
      (pid) => !document.querySelector(`.tile[data-pid="${pid}"] .badge-cam`).hidden, patientId,
    ), 10_000);

    // Turned on in the call: the same m-line carries it, no renegotiation.
    const negotiations = await phone.page.evaluate(() => window.tuxa.negotiations);
    await phone.page.tap('.controls .cam-toggle');
    await waitFor('the camera to be on', async () => (await cameraSender(phone)).track?.readyState === 'live', 10_000);
    await expectReceiving(doctor, [patientId], { timeoutMs: 20_000 });
    assert.equal(await phone.page.evaluate(() => window.tuxa.negotiations), negotiations, 'camera on renegotiated');
    await waitFor('the badge to go', async () => doctor.page.evaluate(
      (pid) => document.querySelector(`.tile[data-pid="${pid}"] .badge-cam`).hidden, patientId,
    ), 10_000);
    await phone.assertNoErrors();
  });
});
