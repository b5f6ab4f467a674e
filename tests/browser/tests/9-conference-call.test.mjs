// A chaired case conference (hội chẩn) in Chromium, through the join page's
// in-call tools: three sites — the chair (provincial doctor, named by the
// scheduler: their own link from the conference's join carries the chair's
// rights, with their licence number), a district doctor (who asked) and a
// commune station nurse, both invited — and a patient who waits in the lobby.
//
// - while the chair is in the room the district doctor sees who waits but
//   is offered no Admit; the chair admits the patient;
// - all four decode each other's video; tiles show role, facility, licence
//   number and the chair's badge;
// - a chat message (with markup in it, shown as text) reaches every site,
//   with the unread badge and the "kept in the record" notice;
// - the chair names the nurse secretary (everyone sees the badge), mutes the
//   district doctor's microphone (their page shows it muted, with a notice)
//   and locks the room (a late joiner sees the locked message, with a retry);
// - the chair shares the screen and the nurse adds a second camera (the fake
//   camera again): the others get a tile for each, with decoded video; a
//   stopped share leaves the others' stage;
// - the chair removes the patient, who sees the end screen.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  mintLink, joinUrl, launchChromium, openParticipant, closeAllBrowsers,
  expectReceiving, tiles, withDiagnostics, waitFor, lobbyPanel, waitInLobby,
  decideInLobby, openJoinPage,
} from '../lib/harness.mjs';
import { scheduledConference } from '../lib/conference.mjs';
import { ERROR_TEXTS, STRINGS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

// Filled in from the conference as scheduled (names, facilities and licence
// numbers as the directory has them).
let CHAIR;
let DISTRICT;
let NURSE;
const PATIENT = { role: 'patient', name: 'Lê Văn Tâm' };
const LATE = { role: 'doctor', name: 'BS. Phạm Văn Muộn', facility: 'CDC tỉnh' };

/** Decoded frames and picture size of the remote tracks of `source` from `pid`. */
async function sourceVideo(who, pid, source) {
  return who.page.evaluate(async (pid, source) => {
    const tx = window.tuxa;
    const tracks = tx.remoteTracks().filter((r) => r.pid === pid && r.source === source && r.kind === 'video');
    let frames = 0;
    const report = await tx.pc.getStats();
    report.forEach((r) => {
      if (r.type === 'inbound-rtp' && tracks.some((x) => x.trackId === r.trackIdentifier || (x.mid != null && x.mid === r.mid))) {
        frames += r.framesDecoded || 0;
      }
    });
    const tile = document.querySelector(`#stage .tile[data-pid="${pid}"][data-source="${source}"]`);
    const video = tile && tile.querySelector('video');
    return {
      tracks: tracks.length,
      frames,
      tile: !!tile,
      visible: !!tile && tile.getClientRects().length > 0,
      label: tile ? tile.querySelector('.name').textContent : null,
      videoWidth: video ? video.videoWidth : 0,
    };
  }, pid, source);
}

/** Waits until `who` shows a tile for `source` from `pid` whose video decodes and grows. */
async function expectSourceTile(who, pid, source, timeoutMs = 40_000) {
  let first = null;
  let last = null;
  await waitFor(`${who.name} to decode the ${source} of ${pid}`, async () => {
    last = await sourceVideo(who, pid, source);
    if (!last.visible || last.videoWidth === 0 || last.frames === 0) return false;
    if (!first) {
      first = last;
      return false;
    }
    return last.frames > first.frames;
  }, timeoutMs, 1000);
  return last;
}

async function chatTexts(who) {
  return who.page.evaluate(() => [...document.querySelectorAll('#chat-list .chat-msg')].map((li) => ({
    from: li.dataset.from,
    name: li.querySelector('.chat-name').textContent,
    time: li.querySelector('.chat-time').textContent,
    text: li.querySelector('.chat-text').textContent,
    markup: li.querySelector('.chat-text').children.length,
  })));
}

test('a chaired conference: lobby, chat, secretary, mute, lock, screen share and second camera, removal (Chromium)', { timeout: 300_000 }, async () => {
  const conf = await scheduledConference({
    names: { province: 'BVĐK tỉnh Thanh Hóa', district: 'TTYT huyện Đông Sơn', commune: 'Trạm y tế xã Tân Lập' },
    people: {
      chair: { role: 'doctor', title: 'BS.CKII', name: 'Nguyễn Thị Lan', at: 'province' },
      district: { role: 'doctor', title: 'BS.', name: 'Trần Văn Bình', at: 'district' },
      nurse: { role: 'nurse', title: 'ĐD.', name: 'Hoàng Thị Hoa', at: 'commune' },
    },
    requester: 'district',
    chair: 'chair',
  });
  CHAIR = conf.people.chair.link;
  DISTRICT = conf.people.district.link;
  NURSE = conf.people.nurse.link;
  const links = {
    chair: CHAIR,
    district: DISTRICT,
    nurse: NURSE,
    // The chair's guest link for the patient (waits in the lobby); a late
    // doctor's link from the consultation's links endpoint (admin key).
    patient: await conf.guestLink(PATIENT.role, PATIENT.name),
    late: await mintLink(conf.room, LATE),
  };

  const browser = await launchChromium();
  const chair = await openParticipant(browser, 'chair (tỉnh)');
  const district = await openParticipant(browser, 'district doctor (huyện)');
  const nurse = await openParticipant(browser, 'nurse (xã)');
  const patient = await openParticipant(browser, 'patient');
  const all = [chair, district, nurse, patient];
  const pages = () => all;

  await withDiagnostics(pages, async () => {
    // The three sites enter directly.
    for (const [who, link] of [[chair, links.chair], [district, links.district], [nurse, links.nurse]]) {
      await who.goto(joinUrl(link));
      await who.waitForState('in-call');
    }
    const ids = {};
    for (const [k, who] of Object.entries({ chair, district, nurse })) ids[k] = await who.id();
    await waitFor('everyone to know the chair', async () => {
      for (const who of [chair, district, nurse]) {
        const st = await who.page.evaluate(() => window.tuxa.roomState);
        if (String(st.chair) !== ids.chair) return false;
      }
      return true;
    }, 10_000);

    // The patient waits; the district doctor sees them but may not admit.
    await openJoinPage(patient, links.patient);
    await patient.waitForState('waiting');
    await waitFor('the district doctor to see the patient waiting, without Admit', async () => {
      const panel = await lobbyPanel(district);
      const e = panel.entries.find((x) => x.name === PATIENT.name);
      return panel.visible && e && !e.admitVisible && !e.refuseVisible;
    }, 15_000);
    assert.equal(await district.page.evaluate(() => document.getElementById('lobby-note').textContent),
      STRINGS.vi.call_chair_decides);
    assert.equal((await lobbyPanel(nurse)).visible, false, 'the nurse sees the lobby');
    await decideInLobby(chair, PATIENT.name, 'admit');
    await patient.waitForState('in-call');
    ids.patient = await patient.id();
    const everyone = [['chair', chair], ['district', district], ['nurse', nurse], ['patient', patient]];

    // All four decode each other.
    await Promise.all(everyone.map(([k, who]) => expectReceiving(who, Object.entries(ids).filter(([j]) => j !== k).map(([, id]) => id), { timeoutMs: 60_000 })
      .then((s) => console.log(who.name, 'receives', JSON.stringify(s)))));

    // Tile labels: role, facility, licence number, the chair's badge.
    const seen = await tiles(district);
    const chairTile = seen.find((x) => x.pid === ids.chair);
    assert.ok(chairTile, `district tiles ${JSON.stringify(seen)}`);
    assert.equal(chairTile.name, CHAIR.name);
    const chairLabel = await district.page.evaluate((pid) => {
      const el = document.querySelector(`#grid .tile[data-pid="${pid}"]`);
      return { meta: el.querySelector('.meta').textContent, licence: el.querySelector('.licence').textContent, badges: el.querySelector('.role-badges').textContent };
    }, ids.chair);
    assert.deepEqual(chairLabel, {
      meta: `Bác sĩ · ${CHAIR.facility}`, licence: `CCHN: ${CHAIR.licence_number}`, badges: 'Chủ trì',
    });

    // The district doctor has no chair's controls; the chair has them.
    await district.page.click('#people-btn');
    const dp = await district.page.evaluate(() => {
      const shown = (el) => !!el && el.getClientRects().length > 0;
      return {
        modBar: shown(document.getElementById('mod-bar')),
        actions: [...document.querySelectorAll('#people-list .people-actions')].some(shown),
        entries: [...document.querySelectorAll('#people-list .people-entry')].map((li) => li.querySelector('.people-name').textContent),
        licence: [...document.querySelectorAll('#people-list .people-licence')].map((el) => el.textContent).filter(Boolean),
      };
    });
    assert.equal(dp.modBar, false, 'the district doctor sees the lock toggle');
    assert.equal(dp.actions, false, 'the district doctor sees the chair\'s buttons');
    assert.equal(dp.entries.length, 4, `entries ${dp.entries}`);
    assert.ok(dp.licence.includes(`CCHN: ${CHAIR.licence_number}`) && dp.licence.includes(`CCHN: ${DISTRICT.licence_number}`), `licences ${dp.licence}`);
    await district.page.click('#people-close');

    // Chat: the nurse writes; everyone sees it, as text; unread badge while closed.
    const text = 'Đề nghị chụp CT ngực <b>có cản quang</b> & xét nghiệm máu.';
    await nurse.page.click('#chat-btn');
    assert.equal(await nurse.page.evaluate(() => document.getElementById('chat-kept').textContent), STRINGS.vi.call_chat_kept);
    await nurse.page.type('#chat-input', text);
    await nurse.page.click('#chat-send');
    for (const who of all) {
      await waitFor(`${who.name} to show the chat message`, async () => (await chatTexts(who)).some((m) => m.text === text), 10_000);
      const [m] = (await chatTexts(who)).filter((x) => x.text === text);
      assert.equal(m.markup, 0, `${who.name}: the text was rendered as markup`);
      assert.equal(m.from, ids.nurse);
      assert.equal(m.name, who === nurse ? STRINGS.vi.you : NURSE.name);
      assert.match(m.time, /^\d{2}:\d{2}$/);
    }
    assert.equal(await chair.page.evaluate(() => document.getElementById('chat-unread').textContent), '1');
    assert.equal(await chair.page.evaluate(() => document.getElementById('chat-unread').hidden), false);
    assert.equal(await nurse.page.evaluate(() => document.getElementById('chat-unread').hidden), true);
    await nurse.page.click('#chat-close');

    // The chair names the nurse secretary.
    await chair.page.click('#people-btn');
    await chair.page.click(`#people-list .people-entry[data-pid="${ids.nurse}"] [data-action="secretary"]`);
    for (const who of [chair, district, patient]) {
      await waitFor(`${who.name} to show the secretary badge`, async () => who.page.evaluate((pid) => {
        const el = document.querySelector(`#grid .tile[data-pid="${pid}"] .role-badges`);
        return !!el && el.textContent === 'Thư ký';
      }, ids.nurse), 10_000);
    }
    await waitFor('the nurse to see herself as secretary', async () => nurse.page.evaluate((pid) => {
      const el = document.querySelector(`#people-list .people-entry[data-pid="${pid}"] .role-badges`);
      return String(window.tuxa.roomState.secretary) === pid && !!el && el.textContent === 'Thư ký';
    }, ids.nurse), 10_000);

    // The chair mutes the district doctor's microphone.
    await chair.page.click(`#people-list .people-entry[data-pid="${ids.district}"] [data-action="mute-audio"]`);
    await waitFor('the district doctor\'s page to show the microphone muted', async () => district.page.evaluate(() => {
      const b = document.querySelector('.controls .mic-toggle');
      return window.tuxa.debug.media.micMuted && b.getAttribute('aria-pressed') === 'true'
        && window.tuxa.debug.media.audio.enabled === false;
    }), 10_000);
    const notice = await district.page.evaluate(() => ({ text: document.getElementById('call-notice').textContent, shown: !document.getElementById('call-notice').hidden }));
    assert.deepEqual(notice, { text: `${CHAIR.name} đã tắt micro của bạn. Bạn có thể tự bật lại khi cần phát biểu.`, shown: true });
    for (const who of [chair, nurse, patient]) {
      await waitFor(`${who.name} to show the district doctor muted`, async () => who.page.evaluate((pid) => {
        const b = document.querySelector(`#grid .tile[data-pid="${pid}"] .badge-mic`);
        return !!b && !b.hidden;
      }, ids.district), 10_000);
    }

    // The chair locks the room: everyone sees it; a late joiner is turned away.
    await chair.page.click('#lock-btn');
    for (const who of all) {
      await waitFor(`${who.name} to show the room locked`, async () => who.page.evaluate(() => !document.getElementById('lock-strip').hidden), 10_000);
    }
    const late = await openParticipant(browser, 'late joiner');
    all.push(late);
    await late.goto(joinUrl(links.late));
    await late.waitForState('error', 20_000);
    const lateScreen = await late.page.evaluate(() => ({
      code: window.tuxa.error,
      title: document.getElementById('error-title').textContent,
      text: document.getElementById('error-text').textContent,
      retry: !document.getElementById('retry-btn').hidden,
    }));
    assert.deepEqual(lateScreen, {
      code: 'room_locked', title: STRINGS.vi.call_locked_title, text: ERROR_TEXTS.vi.room_locked, retry: true,
    });
    await late.page.close();
    all.pop();

    // The chair shares the screen; the nurse adds a second camera.
    await chair.page.click('#people-close');
    await chair.page.click('#screen-btn');
    for (const who of [district, nurse, patient]) {
      const s = await expectSourceTile(who, ids.chair, 'screen');
      assert.equal(s.label, `${CHAIR.name} — màn hình`);
      console.log(who.name, 'decodes the chair\'s screen', JSON.stringify(s));
    }
    await nurse.page.click('#cam2-btn');
    await nurse.page.waitForSelector('#cam2-picker:not([hidden])');
    await nurse.page.click('#cam2-start');
    for (const who of [chair, district, patient]) {
      const s = await expectSourceTile(who, ids.nurse, 'second_camera');
      assert.equal(s.label, `${NURSE.name} — camera 2`);
      console.log(who.name, 'decodes the nurse\'s second camera', JSON.stringify(s));
    }
    // The camera tiles are still one per participant; the sender sees its own share.
    assert.deepEqual((await tiles(district)).map((x) => x.pid).sort(), [ids.chair, ids.nurse, ids.patient].sort());
    assert.equal(await chair.page.evaluate(() => !!document.querySelector('#stage .tile-local[data-source="screen"]:not([hidden])')), true);

    // A stopped share leaves the others' stage.
    await chair.page.click('#screen-btn');
    await waitFor('the district doctor\'s stage to drop the stopped screen', async () => !(await sourceVideo(district, ids.chair, 'screen')).visible, 20_000);
    assert.equal((await sourceVideo(district, ids.nurse, 'second_camera')).visible, true);

    // The chair removes the patient (after confirming).
    await chair.page.click('#people-btn');
    await chair.page.click(`#people-list .people-entry[data-pid="${ids.patient}"] [data-action="remove"]`);
    await chair.page.waitForSelector('#confirm:not([hidden])');
    assert.match(await chair.page.evaluate(() => document.getElementById('confirm-text').textContent), new RegExp(PATIENT.name));
    await chair.page.click('#confirm-yes');
    await patient.waitForState('error', 15_000);
    const end = await patient.page.evaluate(() => ({
      code: window.tuxa.error,
      title: document.getElementById('error-title').textContent,
      retry: !document.getElementById('retry-btn').hidden,
    }));
    assert.deepEqual(end, { code: 'removed', title: STRINGS.vi.call_removed_title, retry: false });
    for (const who of [chair, district, nurse]) {
      await waitFor(`${who.name} to drop the patient's tile`, async () => !(await tiles(who)).some((x) => x.pid === ids.patient), 10_000);
      assert.equal(await who.state(), 'in-call');
    }
    await waitFor('the district doctor to be told of the removal', async () => district.page.evaluate(
      (name) => window.tuxa.notices.includes(`${name} đã được mời ra khỏi phòng.`), PATIENT.name,
    ), 5_000);

    for (const who of [chair, district, nurse]) await who.assertNoErrors();
  });
});
