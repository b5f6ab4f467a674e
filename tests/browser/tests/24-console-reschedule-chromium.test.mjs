// The coordinator reschedules, then cancels, a scheduled case conference
// from the staff console ("Đổi lịch", "Huỷ hội chẩn"; docs/api.md), and an
// invitee's console — another window — shows the new time,
// then "Đã huỷ". A past time is refused in the page (nothing is sent); a time
// the server refuses (over a year ahead) shows its error and changes nothing;
// cancelling asks first, and "Không huỷ" sends nothing.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeAllBrowsers, launchChromium, withDiagnostics, waitFor, clickSettled, getConsultation,
} from '../lib/harness.mjs';
import {
  facility, account, consolePage, signIn, visible, openRequest,
} from '../lib/console.mjs';
import { fmtVnDateTime, toVnInputValue } from '../../../web-client/console-util.js';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

/** A JSON API call from a signed-in console page (its session cookie). */
const pageApi = (who, method, path, body) => who.page.evaluate(async (m, p, b) => {
  const res = await fetch(p, {
    method: m, cache: 'no-store', headers: b ? { 'Content-Type': 'application/json' } : {}, body: b ? JSON.stringify(b) : undefined,
  });
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  return { status: res.status, json };
}, method, path, body);

/** Sets a datetime-local input as a user's picker would (its typing depends on the locale). */
const setStart = (who, unix) => who.page.evaluate((v) => {
  const el = document.getElementById('cr-start');
  el.value = v;
  el.dispatchEvent(new Event('input', { bubbles: true }));
}, toVnInputValue(unix));

/** What the invitee's list shows of one request. */
const listItem = (who, id) => who.page.evaluate((x) => {
  const li = document.querySelector(`#conf-list li[data-id="${x}"]`);
  if (!li) return null;
  return {
    status: li.querySelector('.cs-badge[class*="cs-status-"]')?.textContent || '',
    time: li.querySelector('.cs-item-time')?.textContent || '',
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth,
  };
}, id);

/** Presses "Làm mới" on the list until the request's entry satisfies `ok`. */
async function refreshListUntil(who, id, what, ok) {
  await who.page.bringToFront();
  // DOM clicks: in this console the tab was seen back on "Trực" after the
  // other window's actions, with mouse clicks on the tab not taking (left for the lead).
  await who.page.evaluate(() => document.getElementById('tab-btn-conf').click());
  if (await who.page.evaluate(() => window.tuxaStaff.conf.view === 'detail')) {
    await who.page.evaluate(() => document.querySelector('#conf-detail .cs-back').click());
  }
  let last = null;
  await waitFor(`${who.name}: ${what}`, async () => {
    await clickSettled(who, '#conf-refresh-btn');
    await new Promise((r) => setTimeout(r, 400));
    last = await listItem(who, id);
    return !!last && ok(last);
  }, 15_000, 500).catch(async (e) => { console.log('state of the console:', JSON.stringify(await who.page.evaluate(() => ({ tab: window.tuxaStaff.tab, state: window.tuxaStaff.state, view: window.tuxaStaff.conf.view, n: window.tuxaStaff.conf.list.length, ids: window.tuxaStaff.conf.list.map((c) => c.id), li: document.querySelectorAll('#conf-list li').length, lis: [...document.querySelectorAll('#conf-list li')].map((l) => l.dataset.id) })))); throw new Error(`${e.message}; the list shows ${JSON.stringify(last)}`); });
  return last;
}

