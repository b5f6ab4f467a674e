// The staff console's pure parts (console-util.js) and its strings:
// Vietnam-time conversions, request ordering, what a role may do with a
// request, attachment checks, API error codes, and that every string key
// staff.html and console-*.js use exists in both languages.
//
//   node --test web-client/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  fmtVnDateTime, fmtVnTime, toVnInputValue, fromVnInputValue, toVnDateValue, fromVnDateValue, vnDayRange,
  vnParts, parseHhMm, fmtMinutes, urgencyRank, sortConferences, conferenceRights, attachmentType,
  attachmentProblem, MAX_ATTACHMENT_BYTES, fmtBytes, apiErrorCode,
} from '../console-util.js';
import { STRINGS, ERROR_TEXTS, LANGS } from '../i18n.js';

const here = dirname(fileURLToPath(import.meta.url));

test('Vietnam time is UTC+7, whatever the machine\'s zone', () => {
  // 2025-11-25 08:40:00 UTC = 15:40 in Hà Nội.
  const t = Date.UTC(2025, 10, 25, 8, 40) / 1000;
  assert.equal(fmtVnDateTime(t), '25/11/2025 15:40');
  assert.equal(fmtVnTime(t), '15:40');
  assert.equal(toVnInputValue(t), '2025-11-25T15:40');
  assert.equal(fromVnInputValue('2025-11-25T15:40'), t);
  assert.equal(fromVnInputValue('2025-11-25T15:40:00'), t);
  // Across midnight: 20:30 UTC is 03:30 the next day in Vietnam.
  const late = Date.UTC(2025, 11, 31, 20, 30) / 1000;
  assert.equal(fmtVnDateTime(late), '01/01/2026 03:30');
  assert.equal(toVnDateValue(late), '2026-01-01');
  assert.equal(fromVnInputValue(toVnInputValue(late)), late);
  assert.equal(vnParts(late).weekday, 3); // Thursday 1 January 2026
  assert.equal(fmtVnDateTime(undefined), '');
});

test('datetime-local values that are not real times are refused', () => {
  for (const bad of ['', null, 'x', '2025-02-30T10:00', '2025-13-01T10:00', '2025-01-01T24:00', '2025-01-01 10:00', '2025-01-01']) {
    assert.equal(fromVnInputValue(bad), null, String(bad));
  }
});

test('a report period covers both days in Vietnam time', () => {
  const r = vnDayRange('2025-11-01', '2025-11-30');
  assert.equal(r.from, Date.UTC(2025, 9, 31, 17, 0) / 1000); // 00:00 on 1 Nov in Vietnam
  assert.equal(r.to, Date.UTC(2025, 10, 30, 17, 0) / 1000); // 00:00 on 1 Dec in Vietnam
  assert.equal(fromVnDateValue('2025-11-01'), r.from);
  assert.deepEqual(vnDayRange('2025-11-05', '2025-11-05'), { from: r.from + 4 * 86_400, to: r.from + 5 * 86_400 });
  assert.equal(vnDayRange('2025-11-05', '2025-11-04'), null);
  assert.equal(vnDayRange('', '2025-11-04'), null);
});

test('roster times', () => {
  assert.equal(parseHhMm('07:00'), 420);
  assert.equal(parseHhMm('7:05'), 425);
  assert.equal(parseHhMm('24:00'), 1440);
  assert.equal(parseHhMm('24:01'), null);
  assert.equal(parseHhMm('12:60'), null);
  assert.equal(parseHhMm(''), null);
  assert.equal(fmtMinutes(1440), '24:00');
  assert.equal(fmtMinutes(425), '07:05');
});

const req = (id, urgency, status, created_at, starts_at) => ({
  id, urgency, status, created_at, schedule: starts_at ? { starts_at } : null,
});

test('requests: newest first, or open and most urgent first', () => {
  const list = [
    req(1, 'routine', 'requested', 100),
    req(2, 'emergency', 'held', 200),
    req(3, 'urgent', 'requested', 300),
    req(4, 'emergency', 'requested', 50),
    req(5, 'routine', 'scheduled', 400, 9000),
    req(6, 'routine', 'scheduled', 350, 8000),
    req(7, 'urgent', 'declined', 500),
  ];
  assert.deepEqual(sortConferences(list).map((c) => c.id), [7, 5, 6, 3, 2, 1, 4]);
  assert.deepEqual(sortConferences(list, 'urgency').map((c) => c.id), [4, 3, 1, 6, 5, 2, 7]);
  assert.deepEqual(list.map((c) => c.id), [1, 2, 3, 4, 5, 6, 7], 'the input is not reordered');
  assert.ok(urgencyRank('emergency') < urgencyRank('urgent'));
  assert.ok(urgencyRank('urgent') < urgencyRank('routine'));
  assert.ok(urgencyRank('routine') < urgencyRank('whatever'));
});

