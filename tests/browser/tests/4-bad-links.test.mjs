// Bad links: the join page explains, in Vietnamese (and in English after the
// language switch), why it cannot go on, and never reaches 'in-call'.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  createConsultation, mintLink, endConsultation, joinUrl, launchChromium, openParticipant,
  closeAllBrowsers, withDiagnostics, uniqueTitle, sleep, BASE,
} from '../lib/harness.mjs';
import { ERROR_TEXTS, STRINGS } from '../../../web-client/i18n.js';

let browser;
let page;
before(async () => {
  browser = await launchChromium();
  page = await openParticipant(browser, 'bad-link page');
});
after(closeAllBrowsers);

/** Opens url and waits for the error screen; returns {code, text, history}. */
async function openExpectingError(url) {
  await page.goto(url);
  await page.waitForState('error', 20_000);
  await sleep(1_000); // would a late event still take it into the call?
  return page.page.evaluate(() => ({
    code: window.tuxa.error,
    text: document.getElementById('error-text').textContent,
    visible: !document.getElementById('screen-error').hidden,
    history: window.tuxa.history,
    state: window.tuxa.state,
  }));
}

function assertNeverInCall(r) {
  assert.equal(r.state, 'error');
  assert.ok(!r.history.includes('in-call'), `reached in-call: ${r.history}`);
  assert.ok(!r.history.includes('joining'), `tried to join: ${r.history}`);
  assert.ok(r.visible, 'error screen not shown');
}

/** A link with a short life, minted as early as possible (run.sh does it before all tests). */
async function expiringLink() {
  if (process.env.TUXA_PREPARED) {
    const prepared = JSON.parse(readFileSync(process.env.TUXA_PREPARED, 'utf8'));
    if (prepared.expiring) return prepared.expiring;
  }
  const room = await createConsultation('visit', uniqueTitle('Hết hạn'));
  return mintLink(room.id, { role: 'patient', name: 'Người Hết Hạn', expires_in_secs: 60 });
}

test('an expired link says "Đường dẫn đã hết hạn" (and in English after the switch)', { timeout: 120_000 }, async () => {
  const link = await expiringLink();
  const wait = link.expires_at * 1000 - Date.now() + 2_000;
  if (wait > 0) {
    console.log(`waiting ${Math.ceil(wait / 1000)} s for the link to expire`);
    await sleep(wait);
  }
  await withDiagnostics([page], async () => {
    const r = await openExpectingError(joinUrl(link));
    assert.equal(r.code, 'token_expired');
    assert.match(r.text, /hết hạn/);
    assert.equal(r.text, ERROR_TEXTS.vi.token_expired);
    assertNeverInCall(r);
    await page.page.click('#lang-btn');
    const en = await page.page.evaluate(() => document.getElementById('error-text').textContent);
    assert.equal(en, ERROR_TEXTS.en.token_expired);
    assert.match(en, /expired/);
    await page.page.click('#lang-btn'); // back to Vietnamese (stored in localStorage)
  });
});

test('a forged token is refused', { timeout: 60_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Giả mạo'));
  const link = await mintLink(room.id, { role: 'patient', name: 'Kẻ Giả Mạo' });
  // Alter one character in the middle of the token's body.
  const i = Math.floor(link.token.length / 2) + 3;
  const c = link.token[i] === 'A' ? 'B' : 'A';
  const forged = { ...link, token: link.token.slice(0, i) + c + link.token.slice(i + 1) };
  await withDiagnostics([page], async () => {
    const r = await openExpectingError(joinUrl(forged));
    assert.ok(['token_invalid', 'token_malformed'].includes(r.code), `code ${r.code}`);
    assert.equal(r.text, ERROR_TEXTS.vi[r.code]);
    assertNeverInCall(r);

    const junk = { ...link, token: 'v1.khong-phai-ma-that' };
    const r2 = await openExpectingError(joinUrl(junk));
    assert.ok(['token_invalid', 'token_malformed'].includes(r2.code), `code ${r2.code}`);
    assertNeverInCall(r2);
  });
});

test('a token for another room is refused', { timeout: 60_000 }, async () => {
  const roomA = await createConsultation('visit', uniqueTitle('Phòng A'));
  const roomB = await createConsultation('visit', uniqueTitle('Phòng B'));
  const link = await mintLink(roomA.id, { role: 'patient', name: 'Người Nhầm Phòng' });
  await withDiagnostics([page], async () => {
    const r = await openExpectingError(joinUrl({ ...link, room: roomB.id }));
    assert.equal(r.code, 'token_wrong_room');
    assert.equal(r.text, ERROR_TEXTS.vi.token_wrong_room);
    assertNeverInCall(r);
  });
});

test('a link without its token is explained', { timeout: 60_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Thiếu mã'));
  await withDiagnostics([page], async () => {
    const r = await openExpectingError(`${BASE}/join/${room.id}?autojoin=1`);
    assert.equal(r.code, 'no_token');
    assertNeverInCall(r);
  });
});

test('an ended consultation: at the link check, and at Join time over the WebSocket', { timeout: 60_000 }, async () => {
  // Not an error: the end screen ("Buổi khám đã kết thúc"), what happens next, no retry.
  const room = await createConsultation('visit', uniqueTitle('Đã kết thúc'));
  const early = await mintLink(room.id, { role: 'patient', name: 'Người Đến Sớm' });
  const late = await mintLink(room.id, { role: 'doctor', name: 'BS. Đến Muộn' });
  const endScreen = () => page.page.evaluate(() => ({
    title: document.getElementById('ended-title').textContent,
    shown: !document.getElementById('screen-ended').hidden,
    errorShown: !document.getElementById('screen-error').hidden,
    history: window.tuxa.history,
  }));
  await withDiagnostics([page], async () => {
    // The page is on the preview when the consultation ends; then Join.
    await page.goto(joinUrl(early, { autojoin: false }));
    await page.waitForState('preview', 20_000);
    await endConsultation(room.id);
    await page.page.click('#consent-exam'); // a patient: Join needs their consent
    await page.page.click('#join-btn');
    await page.waitForState('ended', 20_000);
    const r1 = await endScreen();
    assert.equal(r1.title, STRINGS.vi.ended_title);
    assert.ok(r1.shown && !r1.errorShown, JSON.stringify(r1));
    assert.ok(!r1.history.includes('in-call'), `reached in-call: ${r1.history}`);

    // A link of an ended consultation shows the end screen at the link check.
    await page.goto(joinUrl(late));
    await page.waitForState('ended', 20_000);
    const r2 = await endScreen();
    assert.equal(r2.title, STRINGS.vi.ended_title);
    assert.ok(r2.shown && !r2.errorShown, JSON.stringify(r2));
    assert.ok(!r2.history.includes('in-call') && !r2.history.includes('preview'), `history: ${r2.history}`);
  });
});
