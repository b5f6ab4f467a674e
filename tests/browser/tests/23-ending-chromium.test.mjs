// Ending a consultation (docs/protocol.md, "Ending"), in Chromium.
//
// a. A visit by links, made by a signed-in doctor of a facility that has a
//    phone: the patient (a 390 x 844 phone) has no end choice — "Rời phòng"
//    just leaves; the doctor (a desktop) is asked, and "Kết thúc cho mọi
//    người" ends it: within 2 s the patient in the room and a guest still in
//    the lobby show the end screen, with who ended it and the facility's name
//    and tel: link; it fits the phone's width; the API says ended / "ended";
//    the patient's link opened again shows the end screen, not an error.
// b. A queued visit on the phone: the doctor's "Kết thúc, nhận bệnh nhân
//    tiếp" in the console ends it, and the phone shows the end screen.
//
// Screenshots: TUXA_SHOTS=/some/dir writes the end screens as PNGs there.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  BASE, launchChromium, openParticipant, closeAllBrowsers, withDiagnostics, waitFor, sleep, adminPost,
  totpCode, openJoinPage, decideInLobby, waitInLobby, joinUrl, getConsultation, setupOnCallDoctor,
  waitForPageState, pageGlobal, expectReceiving,
} from '../lib/harness.mjs';
import { account } from '../lib/console.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 };
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 11; SM-A115F) AppleWebKit/537.36 (KHTML, like Gecko) '
  + 'Chrome/124.0.0.0 Mobile Safari/537.36';
const DESKTOP = { width: 1366, height: 768 };
// How soon after the doctor's click the others must show the end screen.
const END_WITHIN_MS = 2_000;

