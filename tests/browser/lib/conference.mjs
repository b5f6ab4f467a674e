// A case conference made the way staff make it (docs/api.md, "Case
// conferences"), through the API with each person's own sign-in: a district
// doctor asks the province, the province's coordinator schedules it with a
// chair and invitees, and each invitee gets their own link from
// `POST /api/v1/conferences/{id}/join`. That is the only way to a chair's
// link: the links endpoint refuses `chair`, and the hub gives the chair's
// rights only to the named chair's own link.

import https from 'node:https';
import {
  BASE, adminPost, totpCode, sleep,
} from './harness.mjs';

const agent = new https.Agent({ rejectUnauthorized: false, keepAlive: false });
const tag = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** One API request with a staff session cookie (or none); resolves {status, headers, json, text}. */
function staffRequest(cookie, method, path, body) {
  const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
  const headers = { Accept: 'application/json' };
  if (data) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(data.length);
  }
  if (cookie) headers.Cookie = cookie;
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, BASE), { method, headers, agent, timeout: 10_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function expect(res, status, what) {
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} (wanted ${status}): ${res.text.slice(0, 500)}`);
  return res.json;
}

/** A staff account (with a practitioner record for doctors and nurses), signed in: {staff, cookie, name, licence}. */
async function signedIn(facility, { role, title, name }) {
  const t = tag();
  const password = `mat-khau-${t}`;
  const body = { username: `${role.slice(0, 4)}.${t}`.slice(0, 32), name, role, facility_id: facility.id, password };
  let licence = null;
  if (role === 'doctor' || role === 'nurse') {
    licence = `${t.toUpperCase().slice(-6)}/TH-CCHN`;
    const p = await adminPost('/api/v1/practitioners', {
      name, title, licence_number: licence, specialty: 'Nội khoa', facility_id: facility.id,
    });
    body.practitioner_id = p.id;
  }
  const made = await adminPost('/api/v1/staff', body);
  if (Date.now() / 1000 % 30 > 28) await sleep(2_500); // a code that is not about to roll over
  const res = await staffRequest(null, 'POST', '/api/v1/auth/login', {
    username: body.username, password, totp: totpCode(made.totp.secret),
  });
  await expect(res, 200, `sign-in of ${name}`);
  const cookie = String([].concat(res.headers['set-cookie'])[0]).split(';')[0];
  return {
    staff: made.staff, cookie, licence, facility: facility.name, name: title ? `${title} ${name}` : name,
  };
}

/**
 * Makes a province (`names.province`), a district under it and a commune
 * station under that (names made unique: tests share a server), a
 * coordinator of the province and each person of `people` — `{key: {role,
 * title, name, at: 'province' | 'district' | 'commune'}}` — then has
 * `people[requester]` ask the province and the coordinator schedule it now
 * with `people[chair]` in the chair and everyone else invited.
 *
 * Returns `{room, people}`: each person with `link` (their own, for
 * `joinUrl`: `{url, token, room, name, role, facility, licence_number}`) and
 * `cookie`; `guestLink(role, name)` has the chair make a lobby link.
 */
export async function scheduledConference({ names, people, requester, chair }) {
  const t = tag();
  const province = await adminPost('/api/v1/facilities', { name: `${names.province} ${t}`, tier: 'province' });
  const district = await adminPost('/api/v1/facilities', { name: `${names.district} ${t}`, tier: 'district', parent_id: province.id });
  const commune = await adminPost('/api/v1/facilities', { name: `${names.commune} ${t}`, tier: 'commune_station', parent_id: district.id });
  const at = { province, district, commune };
  const coordinator = await signedIn(province, { role: 'coordinator', name: 'Điều phối tỉnh' });
  const made = {};
  for (const [key, p] of Object.entries(people)) made[key] = { ...p, ...(await signedIn(at[p.at], p)) };

  const asked = await expect(await staffRequest(made[requester].cookie, 'POST', '/api/v1/conferences', {
    to_facility_id: province.id, specialty: 'Nội khoa', urgency: 'urgent',
    patient: { name: 'Lê Văn Tâm', birth_year: 1961, sex: 'male' },
    summary: 'Viêm phổi, SpO2 90 %.', question: 'Có cần chuyển tuyến?',
    consent: { text_version: 'vi-2026-11', remote_examination: true, third_parties: true, recording: false },
  }), 201, 'conference request');
  const base = `/api/v1/conferences/${asked.id}`;
  const others = Object.keys(made).filter((k) => k !== chair).map((k) => made[k].staff.id);
  const scheduled = await expect(await staffRequest(coordinator.cookie, 'POST', `${base}/schedule`, {
    starts_at: Math.floor(Date.now() / 1000), duration_min: 60, chair_staff_id: made[chair].staff.id, invite_staff_ids: others,
  }), 200, 'schedule');
  const room = scheduled.schedule.consultation_id;
  for (const p of Object.values(made)) {
    const link = await expect(await staffRequest(p.cookie, 'POST', `${base}/join`), 200, `${p.name}'s link`);
    p.link = {
      ...link, room, name: p.name, role: p.role, facility: p.facility, licence_number: p.licence,
    };
  }
  return {
    room,
    people: made,
    async guestLink(role, name) {
      const link = await expect(await staffRequest(made[chair].cookie, 'POST', `${base}/guest-link`, { role, name }), 201, `guest link for ${name}`);
      return { ...link, room, name, role };
    },
  };
}
