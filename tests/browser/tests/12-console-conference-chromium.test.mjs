// A case conference across three sites, from the staff console to the
// minutes (docs/api.md "Case conferences"): a district doctor (Tân Lập)
// requests it, the provincial coordinator schedules it with a provincial
// doctor as chair and a nurse of another district (Sơn Hà) invited; each of
// the three presses "Vào hội chẩn" in their console and is in the call (staff
// enter directly); the chair makes a guest link for the patient, who waits in
// the lobby until the chair admits her; all four receive each other. After
// the consultation ends the chair enters the conclusion, which the printable
// minutes carry.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE, launchChromium, openParticipant, closeAllBrowsers, withDiagnostics, waitFor, expectReceiving,
  decideInLobby, history, request, clickSettled,
} from '../lib/harness.mjs';
import {
  facility, account, consolePage, signIn, staffState, visible, joinFromConsole, openRequest, refreshRequest,
} from '../lib/console.mjs';

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

test('conference call: three sites join from their consoles, the chair admits the patient, the conclusion reaches the minutes', { timeout: 240_000 }, async () => {
  const prov = await facility('BVĐK tỉnh An Hòa', 'province');
  const d1 = await facility('TTYT huyện Tân Lập', 'district', prov.id);
  const d2 = await facility('TTYT huyện Sơn Hà', 'district', prov.id);
  const coord = await account(prov, 'coordinator', 'Đỗ Thị Hạnh');
  const chair = await account(prov, 'doctor', 'Trần Văn Bình');
  const requester = await account(d1, 'doctor', 'Nguyễn Văn An');
  const nurse = await account(d2, 'nurse', 'Hoàng Thị Hoa');

  const browser = await launchChromium();
  const rq = await consolePage(browser, 'requester console');
  const co = await consolePage(browser, 'coordinator console');
  const ch = await consolePage(browser, 'chair console');
  const nu = await consolePage(browser, 'nurse console');
  const all = [rq, co, ch, nu];
  await withDiagnostics(() => all, async () => {
    // The request and its schedule go through the API with each one's
    // session (test 9 drives those forms); the rest through the pages.
    await signIn(rq, requester);
    const made = await pageApi(rq, 'POST', '/api/v1/conferences', {
      to_facility_id: prov.id, specialty: 'Nội khoa', urgency: 'emergency',
      patient: { name: 'Trần Thị B', birth_year: 1958, sex: 'female' },
      summary: 'Khó thở cấp, SpO2 88%.', question: 'Chỉ định thở máy và chuyển tuyến?',
      consent: { text_version: 'vi-conf-2026-11', remote_examination: true, third_parties: true, recording: false },
    });
    assert.equal(made.status, 201, JSON.stringify(made.json));
    const id = made.json.id;
    await signIn(co, coord);
    const startsAt = Math.ceil((Date.now() / 1000 + 2 * 60) / 60) * 60;
    const sched = await pageApi(co, 'POST', `/api/v1/conferences/${id}/schedule`, {
      starts_at: startsAt, duration_min: 30, chair_staff_id: chair.id, invite_staff_ids: [nurse.id],
    });
    assert.equal(sched.status, 200, JSON.stringify(sched.json));
    const consultation = sched.json.schedule.consultation_id;
    assert.deepEqual(sched.json.schedule.invitees.map((i) => i.staff_id).sort((a, b) => a - b),
      [chair.id, requester.id, nurse.id].sort((a, b) => a - b));

    // ---- Each site joins from its console.
    await signIn(ch, chair);
    await openRequest(ch, id);
    const chairCall = await joinFromConsole(ch, 'chair', all);
    await openRequest(rq, id);
    const requesterCall = await joinFromConsole(rq, 'requester', all);
    await signIn(nu, nurse);
    assert.equal(await staffState(nu, () => window.tuxaStaff.tab), 'conf', 'a nurse lands on the conferences');
    await openRequest(nu, id);
    assert.equal(await visible(nu, '#conf-guest-form'), false, 'only the chair makes guest links');
    const nurseCall = await joinFromConsole(nu, 'nurse', all);

    // ---- The chair invites the patient, who waits until admitted.
    assert.equal(await visible(ch, '#conf-guest-form'), true);
    await ch.page.bringToFront(); // the call took the front tab
    await ch.page.select('#cg-role', 'patient');
    await ch.page.type('#cg-name', 'Trần Thị B');
    await clickSettled(ch, '#cg-submit');
    await waitFor('the guest link', async () => staffState(ch, () => !!window.tuxaStaff.conf.guestUrl), 10_000);
    const guestUrl = await staffState(ch, () => document.getElementById('cg-url').value);
    const m = /\/join\/([a-z2-7]{16})#(.+)$/.exec(guestUrl);
    assert.ok(m, guestUrl);
    assert.equal(m[1], consultation);
    const patient = await openParticipant(browser, 'patient');
    all.push(patient);
    await patient.goto(`${BASE}/join/${m[1]}#${m[2]}`);
    await patient.waitForState('preview');
    await patient.page.click('#consent-exam');
    await patient.page.click('#join-btn');
    await patient.waitForState('waiting');
    await chairCall.page.bringToFront();
    await decideInLobby(chairCall, 'Trần Thị B', 'admit');
    await patient.waitForState('in-call');
    assert.ok((await history(patient)).includes('waiting'));

    // ---- Everyone receives everyone.
    const calls = [chairCall, requesterCall, nurseCall, patient];
    const ids = [];
    for (const c of calls) ids.push(await c.id());
    assert.equal(new Set(ids).size, 4, `ids ${ids}`);
    await Promise.all(calls.map((c, i) => expectReceiving(c, ids.filter((_, j) => j !== i), { timeoutMs: 45_000 })));

    // ---- The call ends; the chair enters the conclusion; the minutes carry it.
    const ended = await request('POST', `/api/v1/consultations/${consultation}/end`, {});
    assert.equal(ended.status, 200, ended.text);
    await refreshRequest(ch);
    await waitFor('the conclusion form', async () => visible(ch, '#conf-concl-form'), 15_000);
    const conclusion = 'Viêm phổi nặng. Thở oxy, kháng sinh phổ rộng; chuyển tuyến tỉnh khi ổn định.';
    await ch.page.type('#cc-text', conclusion);
    await clickSettled(ch, '#cc-submit');
    await waitFor('the conclusion saved', async () => staffState(ch, () => !!(window.tuxaStaff.conf.open && window.tuxaStaff.conf.open.conclusion)), 10_000);
    assert.equal(await staffState(ch, () => window.tuxaStaff.conf.open.conclusion.text), conclusion);
    const minutes = await ch.page.evaluate(async () => {
      const a = document.getElementById('conf-minutes');
      const res = await fetch(a.href, { cache: 'no-store' });
      return { status: res.status, text: await res.text() };
    });
    assert.equal(minutes.status, 200);
    assert.ok(minutes.text.includes('Viêm phổi nặng'), 'the minutes do not carry the conclusion');
  });
});
