// Care on bad networks, 1: the camera reaches the server in three simulcast
// layers. A Chromium doctor publishes; its getStats() shows an outbound-rtp
// video stream for each rid (q, h, f) sending frames, from a quarter to the
// full resolution; the server's answer accepts the simulcast (a=simulcast
// recv with the three rids) and asks for Opus in-band FEC (and DTX); the
// nurse decodes the doctor's video.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createConsultation, mintLink, launchChromium, openParticipant, closeAllBrowsers, expectReceiving,
  withDiagnostics, uniqueTitle, waitFor, openJoinPage, sleep,
} from '../lib/harness.mjs';

after(closeAllBrowsers);

/** The publisher's outbound video streams by rid: frames encoded and sent, bytes, size. */
async function outboundByRid(who) {
  return who.page.evaluate(async () => {
    const out = {};
    const report = await window.tuxa.pc.getStats();
    report.forEach((r) => {
      if (r.type !== 'outbound-rtp' || r.kind !== 'video') return;
      out[r.rid || '-'] = {
        bytesSent: r.bytesSent || 0, framesEncoded: r.framesEncoded || 0, framesSent: r.framesSent || 0,
        frameHeight: r.frameHeight || 0, frameWidth: r.frameWidth || 0, active: r.active,
        qualityLimitationReason: r.qualityLimitationReason,
      };
    });
    return out;
  });
}

/** The Opus fmtp line(s) of an SDP. */
function opusFmtp(sdp) {
  const pts = [...sdp.matchAll(/a=rtpmap:(\d+) opus\/48000/gi)].map((m) => m[1]);
  return pts.flatMap((pt) => [...sdp.matchAll(new RegExp(`a=fmtp:${pt} (.*)`, 'g'))].map((m) => m[1].trim()));
}

let answerSdp = null;

test('the camera reaches the server in three simulcast layers (Chromium)', { timeout: 120_000 }, async () => {
  const room = await createConsultation('visit', uniqueTitle('Simulcast'));
  const doctorLink = await mintLink(room.id, { role: 'doctor', name: 'BS. Phạm Thu', facility: 'BVĐK tỉnh' });
  const nurseLink = await mintLink(room.id, { role: 'nurse', name: 'ĐD. Vi Văn Tú', facility: 'TYT xã' });
  const browser = await launchChromium();
  const doctor = await openParticipant(browser, 'doctor');
  const nurse = await openParticipant(browser, 'nurse');

  await withDiagnostics([doctor, nurse], async () => {
    await openJoinPage(doctor, doctorLink);
    await openJoinPage(nurse, nurseLink);
    await Promise.all([doctor.waitForState('in-call'), nurse.waitForState('in-call')]);
    const doctorId = await doctor.id();
    assert.equal(await doctor.page.evaluate(() => window.tuxa.simulcast), 3, 'three encodings on the camera sender');

    // Every layer sends frames: each is seen growing between two samples
    // (not necessarily the same ones: the server may pause a layer nobody
    // receives, publish_layers, 3 s after the call starts).
    let prev = null;
    const grew = new Set();
    await waitFor('the doctor to send frames on q, h and f', async () => {
      const cur = await outboundByRid(doctor);
      for (const rid of ['q', 'h', 'f']) {
        if (prev && prev[rid] && cur[rid] && cur[rid].framesSent > prev[rid].framesSent
          && cur[rid].bytesSent > prev[rid].bytesSent) grew.add(rid);
      }
      prev = cur;
      return grew.size === 3;
    }, 30_000, 500);
    await sleep(3_000); // let the encoder ramp up to the layers' sizes
    const layers = await outboundByRid(doctor);
    console.log('doctor outbound video by rid:', JSON.stringify(layers));
    assert.deepEqual(Object.keys(layers).sort(), ['f', 'h', 'q']);
    const [q, h, f] = ['q', 'h', 'f'].map((rid) => layers[rid]);
    assert.ok(q.frameHeight > 0 && q.frameHeight < h.frameHeight && h.frameHeight < f.frameHeight,
      `layer heights grow q < h < f: ${q.frameHeight} ${h.frameHeight} ${f.frameHeight}`);
    const camera = await doctor.page.evaluate(() => window.tuxa.debug.media.video.getSettings());
    console.log('camera settings:', JSON.stringify({ width: camera.width, height: camera.height, frameRate: camera.frameRate }));
    assert.equal(camera.height, 720, 'the camera was asked for 1280x720');

    // What the server answered to the doctor's offer.
    answerSdp = await doctor.page.evaluate(() => window.tuxa.lastAnswerSdp);
    assert.ok(answerSdp, 'the server answered');
    const simulcast = answerSdp.match(/a=simulcast:recv (\S+)/);
    assert.ok(simulcast, `a=simulcast recv in the answer:\n${answerSdp}`);
    assert.deepEqual(simulcast[1].split(/[;,]/).map((r) => r.replace(/^~/, '')).sort(), ['f', 'h', 'q']);
    for (const rid of ['q', 'h', 'f']) assert.match(answerSdp, new RegExp(`a=rid:${rid} recv`), `a=rid:${rid} recv`);
    const fmtp = opusFmtp(answerSdp);
    console.log('server answer, Opus fmtp:', JSON.stringify(fmtp));
    assert.ok(fmtp.length > 0 && fmtp.every((l) => /(^|;)\s*useinbandfec=1/.test(l)), `useinbandfec=1: ${fmtp}`);

    // The nurse gets the doctor's picture (one layer of it).
    const got = await expectReceiving(nurse, [doctorId]);
    console.log('nurse receives the doctor:', JSON.stringify(got));
    await doctor.assertNoErrors();
    await nurse.assertNoErrors();
  });
});

test('the server asks for Opus DTX (usedtx=1) in its answer', () => {
  assert.ok(answerSdp, 'the first test recorded the answer');
  const fmtp = opusFmtp(answerSdp);
  assert.ok(fmtp.length > 0 && fmtp.every((l) => /(^|;)\s*usedtx=1/.test(l)), `usedtx=1 in the Opus fmtp: ${JSON.stringify(fmtp)}`);
});
