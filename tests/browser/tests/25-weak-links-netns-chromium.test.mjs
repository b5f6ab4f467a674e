// Weak links (issue 16), with real Chromium on each side: a doctor publishes
// q/h/f from the host; a patient's Chromium sits in a network namespace of
// its own behind `tbf` in both directions (as test 16), with 5 % random
// loss both ways (iptables) once the link is narrow. One run:
//
//   1. the cliff: 5 Mbit/s until she receives the top layer, then at once
//      300 kbit/s and 5 % loss; her audio concealment sampled every 100 ms
//      for 15 s (the gap at the cliff: the first 5 s; settled: the rest);
//   2. the fall and the way back: 80 kbit/s for 15 s, then 300 kbit/s for
//      30 s; the `audio_only` messages she gets, her decoded frames.
//
// Figures are printed as `FIGURE name=value` for BENCHMARKS.md ("Weak links").
// Speed goals are benchmarks, not assertions (rule 9): the test asserts
// behaviour (one audio-only episode for the fall, video back after it) and
// generous bounds (twice the goals), and prints the measured figures.
//
// Needs root, run.sh's private network namespace (TUXA_IN_NETNS=1) and
// iptables (Debian `iptables`) for the random loss.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import {
  mkdtempSync, writeFileSync, chmodSync, rmSync, readFileSync, readlinkSync, openSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import dgram from 'node:dgram';
import net from 'node:net';

const HOST_IP = '10.78.0.1'; // run.sh's namespace: the server and the doctor
const NARROW_IP = '10.78.0.2'; // the patient's namespace
const QUEUE_MS = 300; // tbf's latency: the "queues of about 300 ms"
const LOSS_PCT = 5;

const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) {
    try { await fn(); } catch (e) { console.error('cleanup:', e.message); }
  }
});

const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort(kind) {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = dgram.createSocket('udp4');
      s.bind(0, HOST_IP, () => { const { port } = s.address(); s.close(() => resolve(port)); });
      s.on('error', reject);
    } else {
      const s = net.createServer();
      s.listen(0, HOST_IP, () => { const { port } = s.address(); s.close(() => resolve(port)); });
      s.on('error', reject);
    }
  });
}

