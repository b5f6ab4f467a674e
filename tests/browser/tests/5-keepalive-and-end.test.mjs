// A participant alone in a call for longer than the server's idle timeout
// stays in (the page pings every keepalive_interval_ms); then the
// consultation is ended through the API and the page shows "Buổi khám đã kết
// thúc" (the fatal room_ended error).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, endConsultation, joinUrl, launchChromium, openParticipant,
  closeAllBrowsers, withDiagnostics, uniqueTitle, sleep,
} from '../lib/harness.mjs';
import { ERROR_TEXTS } from '../../../web-client/i18n.js';

after(closeAllBrowsers);

// 45 s is the protocol's IDLE_TIMEOUT_MS; stay a little longer.
const STAY_MS = Number(process.env.TUXA_KEEPALIVE_TEST_MS || 50_000);

test('pings keep a quiet session alive; ending the consultation shows room_ended', { timeout: STAY_MS + 90_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Chờ bệnh nhân'));
  const link = await mintLink(room.id, { role: 'doctor', name: 'BS. Kiên Nhẫn', facility: 'BVĐK tỉnh' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor (alone)');

  await withDiagnostics([doctor], async () => {
    await doctor.goto(joinUrl(link));
    await doctor.waitForState('in-call');
    const timers = await doctor.page.evaluate(() => window.tuxa.log.find((l) => l.includes('← welcome')));
    console.log('welcome:', timers);

    await sleep(STAY_MS);
    const s = await doctor.page.evaluate(() => ({ state: window.tuxa.state, lastPong: window.tuxa.lastPong, errors: window.tuxa.errors }));
    console.log('after', STAY_MS, 'ms:', JSON.stringify(s));
    assert.equal(s.state, 'in-call');
    assert.ok(s.lastPong >= 2, `pongs: ${s.lastPong}`);
    await doctor.assertNoErrors();
    // Still waiting for the other side.
    assert.equal(await doctor.page.evaluate(() => document.getElementById('waiting').hidden), false);

    await endConsultation(room.id);
    await doctor.waitForState('error', 15_000);
    const r = await doctor.page.evaluate(() => ({
      code: window.tuxa.error, text: document.getElementById('error-text').textContent,
    }));
    assert.equal(r.code, 'room_ended');
    assert.equal(r.text, ERROR_TEXTS.vi.room_ended);
  });
});
