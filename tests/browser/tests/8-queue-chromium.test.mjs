// The on-call queue in Chromium, end to end through the pages people use:
// a doctor signs in on the staff console (/staff: password and the
// authenticator's code, computed here from the TOTP secret); a patient opens
// the queue's link (/q/{id}), fills in name, phone and reason, ticks the
// remote-examination consent (nothing is pre-ticked) and queues: position 1,
// wait "chưa rõ" while no doctor is available; a reload keeps the place
// (queue_resume). The doctor's switch for a queue they are not rostered on is
// refused (not_on_call, translated); the switch of their own queue makes them
// available, the patient is offered to them ("Bác sĩ đang xem thông tin của
// bạn…") with the reason for the visit, the doctor accepts; the patient's page
// goes to the call by itself (pre-admitted: no lobby; not asked for consent
// again: the queue page's answers are sent as given), the console keeps
// `callUrl` (?noopen=1), the doctor opens it, and each decodes the other's
// video. Meanwhile two more patients queue (positions 1 and 2, with an
// estimate now that a doctor is on call) and the second gives up (cancel);
// "Kết thúc, nhận bệnh nhân tiếp" brings the next offer at once, which the
// doctor declines (the patient is back at the head); signing out ends the
// session.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE, launchChromium, openParticipant, closeAllBrowsers, expectReceiving, withDiagnostics, waitFor,
  sleep, history, adminPost, setupOnCallDoctor, totpCode, waitForPageState, pageGlobal, request,
} from '../lib/harness.mjs';
import { STRINGS, ERROR_TEXTS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

/** A participant whose diagnostics also show the queue page's or console's state. */
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

const queueView = (patient) => patient.page.evaluate(() => {
  const q = window.tuxaQueue;
  const text = (id) => {
    const el = document.getElementById(id);
    return el && !el.hidden ? el.textContent : null;
  };
  return {
    state: q.state, position: q.position, ticket: q.ticket, resumed: q.resumed,
    title: text('q-status-title'), positionText: text('q-position'), estimateText: text('q-estimate'),
  };
});

const staffView = (doctor) => doctor.page.evaluate(() => {
  const s = window.tuxaStaff;
  return {
    state: s.state, available: s.available, availableQueues: s.availableQueues, onCall: s.onCall,
    offer: s.offer, callUrl: s.callUrl, error: s.error,
  };
});

test('queue: a patient queues from the link, a signed-in doctor on call accepts, both are in the call (Chromium)', { timeout: 150_000 }, async () => {
  // The directory: a hospital, a doctor on call all day for its "Nội khoa"
  // queue, and a second queue of the same hospital the doctor is not rostered on.
  const d = await setupOnCallDoctor({ facilityName: 'BVĐK tỉnh An Hòa', specialty: 'Nội khoa', doctorName: 'Lê Hoàng Minh' });
  const otherQueue = await adminPost('/api/v1/queues', { facility_id: d.facility.id, specialty: 'Nhi khoa' });

  // Each page must be served (a missing /static/ file would show only as a blank page).
  for (const path of ['/static/queue.js', '/static/staff.js']) {
    const res = await request('GET', path, undefined, { admin: false });
    assert.equal(res.status, 200, `the server does not serve ${path} (HTTP ${res.status})`);
  }

  const browser = await launchChromium();
  const doctorPage = await openParticipant(browser, 'doctor console');
  const patientPage = await openParticipant(browser, 'patient');
  const all = [withGlobal(doctorPage, 'tuxaStaff'), withGlobal(patientPage, 'tuxaQueue')];
  const diag = () => all;

  await withDiagnostics(diag, async () => {
    // ---- The doctor signs in on the console.
    await doctorPage.goto(`${BASE}/staff?noopen=1`);
    await waitForPageState(doctorPage, 'tuxaStaff', 'signed-out');
    await doctorPage.page.type('#username', d.username);
    await doctorPage.page.type('#password', d.password);
    // A fresh code, not about to roll over (a code counts once).
    if (Date.now() / 1000 % 30 > 27) await sleep(3_500);
    await doctorPage.page.type('#totp', totpCode(d.secret));
    await doctorPage.page.click('#signin-btn');
    await waitForPageState(doctorPage, 'tuxaStaff', 'ready', 20_000);
    const who = await doctorPage.page.evaluate(() => ({
      name: document.getElementById('who-name').textContent,
      meta: document.getElementById('who-meta').textContent,
      queues: [...document.querySelectorAll('#queue-list .st-queue')].map((li) => ({
        id: Number(li.dataset.queue),
        name: li.querySelector('.st-queue-name').textContent,
        label: li.querySelector('.st-switch span').textContent,
        checked: li.querySelector('input').checked,
      })),
    }));
    assert.match(who.name, /Lê Hoàng Minh/);
    assert.match(who.meta, /Bác sĩ/);
    assert.match(who.meta, new RegExp(d.username.replace('.', '\\.')));
    assert.deepEqual(who.queues.map((q) => q.id).sort(), [d.queue.id, otherQueue.id].sort());
    for (const q of who.queues) {
      assert.equal(q.label, 'Sẵn sàng nhận bệnh nhân');
      assert.equal(q.checked, false);
    }

    // A queue they are not on call for: refused, translated, switch back off.
    await doctorPage.page.click(`#queue-list input[data-queue="${otherQueue.id}"]`);
    await waitFor('the not_on_call refusal', async () => doctorPage.page.evaluate(
      () => !document.getElementById('queues-error').hidden,
    ), 15_000);
    const refused = await doctorPage.page.evaluate((id) => ({
      text: document.getElementById('queues-error').textContent,
      checked: document.querySelector(`#queue-list input[data-queue="${id}"]`).checked,
      available: window.tuxaStaff.available,
    }), otherQueue.id);
    assert.ok(refused.text.includes(ERROR_TEXTS.vi.not_on_call), refused.text);
    assert.equal(refused.checked, false);
    assert.equal(refused.available, false);

    // ---- The patient opens the queue's link.
    await patientPage.goto(`${BASE}/q/${d.queue.id}`);
    await waitForPageState(patientPage, 'tuxaQueue', 'form');
    const form = await patientPage.page.evaluate(() => ({
      name: document.getElementById('q-name').textContent,
      facility: document.getElementById('q-facility').textContent,
      ticked: [...document.querySelectorAll('#consent input')].map((i) => i.checked),
      joinDisabled: document.getElementById('q-join-btn').disabled,
      hint: !document.getElementById('consent-needed').hidden,
    }));
    assert.equal(form.name, d.queue.name);
    assert.equal(form.facility, d.facility.name);
    assert.deepEqual(form.ticked, [false, false, false], 'consent must not be pre-ticked');
    assert.equal(form.joinDisabled, true);
    assert.equal(form.hint, true);
    await patientPage.page.type('#f-name', 'Nguyễn Văn An');
    await patientPage.page.type('#f-phone', '0912 345 678');
    await patientPage.page.type('#f-reason', 'Sốt cao 3 ngày, ho khan');
    await patientPage.page.click('#consent-exam');
    assert.equal(await patientPage.page.evaluate(() => document.getElementById('q-join-btn').disabled), false);
    await patientPage.page.click('#q-join-btn');

    // Position 1; no doctor available yet, so the wait is not known.
    await waitForPageState(patientPage, 'tuxaQueue', 'queued', 15_000);
    const queued = await queueView(patientPage);
    assert.equal(queued.position, 1);
    assert.equal(queued.positionText, 'Bạn đang ở vị trí số 1');
    assert.equal(queued.estimateText, STRINGS.vi.q_estimate_unknown);
    assert.equal(queued.estimateText, 'Thời gian chờ dự kiến: chưa rõ');
    assert.ok(queued.ticket, 'no ticket');
    const consent = await patientPage.page.evaluate(() => window.tuxaQueue.consent);
    assert.deepEqual(
      [consent.remote_examination, consent.third_parties, consent.recording], [true, false, false],
    );
    assert.match(consent.text_version, /^vi-/);
    assert.ok(consent.at > 0, 'no consent_recorded');
    // In English, then back.
    await patientPage.page.click('#lang-btn');
    assert.equal((await queueView(patientPage)).positionText, 'You are number 1 in line');
    await patientPage.page.click('#lang-btn');

    // Reopening the link (a reload) keeps the place: queue_resume, same ticket.
    await patientPage.page.reload({ waitUntil: 'load' });
    await waitForPageState(patientPage, 'tuxaQueue', 'queued', 15_000);
    const resumed = await queueView(patientPage);
    assert.equal(resumed.resumed, true, 'the reloaded page did not resume');
    assert.equal(resumed.ticket, queued.ticket);
    assert.equal(resumed.position, 1);

    // ---- The doctor becomes available: the patient is offered to them.
    await doctorPage.page.click(`#queue-list input[data-queue="${d.queue.id}"]`);
    await waitFor('the doctor to be offered the patient', async () => {
      const s = await staffView(doctorPage);
      return s.state === 'offered' && s.offer && s.offer.name === 'Nguyễn Văn An';
    }, 20_000);
    const st = await staffView(doctorPage);
    assert.equal(st.available, true);
    assert.deepEqual(st.availableQueues, [d.queue.id]);
    const card = await doctorPage.page.evaluate(() => ({
      shown: !document.getElementById('offer-card').hidden,
      name: document.getElementById('offer-name').textContent,
      reason: document.getElementById('offer-reason').textContent,
      phone: document.getElementById('offer-phone').textContent,
      countdown: document.getElementById('offer-countdown').textContent,
      accept: document.getElementById('accept-btn').textContent,
      title: document.title,
    }));
    assert.equal(card.shown, true);
    assert.equal(card.name, 'Nguyễn Văn An');
    assert.equal(card.reason, 'Sốt cao 3 ngày, ho khan');
    assert.equal(card.phone, '0912 345 678');
    assert.match(card.countdown, /^Còn \d+ giây để trả lời$/);
    assert.equal(card.accept, 'Nhận khám');
    assert.match(card.title, /^\(1\) /); // an offer waits: the tab says so (issue 12)
    assert.ok(st.offer.expires_in_secs > 0);
    await waitForPageState(patientPage, 'tuxaQueue', 'offered', 10_000);
    assert.equal((await queueView(patientPage)).title, 'Bác sĩ đang xem thông tin của bạn…');

    // ---- Accept: the patient's page goes to the call; the console keeps the link.
    await doctorPage.page.click('#accept-btn');
    await waitFor('the console to have the call link', async () => {
      const s = await staffView(doctorPage);
      return s.state === 'in-call' && !!s.callUrl;
    }, 20_000);
    const inCall = await doctorPage.page.evaluate(() => ({
      panel: !document.getElementById('call-panel').hidden,
      title: document.getElementById('call-title').textContent,
      done: document.getElementById('done-btn').textContent,
      offer: !document.getElementById('offer-card').hidden,
    }));
    assert.deepEqual(inCall, { panel: true, title: 'Đang khám', done: 'Kết thúc, nhận bệnh nhân tiếp', offer: false });
    const { callUrl } = await staffView(doctorPage);
    assert.match(callUrl, /\/join\/[a-z2-7]{16}#/);

    await waitFor('the patient page to go to the call', async () => /\/join\/[a-z2-7]{16}/.test(patientPage.page.url()), 20_000);
    const patientRoom = patientPage.page.url().match(/\/join\/([a-z2-7]{16})/)[1];
    assert.equal(callUrl.match(/\/join\/([a-z2-7]{16})/)[1], patientRoom, 'one room for both');
    // The join page does not ask again: the queue page's answers carry over
    // (sessionStorage of the tab) and are sent as given.
    await patientPage.waitForState('preview');
    const callConsent = await patientPage.page.evaluate(() => ({
      form: !document.getElementById('consent').hidden,
      given: !document.getElementById('consent-given').hidden,
      joinDisabled: document.getElementById('join-btn').disabled,
    }));
    assert.deepEqual(callConsent, { form: false, given: true, joinDisabled: false }, 'the call page asks for consent again');
    await patientPage.page.click('#join-btn');

    // The doctor opens the call in their own window.
    const doctorCallPage = await openParticipant(browser, 'doctor call');
    all.push(doctorCallPage);
    await doctorCallPage.goto(callUrl.replace(/^https:\/\/[^/]+/, BASE));
    await doctorCallPage.waitForState('preview');
    await doctorCallPage.page.click('#join-btn');
    await doctorCallPage.waitForState('in-call');
    await patientPage.waitForState('in-call');
    const states = await history(patientPage);
    assert.ok(!states.includes('waiting'), `the accepted patient waited in the lobby again: ${states}`);
    const sentConsent = await patientPage.page.evaluate(() => window.tuxa.consent);
    assert.deepEqual(
      [sentConsent.text_version, sentConsent.remote_examination, sentConsent.third_parties, sentConsent.recording],
      [consent.text_version, true, false, false], 'the call page did not send the queue page\'s answers',
    );

    const doctorId = await doctorCallPage.id();
    const patientId = await patientPage.id();
    const [atDoctor, atPatient] = await Promise.all([
      expectReceiving(doctorCallPage, [patientId]),
      expectReceiving(patientPage, [doctorId]),
    ]);
    console.log('doctor receives', JSON.stringify(atDoctor));
    console.log('patient receives', JSON.stringify(atPatient));
    await doctorCallPage.assertNoErrors();
    await patientPage.assertNoErrors();

    // ---- While the doctor is in the call, two more patients queue: positions
    // 1 and 2, with an estimate now that a doctor is on call; the second gives up.
    const second = await openParticipant(browser, 'patient 2');
    const third = await openParticipant(browser, 'patient 3');
    all.push(withGlobal(second, 'tuxaQueue'), withGlobal(third, 'tuxaQueue'));
    for (const [p, name] of [[second, 'Trần Thị Bình'], [third, 'Phạm Văn Cường']]) {
      await p.goto(`${BASE}/q/${d.queue.id}`);
      await waitForPageState(p, 'tuxaQueue', 'form');
      await p.page.type('#f-name', name);
      await p.page.type('#f-reason', 'Ho');
      await p.page.click('#consent-exam');
      await p.page.click('#q-join-btn');
      await waitForPageState(p, 'tuxaQueue', 'queued', 15_000);
    }
    await waitFor('positions 1 and 2', async () => (await queueView(third)).position === 2, 10_000);
    const [v2, v3] = [await queueView(second), await queueView(third)];
    assert.equal(v2.positionText, 'Bạn đang ở vị trí số 1');
    assert.equal(v3.positionText, 'Bạn đang ở vị trí số 2');
    assert.match(v2.estimateText, /^Thời gian chờ dự kiến: khoảng \d+ phút$/);
    assert.match(v3.estimateText, /^Thời gian chờ dự kiến: khoảng \d+ phút$/);
    assert.equal((await staffView(doctorPage)).state, 'in-call', 'a doctor in a call is offered nobody');
    await third.page.click('#q-cancel-btn');
    await third.page.click('#q-cancel-yes');
    await waitForPageState(third, 'tuxaQueue', 'left', 10_000);
    assert.equal(await third.page.evaluate(() => document.getElementById('q-left-text').textContent), STRINGS.vi.q_removed_cancelled);
    assert.equal(await third.page.evaluate((id) => localStorage.getItem(`tuxa.queue.${id}.ticket`), d.queue.id), null,
      'a cancelled ticket is still stored');
    assert.equal((await queueView(second)).position, 1);

    // ---- "Kết thúc, nhận bệnh nhân tiếp": the next patient is offered at once.
    await doctorPage.page.click('#done-btn');
    await waitFor('the next offer', async () => {
      const s = await staffView(doctorPage);
      return s.state === 'offered' && s.offer && s.offer.name === 'Trần Thị Bình';
    }, 15_000);
    assert.equal((await staffView(doctorPage)).onCall, false);
    assert.equal(await doctorPage.page.evaluate(() => document.getElementById('call-panel').hidden), true);
    await waitForPageState(second, 'tuxaQueue', 'offered', 10_000);
    // Declined (the only doctor): the patient is back at the head of the line.
    await doctorPage.page.click('#decline-btn');
    await waitForPageState(doctorPage, 'tuxaStaff', 'available', 10_000);
    const afterDecline = await staffView(doctorPage);
    assert.deepEqual(afterDecline.availableQueues, [d.queue.id]);
    assert.equal(afterDecline.offer, null);
    await waitForPageState(second, 'tuxaQueue', 'queued', 10_000);
    assert.equal((await queueView(second)).position, 1);

    // ---- Sign out: the session is gone.
    await doctorPage.page.click('#signout-btn');
    await waitForPageState(doctorPage, 'tuxaStaff', 'signed-out', 10_000);
    const me = await doctorPage.page.evaluate(async () => (await fetch('/api/v1/me', { cache: 'no-store' })).status);
    assert.equal(me, 401);
  });
});
