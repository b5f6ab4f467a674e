// Minutes a hospital can file (issue 12, item 5), from the request to the
// printed page, with a server of its own started with the Department's name
// (TUXA_DEPARTMENT_NAME): a district doctor files a request in the console
// with every patient field (sex, year of birth, address, CCCD, record
// number) and an attachment; the province's coordinator schedules it with a
// provincial doctor in the chair and a nurse of another district invited;
// the three sites join from their consoles; the chair names the requester
// secretary; the room is ended; the secretary enters the conclusion with its
// Hướng xử trí; the record's export buttons save the JSON and FHIR files and
// open the minutes, which carry every field of the TT49/2017 form at a
// desktop width and do not scroll sideways at 390 px. Then the activity
// report: the ended conference has a duration, and the table fits 1366×768.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import {
  mkdtempSync, rmSync, openSync, writeFileSync, readdirSync, readFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';

const BIN = process.env.TUXA_BIN;
const KEY = randomBytes(24).toString('hex');
const DEPARTMENT = 'Sở Y tế tỉnh An Hòa';
const CITIZEN_ID = '001058012345';
const dir = mkdtempSync(join(tmpdir(), 'tuxa-minutes-'));
let server = null;
let H = null; // ../lib/harness.mjs, imported once TUXA_URL names this server

after(async () => {
  if (H) await H.closeAllBrowsers();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.once('exit', r)), new Promise((r) => setTimeout(r, 5_000))]);
    if (server.exitCode === null) server.kill('SIGKILL');
  }
  if (process.env.TUXA_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
});