const SHOTS = process.env.TUXA_SHOTS || '';
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
async function shot(who, name) {
  if (SHOTS) await who.page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

const agent = new https.Agent({ rejectUnauthorized: false, keepAlive: false });

/** One API request with a staff session cookie (or none). */
function staffRequest(cookie, method, path, body) {
  const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
  const headers = { Accept: 'application/json' };
  if (data) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(data.length);
  }
  if (cookie) headers.Cookie = cookie;
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, BASE), { method, headers, agent, timeout: 10_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function signInApi(acct) {
  if (Date.now() / 1000 % 30 > 27) await sleep(3_500); // a code not about to roll over
  const res = await staffRequest(null, 'POST', '/api/v1/auth/login', {
    username: acct.username, password: acct.password, totp: totpCode(acct.secret),
  });
  assert.equal(res.status, 200, `sign-in: ${res.text}`);
  return String([].concat(res.headers['set-cookie'])[0]).split(';')[0];
}

/** What the end screen shows, and whether it fits the page's width. */
const endScreen = (who) => who.page.evaluate(() => {
  const el = (id) => document.getElementById(id);
  const shown = (e) => !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;
  const inView = (e) => {
    if (!shown(e)) return false;
    const r = e.getBoundingClientRect();
    return r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight;
  };
  const phone = el('ended-contact').querySelector('a.ended-phone');
  return {
    state: window.tuxa.state,
    ended: window.tuxa.ended,
    screen: shown(el('screen-ended')),
    title: el('ended-title').textContent,
    titleInView: inView(el('ended-title')),
    why: shown(el('ended-why')) ? el('ended-why').textContent : null,
    next: el('ended-next').textContent,
    contact: shown(el('ended-contact')) ? el('ended-contact').textContent : null,
    contactInView: inView(el('ended-contact')),
    tel: phone ? phone.getAttribute('href') : null,
    error: !el('screen-error') || el('screen-error').hidden ? null : el('screen-error').textContent,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth,
  };
});

test('ending: the doctor ends the visit for everyone; the patient in the room and the guest in the lobby see the end screen with the facility\'s phone (Chromium)', { timeout: 150_000 }, async () => {
  const t = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 5)}`;
  const phone = '0214 3820 115';
  const fac = await adminPost('/api/v1/facilities', { name: `BVĐK tỉnh Lào Cai ${t}`, tier: 'province', phone });
  assert.equal(fac.phone, phone, `the facility's phone was not kept: ${JSON.stringify(fac)}`);
  const doc = await account(fac, 'doctor', 'Nông Văn Dũng');
  const cookie = await signInApi(doc);
  const made = await staffRequest(cookie, 'POST', '/api/v1/consultations', { kind: 'visit', title: `Khám từ xa ${t}` });
  assert.equal(made.status, 201, made.text);
  const room = made.json.id;
  const mint = async (role, name) => {
    const res = await staffRequest(cookie, 'POST', `/api/v1/consultations/${room}/links`, { role, name, facility: fac.name });
    assert.equal(res.status, 201, res.text);
    return { ...res.json, room, name, role };
  };
  const doctorLink = await mint('doctor', 'BS. Nông Văn Dũng');
  const patientLink = await mint('patient', 'Giàng Thị Pà');
  const guestLink = await mint('guest', 'Sùng A Chu');

  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const patient = await openParticipant(browser, 'patient phone');
  const guest = await openParticipant(browser, 'guest');
  await doctor.page.setViewport(DESKTOP);
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);
  await guest.page.setUserAgent(PHONE_UA);
  await guest.page.setViewport(PHONE);

  await withDiagnostics([doctor, patient, guest], async () => {
    await openJoinPage(doctor, doctorLink);
    await doctor.waitForState('in-call');
    await openJoinPage(patient, patientLink);
    await patient.waitForState('waiting');
    await decideInLobby(doctor, 'Giàng Thị Pà', 'admit');
    await patient.waitForState('in-call');
    await expectReceiving(doctor, [await patient.id()], { timeoutMs: 30_000 });

    // ---- The patient may not end it: "Rời phòng" leaves at once, no question.
    await patient.page.tap('#leave-btn');
    await patient.waitForState('left');
    assert.equal(await patient.page.evaluate(() => document.getElementById('end-confirm').hidden), true,
      'the patient was asked whether to end the visit');
    assert.equal(await doctor.state(), 'in-call', 'the patient leaving ended the doctor\'s call');
    await patient.page.tap('#rejoin-btn');
    await patient.page.waitForNavigation({ waitUntil: 'load', timeout: 10_000 }).catch(() => {});
    await patient.waitForState('preview');
    if (!(await patient.page.evaluate(() => document.getElementById('consent').hidden
      || document.getElementById('consent-exam').checked))) await patient.page.tap('#consent-exam');
    await patient.page.tap('#join-btn');
    await waitFor('the patient back in the lobby or the room', async () => ['waiting', 'in-call'].includes(await patient.state()), 20_000);
    if (await patient.state() === 'waiting') await decideInLobby(doctor, 'Giàng Thị Pà', 'admit');
    await patient.waitForState('in-call');

    // ---- The guest waits in the lobby (nobody admits them).
    await guest.goto(joinUrl(guestLink));
    await guest.waitForState('waiting');
    await waitInLobby(doctor, 'Sùng A Chu');

    // ---- The doctor: "Rời phòng" asks; "Kết thúc cho mọi người" ends it.
    await doctor.page.click('#leave-btn');
    const modal = await doctor.page.evaluate(() => ({
      open: !document.getElementById('end-confirm').hidden,
      title: document.getElementById('end-confirm-title').textContent,
      all: document.getElementById('end-all-btn').textContent.trim(),
      state: window.tuxa.state,
    }));
    assert.deepEqual(modal, { open: true, title: STRINGS.vi.end_confirm_title, all: 'Kết thúc cho mọi người', state: 'in-call' });
    await shot(doctor, 'end-1-doctor-confirm');
    const t0 = Date.now();
    await doctor.page.click('#end-all-btn');
    await Promise.all([patient, guest].map((p) => waitFor(`${p.name} on the end screen`, async () => (await p.state()) === 'ended', END_WITHIN_MS, 50)));
    console.log(`the end screen on the patient and the guest ${Date.now() - t0} ms after the click`);
    await doctor.waitForState('ended', 5_000);

    for (const who of [patient, guest]) {
      const s = await endScreen(who);
      await shot(who, `end-2-${who.name.replace(/ /g, '-')}`);
      assert.equal(s.screen, true, `${who.name}: the end screen is not shown: ${JSON.stringify(s)}`);
      assert.equal(s.error, null);
      assert.equal(s.title, 'Buổi khám đã kết thúc');
      assert.equal(s.ended.reason, 'ended');
      assert.ok(s.why && s.why.includes('BS. Nông Văn Dũng'), `${who.name}: the reason does not name the doctor: ${s.why}`);
      assert.equal(s.next, STRINGS.vi.ended_next_patient);
      assert.ok(s.contact && s.contact.includes(fac.name) && s.contact.includes(phone), `${who.name}: contact ${s.contact}`);
      assert.equal(s.tel, 'tel:02143820115');
      assert.ok(s.scrollWidth <= s.innerWidth, `${who.name}: the end screen scrolls sideways: ${JSON.stringify(s)}`);
      assert.ok(s.titleInView && s.contactInView, `${who.name}: the end screen is not on the first screen: ${JSON.stringify(s)}`);
    }
    const d = await endScreen(doctor);
    assert.equal(d.screen, true);
    assert.equal(d.next, STRINGS.vi.ended_next_staff);

    const c = await getConsultation(room);
    assert.equal(c.status, 'ended');
    assert.equal(c.end_reason, 'ended');

    // ---- The patient's link again: the end screen, not an error.
    await patient.goto(joinUrl(patientLink, { autojoin: false }));
    await patient.waitForState('ended', 15_000);
    const again = await endScreen(patient);
    await shot(patient, 'end-3-patient-link-again');
    assert.equal(again.screen, true);
    assert.equal(again.error, null);
    assert.equal(again.title, 'Buổi khám đã kết thúc');
    // Why, and whom to call, as in the room (the link check's 410 carries them).
    assert.equal(again.ended.reason, 'ended');
    assert.ok(again.contact && again.contact.includes(phone), `contact on the reopened link: ${again.contact}`);
    assert.ok(again.scrollWidth <= again.innerWidth);
  });
});

