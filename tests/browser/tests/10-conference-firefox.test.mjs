// The in-call tools with a Firefox ESR participant: Firefox names received
// tracks with its own ids (not the sender's), so the join page finds a
// track's source through the msid of its m-line. In a case conference, a
// Chromium chair (the provincial doctor the scheduler named, with their own
// link) shares the screen; the Firefox doctor (the district doctor who asked)
// gets a tile for it with decoded video, and chats back (kept with the
// conference's record). In a visit, the chat panel says messages are not kept.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, launchFirefox, openParticipant, closeAllBrowsers,
  waitFor, withDiagnostics, uniqueTitle,
} from '../lib/harness.mjs';
import { scheduledConference } from '../lib/conference.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

test('a Firefox doctor sees a Chromium chair\'s screen share on its own tile, and chats', { timeout: 150_000 }, async () => {
  const conf = await scheduledConference({
    names: { province: 'BVĐK tỉnh', district: 'TTYT huyện', commune: 'Trạm y tế xã' },
    people: {
      chair: { role: 'doctor', title: 'BS.', name: 'Đỗ Minh Khoa', at: 'province' },
      doctor: { role: 'doctor', title: 'BS.', name: 'Vũ Thị Hạnh', at: 'district' },
    },
    requester: 'doctor',
    chair: 'chair',
  });
  const chairLink = conf.people.chair.link;
  const doctorLink = conf.people.doctor.link;
  const chair = await openParticipant(await launchChromium(), 'chair (Chromium)');
  const doctor = await openParticipant(await launchFirefox(), 'doctor (Firefox)', 'firefox');

  await withDiagnostics([chair, doctor], async () => {
    await chair.goto(joinUrl(chairLink));
    await chair.waitForState('in-call');
    await doctor.goto(joinUrl(doctorLink));
    await doctor.waitForState('in-call');
    const chairId = await chair.id();

    await chair.page.click('#screen-btn');
    let seen = null;
    await waitFor('the Firefox page to decode the screen on its own tile', async () => {
      seen = await doctor.page.evaluate((pid) => {
        const tile = document.querySelector(`#stage .tile[data-pid="${pid}"][data-source="screen"]`);
        const video = tile && tile.querySelector('video');
        return {
          shown: !!tile && tile.getClientRects().length > 0,
          width: video ? video.videoWidth : 0,
          label: tile ? tile.querySelector('.name').textContent : null,
          cameraTiles: document.querySelectorAll('#grid .tile').length,
          sources: window.tuxa.remoteTracks().map((r) => r.source || r.kind),
        };
      }, chairId);
      return seen.shown && seen.width > 0;
    }, 45_000, 1000);
    assert.equal(seen.label, 'BS. Đỗ Minh Khoa — màn hình');
    assert.equal(seen.cameraTiles, 1);
    assert.deepEqual([...seen.sources].sort(), ['audio', 'screen', 'video']);

    // The other doctor does not moderate while the chair is here.
    assert.equal(await doctor.page.evaluate(() => document.getElementById('mod-bar').hidden), true);

    await doctor.page.click('#chat-btn');
    assert.equal(await doctor.page.evaluate(() => document.getElementById('chat-kept').textContent), STRINGS.vi.call_chat_kept);
    await doctor.page.type('#chat-input', 'Em thấy rõ phim X-quang rồi ạ.');
    await doctor.page.click('#chat-send');
    await waitFor('the chair to get the message', async () => chair.page.evaluate(
      () => [...document.querySelectorAll('#chat-list .chat-text')].some((el) => el.textContent === 'Em thấy rõ phim X-quang rồi ạ.'),
    ), 10_000);
    await chair.assertNoErrors();
    await doctor.assertNoErrors();

    // A visit's chat goes nowhere but the room: the panel says so.
    const visit = await createConsultation('visit', uniqueTitle('Khám từ xa — Firefox'));
    const visitLink = await mintLink(visit.id, { role: 'doctor', name: 'BS. Vũ Thị Hạnh', facility: 'TTYT huyện' });
    await doctor.goto(joinUrl(visitLink));
    await doctor.waitForState('in-call');
    await doctor.page.click('#chat-btn');
    assert.equal(await doctor.page.evaluate(() => document.getElementById('chat-kept').textContent), STRINGS.vi.call_chat_not_kept);
  });
});
