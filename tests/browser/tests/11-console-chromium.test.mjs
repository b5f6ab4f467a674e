// The staff console's tabs, end to end in Chromium (docs/api.md "Who may
// call what", "GET /api/v1/live", "Case conferences"):
//
// 1. Coordination: a provincial coordinator signs in (password and the
//    authenticator's code, computed here), lands on "Điều phối", sees the live
//    panel refresh, creates a queue and a roster window for a doctor, shows the
//    activity report and downloads its CSV (header row checked).
// 2. A case conference: a district doctor files a request with an attachment
//    (consent ticked on the patient's behalf), the provincial coordinator opens
//    it, downloads the attachment and schedules it with a provincial doctor as
//    chair; the requester and the chair each press "Vào hội chẩn", and each
//    reaches the call page in a new window and joins the call; the chair makes a
//    guest link.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  launchChromium, closeAllBrowsers, withDiagnostics, waitFor, sleep, request, clickSettled,
} from '../lib/harness.mjs';
import {
  facility, account, consolePage, signIn, staffState, visible, joinFromConsole, openRequest,
} from '../lib/console.mjs';
import { STRINGS } from '../../../web-client/i18n.js';
import { toVnInputValue } from '../../../web-client/console-util.js';

after(closeAllBrowsers);

test('console: a coordinator sees the live panel, creates a queue and a roster window, downloads the report CSV', { timeout: 120_000 }, async () => {
  const prov = await facility('BVĐK tỉnh An Hòa', 'province');
  const coord = await account(prov, 'coordinator', 'Đỗ Thị Hạnh');
  const doctor = await account(prov, 'doctor', 'Lê Hoàng Minh', 'Nhi khoa');

  for (const path of ['/static/console-util.js', '/static/console-conf.js', '/static/console-coord.js']) {
    const res = await request('GET', path, undefined, { admin: false });
    assert.equal(res.status, 200, `the server does not serve ${path} (HTTP ${res.status})`);
  }

  const browser = await launchChromium();
  const c = await consolePage(browser, 'coordinator console');
  await withDiagnostics(() => [c], async () => {
    await signIn(c, coord);
    // The coordinator's tabs: conferences and coordination, on coordination.
    const tabs = await staffState(c, () => ({
      tab: window.tuxaStaff.tab, tabs: window.tuxaStaff.tabs,
      oncallHidden: document.getElementById('tab-btn-oncall').hidden,
      labels: [...document.querySelectorAll('#console-tabs [role=tab]:not([hidden]) [data-i18n]')].map((b) => b.textContent.trim()),
      selected: document.querySelector('#console-tabs [aria-selected=true]').id,
    }));
    assert.equal(tabs.tab, 'coord');
    assert.deepEqual(tabs.tabs, ['conf', 'coord']);
    assert.equal(tabs.oncallHidden, true);
    assert.deepEqual(tabs.labels, ['Hội chẩn', 'Điều phối']);
    assert.equal(tabs.selected, 'tab-btn-coord');

    // ---- Live: refreshed every 5 s while shown.
    await waitFor('two live refreshes', async () => staffState(c, () => window.tuxaStaff.coord.livePolls >= 2 && !!window.tuxaStaff.coord.live), 20_000);
    const live = await staffState(c, () => ({
      error: document.getElementById('live-error').hidden ? null : document.getElementById('live-error').textContent,
      updated: document.getElementById('live-updated').textContent,
      heads: [...document.querySelectorAll('#live-queues thead th')].map((th) => th.textContent),
    }));
    assert.equal(live.error, null);
    assert.match(live.updated, /^Cập nhật lúc \d\d:\d\d:\d\d/);
    assert.deepEqual(live.heads, ['Hàng chờ', 'Đang chờ', 'Đang mời', 'Đang khám', 'Bác sĩ sẵn sàng', 'Chờ lâu nhất']);
    // Closing the live section stops the polling.
    await c.page.click('#coord-live > summary');
    const polls = await staffState(c, () => window.tuxaStaff.coord.livePolls);
    await sleep(6_000);
    assert.ok(await staffState(c, () => window.tuxaStaff.coord.livePolls) <= polls + 1, 'polling went on with the panel closed');
    await c.page.click('#coord-live > summary');

    // ---- A queue and a roster window.
    await c.page.click('#coord-queues > summary');
    await waitFor('the facilities in the queue form', async () => staffState(c, () => document.getElementById('qf-facility').options.length > 0), 10_000);
    await c.page.select('#qf-facility', String(prov.id));
    await c.page.type('#qf-specialty', 'Nhi khoa');
    await c.page.click('#qf-submit');
    // (Other tests' queues are there too: a provincial coordinator sees the whole network.)
    const ours = () => staffState(c, (id) => window.tuxaStaff.coord.queues.find((q) => q.specialty === 'Nhi khoa' && q.facility_id === id) || null, prov.id);
    await waitFor('the new queue', async () => !!(await ours()), 10_000);
    const queue = await ours();
    assert.equal(queue.facility_id, prov.id);
    assert.match(await staffState(c, () => document.getElementById('qr-notice').textContent), /^Đã tạo hàng chờ/);
    assert.equal(await staffState(c, () => document.getElementById('rf-queue').value), String(queue.id));
    await waitFor('the doctor in the roster form', async () => staffState(c, (id) => [...document.getElementById('rf-staff').options].some((o) => o.value === String(id)), doctor.id), 10_000);
    await c.page.select('#rf-staff', String(doctor.id));
    await c.page.select('#rf-weekday', '2');
    await c.page.$eval('#rf-start', (el) => { el.value = '08:00'; });
    await c.page.$eval('#rf-end', (el) => { el.value = '12:30'; });
    await c.page.click('#rf-submit');
    await waitFor('the roster window', async () => staffState(c, () => window.tuxaStaff.coord.roster.length === 1), 10_000);
    const roster = await request('GET', `/api/v1/queues/${queue.id}/roster`);
    assert.equal(roster.status, 200, roster.text);
    assert.deepEqual(roster.json.roster.map((w) => [w.staff_id, w.weekday, w.start_min, w.end_min]), [[doctor.id, 2, 480, 750]]);
    assert.match(await staffState(c, () => document.getElementById('rf-roster').textContent), /Lê Hoàng Minh · Thứ Tư · 08:00–12:30/);

    // ---- The activity report and its CSV.
    await c.page.click('#coord-report > summary');
    await c.page.click('#rp-submit');
    await waitFor('the report', async () => staffState(c, () => !!window.tuxaStaff.coord.report), 10_000);
    assert.equal(await staffState(c, () => document.getElementById('rp-error').hidden), true);
    const csv = await staffState(c, async () => {
      const a = document.getElementById('rp-csv');
      const res = await fetch(a.href, { cache: 'no-store' });
      return { status: res.status, type: res.headers.get('content-type'), text: await res.text(), href: a.getAttribute('href'), download: a.getAttribute('download') };
    });
    assert.equal(csv.status, 200, csv.text);
    assert.match(csv.type, /^text\/csv/);
    assert.match(csv.href, /^\/api\/v1\/reports\/activity\?from=\d+&to=\d+&format=csv&lang=vi$/);
    assert.equal(csv.download, 'tuxa-activity.csv');
    assert.equal(csv.text.replace(/^\ufeff/, '').split('\r\n')[0],
      'Cơ sở,Loại,Số lượt,Được khám,Bỏ về,Tỷ lệ bỏ,Chờ trung bình (giây),Chờ lâu nhất (giây),Thời lượng trung bình (giây)');

    // ---- English, then back.
    await c.page.click('#lang-btn');
    assert.equal(await staffState(c, () => document.getElementById('tab-btn-coord').textContent.trim()), 'Coordination');
    assert.equal(await staffState(c, () => document.querySelector('#coord-report summary h2').textContent), 'Activity report');
    await c.page.click('#lang-btn');

    // ---- The session ends elsewhere: the next answer (401) returns to the sign-in form.
    const out = await staffState(c, async () => (await fetch('/api/v1/auth/logout', { method: 'POST' })).status);
    assert.equal(out, 204);
    await c.page.click('#rp-submit');
    await waitFor('the sign-in form', async () => staffState(c, () => window.tuxaStaff.state === 'signed-out'), 10_000);
    const note = await staffState(c, () => ({
      note: document.getElementById('signin-note').textContent,
      console: document.getElementById('screen-console').hidden,
      live: window.tuxaStaff.coord.live,
    }));
    assert.equal(note.note, STRINGS.vi.st_session_expired);
    assert.equal(note.console, true);
    assert.equal(note.live, null, 'the coordination data is cleared at sign-out');
    const pollsOut = await staffState(c, () => window.tuxaStaff.coord.livePolls);
    await sleep(6_000);
    assert.equal(await staffState(c, () => window.tuxaStaff.coord.livePolls), pollsOut, 'the live view still polls after sign-out');
  });
});

