// The pre-call check (web-client/check.js), in Chromium with the fake camera
// and microphone.
//
// 1. /check on a 390 x 844 phone: the check runs against the server run.sh
//    started; the verdict says video is fine, media went over UDP (the
//    candidate pair's local candidate), the SFU's receiver reports came back,
//    the microphone meter moved, and the page never scrolls sideways.
// 2. The join page at 390 x 844: the check is folded under the join button
//    (which stays on the first screen); opened, it runs with the preview's
//    own tracks and says video is fine too.
// 3. A server whose UDP candidate is unreachable (announced at 192.0.2.1,
//    TEST-NET-1) but whose ICE-TCP candidate works: media goes over TCP
//    (in a desktop window, 1366 x 768).
// 4. A server whose UDP candidate is unreachable and that has no ICE-TCP:
//    the verdict is "cannot connect", with the UDP port to ask IT to open.
//
// Screenshots: TUXA_SHOTS=/some/dir writes each verdict as a PNG there.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  BASE, launchChromium, openParticipant, closeAllBrowsers, withDiagnostics, waitFor, sleep,
  createConsultation, mintLink, joinUrl, uniqueTitle,
} from '../lib/harness.mjs';
import { STRINGS } from '../../../web-client/i18n.js';

const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 3 };
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 11; SM-A115F) AppleWebKit/537.36 (KHTML, like Gecko) '
  + 'Chrome/124.0.0.0 Mobile Safari/537.36';

const SHOTS = process.env.TUXA_SHOTS || '';
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
async function shot(who, name) {
  if (SHOTS) await who.page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

const BIN = process.env.TUXA_BIN;
const KEY = randomBytes(24).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tuxa-check-'));
const servers = [];

after(async () => {
  await closeAllBrowsers();
  for (const server of servers) {
    if (server.exitCode !== null) continue;
    server.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.once('exit', r)), sleep(5_000)]);
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

const agent = new https.Agent({ rejectUnauthorized: false, keepAlive: false });
const healthz = (base) => new Promise((resolve) => {
  const req = https.get(new URL('/healthz', base), { agent, timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode === 200); });
  req.on('error', () => resolve(false));
  req.on('timeout', () => { req.destroy(); resolve(false); });
});

/**
 * A second server whose UDP candidate is announced at 192.0.2.1 (no route in
 * run.sh's private network namespace: checks to it go nowhere); with ICE-TCP
 * on 127.0.0.1 when `tcp`. Returns its base URL and media ports.
 */
async function startServer(name, { tcp }) {
  assert.ok(BIN, 'TUXA_BIN must be set (run tests/browser/run.sh)');
  const [port, udp, tcpPort] = [await freeTcp(), await freeUdp(), await freeTcp()];
  const base = `https://127.0.0.1:${port}`;
  const log = openSync(join(dir, `${name}.log`), 'w');
  const args = [
    '--listen', `127.0.0.1:${port}`, '--media-listen', `127.0.0.1:${udp}`,
    '--announce', '192.0.2.1', '--public-url', base, '--data-dir', join(dir, `${name}-data`),
  ];
  if (tcp) args.push('--media-tcp-listen', `127.0.0.1:${tcpPort}`, '--announce-tcp', '127.0.0.1');
  else args.push('--media-tcp-listen', 'off');
  const server = spawn(BIN, args, {
    env: { ...process.env, TUXA_ADMIN_KEY: KEY, TUXA_CERT_DIR: join(dir, `${name}-certs`), TUXA_DEMO: '0', NO_COLOR: '1' },
    stdio: ['ignore', log, log],
  });
  servers.push(server);
  await waitFor(`the ${name} server to answer /healthz`, async () => {
    if (server.exitCode !== null) throw new Error(`the ${name} server exited (${server.exitCode}); log in ${dir}`);
    return healthz(base);
  }, 30_000, 200);
  return { base, udp, tcp: tcpPort };
}

async function phone(browser, name) {
  const who = await openParticipant(browser, name);
  await who.page.setUserAgent(PHONE_UA);
  await who.page.setViewport(PHONE);
  return who;
}

