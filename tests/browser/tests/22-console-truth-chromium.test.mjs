// Issue 12, item 3: the staff console tells the truth and draws attention
// (Chromium, real server, real pages):
//
// 1. A doctor on call signs in: before going available the console shows how
//    many wait in their queue (queue_counts, pushed over the console's
//    WebSocket), and keeps it current as a patient queues from the queue page.
//    The doctor's "go available" click unlocks the sound; the offer that
//    follows chimes, and flags the tab title "(1) …". The doctor lets the offer
//    expire (30 s): the notice says the patient went back to the queue for the
//    next available doctor (nobody else was on call) — not "passed to another
//    doctor" — and the title is plain again.
// 2. The queue's poster (/q/{id}/poster): facility and queue names, the QR code
//    (an SVG from /q/{id}/qr.svg) and the short link; printed it is one A4
//    page; on a 390×844 phone nothing scrolls sideways; sharing falls back to
//    the clipboard where there is no share sheet; an unknown queue gets a 404
//    page that says so.
// 3. An administrator creates an account in the console: the one-time TOTP
//    secret shows as a QR code (the otpauth:// URI, drawn by the server) beside
//    the text secret, and goes with it when dismissed.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE, launchChromium, openParticipant, closeAllBrowsers, withDiagnostics, waitFor, sleep,
  setupOnCallDoctor, totpCode, waitForPageState, pageGlobal, request,
} from '../lib/harness.mjs';
import {
  staffState, facility, account, consolePage, signIn, visible,
} from '../lib/console.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

/** A page whose diagnostics also show its test global. */
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

const countText = (doc, queue) => doc.page.evaluate((q) => {
  const el = document.querySelector(`#queue-list li[data-queue="${q}"] .st-queue-count`);
  return el && !el.hidden ? el.textContent : null;
}, queue);