test('ending: "Kết thúc, nhận bệnh nhân tiếp" in the console ends the queued visit on the patient\'s phone (Chromium)', { timeout: 120_000 }, async () => {
  const d = await setupOnCallDoctor({ facilityName: 'BVĐK tỉnh Lào Cai', specialty: 'Nội khoa', doctorName: 'Vũ Thị Hằng' });
  const browser = await launchChromium();
  const doctorPage = await openParticipant(browser, 'doctor console');
  const patient = await openParticipant(browser, 'patient phone');
  await doctorPage.page.setViewport(DESKTOP);
  await patient.page.setUserAgent(PHONE_UA);
  await patient.page.setViewport(PHONE);
  const staffDiag = {
    name: 'doctor console',
    async diagnostics() {
      return `${await doctorPage.diagnostics()}\n--- window.tuxaStaff ---\n${JSON.stringify(await pageGlobal(doctorPage, 'tuxaStaff'), null, 2)}`;
    },
  };

  await withDiagnostics([staffDiag, patient], async () => {
    await doctorPage.goto(`${BASE}/staff?noopen=1`);
    await waitForPageState(doctorPage, 'tuxaStaff', 'signed-out');
    await doctorPage.page.type('#username', d.username);
    await doctorPage.page.type('#password', d.password);
    if (Date.now() / 1000 % 30 > 27) await sleep(3_500);
    await doctorPage.page.type('#totp', totpCode(d.secret));
    await doctorPage.page.click('#signin-btn');
    await waitForPageState(doctorPage, 'tuxaStaff', 'ready', 20_000);

    await patient.goto(`${BASE}/q/${d.queue.id}`);
    await waitForPageState(patient, 'tuxaQueue', 'form');
    await patient.page.type('#f-name', 'Hoàng Thị Mai');
    await patient.page.type('#f-reason', 'Đau bụng, sốt nhẹ');
    await patient.page.tap('#consent-exam');
    await patient.page.tap('#q-join-btn');
    await waitForPageState(patient, 'tuxaQueue', 'queued', 15_000);

    await doctorPage.page.click(`#queue-list input[data-queue="${d.queue.id}"]`);
    await waitFor('the offer', async () => doctorPage.page.evaluate(
      () => window.tuxaStaff.state === 'offered' && window.tuxaStaff.offer && window.tuxaStaff.offer.name === 'Hoàng Thị Mai',
    ), 20_000);
    await doctorPage.page.click('#accept-btn');
    await waitFor('the console in the call', async () => doctorPage.page.evaluate(
      () => window.tuxaStaff.state === 'in-call' && !!window.tuxaStaff.callUrl,
    ), 20_000);
    await waitFor('the phone to go to the call', async () => /\/join\/[a-z2-7]{16}/.test(patient.page.url()), 20_000);
    const room = patient.page.url().match(/\/join\/([a-z2-7]{16})/)[1];
    await patient.waitForState('preview');
    await patient.page.tap('#join-btn');
    await patient.waitForState('in-call');

    const t0 = Date.now();
    await doctorPage.page.click('#done-btn');
    await waitFor('the phone on the end screen', async () => (await patient.state()) === 'ended', END_WITHIN_MS, 50);
    console.log(`the end screen on the phone ${Date.now() - t0} ms after "done"`);
    const s = await endScreen(patient);
    await shot(patient, 'end-4-queue-phone');
    assert.equal(s.screen, true, JSON.stringify(s));
    assert.equal(s.title, 'Buổi khám đã kết thúc');
    assert.equal(s.ended.reason, 'ended');
    assert.ok(s.why, 'no reason on the end screen');
    assert.ok(s.contact && s.contact.includes(d.facility.name), `contact: ${s.contact}`);
    assert.ok(s.scrollWidth <= s.innerWidth, JSON.stringify(s));
    const c = await getConsultation(room);
    assert.equal(c.status, 'ended');
    assert.equal(c.end_reason, 'ended');
  });
});