function withCheck(p, expr) {
  return {
    name: p.name,
    async diagnostics() {
      let extra;
      try {
        extra = JSON.stringify(await p.page.evaluate(expr), null, 2);
      } catch (e) { extra = String(e); }
      return `===== ${p.name} =====\n${extra}\n--- console ---\n${p.console.slice(-60).join('\n')}`;
    },
  };
}

const CHECK_STATE = () => {
  const c = window.tuxaCheck || (window.tuxa && window.tuxa.check);
  if (!c) return null;
  return { state: c.state, step: c.step, micPeak: c.micPeak, result: c.result, log: c.log && c.log.slice(-40) };
};

/** Clicks "Bắt đầu kiểm tra" and waits for the verdict; returns the check's state and the page's layout. */
async function runCheck(who) {
  await who.page.click('#check-start');
  await waitFor(`${who.name}: the check to finish`, async () => {
    const s = await who.page.evaluate(CHECK_STATE);
    return s && s.state === 'done';
  }, 60_000, 250);
  return who.page.evaluate(() => {
    const c = window.tuxaCheck || window.tuxa.check;
    const v = document.getElementById('check-verdict');
    const box = v.getBoundingClientRect();
    return {
      result: c.result,
      micPeak: c.micPeak,
      verdict: v.dataset.verdict,
      verdictText: v.textContent,
      steps: [...document.querySelectorAll('#check-steps li')].map((li) => li.textContent),
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      verdictBox: { left: box.left, right: box.right },
    };
  });
}

test('/check on a phone: video is fine, over UDP, the microphone meter moved, no sideways scroll', async () => {
  const browser = await launchChromium();
  const who = await phone(browser, 'phone on /check');
  await withDiagnostics([withCheck(who, CHECK_STATE)], async () => {
    await who.goto(`${BASE}/check`);
    const title = await who.page.$eval('h1', (h) => h.textContent);
    assert.equal(title, STRINGS.vi.check_page_title);
    const r = await runCheck(who);
    await shot(who, '21-check-phone');
    assert.equal(r.result.ws.ok, true, 'the WebSocket round trip');
    assert.ok(r.result.ws.rttMs >= 0 && r.result.ws.samples.length === 5, JSON.stringify(r.result.ws));
    assert.equal(r.result.media.connected, true, 'a WebRTC connection to the SFU');
    assert.equal(r.result.media.protocol, 'udp', 'media went over UDP');
    assert.equal(r.result.media.arrived, true, 'the SFU reported receiving our packets');
    assert.ok(r.result.media.bytesSent > 20_000, `bytes sent: ${r.result.media.bytesSent}`);
    assert.equal(r.result.verdict, 'video', JSON.stringify(r.result));
    assert.equal(r.verdict, 'video');
    assert.ok(r.verdictText.includes(STRINGS.vi.check_verdict_video), r.verdictText);
    // The server offers ICE-TCP too: it was tried alone, and works on loopback.
    assert.equal(r.result.tcpOnly, true, 'the TCP fallback, tried alone');
    assert.ok(r.micPeak > 0.02, `the microphone meter moved (peak ${r.micPeak})`);
    assert.ok(r.scrollWidth <= r.innerWidth, `no sideways scroll: ${r.scrollWidth} > ${r.innerWidth}`);
    assert.ok(r.verdictBox.left >= 0 && r.verdictBox.right <= r.innerWidth, JSON.stringify(r.verdictBox));
    // The speaker test plays without an error.
    await who.page.click('#check-tone');
    await waitFor('the test tone', () => who.page.evaluate(() => window.tuxaCheck.tone === true), 5_000);
  });
});