test('what a role may do with a request', () => {
  const province = { id: 1, tier: 'province' };
  const district = { id: 2, tier: 'district' };
  const conf = {
    id: 7, status: 'requested', from_facility: { id: 2 }, to_facility: { id: 1 }, schedule: null,
  };
  const coordP = { staff: { id: 3, role: 'coordinator' }, facility: province };
  const coordD = { staff: { id: 4, role: 'coordinator' }, facility: district };
  const docP = { staff: { id: 5, role: 'doctor' }, facility: province };
  const docD = { staff: { id: 10, role: 'doctor' }, facility: district };
  assert.equal(conferenceRights(conf, coordP).schedule, true);
  assert.equal(conferenceRights(conf, coordP).decline, true);
  assert.equal(conferenceRights(conf, docP).schedule, true, 'a doctor of the target facility');
  assert.equal(conferenceRights(conf, docD).schedule, false, 'the requesting side does not schedule');
  assert.equal(conferenceRights(conf, coordD).schedule, false);
  assert.equal(conferenceRights(conf, docD).attach, true);
  assert.equal(conferenceRights(conf, docD).join, false);

  const scheduled = {
    ...conf, status: 'scheduled',
    schedule: { starts_at: 1, duration_min: 60, consultation_id: 'k3x7q2m4a7b5c6d2', chair: { staff_id: 5, name: 'A' },
      invitees: [{ staff_id: 5 }, { staff_id: 10 }] },
  };
  assert.equal(conferenceRights(scheduled, coordP).schedule, false);
  assert.equal(conferenceRights(scheduled, docD).join, true);
  assert.equal(conferenceRights(scheduled, docD).guestLink, false);
  assert.equal(conferenceRights(scheduled, docP).join, true);
  assert.equal(conferenceRights(scheduled, docP).guestLink, true);
  assert.equal(conferenceRights(scheduled, docP).conclusion, true);
  assert.equal(conferenceRights(scheduled, coordP).join, false, 'not invited');
  assert.equal(conferenceRights(scheduled, coordP).minutes, true);
  // Reschedule and cancel: those who schedule, while it is scheduled.
  assert.equal(conferenceRights(scheduled, coordP).reschedule, true);
  assert.equal(conferenceRights(scheduled, coordP).cancel, true);
  assert.equal(conferenceRights(scheduled, docP).cancel, true, 'a doctor of the target facility');
  assert.equal(conferenceRights(scheduled, docD).reschedule, false, 'the requesting side does not reschedule');
  assert.equal(conferenceRights(scheduled, docD).cancel, false);
  assert.equal(conferenceRights(conf, coordP).reschedule, false, 'not yet scheduled');
  assert.equal(conferenceRights({ ...scheduled, status: 'cancelled' }, coordP).cancel, false);
  assert.equal(conferenceRights({ ...scheduled, status: 'held' }, coordP).reschedule, false);
  const held = { ...scheduled, status: 'held' };
  assert.equal(conferenceRights(held, docP).join, false);
  assert.equal(conferenceRights(held, docP).conclusion, true);
  assert.equal(conferenceRights(held, docD).conclusion, false);
  assert.equal(conferenceRights(held, docD).attach, false, 'no attachments once held');
  // The secretary the chair named in the call enters the conclusion too.
  assert.equal(conferenceRights({ ...held, secretary_staff_id: 10 }, docD).conclusion, true);
  assert.equal(conferenceRights({ ...held, secretary_staff_id: 10 }, coordP).conclusion, false);
});

test('attachments: type by content type or extension, at most 10 MiB', () => {
  assert.equal(attachmentType('xquang.jpg', 'image/jpeg'), 'image/jpeg');
  assert.equal(attachmentType('ct.DCM', ''), 'application/dicom');
  assert.equal(attachmentType('note.txt', 'application/octet-stream'), 'text/plain');
  assert.equal(attachmentType('virus.exe', 'application/x-msdownload'), null);
  assert.equal(attachmentProblem({ name: 'a.pdf', type: 'application/pdf', size: MAX_ATTACHMENT_BYTES }), null);
  assert.equal(attachmentProblem({ name: 'a.pdf', type: 'application/pdf', size: MAX_ATTACHMENT_BYTES + 1 }), 'too_large');
  assert.equal(attachmentProblem({ name: 'a.zip', type: 'application/zip', size: 10 }), 'type');
  assert.equal(fmtBytes(183211, 'en'), '179 KB');
  assert.equal(fmtBytes(3.5 * 1024 * 1024, 'vi'), '3,5 MB');
});

test('API error codes: the body\'s code, or what the status says', () => {
  assert.equal(apiErrorCode(403, { error: { code: 'forbidden' } }), 'forbidden');
  assert.equal(apiErrorCode(400, { error: { code: 'consent_required' } }), 'consent_required');
  assert.equal(apiErrorCode(409, { error: { code: 'bad_request' } }), 'conflict');
  assert.equal(apiErrorCode(413, null), 'payload_too_large');
  assert.equal(apiErrorCode(0, null), 'network_error');
  assert.equal(apiErrorCode(502, null), 'internal');
  assert.equal(apiErrorCode(404, 'not json'), 'not_found');
});