test('console: a district doctor requests a conference with an attachment, the coordinator schedules it, requester and chair join', { timeout: 180_000 }, async () => {
  const prov = await facility('BVĐK tỉnh An Hòa', 'province');
  const dist = await facility('TTYT huyện Tân Lập', 'district', prov.id);
  const coord = await account(prov, 'coordinator', 'Đỗ Thị Hạnh');
  const chair = await account(prov, 'doctor', 'Trần Văn Bình');
  const requester = await account(dist, 'doctor', 'Nguyễn Văn An');

  const dir = mkdtempSync(join(tmpdir(), 'tuxa-attach-'));
  const filePath = join(dir, 'ket-qua-xet-nghiem.txt');
  const fileText = 'Công thức máu: BC 15,2 G/L; CRP 86 mg/L.\n';
  writeFileSync(filePath, fileText);

  const browser = await launchChromium();
  const d = await consolePage(browser, 'district doctor console');
  const k = await consolePage(browser, 'coordinator console');
  const ch = await consolePage(browser, 'chair console');
  const all = [d, k, ch];
  await withDiagnostics(() => all, async () => {
    // ---- The district doctor files the request.
    await signIn(d, requester);
    assert.equal(await staffState(d, () => window.tuxaStaff.tab), 'oncall');
    await d.page.click('#tab-btn-conf');
    await waitFor('the conference tab', async () => visible(d, '#conf-new-btn'), 10_000);
    await d.page.click('#conf-new-btn');
    await waitFor('the upper-level facilities', async () => staffState(d, (id) => [...document.getElementById('cf-to').options].some((o) => o.value === String(id)), prov.id), 10_000);
    const form = await staffState(d, () => ({
      consent: ['cf-consent-exam', 'cf-consent-third', 'cf-consent-recording'].map((id) => document.getElementById(id).checked),
      urgency: document.querySelector('input[name="cf-urgency"]:checked').value,
    }));
    assert.deepEqual(form.consent, [false, false, false], 'consent must not be pre-ticked');
    await d.page.select('#cf-to', String(prov.id));
    await d.page.type('#cf-specialty', 'Nội khoa');
    await d.page.click('input[name="cf-urgency"][value="urgent"]');
    await d.page.type('#cf-pname', 'Trần Thị B');
    await d.page.type('#cf-pyear', '1958');
    await d.page.select('#cf-psex', 'female');
    await d.page.type('#cf-summary', 'Sốt 5 ngày, ho, khó thở tăng dần. X-quang: thâm nhiễm thùy dưới phổi phải.');
    await d.page.type('#cf-question', 'Xin ý kiến điều trị kháng sinh và chỉ định chuyển tuyến.');
    // Without the remote-examination consent the request is not sent.
    await d.page.click('#cf-submit');
    assert.equal(await staffState(d, () => document.getElementById('cf-error').textContent), STRINGS.vi.conf_err_consent);
    await d.page.click('#cf-consent-exam');
    await d.page.click('#cf-consent-third');
    const input = await d.page.$('#cf-files');
    await input.uploadFile(filePath);
    await waitFor('the chosen file listed', async () => staffState(d, () => document.getElementById('cf-file-list').textContent.includes('ket-qua-xet-nghiem.txt')), 5_000);
    await d.page.click('#cf-submit');
    await waitFor('the request and its attachment', async () => staffState(d, () => {
      const c = window.tuxaStaff.conf;
      return c.view === 'detail' && c.open && (c.open.attachments || []).length === 1;
    }), 20_000);
    const filed = await staffState(d, () => window.tuxaStaff.conf.open);
    assert.equal(filed.status, 'requested');
    assert.equal(filed.urgency, 'urgent');
    assert.equal(filed.to_facility.id, prov.id);
    assert.equal(filed.from_facility.id, dist.id);
    assert.deepEqual(filed.patient, {
      name: 'Trần Thị B', birth_year: 1958, sex: 'female', address: null, record_number: null, citizen_id: null,
    });
    assert.equal(filed.consent.remote_examination, true);
    assert.equal(filed.consent.third_parties, true);
    assert.equal(filed.consent.recording, false);
    assert.equal(filed.attachments[0].name, 'ket-qua-xet-nghiem.txt');
    assert.equal(filed.attachments[0].content_type, 'text/plain');
    assert.equal(await staffState(d, () => document.getElementById('conf-notice').textContent), STRINGS.vi.conf_requested_ok);
    assert.equal(await visible(d, '#conf-schedule-form'), false, 'the requesting side cannot schedule');

    // ---- The provincial coordinator schedules it.
    await signIn(k, coord);
    await k.page.click('#tab-btn-conf');
    await waitFor('the request in the coordinator\'s list', async () => staffState(k, (id) => !!document.querySelector(`#conf-list li[data-id="${id}"]`), filed.id), 15_000);
    const item = await staffState(k, (id) => document.querySelector(`#conf-list li[data-id="${id}"]`).textContent, filed.id);
    assert.match(item, /Khẩn/);
    assert.match(item, /Chờ xếp lịch/);
    assert.match(item, /Trần Thị B/);
    await openRequest(k, filed.id);
    await waitFor('the schedule form', async () => visible(k, '#conf-schedule-form'), 10_000);
    // The attachment downloads, byte for byte.
    const att = await staffState(k, async () => {
      const a = document.querySelector('#conf-attachments a');
      const res = await fetch(a.href, { cache: 'no-store' });
      return { status: res.status, text: await res.text(), download: a.getAttribute('download') };
    });
    assert.equal(att.status, 200);
    assert.equal(att.text, fileText);
    assert.equal(att.download, 'ket-qua-xet-nghiem.txt');
    await waitFor('the chair among the doctors', async () => staffState(k, (id) => [...document.getElementById('cs-chair').options].some((o) => o.value === String(id)), chair.id), 10_000);
    await k.page.select('#cs-chair', String(chair.id));
    const startsAt = Math.ceil((Date.now() / 1000 + 5 * 60) / 60) * 60;
    await k.page.$eval('#cs-start', (el, v) => { el.value = v; }, toVnInputValue(startsAt));
    await k.page.select('#cs-duration', '45');
    await clickSettled(k, '#cs-submit');
    await waitFor('scheduled', async () => staffState(k, () => window.tuxaStaff.conf.open && window.tuxaStaff.conf.open.status === 'scheduled'), 15_000);
    const sched = await staffState(k, () => window.tuxaStaff.conf.open.schedule);
    assert.equal(sched.starts_at, startsAt);
    assert.equal(sched.duration_min, 45);
    assert.equal(sched.chair.staff_id, chair.id);
    const invited = sched.invitees.map((i) => i.staff_id).sort();
    assert.ok(invited.includes(requester.id) && invited.includes(chair.id), `invitees: ${invited}`);
    assert.match(await staffState(k, () => document.getElementById('conf-invitees').textContent), /Nguyễn Văn An/);
    assert.equal(await visible(k, '#conf-join-btn'), false, 'the coordinator is not invited');

    // ---- The requester joins: the call opens in a new window.
    await clickSettled(d, '.cs-back');
    await openRequest(d, filed.id);
    const requesterCall = await joinFromConsole(d, 'requester', all);
    const you = await requesterCall.page.evaluate(() => window.tuxa.you);
    assert.equal(you.role, 'doctor');

    // ---- The chair joins too, and makes a guest link for the patient.
    await signIn(ch, chair);
    await ch.page.click('#tab-btn-conf');
    await openRequest(ch, filed.id);
    const chairCall = await joinFromConsole(ch, 'chair', all);
    await waitFor('both in the call', async () => (await chairCall.page.evaluate(() => Object.keys(window.tuxa.participants || {}).length)) >= 1, 20_000);
    assert.equal(await visible(ch, '#conf-guest-form'), true);
    await ch.page.bringToFront(); // the call took the front tab
    await ch.page.type('#cg-name', 'Trần Thị B');
    await clickSettled(ch, '#cg-submit');
    await waitFor('the guest link', async () => staffState(ch, () => !!window.tuxaStaff.conf.guestUrl), 10_000);
    assert.match(await staffState(ch, () => document.getElementById('cg-url').value), /\/join\/[a-z2-7]{16}#/);
    assert.equal(await visible(ch, '#conf-concl-form'), true, 'the chair enters the conclusion');
  });
});