test('console: the coordinator reschedules and then cancels a conference; the invitee\'s list shows the new time, then "Đã huỷ" (Chromium)', { timeout: 150_000 }, async () => {
  const prov = await facility('BVĐK tỉnh Hà Giang', 'province');
  const dist = await facility('TTYT huyện Đồng Văn', 'district', prov.id);
  const coord = await account(prov, 'coordinator', 'Lý Thị Mai');
  const chair = await account(prov, 'doctor', 'Hầu Văn Chính');
  const requester = await account(dist, 'doctor', 'Sình Văn Lử');

  const browser = await launchChromium();
  const co = await consolePage(browser, 'coordinator console');
  const inv = await consolePage(browser, 'invitee console');
  await co.page.setViewport({ width: 1366, height: 768 });
  await inv.page.setViewport({ width: 1280, height: 800 });

  await withDiagnostics([co, inv], async () => {
    // The request and its schedule through the API with each one's session.
    await signIn(inv, requester);
    const made = await pageApi(inv, 'POST', '/api/v1/conferences', {
      to_facility_id: prov.id, specialty: 'Nội khoa', urgency: 'urgent',
      patient: { name: 'Vàng Thị Dợ', birth_year: 1970, sex: 'female' },
      summary: 'Sốt kéo dài, ho ra máu.', question: 'Có cần chuyển tuyến?',
      consent: { text_version: 'vi-conf-2026-11', remote_examination: true, third_parties: true, recording: false },
    });
    assert.equal(made.status, 201, JSON.stringify(made.json));
    const id = made.json.id;
    await signIn(co, coord);
    const firstAt = Math.ceil((Date.now() / 1000 + 2 * 3600) / 60) * 60;
    const sched = await pageApi(co, 'POST', `/api/v1/conferences/${id}/schedule`, {
      starts_at: firstAt, duration_min: 60, chair_staff_id: chair.id, invite_staff_ids: [requester.id],
    });
    assert.equal(sched.status, 200, JSON.stringify(sched.json));
    const room = sched.json.schedule.consultation_id;

    // The invitee's list: scheduled, at the first time.
    const before = await refreshListUntil(inv, id, 'the scheduled request', (x) => x.status === STRINGS.vi.conf_status_scheduled);
    assert.ok(before.time.includes(fmtVnDateTime(firstAt)), `the list's time: ${before.time}`);

    // ---- The invitee (requesting side) may not reschedule or cancel.
    await openRequest(inv, id);
    assert.equal(await visible(inv, '#conf-reschedule'), false, 'the invitee is offered "Đổi lịch"');
    assert.equal(await visible(inv, '#conf-cancel'), false, 'the invitee is offered "Huỷ hội chẩn"');

    // ---- The coordinator: "Đổi lịch".
    await openRequest(co, id);
    assert.equal(await visible(co, '#conf-reschedule'), true);
    await clickSettled(co, '#conf-reschedule-summary');
    // A past time: refused in the page, nothing sent.
    const past = Math.floor(Date.now() / 1000 / 60) * 60 - 3600;
    await setStart(co, past);
    await clickSettled(co, '#cr-submit');
    await waitFor('the past time refused', async () => visible(co, '#cr-error'), 5_000);
    assert.equal(await co.page.$eval('#cr-error', (e) => e.textContent), STRINGS.vi.conf_err_past);
    // A time the server refuses (over a year ahead): its error shown, nothing changed.
    await setStart(co, firstAt + 400 * 86400);
    await clickSettled(co, '#cr-submit');
    await waitFor('the server\'s refusal', async () => co.page.evaluate(
      () => !document.getElementById('cr-error').hidden && /bad_request/.test(document.getElementById('cr-error').textContent),
    ), 10_000);
    let cur = await pageApi(co, 'GET', `/api/v1/conferences/${id}`);
    assert.equal(cur.json.schedule.starts_at, firstAt, 'a refused reschedule changed the time');
    // The new time: shown as dd/mm/yyyy under the picker, then saved.
    const newAt = firstAt + 26 * 3600 + 15 * 60;
    await setStart(co, newAt);
    assert.equal(await co.page.$eval('#cr-start-vn', (e) => e.textContent),
      `${STRINGS.vi.conf_new_time} ${fmtVnDateTime(newAt)} (${STRINGS.vi.conf_vn_time})`);
    assert.match(fmtVnDateTime(newAt), /^\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}$/);
    await co.page.select('#cr-duration', '45');
    await clickSettled(co, '#cr-submit');
    await waitFor('the new time saved', async () => co.page.evaluate(
      (t) => window.tuxaStaff.conf.open && window.tuxaStaff.conf.open.schedule.starts_at === t, newAt,
    ), 10_000);
    assert.equal(await co.page.$eval('#conf-notice', (e) => e.textContent), STRINGS.vi.conf_rescheduled_ok);
    cur = await pageApi(co, 'GET', `/api/v1/conferences/${id}`);
    assert.equal(cur.json.schedule.starts_at, newAt);
    assert.equal(cur.json.schedule.duration_min, 45);
    assert.ok(await co.page.$eval('#conf-detail', (e, s) => e.textContent.includes(s), fmtVnDateTime(newAt)),
      'the detail does not show the new time');

    // The invitee's list shows the new time.
    const moved = await refreshListUntil(inv, id, 'the new time', (x) => x.time.includes(fmtVnDateTime(newAt)));
    assert.equal(moved.status, STRINGS.vi.conf_status_scheduled);
    assert.ok(moved.scrollWidth <= moved.innerWidth, `the list scrolls sideways: ${JSON.stringify(moved)}`);

    // ---- "Huỷ hội chẩn": a reason, then a confirmation.
    await co.page.bringToFront();
    await clickSettled(co, '#conf-cancel-summary');
    await clickSettled(co, '#cx-submit');
    await waitFor('no reason refused', async () => visible(co, '#cx-error'), 5_000);
    assert.equal(await co.page.$eval('#cx-error', (e) => e.textContent), STRINGS.vi.conf_err_cancel_reason);
    assert.equal(await visible(co, '#cx-confirm'), false);
    const reason = 'Bệnh nhân đã được chuyển tuyến trung ương.';
    await co.page.type('#cx-reason', reason);
    await clickSettled(co, '#cx-submit');
    await waitFor('the confirmation', async () => visible(co, '#cx-confirm'), 5_000);
    assert.equal(await co.page.$eval('#cx-confirm-text', (e) => e.textContent), STRINGS.vi.conf_cancel_confirm);
    // "Không huỷ": nothing sent.
    await clickSettled(co, '#cx-no');
    assert.equal(await visible(co, '#cx-confirm'), false);
    cur = await pageApi(co, 'GET', `/api/v1/conferences/${id}`);
    assert.equal(cur.json.status, 'scheduled', '"Không huỷ" cancelled it');
    await clickSettled(co, '#cx-submit');
    await waitFor('the confirmation again', async () => visible(co, '#cx-confirm'), 5_000);
    await clickSettled(co, '#cx-yes');
    await waitFor('cancelled', async () => co.page.evaluate(
      () => window.tuxaStaff.conf.open && window.tuxaStaff.conf.open.status === 'cancelled',
    ), 10_000);
    const shown = await co.page.evaluate(() => ({
      badge: document.querySelector('#conf-detail .cs-status-cancelled')?.textContent || null,
      reason: document.getElementById('conf-cancel-reason')?.textContent || null,
      reschedule: !!document.getElementById('conf-reschedule'),
      cancel: !!document.getElementById('conf-cancel'),
      notice: document.getElementById('conf-notice').textContent,
    }));
    assert.deepEqual(shown, {
      badge: 'Đã huỷ', reason, reschedule: false, cancel: false, notice: STRINGS.vi.conf_cancelled_ok,
    });
    cur = await pageApi(co, 'GET', `/api/v1/conferences/${id}`);
    assert.equal(cur.json.status, 'cancelled');
    assert.equal(cur.json.cancelled.reason, reason);
    const c = await getConsultation(room);
    assert.equal(c.status, 'ended');
    assert.equal(c.end_reason, 'cancelled');

    // The invitee's list: "Đã huỷ".
    const gone = await refreshListUntil(inv, id, '"Đã huỷ"', (x) => x.status === 'Đã huỷ');
    assert.ok(gone.scrollWidth <= gone.innerWidth);
    await openRequest(inv, id);
    assert.equal(await inv.page.$eval('#conf-cancel-reason', (e) => e.textContent), reason);
    assert.equal(await visible(inv, '#conf-join-btn'), false, 'a cancelled conference offers "Vào hội chẩn"');
  });
});