const freeTcp = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const freeUdp = () => new Promise((resolve, reject) => {
  const s = dgram.createSocket('udp4');
  s.on('error', reject);
  s.bind(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

/** Starts a server named for the Department, then loads the helpers pointed at it. */
async function startServer() {
  assert.ok(BIN, 'TUXA_BIN must be set (run tests/browser/run.sh)');
  const [port, udp, tcp] = [await freeTcp(), await freeUdp(), await freeTcp()];
  const base = `https://127.0.0.1:${port}`;
  const log = openSync(join(dir, 'server.log'), 'w');
  server = spawn(BIN, [
    '--listen', `127.0.0.1:${port}`, '--media-listen', `127.0.0.1:${udp}`,
    '--media-tcp-listen', `127.0.0.1:${tcp}`, '--announce', '127.0.0.1', '--data-dir', join(dir, 'data'),
  ], {
    env: {
      ...process.env, TUXA_ADMIN_KEY: KEY, TUXA_CERT_DIR: join(dir, 'certs'), TUXA_DEMO: '0', TUXA_LOG: 'info', NO_COLOR: '1',
      TUXA_DEPARTMENT_NAME: DEPARTMENT,
    },
    stdio: ['ignore', log, log],
  });
  // The helpers read the server's address and key when first loaded.
  process.env.TUXA_URL = base;
  process.env.TUXA_ADMIN_KEY = KEY;
  H = await import('../lib/harness.mjs');
  await H.waitFor('the minutes test server to answer /healthz', async () => {
    if (server.exitCode !== null) throw new Error(`the server exited: ${readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000)}`);
    try { return (await H.request('GET', '/healthz')).status === 200; } catch { return false; }
  }, 30_000, 200);
  return base;
}

/** A JSON API call from a signed-in console page (its session cookie). */
const pageApi = (who, method, path, body) => who.page.evaluate(async (m, p, b) => {
  const res = await fetch(p, {
    method: m, cache: 'no-store', headers: b ? { 'Content-Type': 'application/json' } : {}, body: b ? JSON.stringify(b) : undefined,
  });
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  return { status: res.status, json };
}, method, path, body);

/** Whether the page scrolls sideways, and how wide it is. */
const overflow = (page) => page.evaluate(() => ({
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
}));

/** `dd/mm/yyyy HH:MM` in Vietnam time. */
function vnDateTime(unix) {
  const d = new Date((unix + 7 * 3600) * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${p(d.getUTCMonth() + 1)}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

test('minutes: a three-site conference from request to the filed minutes, and the report', { timeout: 300_000 }, async () => {
  await startServer();
  const C = await import('../lib/console.mjs');
  const { staffState, visible, openRequest, refreshRequest, joinFromConsole } = C;

  const prov = await C.facility('Bệnh viện Đa khoa tỉnh An Hòa', 'province');
  const d1 = await C.facility('TTYT huyện Tân Lập', 'district', prov.id);
  const d2 = await C.facility('TTYT huyện Sơn Hà', 'district', prov.id);
  const coord = await C.account(prov, 'coordinator', 'Đỗ Thị Hạnh');
  const chair = await C.account(prov, 'doctor', 'Trần Văn Bình');
  const requester = await C.account(d1, 'doctor', 'Nguyễn Văn An');
  const nurse = await C.account(d2, 'nurse', 'Hoàng Thị Hoa');
  const pdf = Buffer.from('%PDF-1.4\n% phim X quang nguc thang\n');
  const pdfPath = join(dir, 'xquang-nguc.pdf');
  writeFileSync(pdfPath, pdf);
  const pdfSha = createHash('sha256').update(pdf).digest('hex');
  const downloads = join(dir, 'downloads');

  const browser = await H.launchChromium();
  const rq = await C.consolePage(browser, 'requester console');
  const co = await C.consolePage(browser, 'coordinator console');
  const ch = await C.consolePage(browser, 'chair console');
  const nu = await C.consolePage(browser, 'nurse console');
  const all = [rq, co, ch, nu];
  await H.withDiagnostics(() => all, async () => {
    // ---- The request, in the console, with every patient field.
    await C.signIn(rq, requester);
    await H.clickSettled(rq, '#tab-btn-conf');
    await H.waitFor('the conference tab', async () => visible(rq, '#conf-new-btn'), 10_000);
    await rq.page.click('#conf-new-btn');
    await H.waitFor('the upper-level facilities', async () => staffState(rq, (id) => [...document.getElementById('cf-to').options].some((o) => o.value === String(id)), prov.id), 10_000);
    await rq.page.select('#cf-to', String(prov.id));
    await rq.page.type('#cf-specialty', 'Nội khoa');
    await rq.page.click('input[name="cf-urgency"][value="urgent"]');
    await rq.page.type('#cf-pname', 'Trần Thị B');
    await rq.page.type('#cf-pyear', '1958');
    await rq.page.select('#cf-psex', 'female');
    await rq.page.type('#cf-paddress', 'Thôn 3, xã Tân Tiến, huyện Tân Lập');
    await rq.page.type('#cf-precord', 'TL-2026-00417');
    await rq.page.type('#cf-summary', 'Khó thở tăng dần 3 ngày, SpO2 89 %.');
    await rq.page.type('#cf-question', 'Có cần chuyển tuyến tỉnh?');
    await rq.page.click('#cf-consent-exam');
    await rq.page.click('#cf-consent-third');
    // A CCCD number of 11 digits is refused in the form, before any request.
    await rq.page.type('#cf-pcitizen', CITIZEN_ID.slice(1));
    await rq.page.click('#cf-submit');
    assert.equal(await staffState(rq, () => document.getElementById('cf-error').textContent),
      (await import('../../../web-client/i18n.js')).STRINGS.vi.conf_err_citizen_id);
    assert.equal(await staffState(rq, () => document.getElementById('cf-pcitizen').getAttribute('aria-invalid')), 'true');
    await rq.page.$eval('#cf-pcitizen', (el) => { el.value = ''; });
    // As people write it, in groups: the spaces are dropped.
    await rq.page.type('#cf-pcitizen', `${CITIZEN_ID.slice(0, 3)} ${CITIZEN_ID.slice(3)}`);
    await (await rq.page.$('#cf-files')).uploadFile(pdfPath);
    await rq.page.click('#cf-submit');
    await H.waitFor('the request and its attachment', async () => staffState(rq, () => {
      const c = window.tuxaStaff.conf;
      return c.view === 'detail' && c.open && (c.open.attachments || []).length === 1;
    }), 20_000);
    const filed = await staffState(rq, () => window.tuxaStaff.conf.open);
    assert.deepEqual(filed.patient, {
      name: 'Trần Thị B', birth_year: 1958, sex: 'female', address: 'Thôn 3, xã Tân Tiến, huyện Tân Lập',
      record_number: 'TL-2026-00417', citizen_id: CITIZEN_ID,
    });
    assert.equal(filed.attachments[0].sha256, pdfSha);
    assert.equal(await staffState(rq, () => document.getElementById('conf-citizen-id').textContent), CITIZEN_ID);
    const id = filed.id;

    // ---- Scheduled by the province's coordinator (test 9 drives that form).
    await C.signIn(co, coord);
    const sched = await pageApi(co, 'POST', `/api/v1/conferences/${id}/schedule`, {
      starts_at: Math.floor(Date.now() / 1000), duration_min: 30, chair_staff_id: chair.id, invite_staff_ids: [nurse.id],
    });
    assert.equal(sched.status, 200, JSON.stringify(sched.json));
    const consultation = sched.json.schedule.consultation_id;

    // ---- Three sites join from their consoles; the chair names the secretary.
    await C.signIn(ch, chair);
    await openRequest(ch, id);
    const chairCall = await joinFromConsole(ch, 'chair', all);
    await openRequest(rq, id);
    const requesterCall = await joinFromConsole(rq, 'requester', all);
    await C.signIn(nu, nurse);
    await openRequest(nu, id);
    await joinFromConsole(nu, 'nurse', all);
    const requesterId = await requesterCall.id();
    await chairCall.page.bringToFront();
    await H.waitFor('the requester in the chair\'s list', async () => chairCall.page.evaluate(
      (pid) => !!document.querySelector(`#people-list li[data-pid="${pid}"] button[data-action="secretary"]`), requesterId,
    ), 15_000);
    await chairCall.page.evaluate((pid) => document.querySelector(`#people-list li[data-pid="${pid}"] button[data-action="secretary"]`).click(), requesterId);
    await H.waitFor('the secretary named', async () => requesterCall.page.evaluate(
      (pid) => String(window.tuxa.roomState.secretary) === pid, requesterId,
    ), 10_000);

    // ---- The room ends; the secretary enters the conclusion and its plan.
    const ended = await pageApi(co, 'POST', `/api/v1/consultations/${consultation}/end`, {});
    assert.equal(ended.status, 200, JSON.stringify(ended.json));
    await openRequest(rq, id);
    await H.waitFor('the conclusion form for the secretary', async () => {
      await refreshRequest(rq);
      return visible(rq, '#conf-concl-form');
    }, 20_000, 500);
    const conclusion = 'Viêm phổi nặng, suy hô hấp độ II.';
    const plan = 'Thở oxy 3 l/phút, kháng sinh phổ rộng.\nChuyển tuyến tỉnh trong ngày.';
    await rq.page.type('#cc-text', conclusion);
    await rq.page.type('#cc-plan', plan);
    await H.clickSettled(rq, '#cc-submit');
    await H.waitFor('the conclusion saved', async () => staffState(rq, () => !!(window.tuxaStaff.conf.open && window.tuxaStaff.conf.open.conclusion)), 10_000);
    const held = await staffState(rq, () => window.tuxaStaff.conf.open);
    assert.equal(held.status, 'held');
    assert.equal(held.conclusion.management_plan, plan);
    assert.equal(await staffState(rq, () => document.getElementById('conf-plan').textContent), plan);

    // ---- Export buttons: JSON and FHIR fetched with the session and saved.
    // Downloads are saved where the test can read them (the console's own browser context).
    const cdp = await browser.target().createCDPSession();
    const contextId = rq.page.browserContext().id;
    await cdp.send('Browser.setDownloadBehavior', {
      behavior: 'allow', downloadPath: downloads, ...(contextId ? { browserContextId: contextId } : {}),
    });
    await H.waitFor('the export buttons', async () => visible(rq, '#conf-export-json'), 10_000);
    await H.clickSettled(rq, '#conf-export-json');
    await H.clickSettled(rq, '#conf-export-fhir');
    await H.waitFor('both files saved', async () => {
      try {
        const files = readdirSync(downloads);
        return files.includes(`tuxa-${consultation}.json`) && files.includes(`tuxa-${consultation}.fhir.json`);
      } catch { return false; }
    }, 15_000);
    const record = JSON.parse(readFileSync(join(downloads, `tuxa-${consultation}.json`), 'utf8'));
    assert.equal(record.format, 'tuxa.record');
    assert.equal(record.conference.patient.citizen_id, CITIZEN_ID);
    assert.equal(record.conference.conclusion.management_plan, plan);
    const bundle = JSON.parse(readFileSync(join(downloads, `tuxa-${consultation}.fhir.json`), 'utf8'));
    assert.equal(bundle.resourceType, 'Bundle');
    const types = bundle.entry.map((e) => e.resource.resourceType);
    for (const ty of ['Composition', 'DocumentReference', 'Consent']) assert.ok(types.includes(ty), `no ${ty} in ${types}`);
    const exports = await staffState(rq, () => window.tuxaStaff.exports);
    assert.deepEqual(exports.map((e) => [e.format, e.status]), [['json', 200], ['fhir', 200]]);

    // ---- The minutes, opened by their button (the session cookie goes with it).
    const opened = browser.waitForTarget((t) => t.url().endsWith(`/consultations/${consultation}/minutes`), { timeout: 15_000 });
    await H.clickSettled(rq, '#conf-minutes');
    const minutes = await (await opened).page();
    await minutes.setViewport({ width: 1280, height: 900 });
    await minutes.waitForFunction(() => document.readyState === 'complete' && document.title.startsWith('Biên bản'), { timeout: 15_000 });
    const text = await minutes.evaluate(() => document.body.innerText);
    const html = await minutes.content();
    const endedAt = record.consultation.ended_at;
    assert.ok(endedAt, 'the record has the end time');
    const want = [
      DEPARTMENT.toUpperCase(), prov.name.toUpperCase(),
      'Trần Thị B', 'Giới tính: Nữ', 'Năm sinh: 1958', 'Địa chỉ: Thôn 3, xã Tân Tiến, huyện Tân Lập',
      `Số định danh cá nhân (CCCD): ${CITIZEN_ID}`, 'Số hồ sơ tại cơ sở đề nghị: TL-2026-00417',
      'Tình trạng: Đã kết thúc', `Kết thúc lúc: ${vnDateTime(endedAt)}`,
      conclusion, 'Thở oxy 3 l/phút, kháng sinh phổ rộng.', 'Chuyển tuyến tỉnh trong ngày.',
      'xquang-nguc.pdf', pdfSha,
    ];
    for (const w of want) assert.ok(text.includes(w), `the minutes lack ${JSON.stringify(w)}:\n${text}`);
    assert.ok(!/SỞ Y TẾ …|CƠ SỞ Y TẾ …/.test(text), 'a blank where the name is known');
    // Chair and secretary: marked in their rows, named under the signatures.
    const rows = await minutes.evaluate(() => [...document.querySelectorAll('table.people:not(.files) tbody tr')].map((tr) => tr.innerText));
    const rowOf = (name) => rows.find((r) => r.includes(name)) || '';
    assert.match(rowOf('Trần Văn Bình'), /Chủ trì/);
    assert.doesNotMatch(rowOf('Trần Văn Bình'), /Thư ký/);
    assert.match(rowOf('Nguyễn Văn An'), /Thư ký/);
    assert.doesNotMatch(rowOf('Hoàng Thị Hoa'), /Chủ trì|Thư ký/);
    const signed = await minutes.evaluate(() => ({
      chair: document.querySelector('.signatures td.chair').innerText,
      secretary: document.querySelector('.signatures td.secretary').innerText,
    }));
    assert.match(signed.chair, /CHỦ TRÌ[\s\S]*Trần Văn Bình[\s\S]*Số CCHN: /);
    assert.match(signed.secretary, /THƯ KÝ[\s\S]*Nguyễn Văn An[\s\S]*Số CCHN: /);
    assert.ok(html.includes(pdfSha));
    const desktop = await overflow(minutes);
    assert.ok(desktop.scrollWidth <= desktop.innerWidth, `the minutes scroll sideways at 1280 px: ${JSON.stringify(desktop)}`);
    // A phone: no sideways scroll.
    await minutes.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 });
    await H.sleep(500);
    const phone = await minutes.evaluate(() => {
      // The widest elements, to say what sticks out when something does.
      const wide = [...document.querySelectorAll('body *')]
        .map((e) => [e.tagName + (e.className ? `.${e.className}` : ''), Math.round(e.getBoundingClientRect().right)])
        .sort((a, b) => b[1] - a[1]).slice(0, 5);
      return { scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, wide };
    });
    // On a phone an overflowing page widens the layout viewport itself:
    // both must stay at the screen's 390 px.
    assert.ok(phone.innerWidth === 390 && phone.scrollWidth <= 390, `the minutes scroll sideways at 390 px: ${JSON.stringify(phone)}`);
    await minutes.close();

    // ---- The activity report: the ended conference has a duration; the table fits 1366×768.
    await co.page.bringToFront();
    await co.page.setViewport({ width: 1366, height: 768 });
    await H.clickSettled(co, '#tab-btn-coord');
    await co.page.click('#coord-report > summary');
    await co.page.click('#rp-submit');
    await H.waitFor('the report', async () => staffState(co, () => !!window.tuxaStaff.coord.report), 10_000);
    const report = await staffState(co, () => window.tuxaStaff.coord.report.rows);
    const confRow = report.find((r) => r.kind === 'conference');
    assert.ok(confRow && confRow.count === 1 && confRow.duration_avg_secs > 0, JSON.stringify(report));
    const cells = await staffState(co, () => [...document.querySelectorAll('#rp-table tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent)));
    const confCells = cells.find((r) => r[1] === 'Hội chẩn');
    assert.ok(confCells, JSON.stringify(cells));
    assert.equal(confCells[0], '(toàn mạng)');
    assert.notEqual(confCells[8], '—', 'the ended conference shows its duration');
    const fit = await staffState(co, () => {
      const wrap = document.getElementById('rp-table').parentElement;
      return {
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
        wrapScroll: wrap.scrollWidth, wrapClient: wrap.clientWidth,
      };
    });
    assert.ok(fit.scrollWidth <= fit.innerWidth && fit.wrapScroll <= fit.wrapClient,
      `the report scrolls sideways at 1366×768: ${JSON.stringify(fit)}`);

    // ---- A visit's record: the ended visits and conferences are listed with their export buttons.
    const visit = await pageApi(ch, 'POST', '/api/v1/consultations', { kind: 'visit', title: 'Khám từ xa — Trần Thị B' });
    assert.equal(visit.status, 201, JSON.stringify(visit.json));
    const visitId = visit.json.id;
    const endedVisit = await pageApi(ch, 'POST', `/api/v1/consultations/${visitId}/end`, {});
    assert.equal(endedVisit.status, 200, JSON.stringify(endedVisit.json));
    await co.page.bringToFront();
    await H.clickSettled(co, '#tab-btn-conf');
    await co.page.click('#conf-records > summary');
    await H.waitFor('the ended records', async () => staffState(co, (v, k) => !!document.getElementById(`rec-${v}-export-json`)
      && !!document.getElementById(`rec-${k}-export-fhir`), visitId, consultation), 10_000);
    await H.clickSettled(co, `#rec-${visitId}-export-json`);
    await H.waitFor('the visit\'s record saved', async () => staffState(co, (v) => (window.tuxaStaff.exports || [])
      .some((e) => e.filename === `tuxa-${v}.json` && e.status === 200 && e.bytes > 0), visitId), 10_000);
    assert.equal(await staffState(co, (v) => document.getElementById(`rec-${v}-minutes`).getAttribute('href'), visitId),
      `/consultations/${visitId}/minutes`);
  });
});
