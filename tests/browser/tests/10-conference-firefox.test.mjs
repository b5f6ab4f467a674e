// The in-call tools with a Firefox ESR participant: Firefox names received
// tracks with its own ids (not the sender's), so the join page finds a
// track's source through the msid of its m-line. A Chromium chair shares the
// screen; the Firefox doctor gets a tile for it with decoded video, and chats
// back. In a visit, the chat panel says messages are not kept.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  request, createConsultation, joinUrl, launchChromium, launchFirefox, openParticipant, closeAllBrowsers,
  waitFor, withDiagnostics, uniqueTitle,
} from '../lib/harness.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

async function mint(roomId, person) {
  const res = await request('POST', `/api/v1/consultations/${roomId}/links`, person);
  if (res.status !== 201) throw new Error(`mint link: HTTP ${res.status} ${res.text}`);
  return { ...res.json, room: roomId, ...person };
}

test('a Firefox doctor sees a Chromium chair\'s screen share on its own tile, and chats', { timeout: 150_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Khám từ xa — Firefox'));
  const chairLink = await mint(room.id, { role: 'doctor', name: 'BS. Đỗ Minh Khoa', facility: 'BVĐK tỉnh', chair: true });
  const doctorLink = await mint(room.id, { role: 'doctor', name: 'BS. Vũ Thị Hạnh', facility: 'TTYT huyện', licence_number: '004321/TH-CCHN' });
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
    assert.equal(await doctor.page.evaluate(() => document.getElementById('chat-kept').textContent), STRINGS.vi.call_chat_not_kept);
    await doctor.page.type('#chat-input', 'Em thấy rõ phim X-quang rồi ạ.');
    await doctor.page.click('#chat-send');
    await waitFor('the chair to get the message', async () => chair.page.evaluate(
      () => [...document.querySelectorAll('#chat-list .chat-text')].some((el) => el.textContent === 'Em thấy rõ phim X-quang rồi ạ.'),
    ), 10_000);
    await chair.assertNoErrors();
    await doctor.assertNoErrors();
  });
});
