// @ts-check
// The staff console's "Điều phối" (coordination) tab, for coordinators and
// administrators: what is happening now (GET /api/v1/live every 5 s while
// it is on screen), queues and their rosters, the directory (facilities,
// practitioners, staff; created by administrators), and the activity report
// with its CSV. docs/api.md "Who may call what", "On-call queues and
// rosters", "Staff and directory", "Activity report".
//
// Under a live queue, "Vé" lists its tickets (GET /api/v1/queues/{id}/tickets,
// refreshed with the live view), flagged ones first with why, each with a
// "Xóa" (clear) button (DELETE …/tickets/{handle}, audited).
//
// For tests: window.tuxaStaff.coord = {live, liveAt, livePolls, queues,
// roster, facilities, practitioners, staff, created, report, error,
// tickets, cleared}.

import { t, tf, roleName, getLang } from './i18n.js';
import {
  h, fill, fmtVnTime, toVnDateValue, vnDayRange, parseHhMm, fmtMinutes, svgDataUrl, $as,
} from './console-util.js';

const $ = (id) => document.getElementById(id);
const LIVE_EVERY_MS = 5000;
/** The report's network-wide rows (server/src/reports.rs `NETWORK`). */
const NETWORK = '(toàn mạng / network)';

const tx = (tag, key, attrs = {}) => h(tag, { ...attrs, 'data-i18n': key }, t(key));

/** Why a ticket is suspicious, by the server's flag. */
const FLAG_KEYS = Object.freeze({
  many_from_address: 'console_flag_many_from_address',
  duplicate_phone: 'console_flag_duplicate_phone',
  away: 'console_flag_away',
});