test('every string key of the staff console exists in both languages', () => {
  const html = readFileSync(join(here, '..', 'staff.html'), 'utf8');
  const js = ['staff.js', 'console-conf.js', 'console-coord.js'].map((f) => readFileSync(join(here, '..', f), 'utf8')).join('\n');
  const keys = new Set([
    ...[...html.matchAll(/data-i18n(?:-label)?="([a-z_0-9]+)"/g)].map((m) => m[1]),
    ...[...js.matchAll(/\bt\('([a-z_0-9]+)'/g)].map((m) => m[1]),
    ...[...js.matchAll(/\btf\('([a-z_0-9]+)'/g)].map((m) => m[1]),
    ...[...js.matchAll(/\btx\('[a-z0-9]+', '([a-z_0-9]+)'/g)].map((m) => m[1]),
    ...[...js.matchAll(/key: '([a-z_0-9]+)'/g)].map((m) => m[1]),
    ...[...js.matchAll(/'((?:conf|console)_[a-z_0-9]+)'/g)].map((m) => m[1]),
  ]);
  // Keys made from data.
  for (const s of ['requested', 'scheduled', 'held', 'declined']) keys.add(`conf_status_${s}`);
  for (const u of ['routine', 'urgent', 'emergency']) keys.add(`conf_urgency_${u}`);
  for (const s of ['male', 'female', 'other']) keys.add(`conf_sex_${s}`);
  for (const k of ['visit', 'conference', 'queue']) keys.add(`console_kind_${k}`);
  for (const k of ['province', 'district', 'commune_station', 'cdc']) keys.add(`console_tier_${k}`);
  for (let d = 0; d < 7; d += 1) keys.add(`console_wd_${d}`);
  for (const p of ['too_large', 'type']) keys.add(`conf_file_${p}`);
  for (const s of ['waiting', 'uploading', 'done']) keys.add(`conf_upload_${s}`);
  assert.ok(keys.size > 150, `found only ${keys.size} keys`);
  for (const key of keys) {
    for (const lang of LANGS) assert.ok(STRINGS[lang][key], `${lang}: no string ${key}`);
  }
});

test('every error code the console shows has a text in both languages', () => {
  const codes = [
    'unauthorized', 'forbidden', 'bad_request', 'not_found', 'conflict', 'payload_too_large', 'too_many_attempts',
    'consent_required', 'internal', 'network_error', 'unknown_error', 'token_not_yet_valid', 'room_ended',
  ];
  for (const code of codes) {
    for (const lang of LANGS) {
      assert.ok(STRINGS[lang][`console_err_${code}`] || ERROR_TEXTS[lang][code], `${lang}: no text for ${code}`);
    }
  }
});

// ---- Issue 12 (console): sharing, QR data URLs, the flagged title.

import { shareOrCopy, svgDataUrl, flaggedTitle } from '../console-util.js';

test('a link goes to the share sheet where there is one, else to the clipboard', async () => {
  const shared = [];
  const phone = { share: async (d) => { shared.push(d); }, canShare: () => true };
  assert.equal(await shareOrCopy({ url: 'https://x.vn/q/1', title: 'Nội khoa' }, phone), 'shared');
  assert.deepEqual(shared, [{ url: 'https://x.vn/q/1', title: 'Nội khoa', text: undefined }]);
  // Closing the sheet is not a failure, and nothing is copied behind the person's back.
  const copied = [];
  const closing = {
    share: async () => { throw Object.assign(new Error('x'), { name: 'AbortError' }); },
    clipboard: { writeText: async (u) => { copied.push(u); } },
  };
  assert.equal(await shareOrCopy({ url: 'https://x.vn/q/1' }, closing), 'cancelled');
  assert.deepEqual(copied, []);
  // A desktop without Web Share: the clipboard.
  const desktop = { clipboard: { writeText: async (u) => { copied.push(u); } } };
  assert.equal(await shareOrCopy({ url: 'https://x.vn/q/2' }, desktop), 'copied');
  // A share sheet that refuses (not allowed), then the clipboard.
  const refusing = {
    share: async () => { throw Object.assign(new Error('x'), { name: 'NotAllowedError' }); },
    clipboard: { writeText: async (u) => { copied.push(u); } },
  };
  assert.equal(await shareOrCopy({ url: 'https://x.vn/q/3' }, refusing), 'copied');
  assert.deepEqual(copied, ['https://x.vn/q/2', 'https://x.vn/q/3']);
  // Neither: said so.
  const none = { clipboard: { writeText: async () => { throw new Error('denied'); } } };
  assert.equal(await shareOrCopy({ url: 'https://x.vn/q/4' }, none, null), 'failed');
});

test('QR codes from the server become data: URLs; the title counts what waits', () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0h1v1H0V0"/></svg>';
  const url = svgDataUrl(svg);
  assert.ok(url.startsWith('data:image/svg+xml;base64,'));
  assert.equal(Buffer.from(url.split(',')[1], 'base64').toString('latin1'), svg);
  assert.equal(flaggedTitle('Bệnh nhân mới — tuxa', 1), '(1) Bệnh nhân mới — tuxa');
  assert.equal(flaggedTitle('tuxa', 0), 'tuxa');
});
