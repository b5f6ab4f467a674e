// A 4-participant conference (hội chẩn) in Chromium: the doctors and the nurse
// enter directly, the guest waits in the lobby until a doctor admits them;
// every page decodes the three others' video and receives their audio; then
// one leaves with the
// Leave button and the remaining three keep decoding each other, with the
// leaver's tile gone everywhere.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  expectReceiving, tiles, withDiagnostics, uniqueTitle, waitFor, lobbyPanel, waitInLobby,
  decideInLobby, history, clickSettled,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

const PEOPLE = [
  { role: 'doctor', name: 'BS. Lê Minh Châu', facility: 'BVĐK tỉnh' },
  { role: 'doctor', name: 'BS. Phạm Quốc Huy', facility: 'TTYT huyện Đông Sơn' },
  { role: 'nurse', name: 'ĐD. Hoàng Thị Hoa', facility: 'Trạm y tế xã Tân Lập' },
  { role: 'guest', name: 'Võ Đức Thắng', facility: 'Sở Y tế' },
];

test('4-party conference, then one leaves (Chromium)', { timeout: 180_000 }, async () => {
  const room = await createConsultation('conference', uniqueTitle('Hội chẩn'));
  const links = [];
  for (const p of PEOPLE) links.push(await mintLink(room.id, p));

  const browser = await launchChromium();
  const pages = [];
  for (const [i, p] of PEOPLE.entries()) pages.push(await openParticipant(browser, `p${i + 1} ${p.name}`));

  await withDiagnostics(pages, async () => {
    // Join one after another, each once the previous is in the call. Staff
    // enter directly; the guest waits until the first doctor admits them.
    for (const [i, page] of pages.entries()) {
      await page.goto(joinUrl(links[i]));
      if (PEOPLE[i].role !== 'guest') {
        await page.waitForState('in-call');
        continue;
      }
      await page.waitForState('waiting');
      // Both doctors see the guest waiting; the nurse (not a host) does not.
      await Promise.all([waitInLobby(pages[0], PEOPLE[i].name), waitInLobby(pages[1], PEOPLE[i].name)]);
      assert.equal((await lobbyPanel(pages[2])).visible, false, 'the nurse sees the lobby');
      await decideInLobby(pages[0], PEOPLE[i].name, 'admit');
      await page.waitForState('in-call');
      for (const host of pages.slice(0, 2)) {
        await waitFor(`${host.name}'s lobby to empty`, async () => !(await lobbyPanel(host)).visible, 10_000);
      }
    }
    for (const [i, page] of pages.entries()) {
      const states = await history(page);
      assert.equal(states.includes('waiting'), PEOPLE[i].role === 'guest', `${page.name} states ${states}`);
    }
    const ids = [];
    for (const page of pages) ids.push(await page.id());
    assert.equal(new Set(ids).size, 4, `ids ${ids}`);

    // Everyone decodes the three others.
    await Promise.all(pages.map((page, i) => expectReceiving(page, ids.filter((_, j) => j !== i), { timeoutMs: 45_000 })
      .then((s) => console.log(page.name, 'receives', JSON.stringify(s)))));

    for (const [i, page] of pages.entries()) {
      const shown = await tiles(page);
      assert.deepEqual(shown.map((x) => x.pid).sort(), ids.filter((_, j) => j !== i).sort(), `${page.name} tiles`);
      for (const x of shown) {
        const who = PEOPLE[ids.indexOf(x.pid)];
        assert.equal(x.name, who.name, `${page.name}: tile ${x.pid}`);
      }
    }

    // The fourth leaves through the Leave button.
    const leaver = pages[3];
    const leaverId = ids[3];
    await clickSettled(leaver, '#leave-btn');
    await leaver.waitForState('left', 10_000);
    assert.match(await leaver.page.evaluate(() => document.querySelector('#screen-left h1').textContent), /rời phòng/);

    const stay = pages.slice(0, 3);
    const stayIds = ids.slice(0, 3);
    for (const page of stay) {
      await waitFor(`${page.name} drops the tile of ${leaverId}`,
        async () => !(await tiles(page)).some((x) => x.pid === leaverId), 15_000);
      assert.equal(await page.state(), 'in-call');
    }
    await Promise.all(stay.map((page, i) => expectReceiving(page, stayIds.filter((_, j) => j !== i), { timeoutMs: 30_000 })
      .then((s) => console.log(page.name, 'after the leave receives', JSON.stringify(s)))));
    for (const [i, page] of stay.entries()) {
      const shown = await tiles(page);
      assert.deepEqual(shown.map((x) => x.pid).sort(), stayIds.filter((_, j) => j !== i).sort(), `${page.name} tiles after leave`);
      await page.assertNoErrors();
    }
  });
});
