// ICE over TCP: a network where UDP cannot work. This test starts its own
// server (TUXA_BIN, as run.sh exports it) whose UDP candidate is announced at
// 192.0.2.1 (TEST-NET-1: unroutable; in run.sh's private network namespace
// there is no route at all) while its passive TCP candidate (--announce-tcp)
// is 127.0.0.1. Two Chromium pages join a visit; each must end up on a
// candidate pair whose local candidate is TCP, and decode the other's video.
// Then the same with a Firefox ESR nurse (its own browser, so that its page
// is not a background tab).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  launchChromium, launchFirefox, openParticipant, closeAllBrowsers, expectReceiving, withDiagnostics,
  uniqueTitle, waitFor, sleep,
} from '../lib/harness.mjs';

const BIN = process.env.TUXA_BIN;
const KEY = randomBytes(24).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tuxa-ice-tcp-'));
let server = null;
let base = null;

after(async () => {
  await closeAllBrowsers();
  if (server && server.exitCode === null) {
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
function api(base, method, path, body) {
  const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
  const headers = { Accept: 'application/json', Authorization: `Bearer ${KEY}` };
  if (data) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = String(data.length); }
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, base), { method, headers, agent, timeout: 5_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** Starts the server with UDP announced at TEST-NET-1 and TCP at 127.0.0.1; returns its base URL. */
async function startServer() {
  assert.ok(BIN, 'TUXA_BIN must be set (run tests/browser/run.sh)');
  const [port, udp, tcp] = [await freeTcp(), await freeUdp(), await freeTcp()];
  const base = `https://127.0.0.1:${port}`;
  const log = openSync(join(dir, 'server.log'), 'w');
  server = spawn(BIN, [
    '--listen', `127.0.0.1:${port}`, '--media-listen', `127.0.0.1:${udp}`,
    '--media-tcp-listen', `127.0.0.1:${tcp}`,
    '--announce', '192.0.2.1', '--announce-tcp', '127.0.0.1',
    '--public-url', base, '--data-dir', join(dir, 'data'),
  ], {
    env: { ...process.env, TUXA_ADMIN_KEY: KEY, TUXA_CERT_DIR: join(dir, 'certs'), TUXA_DEMO: '0', TUXA_LOG: 'info,tuxa_server=debug', NO_COLOR: '1' },
    stdio: ['ignore', log, log],
  });
  await waitFor('the ICE-TCP test server to answer /healthz', async () => {
    if (server.exitCode !== null) throw new Error(`the server exited (${server.exitCode}); log in ${dir}/server.log`);
    const r = await api(base, 'GET', '/healthz');
    return r.status === 200;
  }, 30_000, 200);
  return base;
}

// Runs in the page: the transport's selected pair and its two candidates.
async function selectedPair() {
  const pc = window.tuxa && window.tuxa.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((r) => byId.set(r.id, r));
  let pair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = byId.get(r.selectedCandidatePairId);
  });
  if (!pair) report.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (!pair) return null;
  const c = (id) => {
    const x = byId.get(id) || {};
    return { protocol: x.protocol, type: x.candidateType, address: x.address || x.ip, port: x.port, tcpType: x.tcpType };
  };
  return { state: pair.state, bytesReceived: pair.bytesReceived, local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId) };
}

async function visitOverTcp(title, nurseKind) {
  base = base || await startServer();
  const created = await api(base, 'POST', '/api/v1/consultations', { kind: 'visit', title: uniqueTitle(title) });
  assert.equal(created.status, 201, created.text);
  const room = created.json.id;
  const link = async (role, name) => {
    const r = await api(base, 'POST', `/api/v1/consultations/${room}/links`, { role, name });
    assert.equal(r.status, 201, r.text);
    return `${base}/join/${room}?autojoin=1#${r.json.token}`;
  };
  // Doctor and nurse enter directly (no lobby, no consent form).
  const doctorUrl = await link('doctor', 'BS. Hoàng Văn Nam');
  const nurseUrl = await link('nurse', 'YT. Lò Thị Hoa');

  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor (Chromium, TCP)');
  const nurse = nurseKind === 'firefox'
    ? await openParticipant(await launchFirefox(), 'nurse (Firefox, TCP)', 'firefox')
    : await openParticipant(browser, 'nurse (Chromium, TCP)');
  await withDiagnostics([doctor, nurse], async () => {
    await doctor.goto(doctorUrl);
    await doctor.waitForState('in-call');
    await nurse.goto(nurseUrl);
    await nurse.waitForState('in-call');
    const doctorId = await doctor.id();
    const nurseId = await nurse.id();

    console.log('doctor receives', JSON.stringify(await expectReceiving(doctor, [nurseId], { timeoutMs: 45_000 })));
    console.log('nurse receives', JSON.stringify(await expectReceiving(nurse, [doctorId], { timeoutMs: 45_000 })));

    for (const who of [doctor, nurse]) {
      const pair = await who.page.evaluate(selectedPair);
      console.log(`${who.name}: selected pair`, JSON.stringify(pair));
      assert.ok(pair, `${who.name}: no selected candidate pair`);
      assert.equal(pair.local.protocol, 'tcp', `${who.name}: the local candidate of the selected pair is not TCP`);
      assert.equal(pair.remote.protocol, 'tcp', `${who.name}: the remote candidate of the selected pair is not TCP`);
      assert.ok(pair.bytesReceived > 0, `${who.name}: nothing received on the selected pair`);
    }
    // The server's UDP candidate really is the unroutable one.
    const remote = await doctor.page.evaluate(async () => {
      const out = [];
      (await window.tuxa.pc.getStats()).forEach((r) => {
        if (r.type === 'remote-candidate') out.push(`${r.protocol} ${r.address || r.ip}:${r.port}`);
      });
      return out;
    });
    console.log('doctor: remote candidates', JSON.stringify(remote));
    assert.ok(remote.some((c) => c.startsWith('udp 192.0.2.1:')), `no UDP candidate at 192.0.2.1: ${remote}`);
    await doctor.assertNoErrors();
    await nurse.assertNoErrors();
  });
  await closeAllBrowsers();
}

test('UDP unreachable: Chromium reaches the SFU over ICE-TCP and decodes video', { timeout: 150_000 }, async () => {
  await visitOverTcp('Khám từ xa — chỉ TCP', 'chromium');
});

test('UDP unreachable: a Firefox ESR nurse over ICE-TCP with a Chromium doctor', { timeout: 150_000 }, async () => {
  await visitOverTcp('Khám từ xa — chỉ TCP, Firefox', 'firefox');
});