function healthy(url) {
  return new Promise((resolve) => {
    const req = https.get(`${url}/healthz`, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

function noLinkLocal(run, dev) {
  try {
    run('ip', 'link', 'set', dev, 'addrgenmode', 'none');
  } catch (e) {
    if (!/ipv6|not supported|address family/i.test(String(e.stderr || e.message))) throw e;
  }
}

function settled(run, dev) {
  const [link] = JSON.parse(run('ip', '-j', 'link', 'show', 'dev', dev) || '[]');
  if (!link || link.operstate !== 'UP' || !(link.flags || []).includes('LOWER_UP')) return false;
  const [addr] = JSON.parse(run('ip', '-j', 'addr', 'show', 'dev', dev) || '[]');
  return !((addr && addr.addr_info) || []).some((a) => a.tentative || a.dadfailed);
}

const inOurs = (cmd, ...args) => sh(cmd, args);

/**
 * The patient's namespace and its veth pair (see test 16 for why each step);
 * returns { pid, rate(kbit), loss(on) } to reshape it while the call runs.
 */
async function makeLink(kbit) {
  if (process.env.TUXA_IN_NETNS !== '1') {
    throw new Error('this test needs run.sh\'s private network namespace (TUXA_IN_NETNS=1) and root');
  }
  const holder = spawn('unshare', ['--net', '--', 'sleep', '100000'], { stdio: 'ignore' });
  cleanups.push(() => holder.kill('SIGKILL'));
  const pid = String(holder.pid);
  const ours = readlinkSync('/proc/self/ns/net');
  for (const deadline = Date.now() + 10_000; ;) {
    let theirs = null;
    try { theirs = readlinkSync(`/proc/${pid}/ns/net`); } catch { /* not started yet */ }
    if (theirs && theirs !== ours) break;
    if (holder.exitCode !== null || Date.now() > deadline) throw new Error('unshare --net made no namespace');
    await sleep(20);
  }
  const inNarrow = (...args) => sh('nsenter', ['-t', pid, '-n', ...args]);
  sh('ip', ['link', 'add', 'tuxa-wk0', 'type', 'veth', 'peer', 'name', 'tuxa-wk1', 'netns', pid]);
  cleanups.push(() => { try { sh('ip', ['link', 'del', 'tuxa-wk0']); } catch { /* gone */ } });
  noLinkLocal(inOurs, 'tuxa-wk0');
  noLinkLocal(inNarrow, 'tuxa-wk1');
  sh('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'tuxa-wk0']);
  sh('ip', ['link', 'set', 'tuxa-wk0', 'up']);
  inNarrow('ip', 'link', 'set', 'lo', 'up');
  inNarrow('ip', 'addr', 'add', `${NARROW_IP}/24`, 'dev', 'tuxa-wk1');
  inNarrow('ip', 'link', 'set', 'tuxa-wk1', 'up');
  const shape = (verb, rate) => {
    const args = ['root', 'tbf', 'rate', `${rate}kbit`, 'burst', '4kb', 'latency', `${QUEUE_MS}ms`];
    sh('tc', ['qdisc', verb, 'dev', 'tuxa-wk0', ...args]);
    inNarrow('tc', 'qdisc', verb, 'dev', 'tuxa-wk1', ...args);
  };
  shape('add', kbit);
  for (const deadline = Date.now() + 10_000; !(settled(inOurs, 'tuxa-wk0') && settled(inNarrow, 'tuxa-wk1'));) {
    if (Date.now() > deadline) throw new Error('the veth pair did not settle within 10 s');
    await sleep(50);
  }
  let lossOn = false;
  return {
    pid,
    rate: (k) => shape('change', k),
    loss: (on) => {
      if (on === lossOn) return;
      // Both ways, as in the run: on what reaches her (her
      // namespace's INPUT) and on what she sends (ours, from her address;
      // a drop in a sender's own OUTPUT fails its sendto instead).
      const rule = ['-p', 'udp', '-m', 'statistic', '--mode', 'random',
        '--probability', String(LOSS_PCT / 100), '-j', 'DROP'];
      inNarrow('iptables', on ? '-A' : '-D', 'INPUT', ...rule);
      sh('iptables', [on ? '-A' : '-D', 'INPUT', '-s', NARROW_IP, ...rule]);
      lossOn = on;
    },
  };
}

async function startServer() {
  const bin = process.env.TUXA_BIN;
  if (!bin) throw new Error('TUXA_BIN is not set (run.sh sets it)');
  const dir = mkdtempSync(join(tmpdir(), 'tuxa-weak-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort('tcp');
  const udp = await freePort('udp');
  const key = randomBytes(24).toString('hex');
  const log = join(dir, 'server.log');
  const out = openSync(log, 'w');
  const server = spawn(bin, [
    '--listen', `${HOST_IP}:${port}`, '--media-listen', `${HOST_IP}:${udp}`,
    '--announce', HOST_IP, '--data-dir', join(dir, 'data'), '--media-tcp-listen', 'off',
  ], {
    env: {
      ...process.env, TUXA_ADMIN_KEY: key, TUXA_CERT_DIR: join(dir, 'certs'), TUXA_DEMO: '0',
      TUXA_LOG: process.env.TUXA_LOG || 'info', RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1',
    },
    stdio: ['ignore', out, out],
  });
  cleanups.push(async () => { server.kill('SIGTERM'); await sleep(500); server.kill('SIGKILL'); });
  const url = `https://${HOST_IP}:${port}`;
  for (let i = 0; ; i += 1) {
    if (server.exitCode !== null) throw new Error(`the server exited: ${readFileSync(log, 'utf8').slice(-2000)}`);
    if (await healthy(url)) break;
    if (i > 120) throw new Error('the server did not answer /healthz within 60 s');
    await sleep(500);
  }
  return { url, key, log };
}

/**
 * One sample of what the patient gets from `pid`: decoded frames and height
 * of its camera, audio concealment (audible: not the silent part, which DTX
 * pauses produce), and the `audio_only` lines of her page's log with the
 * page's clock, to place them on ours.
 */
async function sample(who, pid) {
  const s = await who.page.evaluate(async (id) => {
    const tx = window.tuxa;
    const out = {
      perf: performance.now(), frames: 0, height: 0, concealed: 0, audible: 0, events: 0, samples: 0, audioOnly: [],
    };
    out.audioOnly = tx.log.filter((l) => l.includes('audio_only'));
    if (!tx.pc || tx.pc.signalingState === 'closed') return out;
    const video = new Set(tx.remoteTracks().filter((r) => r.pid === id && r.kind === 'video' && !r.source).map((r) => r.trackId));
    const audio = new Set(tx.remoteTracks().filter((r) => r.pid === id && r.kind === 'audio').map((r) => r.trackId));
    (await tx.pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video' && video.has(r.trackIdentifier) && (r.framesDecoded || 0) >= out.frames) {
        out.frames = r.framesDecoded || 0;
        out.height = r.frameHeight || 0;
      } else if (r.kind === 'audio' && audio.has(r.trackIdentifier)) {
        out.concealed += r.concealedSamples || 0;
        out.audible += (r.concealedSamples || 0) - (r.silentConcealedSamples || 0);
        out.events += r.concealmentEvents || 0;
        out.samples += r.totalSamplesReceived || 0;
      }
    });
    return out;
  }, pid);
  return { at: Date.now(), ...s };
}

/** Samples every `everyMs` for `ms`; returns them. */
async function record(who, pid, ms, everyMs) {
  const out = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    out.push(await sample(who, pid));
    await sleep(everyMs);
  }
  return out;
}

/**
 * The longest audio gap (ms): the longest concealment event the receiver's
 * jitter buffer went through (48 kHz samples). Between two samples, with no
 * new `concealmentEvents`, what was concealed continues the event under
 * way; with new ones, it is shared among them (an event spanning a sample
 * boundary is counted whole, a window's several events as equal parts:
 * exact for one event per window, an estimate otherwise).
 */
function worstAudioGap(s) {
  let worst = 0;
  let run = 0;
  for (let i = 1; i < s.length; i += 1) {
    const concealed = (s[i].concealed - s[i - 1].concealed) / 48;
    const events = s[i].events - s[i - 1].events;
    if (events === 0) {
      run = concealed > 0 ? run + concealed : 0;
    } else {
      // The run under way may end in this window; the new event starts in it.
      run = concealed / events;
    }
    worst = Math.max(worst, run);
  }
  return Math.round(worst);
}

/** The longest time (ms) frames did not grow in samples, from `from` (ms on our clock). */
function longestStall(s, from, to) {
  const w = s.filter((x) => x.at >= from && x.at <= to);
  let worst = 0;
  let last = w.length ? w[0].at : from;
  for (let i = 1; i < w.length; i += 1) {
    if (w[i].frames > w[i - 1].frames) last = w[i].at;
    worst = Math.max(worst, w[i].at - last);
  }
  return worst;
}

/** `audio_only` lines as { at (our clock), on }, from the last sample's view of the page log. */
function audioOnlyEvents(last) {
  const offset = last.at - last.perf;
  return last.audioOnly
    .filter((l) => l.includes('"on":'))
    .map((l) => ({ at: Math.round(Number.parseFloat(l) * 1000 + offset), on: l.includes('"on":true') }));
}

test('weak links: audio first at a cliff, one audio-only episode per fall, video back without a long stall (Chromium, netns + tbf)', { timeout: 420_000 }, async () => {
  const link = await makeLink(5000);
  const server = await startServer();
  process.env.TUXA_URL = server.url;
  process.env.TUXA_ADMIN_KEY = server.key;
  const H = await import('../lib/harness.mjs');
  cleanups.push(() => H.closeAllBrowsers());
  cleanups.push(() => link.loss(false));

  const wrapperDir = mkdtempSync(join(tmpdir(), 'tuxa-nsenter-'));
  cleanups.push(() => rmSync(wrapperDir, { recursive: true, force: true }));
  const wrapper = join(wrapperDir, 'chromium-narrow');
  writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=/proc/${link.pid}/ns/net ${H.chromiumBinary()} "$@"\n`);
  chmodSync(wrapper, 0o755);

  // A case conference (no lobby, as test 16): the one behind the shaped
  // link is a nurse at a commune station, with the patient beside her.
  const room = await H.createConsultation('conference', H.uniqueTitle('Mạng yếu'));
  const doctorLink = await H.mintLink(room.id, { role: 'doctor', name: 'BS. Quàng Văn Hải', facility: 'BVĐK tỉnh' });
  const patientLink = await H.mintLink(room.id, { role: 'nurse', name: 'ĐD. Giàng Thị Mỷ', facility: 'TYT xã vùng cao' });

  const browser = await H.launchChromium();
  const narrowBrowser = await H.launchChromium({ executablePath: wrapper, pipe: true });
  const doctor = await H.openParticipant(browser, 'doctor (publisher)');
  const patient = await H.openParticipant(narrowBrowser, 'patient (shaped link)');

  await H.withDiagnostics([doctor, patient], async () => {
    try {
      await H.openJoinPage(doctor, doctorLink);
      await doctor.waitForState('in-call');
      await H.openJoinPage(patient, patientLink, { timeoutMs: 60_000 });
      await patient.waitForState('in-call', 60_000);
      const doctorId = await doctor.id();

      // Up to the top layer on 5 Mbit/s.
      let top = 0;
      await H.waitFor('the patient to receive the top layer (720p)', async () => {
        const s = await sample(patient, doctorId);
        top = Math.max(top, s.height);
        return s.height >= 720;
      }, 60_000, 500);
      await sleep(3000);

      // 1. The cliff.
      const tCliff = Date.now();
      link.rate(300);
      link.loss(true);
      const cliff = await record(patient, doctorId, 15_000, 100);
      const gapAtCliff = worstAudioGap(cliff.filter((x) => x.at <= tCliff + 5000));
      const gapSettled = worstAudioGap(cliff.filter((x) => x.at >= tCliff + 5000));
      console.log(`FIGURE cliff audio_gap_ms=${gapAtCliff} (goal 200)`);
      console.log(`FIGURE settled_300k audio_gap_ms=${gapSettled} (goal 200)`);
      console.log(`FIGURE settled_300k height=${cliff[cliff.length - 1].height}`);
      const [c0, c1] = [cliff[0], cliff[cliff.length - 1]];
      console.log(`audio over the 15 s: ${c1.samples - c0.samples} samples played, ${c1.concealed - c0.concealed} concealed (${c1.audible - c0.audible} audible) in ${c1.events - c0.events} events`);
      console.log('audio after the cliff (ms from it: concealed ms/new events):', cliff.slice(1, 31).map((x, i) => `${x.at - tCliff}:${Math.round((x.concealed - cliff[i].concealed) / 48)}/${x.events - cliff[i].events}`).join(' '));

      // 2. The fall and the way back.
      const tFall = Date.now();
      link.rate(80);
      const low = await record(patient, doctorId, 15_000, 250);
      const tBack = Date.now();
      link.rate(300);
      const back = await record(patient, doctorId, 30_000, 250);
      const all = [...low, ...back];
      const events = audioOnlyEvents(all[all.length - 1]).filter((e) => e.at >= tFall - 500);
      const rel = (t) => ((t - tFall) / 1000).toFixed(1);
      console.log('audio_only after the fall (s from it):', JSON.stringify(events.map((e) => `${e.on ? 'on' : 'off'}@${rel(e.at)}`)));
      const ons = events.filter((e) => e.on);
      const offs = events.filter((e) => !e.on);
      const firstOn = ons.length ? ons[0].at - tFall : null;
      console.log(`FIGURE fall audio_only_on_after_ms=${firstOn}`);
      console.log(`FIGURE fall audio_only_episodes=${ons.length} (goal 1)`);
      let firstFrame = null;
      let stall = null;
      if (offs.length) {
        const end = offs[offs.length - 1].at;
        console.log(`FIGURE recovery audio_only_off_after_link_back_ms=${end - tBack}`);
        const base = all.filter((x) => x.at <= end).pop();
        const grown = all.find((x) => x.at > end && base && x.frames > base.frames);
        if (grown) {
          firstFrame = grown.at - end;
          stall = longestStall(all, grown.at, grown.at + 15_000);
        }
      }
      console.log(`FIGURE recovery first_frame_after_off_ms=${firstFrame} (goal 2000)`);
      console.log(`FIGURE recovery longest_stall_15s_ms=${stall} (goal 2000)`);
      console.log('heights at 300 kbit/s again (every 2 s):', back.filter((_, i) => i % 8 === 0).map((x) => `${rel(x.at)}s:${x.height}`).join(' '));

      assert.ok(top >= 720, 'the patient reached the top layer on 5 Mbit/s');
      assert.ok(cliff[cliff.length - 1].frames > cliff[0].frames, 'video carries on at 300 kbit/s');
      assert.ok(ons.length >= 1, '80 kbit/s goes audio-only');
      assert.ok(ons.length <= 1, `one audio-only episode for one fall: ${JSON.stringify(events)}`);
      assert.ok(offs.length >= 1, 'audio-only ends at 300 kbit/s');
      // Twice the goals (the figures above are the measurement).
      assert.ok(firstFrame !== null && firstFrame <= 4000, `video back after audio-only (first frame ${firstFrame} ms)`);
      assert.ok(stall !== null && stall <= 4000, `no long stall after the way back (${stall} ms)`);
      assert.ok(gapSettled <= 400, `settled at 300 kbit/s, audio gaps stay short (${gapSettled} ms)`);
    } catch (e) {
      try { console.error('---- server log (end) ----\n', readFileSync(server.log, 'utf8').split('\n').slice(-60).join('\n')); } catch { /* ignore */ }
      throw e;
    }
  });
});