test('the join page on a phone: the check is folded under the join button, and runs with the preview', async () => {
  const room = await createConsultation('visit', uniqueTitle('Kiểm tra trước khi khám'));
  const link = await mintLink(room.id, { role: 'doctor', name: 'BS. Trần Văn Hải' });
  const browser = await launchChromium();
  const who = await phone(browser, 'doctor phone on the join page');
  await withDiagnostics([withCheck(who, CHECK_STATE)], async () => {
    await who.goto(joinUrl(link, { autojoin: false }));
    await who.waitForState('preview');
    const before = await who.page.evaluate(() => {
      const b = document.getElementById('join-btn').getBoundingClientRect();
      return {
        join: { top: b.top, bottom: b.bottom },
        folded: !document.getElementById('precheck').open,
        vh: window.innerHeight,
      };
    });
    assert.ok(before.folded, 'the check starts folded');
    assert.ok(before.join.top >= 0 && before.join.bottom <= before.vh, `join button on the first screen: ${JSON.stringify(before)}`);
    await who.page.click('#precheck > summary');
    const r = await runCheck(who);
    await shot(who, '21-check-join-page');
    assert.equal(r.result.media.protocol, 'udp');
    assert.equal(r.result.media.arrived, true);
    assert.equal(r.result.verdict, 'video', JSON.stringify(r.result));
    assert.ok(r.micPeak > 0.02, `the microphone meter moved (peak ${r.micPeak})`);
    assert.ok(r.scrollWidth <= r.innerWidth, `no sideways scroll: ${r.scrollWidth} > ${r.innerWidth}`);
    // The preview's own tracks are untouched (the check sent clones).
    const live = await who.page.evaluate(() => [...document.getElementById('preview-video').srcObject.getTracks()]
      .map((tr) => tr.readyState));
    assert.deepEqual(live, ['live']);
    // And the visit itself still joins.
    await who.page.click('#join-btn');
    await who.waitForState('in-call');
  });
});

test('UDP blocked, ICE-TCP open: media goes over TCP (on a desktop window)', async () => {
  const { base } = await startServer('tcp-only', { tcp: true });
  const browser = await launchChromium();
  const who = await openParticipant(browser, 'desktop, UDP blocked');
  await who.page.setViewport({ width: 1366, height: 768 });
  await withDiagnostics([withCheck(who, CHECK_STATE)], async () => {
    await who.goto(`${base}/check`);
    const r = await runCheck(who);
    await shot(who, '21-check-tcp');
    assert.equal(r.result.media.connected, true, JSON.stringify(r.result));
    assert.equal(r.result.media.protocol, 'tcp', JSON.stringify(r.result));
    assert.equal(r.result.media.arrived, true);
    assert.notEqual(r.result.verdict, 'none', JSON.stringify(r.result));
    assert.ok(r.steps.some((s) => s.includes(STRINGS.vi.check_media_tcp)), r.steps.join(' | '));
    // UDP is what to ask IT for.
    assert.ok(r.verdictText.includes('UDP'), r.verdictText);
    assert.ok(r.scrollWidth <= r.innerWidth, `no sideways scroll: ${r.scrollWidth} > ${r.innerWidth}`);
  });
});

test('media cannot reach the SFU: the verdict is "cannot connect", with the port to open', async () => {
  const { base, udp } = await startServer('blocked', { tcp: false });
  const browser = await launchChromium();
  const who = await phone(browser, 'phone, media blocked');
  await withDiagnostics([withCheck(who, CHECK_STATE)], async () => {
    await who.goto(`${base}/check`);
    const r = await runCheck(who);
    await shot(who, '21-check-blocked');
    // The server itself answers (the WebSocket works): only media is cut off.
    assert.equal(r.result.ws.ok, true);
    assert.equal(r.result.media.connected, false, JSON.stringify(r.result));
    assert.equal(r.result.verdict, 'none');
    assert.equal(r.verdict, 'none');
    assert.ok(r.verdictText.includes(STRINGS.vi.check_verdict_none), r.verdictText);
    assert.ok(r.verdictText.includes(`UDP ${udp}`), `the UDP port to open: ${r.verdictText}`);
    assert.ok(r.scrollWidth <= r.innerWidth, `no sideways scroll: ${r.scrollWidth} > ${r.innerWidth}`);
  });
});