test('console: waiting counts before going available, a new offer chimes and flags the tab, an expired offer says the patient is back in the queue', { timeout: 150_000 }, async () => {
  const d = await setupOnCallDoctor({ facilityName: 'TTYT huyện Tân Lập', specialty: 'Nội khoa', doctorName: 'Phạm Thu Hà' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor console');
  const patient = await openParticipant(browser, 'patient');
  await withDiagnostics(() => [withGlobal(doctor, 'tuxaStaff'), withGlobal(patient, 'tuxaQueue')], async () => {
    await doctor.goto(`${BASE}/staff?noopen=1`);
    await waitForPageState(doctor, 'tuxaStaff', 'signed-out');
    await doctor.page.type('#username', d.username);
    await doctor.page.type('#password', d.password);
    if (Date.now() / 1000 % 30 > 27) await sleep(3_500);
    await doctor.page.type('#totp', totpCode(d.secret));
    await doctor.page.click('#signin-btn');
    await waitForPageState(doctor, 'tuxaStaff', 'ready', 20_000);

    // ---- Before going available: the queue's count, nobody yet.
    await waitFor('the queue counts', async () => (await countText(doctor, d.queue.id)) !== null, 15_000);
    assert.equal(await countText(doctor, d.queue.id), `${STRINGS.vi.st_count_none} · 0 bác sĩ sẵn sàng`);
    assert.equal(await staffState(doctor, () => window.tuxaStaff.available), false);
    assert.equal(await doctor.page.title(), `${STRINGS.vi.st_title} — tuxa`);

    // A patient queues: the count follows, the doctor still not available.
    await patient.goto(`${BASE}/q/${d.queue.id}`);
    await waitForPageState(patient, 'tuxaQueue', 'form');
    await patient.page.type('#f-name', 'Nguyễn Thị Lan');
    await patient.page.type('#f-phone', '0987 654 321');
    await patient.page.type('#f-reason', 'Đau đầu, chóng mặt');
    await patient.page.click('#consent-exam');
    await patient.page.click('#q-join-btn');
    await waitForPageState(patient, 'tuxaQueue', 'queued', 15_000);
    await waitFor('the count of one waiting', async () => (await countText(doctor, d.queue.id)) === '1 người đang chờ · 0 bác sĩ sẵn sàng', 10_000);
    const counts = await staffState(doctor, (q) => window.tuxaStaff.counts[q], d.queue.id);
    assert.deepEqual(counts, { waiting: 1, offered: 0, doctors_available: 0 });
    assert.equal(await staffState(doctor, () => window.tuxaStaff.state), 'ready');

    // ---- Going available (a click: the sound is unlocked): the offer chimes and flags the title.
    await doctor.page.bringToFront();
    await doctor.page.click(`#queue-list input[data-queue="${d.queue.id}"]`);
    await waitFor('the offer', async () => staffState(doctor, () => !!window.tuxaStaff.offer), 15_000);
    const offered = await staffState(doctor, () => ({
      title: document.title, chimes: window.tuxaStaff.chimes, name: window.tuxaStaff.offer.name,
    }));
    assert.equal(offered.name, 'Nguyễn Thị Lan');
    assert.equal(offered.title, `(1) ${STRINGS.vi.st_offer_title} — tuxa`);
    assert.ok(offered.chimes >= 1, `no chime played (${offered.chimes}): the click did not unlock the AudioContext`);
    await waitFor('the count with the doctor available', async () => (await countText(doctor, d.queue.id)) === '1 người đang chờ · 1 bác sĩ sẵn sàng', 10_000);

    // ---- The doctor lets it expire: the patient went back to the queue (no other doctor).
    await waitFor('the offer to expire', async () => staffState(doctor, () => !window.tuxaStaff.offer && !!window.tuxaStaff.notice), 45_000);
    const expired = await staffState(doctor, () => ({
      notice: window.tuxaStaff.notice,
      text: document.getElementById('notice').textContent,
      title: document.title,
      available: window.tuxaStaff.available,
    }));
    assert.equal(expired.notice, 'st_withdrawn_expired_queued');
    assert.equal(expired.text, STRINGS.vi.st_withdrawn_expired_queued);
    assert.doesNotMatch(expired.text, /bác sĩ khác/);
    assert.equal(expired.title, `${STRINGS.vi.st_title} — tuxa`);
    assert.equal(expired.available, false);
    // The patient reads position 1 again, and the count says so too.
    await waitForPageState(patient, 'tuxaQueue', 'queued', 10_000);
    assert.equal(await patient.page.evaluate(() => window.tuxaQueue.position), 1);
    await waitFor('the count after the expiry', async () => (await countText(doctor, d.queue.id)) === '1 người đang chờ · 0 bác sĩ sẵn sàng', 10_000);
  });
});

test('poster: a queue\'s QR code and poster print on one A4 page and fit a 390×844 phone; an unknown queue is a clear 404', { timeout: 90_000 }, async () => {
  const d = await setupOnCallDoctor({ facilityName: 'Trạm Y tế xã Tân Lập', specialty: 'Khám bệnh từ xa', doctorName: 'Vũ Văn Nam' });
  const svg = await request('GET', `/q/${d.queue.id}/qr.svg`, undefined, { admin: false });
  assert.equal(svg.status, 200);
  assert.match(svg.text, /^<\?xml[^>]*\?><svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const missing = await request('GET', '/q/987654321/qr.svg', undefined, { admin: false });
  assert.equal(missing.status, 404);

  const browser = await launchChromium();
  const desk = await openParticipant(browser, 'poster (desktop)');
  const phone = await openParticipant(browser, 'poster (phone)');
  await withDiagnostics(() => [desk, phone], async () => {
    const res = await desk.page.goto(`${BASE}/q/${d.queue.id}/poster`, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    const poster = () => ({
      facility: document.getElementById('poster-facility').textContent,
      queue: document.getElementById('poster-queue').textContent,
      url: document.getElementById('poster-url').textContent,
      steps: [...document.querySelectorAll('.poster-steps li')].map((li) => li.textContent),
      qr: (() => {
        const img = document.getElementById('poster-qr');
        const r = img.getBoundingClientRect();
        return { loaded: img.complete && img.naturalWidth > 0, left: r.left, right: r.right, width: r.width, top: r.top };
      })(),
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      tools: getComputedStyle(document.querySelector('.poster-tools')).display,
    });
    await waitFor('the QR image', async () => (await desk.page.evaluate(poster)).qr.loaded, 10_000);
    const screen = await desk.page.evaluate(poster);
    assert.equal(screen.facility, d.facility.name);
    assert.equal(screen.queue, d.queue.name);
    assert.equal(screen.url, `${new URL(BASE).host}/q/${d.queue.id}`);
    assert.equal(screen.steps.length, 3);
    assert.match(screen.steps[0], /^Mở camera điện thoại/);

    // Printed: A4 (96 px per inch: 210 mm ≈ 794 px), the tools hidden, the QR about 12 cm.
    await desk.page.setViewport({ width: 794, height: 1123 });
    await desk.page.emulateMediaType('print');
    const printed = await desk.page.evaluate(poster);
    assert.equal(printed.tools, 'none');
    assert.ok(printed.qr.width > 400 && printed.qr.width < 500, `QR ${printed.qr.width}px wide in print`);
    assert.ok(printed.scrollWidth <= printed.innerWidth, `${printed.scrollWidth} > ${printed.innerWidth}`);
    const pdf = Buffer.from(await desk.page.pdf({ format: 'A4', preferCSSPageSize: true, printBackground: true }));
    const pages = (pdf.toString('latin1').match(/\/Type\s*\/Page[^s]/g) || []).length;
    assert.equal(pages, 1, `the poster prints on ${pages} pages`);
    await desk.page.emulateMediaType('screen');

    // Share: no share sheet on desktop Linux → the clipboard (or a plain copy).
    await desk.page.setViewport({ width: 1280, height: 900 });
    await desk.page.click('#poster-share');
    await waitFor('the share status', async () => desk.page.evaluate(() => document.getElementById('poster-status').textContent !== ''), 5_000);
    assert.match(await desk.page.evaluate(() => document.getElementById('poster-status').textContent), /^Đã sao chép đường dẫn/);

    // A phone: 390×844, nothing sideways, the QR and the print button within the screen.
    await phone.page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 });
    await phone.goto(`${BASE}/q/${d.queue.id}/poster`);
    await waitFor('the QR image on the phone', async () => (await phone.page.evaluate(poster)).qr.loaded, 10_000);
    const small = await phone.page.evaluate(poster);
    assert.ok(small.scrollWidth <= small.innerWidth, `sideways scroll on a phone: ${small.scrollWidth} > ${small.innerWidth}`);
    assert.ok(small.qr.left >= 0 && small.qr.right <= 390, `QR at ${small.qr.left}–${small.qr.right}`);
    assert.ok(small.qr.width >= 250, `QR only ${small.qr.width}px wide on a phone`);
    const printBtn = await phone.page.evaluate(() => {
      const r = document.getElementById('poster-print').getBoundingClientRect();
      return { left: r.left, right: r.right, bottom: r.bottom };
    });
    assert.ok(printBtn.left >= 0 && printBtn.right <= 390 && printBtn.bottom <= 844, JSON.stringify(printBtn));

    // An unknown queue: a 404 page that says so.
    const gone = await phone.page.goto(`${BASE}/q/987654321/poster`, { waitUntil: 'load' });
    assert.equal(gone.status(), 404);
    assert.equal(await phone.page.evaluate(() => document.querySelector('h1').textContent), 'Không tìm thấy hàng chờ này');
  });
});

test('sign-up: a new account\'s TOTP secret shows as a QR code beside the text, once', { timeout: 90_000 }, async () => {
  const prov = await facility('Sở Y tế An Hòa', 'province');
  const admin = await account(prov, 'admin', 'Hoàng Văn Quản');
  const browser = await launchChromium();
  const c = await consolePage(browser, 'administrator console');
  await withDiagnostics(() => [c], async () => {
    await signIn(c, admin);
    await waitFor('the coordination tab', async () => staffState(c, () => window.tuxaStaff.tab === 'coord'), 10_000);
    await c.page.click('#coord-directory > summary');
    await waitFor('the facilities in the staff form', async () => staffState(c, (id) => [...document.getElementById('sf-facility').options].some((o) => o.value === String(id)), prov.id), 10_000);
    const username = `dp.${Date.now().toString(36)}`;
    await c.page.type('#sf-username', username);
    await c.page.type('#sf-name', 'Lý Thị Điều');
    await c.page.select('#sf-role', 'coordinator');
    await c.page.select('#sf-facility', String(prov.id));
    await c.page.click('#sf-submit');
    await waitFor('the one-time secrets', async () => visible(c, '#dir-secret'), 10_000);
    await waitFor('the QR image', async () => staffState(c, () => {
      const img = document.getElementById('dir-secret-qr');
      return !img.hidden && img.complete && img.naturalWidth > 0;
    }), 10_000);
    const shown = await staffState(c, () => {
      const img = document.getElementById('dir-secret-qr');
      const r = img.getBoundingClientRect();
      return {
        secret: document.getElementById('dir-secret-totp').textContent,
        uri: document.getElementById('dir-secret-uri').textContent,
        src: img.getAttribute('src'),
        width: r.width,
        created: window.tuxaStaff.coord.created.totp,
      };
    });
    assert.match(shown.secret, /^[A-Z2-7]{32}$/);
    assert.ok(shown.uri.startsWith(`otpauth://totp/tuxa:${username}?secret=${shown.secret}&`), shown.uri);
    assert.ok(shown.src.startsWith('data:image/svg+xml;base64,'), shown.src.slice(0, 40));
    const svg = Buffer.from(shown.src.split(',')[1], 'base64').toString('latin1');
    assert.equal(svg, shown.created.qr_svg, 'the image is the server\'s QR of this account');
    assert.match(svg, /<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.ok(shown.width >= 150, `QR ${shown.width}px wide`);
    // "Tôi đã lưu lại": the secret and its QR leave the page.
    await c.page.click('#dir-secret-done');
    const after = await staffState(c, () => ({
      hidden: document.getElementById('dir-secret').hidden,
      src: document.getElementById('dir-secret-qr').getAttribute('src'),
    }));
    assert.deepEqual(after, { hidden: true, src: null });
  });
});