export function createCoordination(ctx) {
  const co = {
    live: null,
    liveAt: null,
    livePolls: 0,
    queues: [],
    roster: [],
    facilities: [],
    practitioners: [],
    staff: [],
    created: null, // the one-time secrets of the account just created
    report: null,
    error: null,
    tickets: {}, // queue id → its live tickets, while shown
    cleared: 0,
  };
  ctx.ts.coord = co;
  const ticketsOpen = new Set(); // queue ids whose tickets are shown
  let shown = false;
  let liveTimer = null;
  let liveInFlight = false;
  let loaded = false;
  const errors = {}; // element id → {code} | {key}
  const notices = {}; // element id → key

  const me = () => ctx.me();
  const isAdmin = () => me()?.staff?.role === 'admin';
  const provinceLevel = () => me()?.facility?.tier === 'province';

  function setError(id, e) {
    errors[id] = e || null;
    if (e) co.error = e.code || e.key;
    const el = $(id);
    el.hidden = !e;
    el.textContent = e ? (e.code ? ctx.errorText(e.code) : t(e.key)) : '';
  }

  function setNotice(id, key, vars) {
    notices[id] = key ? { key, vars } : null;
    const el = $(id);
    el.hidden = !key;
    el.textContent = key ? tf(key, vars || {}) : '';
  }

  const facilityName = (id) => co.facilities.find((f) => f.id === id)?.name ?? (id == null ? '—' : `#${id}`);
  const staffRoleText = (r) => (r === 'coordinator' || r === 'admin' ? t(`st_role_${r}`) : roleName(r));
  const td = (v, cls) => h('td', cls ? { class: cls } : {}, v == null ? '—' : v);

  function fmtSecs(secs) {
    if (secs == null || !Number.isFinite(secs)) return '—';
    const s = Math.round(secs);
    return s >= 60 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}` : tf('st_seconds', { n: s });
  }

  // -------------------------------------------------------------------------
  // Live.

  const liveVisible = () => shown && $as('details', 'coord-live').open && document.visibilityState === 'visible';

  async function pollLive() {
    if (!liveVisible() || liveInFlight) return;
    liveInFlight = true;
    const r = await ctx.api('GET', '/api/v1/live');
    liveInFlight = false;
    co.livePolls += 1;
    if (r.status === 200 && r.json) {
      co.live = { queues: r.json.queues || [], rooms: r.json.rooms || [] };
      co.liveAt = Math.floor(Date.now() / 1000);
      setError('live-error', null);
      renderLive();
      for (const qid of ticketsOpen) loadTickets(qid);
    } else if (r.status !== 401) {
      setError('live-error', { code: r.code });
    }
  }

  // -------------------------------------------------------------------------
  // Tickets of a queue: who holds the places, and clearing a flood.

  async function loadTickets(qid) {
    const r = await ctx.api('GET', `/api/v1/queues/${qid}/tickets`);
    if (r.status === 200 && r.json) {
      co.tickets[qid] = r.json.tickets || [];
      renderLive();
    } else if (r.status !== 401) setError('live-error', { code: r.code });
  }

  function toggleTickets(qid) {
    if (ticketsOpen.has(qid)) {
      ticketsOpen.delete(qid);
      delete co.tickets[qid];
      renderLive();
    } else {
      ticketsOpen.add(qid);
      renderLive();
      loadTickets(qid);
    }
  }

  async function clearTicket(qid, tk) {
    if (!window.confirm(tf('console_ticket_clear_confirm', { name: tk.name }))) return;
    const r = await ctx.api('DELETE', `/api/v1/queues/${qid}/tickets/${tk.handle}`);
    if (r.status === 200) {
      co.cleared += 1;
      setError('live-error', null);
    } else if (r.status !== 401 && r.status !== 404) {
      setError('live-error', { code: r.code });
    }
    await loadTickets(qid);
  }

  function ticketRow(qid) {
    const list = co.tickets[qid];
    let body;
    if (!list) body = h('p', { class: 'muted-text' }, t('console_loading'));
    else if (!list.length) body = h('p', { class: 'muted-text' }, t('console_no_tickets'));
    else {
      // Flagged first, then oldest first (the server's order).
      const sorted = [...list].sort((a, b) => Number(b.flags.length > 0) - Number(a.flags.length > 0));
      body = h('ul', { class: 'cs-tickets' }, sorted.map((tk) => h('li', {
        dataset: { handle: tk.handle }, class: tk.flags.length ? 'cs-alert' : null,
      },
      h('span', {}, [tk.name, tk.phone].filter(Boolean).join(' · '),
        h('span', { class: 'cs-sub' }, tf('console_ticket_waited', { t: fmtSecs(tk.waited_secs) }),
          tk.flags.map((f) => ` · ${tf(FLAG_KEYS[f] || 'console_flag_other', { n: tk.same_address })}`))),
      h('button', {
        type: 'button', class: 'btn btn-secondary cs-small', onclick: () => clearTicket(qid, tk),
        'aria-label': tf('console_ticket_clear_label', { name: tk.name }),
      }, t('console_ticket_clear')))));
    }
    return h('tr', { class: 'cs-ticket-row', dataset: { ticketsOf: qid } }, h('td', { colspan: '6' }, body));
  }

  function renderLive() {
    const l = co.live;
    const secs = co.liveAt ? String(new Date(co.liveAt * 1000).getUTCSeconds()).padStart(2, '0') : '';
    $('live-updated').textContent = co.liveAt ? tf('console_updated_at', { at: `${fmtVnTime(co.liveAt)}:${secs}` }) : '';
    if (!l) return;
    const qs = [...l.queues].sort((a, b) => (b.waiting || 0) - (a.waiting || 0) || String(a.name).localeCompare(String(b.name)));
    fill($as('table', 'live-queues').tBodies[0], qs.length ? qs.flatMap((q) => [h('tr', {
      class: (q.waiting > 0 && !q.doctors_available) ? 'cs-alert' : null, dataset: { queue: q.id },
    }, h('th', { scope: 'row' }, q.name, h('button', {
      type: 'button', class: 'btn btn-secondary cs-small', 'aria-expanded': ticketsOpen.has(q.id) ? 'true' : 'false',
      onclick: () => toggleTickets(q.id),
    }, t('console_tickets'))), td(q.waiting, 'num'), td(q.offered, 'num'), td(q.calls, 'num'), td(q.doctors_available, 'num'),
    td(q.waiting > 0 ? fmtSecs(q.longest_wait_secs) : '—', 'num')), ticketsOpen.has(q.id) ? ticketRow(q.id) : null])
      : h('tr', {}, h('td', { colspan: '6', class: 'muted-text' }, t('console_none'))));
    fill($as('table', 'live-rooms').tBodies[0], l.rooms.length ? l.rooms.map((r) => h('tr', { class: r.waiting > 0 ? 'cs-alert' : null, dataset: { room: r.id } },
      h('th', { scope: 'row' }, r.title || r.id, h('span', { class: 'cs-sub' }, facilityName(r.facility_id))),
      td(t(`console_kind_${r.kind}`)), td(r.in_room, 'num'), td(r.waiting, 'num'), td(t(r.locked ? 'conf_yes' : 'conf_no'))))
      : h('tr', {}, h('td', { colspan: '5', class: 'muted-text' }, t('console_none'))));
  }

  function startLive() {
    clearInterval(liveTimer);
    liveTimer = null;
    if (!liveVisible()) return;
    pollLive();
    liveTimer = setInterval(pollLive, LIVE_EVERY_MS);
  }

  function stopLive() {
    clearInterval(liveTimer);
    liveTimer = null;
  }

  // -------------------------------------------------------------------------
  // Directory.

  async function loadDirectory() {
    const [f, p, s] = await Promise.all([
      ctx.api('GET', '/api/v1/facilities'), ctx.api('GET', '/api/v1/practitioners'), ctx.api('GET', '/api/v1/staff'),
    ]);
    const bad = [f, p, s].find((r) => r.status !== 200);
    if (f.status === 200) co.facilities = f.json?.facilities || [];
    if (p.status === 200) co.practitioners = p.json?.practitioners || [];
    if (s.status === 200) co.staff = s.json?.staff || [];
    if (bad && bad.status !== 401) setError('dir-error', { code: bad.code });
    else setError('dir-error', null);
    renderDirectory();
    fillFacilitySelects();
    fillRosterStaff();
    renderLive();
  }

  function renderDirectory() {
    const tierText = (tier) => t(`console_tier_${tier}`);
    fill($as('table', 'dir-facilities').tBodies[0], co.facilities.map((f) => h('tr', { dataset: { id: f.id } },
      h('th', { scope: 'row' }, f.name), td(tierText(f.tier)), td(f.parent_id == null ? '—' : facilityName(f.parent_id)))));
    fill($as('table', 'dir-practitioners').tBodies[0], co.practitioners.map((p) => h('tr', { dataset: { id: p.id } },
      h('th', { scope: 'row' }, [p.title, p.name].filter(Boolean).join(' ')), td(p.licence_number), td(p.specialty), td(facilityName(p.facility_id)))));
    fill($as('table', 'dir-staff').tBodies[0], co.staff.map((s) => h('tr', { dataset: { id: s.id }, class: s.disabled ? 'cs-disabled' : null },
      h('th', { scope: 'row' }, s.username), td(s.name), td(staffRoleText(s.role)), td(facilityName(s.facility_id)),
      h('td', {}, t(s.disabled ? 'console_disabled' : 'console_active'),
        isAdmin() && s.id !== me()?.staff?.id ? h('button', {
          type: 'button', class: 'btn btn-secondary cs-small', onclick: () => setDisabled(s, !s.disabled),
        }, t(s.disabled ? 'console_enable' : 'console_disable')) : null))));
    for (const id of ['facility-form', 'practitioner-form', 'staff-form']) $(id).hidden = !isAdmin();
    renderSecret();
  }

  function option(value, text) {
    return h('option', { value: String(value) }, text);
  }

  function fillSelect(el, options, keep = true) {
    const old = el.value;
    fill(el, options);
    if (keep && old && [...el.options].some((o) => o.value === old)) el.value = old;
  }

  function fillFacilitySelects() {
    const fs = co.facilities.map((f) => option(f.id, f.name));
    fillSelect($('qf-facility'), fs.map((o) => o.cloneNode(true)));
    fillSelect($('pf-facility'), fs.map((o) => o.cloneNode(true)));
    fillSelect($('sf-facility'), fs.map((o) => o.cloneNode(true)));
    fillSelect($('ff-parent'), [tx('option', 'console_no_parent', { value: '' }), ...fs.map((o) => o.cloneNode(true))]);
    const rp = $('rp-facility');
    if (provinceLevel()) {
      fillSelect(rp, [tx('option', 'console_whole_network', { value: '' }), ...fs.map((o) => o.cloneNode(true))]);
      $('rp-facility-label').hidden = false;
    } else {
      $('rp-facility-label').hidden = true;
    }
    fillPractitioners();
    updateCsvLink();
  }

  function fillPractitioners() {
    const fid = Number($as('select', 'sf-facility').value);
    const taken = new Set(co.staff.map((s) => s.practitioner_id).filter((x) => x != null));
    const list = co.practitioners.filter((p) => p.facility_id === fid && !taken.has(p.id));
    fillSelect($('sf-practitioner'), [tx('option', 'console_pick_practitioner', { value: '' }), ...list.map((p) => option(p.id, `${p.title} ${p.name} · ${p.licence_number}`))]);
    const clinical = ['doctor', 'nurse'].includes($as('select', 'sf-role').value);
    $('sf-practitioner-label').hidden = !clinical;
  }

  function renderSecret() {
    const c = co.created;
    $('dir-secret').hidden = !c;
    if (!c) {
      $('dir-secret-qr').removeAttribute('src'); // the secret leaves the page with its text
      return;
    }
    $('dir-secret-username').textContent = c.staff?.username || '';
    $('dir-secret-totp').textContent = c.totp?.secret || '';
    $('dir-secret-uri').textContent = c.totp?.otpauth_uri || '';
    // The same URI as a QR code for the authenticator app (drawn by the server).
    const qr = $as('img', 'dir-secret-qr');
    qr.hidden = !c.totp?.qr_svg;
    if (c.totp?.qr_svg) qr.src = svgDataUrl(c.totp.qr_svg);
    else qr.removeAttribute('src');
    $('dir-secret-password-dt').hidden = !c.password;
    $('dir-secret-password-dd').hidden = !c.password;
    $('dir-secret-password').textContent = c.password || '';
  }

  async function post(path, body, errId, okStatus = [200, 201]) {
    const r = await ctx.api('POST', path, body);
    if (okStatus.includes(r.status) && r.json) {
      setError(errId, null);
      return r.json;
    }
    if (r.status !== 401) setError(errId, { code: r.code });
    return null;
  }

  function required(ids, errId) {
    for (const id of ids) {
      const el = /** @type {HTMLInputElement | HTMLSelectElement} */ ($(id));
      el.removeAttribute('aria-invalid');
      if (!String(el.value).trim()) {
        el.setAttribute('aria-invalid', 'true');
        setError(errId, { key: 'console_err_required' });
        el.focus();
        return false;
      }
    }
    return true;
  }

  async function createFacility(ev) {
    ev.preventDefault();
    if (!required(['ff-name'], 'dir-error')) return;
    const body = { name: $as('input', 'ff-name').value.trim(), tier: $as('select', 'ff-tier').value };
    if ($as('select', 'ff-parent').value) body.parent_id = Number($as('select', 'ff-parent').value);
    const made = await post('/api/v1/facilities', body, 'dir-error');
    if (!made) return;
    $as('form', 'facility-form').reset();
    setNotice('dir-notice', 'console_created', { name: made.name });
    await loadDirectory();
  }

  async function createPractitioner(ev) {
    ev.preventDefault();
    if (!required(['pf-name', 'pf-title', 'pf-licence', 'pf-specialty', 'pf-facility'], 'dir-error')) return;
    const made = await post('/api/v1/practitioners', {
      name: $as('input', 'pf-name').value.trim(), title: $as('input', 'pf-title').value.trim(), licence_number: $as('input', 'pf-licence').value.trim(),
      specialty: $as('input', 'pf-specialty').value.trim(), facility_id: Number($as('select', 'pf-facility').value),
    }, 'dir-error');
    if (!made) return;
    $as('form', 'practitioner-form').reset();
    setNotice('dir-notice', 'console_created', { name: made.name });
    await loadDirectory();
  }

  async function createStaff(ev) {
    ev.preventDefault();
    const clinical = ['doctor', 'nurse'].includes($as('select', 'sf-role').value);
    if (!required(['sf-username', 'sf-name', 'sf-facility', ...(clinical ? ['sf-practitioner'] : [])], 'dir-error')) return;
    const password = $as('input', 'sf-password').value;
    if (password && password.length < 10) {
      setError('dir-error', { key: 'console_err_password' });
      $('sf-password').focus();
      return;
    }
    const body = {
      username: $as('input', 'sf-username').value.trim().toLowerCase(), name: $as('input', 'sf-name').value.trim(), role: $as('select', 'sf-role').value,
      facility_id: Number($as('select', 'sf-facility').value),
    };
    if (clinical) body.practitioner_id = Number($as('select', 'sf-practitioner').value);
    if (password) body.password = password;
    const made = await post('/api/v1/staff', body, 'dir-error');
    if (!made) return;
    $as('form', 'staff-form').reset();
    co.created = made;
    setNotice('dir-notice', null);
    renderSecret();
    $('dir-secret').scrollIntoView({ block: 'nearest' });
    $('dir-secret-done').focus({ preventScroll: true });
    await loadDirectory();
  }

  async function setDisabled(s, disabled) {
    const r = await ctx.api('PATCH', `/api/v1/staff/${s.id}`, { disabled });
    if (r.status === 200) {
      setError('dir-error', null);
      await loadDirectory();
    } else if (r.status !== 401) setError('dir-error', { code: r.code });
  }

  // -------------------------------------------------------------------------
  // Queues and rosters.

  async function loadQueues() {
    const r = await ctx.api('GET', '/api/v1/queues');
    if (r.status === 200 && r.json) {
      co.queues = r.json.queues || [];
      fill($('qr-list'), co.queues.map((q) => h('li', { dataset: { queue: q.id } },
        h('a', { href: `/q/${q.id}`, target: '_blank', rel: 'noopener' }, q.name),
        h('span', { class: 'muted-text' }, ` · ${q.facility_name || facilityName(q.facility_id)} · `),
        h('a', { href: `/q/${q.id}/poster`, target: '_blank', rel: 'noopener', class: 'st-queue-poster' }, t('st_poster')))));
      fillSelect($('rf-queue'), co.queues.map((q) => option(q.id, q.name)));
      await loadRoster();
    } else if (r.status !== 401) setError('qr-error', { code: r.code });
  }

  function fillRosterStaff() {
    const q = co.queues.find((x) => x.id === Number($as('select', 'rf-queue').value));
    const list = co.staff.filter((s) => !s.disabled && s.role === 'doctor' && (!q || s.facility_id === q.facility_id));
    fillSelect($('rf-staff'), list.map((s) => option(s.id, `${s.name} (${s.username})`)));
  }

  function weekdayText(wd) {
    return wd == null ? t('console_every_day') : t(`console_wd_${wd}`);
  }

  async function loadRoster() {
    fillRosterStaff();
    const id = Number($as('select', 'rf-queue').value);
    if (!id) {
      co.roster = [];
      fill($('rf-roster'));
      return;
    }
    const r = await ctx.api('GET', `/api/v1/queues/${id}/roster`);
    if (r.status === 200 && r.json) {
      co.roster = r.json.roster || [];
      renderRoster();
    } else if (r.status !== 401) setError('qr-error', { code: r.code });
  }

  function renderRoster() {
    const name = (id) => co.staff.find((s) => s.id === id)?.name ?? `#${id}`;
    fill($('rf-roster'), co.roster.length ? co.roster.map((w) => h('li', { dataset: { id: w.id } },
      `${name(w.staff_id)} · ${weekdayText(w.weekday)} · ${fmtMinutes(w.start_min)}–${fmtMinutes(w.end_min)}`))
      : tx('li', 'console_no_roster', { class: 'muted-text' }));
  }

  async function createQueue(ev) {
    ev.preventDefault();
    if (!required(['qf-facility', 'qf-specialty'], 'qr-error')) return;
    const body = { facility_id: Number($as('select', 'qf-facility').value), specialty: $as('input', 'qf-specialty').value.trim() };
    if ($as('input', 'qf-name').value.trim()) body.name = $as('input', 'qf-name').value.trim();
    const made = await post('/api/v1/queues', body, 'qr-error');
    if (!made) return;
    $as('input', 'qf-specialty').value = '';
    $as('input', 'qf-name').value = '';
    setNotice('qr-notice', 'console_queue_created', { name: made.name });
    await loadQueues();
    $as('select', 'rf-queue').value = String(made.id);
    await loadRoster();
  }

  async function addRoster(ev) {
    ev.preventDefault();
    if (!required(['rf-queue', 'rf-staff'], 'qr-error')) return;
    const start = parseHhMm($as('input', 'rf-start').value);
    const midnight = $as('input', 'rf-midnight').checked;
    const end = midnight ? 1440 : parseHhMm($as('input', 'rf-end').value);
    if (start == null || end == null || end <= start) {
      setError('qr-error', { key: 'console_err_times' });
      $('rf-start').focus();
      return;
    }
    const body = { staff_id: Number($as('select', 'rf-staff').value), start: fmtMinutes(start), end: fmtMinutes(end) };
    if ($as('select', 'rf-weekday').value !== '') body.weekday = Number($as('select', 'rf-weekday').value);
    const made = await post(`/api/v1/queues/${$as('select', 'rf-queue').value}/roster`, body, 'qr-error');
    if (!made) return;
    setNotice('qr-notice', 'console_roster_added');
    await loadRoster();
  }

  // -------------------------------------------------------------------------
  // Activity report.

  function reportQuery(format) {
    const range = vnDayRange($as('input', 'rp-from').value, $as('input', 'rp-to').value);
    if (!range) return null;
    const q = new URLSearchParams({ from: String(range.from), to: String(range.to) });
    if (provinceLevel() && $as('select', 'rp-facility').value) q.set('facility', $as('select', 'rp-facility').value);
    q.set('format', format);
    // The CSV's headers and kinds in the language of the console.
    if (format === 'csv') q.set('lang', getLang());
    return `/api/v1/reports/activity?${q}`;
  }

  function updateCsvLink() {
    const url = reportQuery('csv');
    const a = $as('a', 'rp-csv');
    if (url) {
      a.href = url;
      a.removeAttribute('aria-disabled');
    } else {
      a.removeAttribute('href');
      a.setAttribute('aria-disabled', 'true');
    }
  }

  async function showReport(ev) {
    ev?.preventDefault();
    const url = reportQuery('json');
    if (!url) {
      setError('rp-error', { key: 'console_err_period' });
      $('rp-from').focus();
      return;
    }
    const r = await ctx.api('GET', url);
    if (r.status === 200 && r.json) {
      setError('rp-error', null);
      co.report = r.json;
      renderReport();
    } else if (r.status !== 401) setError('rp-error', { code: r.code });
  }

  // Numbers as the console's language writes them: Vietnamese groups
  // thousands with a dot and puts a comma before decimals (1.234,5).
  function reportNumbers() {
    const locale = getLang() === 'vi' ? 'vi-VN' : 'en-GB';
    return {
      int: new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }),
      pct: new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 }),
    };
  }

  function renderReport() {
    const rows = co.report?.rows || [];
    const n = reportNumbers();
    const int = (v) => (v == null ? null : n.int.format(v));
    $('rp-table').hidden = !co.report || rows.length === 0;
    $('rp-empty').hidden = !co.report || rows.length > 0;
    fill($as('table', 'rp-table').tBodies[0], rows.map((r) => h('tr', {},
      h('th', { scope: 'row' }, r.facility === NETWORK ? t('console_report_network') : r.facility), td(t(`console_kind_${r.kind}`)), td(int(r.count), 'num'), td(int(r.served), 'num'),
      td(int(r.abandoned), 'num'), td(r.drop_rate == null ? null : n.pct.format(r.drop_rate), 'num'),
      td(fmtSecs(r.wait_avg_secs), 'num'), td(fmtSecs(r.wait_max_secs), 'num'), td(fmtSecs(r.duration_avg_secs), 'num'))));
  }

  // -------------------------------------------------------------------------
  // Wiring.

  $('coord-live').addEventListener('toggle', () => (liveVisible() ? startLive() : stopLive()));
  document.addEventListener('visibilitychange', () => {
    if (!shown) return;
    if (document.visibilityState === 'visible') startLive();
    else stopLive();
  });
  $('queue-form').addEventListener('submit', createQueue);
  $('roster-form').addEventListener('submit', addRoster);
  $('rf-queue').addEventListener('change', loadRoster);
  $('rf-midnight').addEventListener('change', () => { $as('input', 'rf-end').disabled = $as('input', 'rf-midnight').checked; });
  $('facility-form').addEventListener('submit', createFacility);
  $('practitioner-form').addEventListener('submit', createPractitioner);
  $('staff-form').addEventListener('submit', createStaff);
  $('sf-facility').addEventListener('change', fillPractitioners);
  $('sf-role').addEventListener('change', fillPractitioners);
  $('dir-secret-done').addEventListener('click', () => { co.created = null; renderSecret(); });
  $('report-form').addEventListener('submit', showReport);
  for (const id of ['rp-from', 'rp-to', 'rp-facility']) $(id).addEventListener('change', updateCsvLink);

  function initReportDates() {
    const now = Math.floor(Date.now() / 1000);
    if (!$as('input', 'rp-from').value) $as('input', 'rp-from').value = toVnDateValue(now - 29 * 86_400);
    if (!$as('input', 'rp-to').value) $as('input', 'rp-to').value = toVnDateValue(now);
    updateCsvLink();
  }

  return {
    async show() {
      shown = true;
      initReportDates();
      startLive();
      if (!loaded) {
        loaded = true;
        await loadDirectory();
        await loadQueues();
      }
    },
    hide() {
      shown = false;
      stopLive();
    },
    reset() {
      this.hide();
      loaded = false;
      Object.assign(co, {
        live: null, liveAt: null, livePolls: 0, queues: [], roster: [], facilities: [], practitioners: [], staff: [],
        created: null, report: null, error: null, tickets: {}, cleared: 0,
      });
      ticketsOpen.clear();
      for (const id of Object.keys(errors)) setError(id, null);
      for (const id of Object.keys(notices)) setNotice(id, null);
      for (const id of ['live-queues', 'live-rooms', 'dir-facilities', 'dir-practitioners', 'dir-staff', 'rp-table']) fill($as('table', id).tBodies[0]);
      fill($('qr-list'));
      fill($('rf-roster'));
      $('live-updated').textContent = '';
      $('rp-table').hidden = true;
      $('rp-empty').hidden = true;
      renderSecret();
    },
    relabel() {
      for (const [id, e] of Object.entries(errors)) if (e) setError(id, e);
      for (const [id, n] of Object.entries(notices)) if (n) setNotice(id, n.key, n.vars);
      renderLive();
      renderDirectory();
      renderRoster();
      renderReport();
      updateCsvLink();
      fillPractitioners();
    },
  };
}
