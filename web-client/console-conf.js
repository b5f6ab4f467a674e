// @ts-check
// The staff console's "Hội chẩn" (case conferences) tab: the requests one
// sees (GET /api/v1/conferences), a new request with its attachments
// (doctors and nurses), and per request what one's role allows: schedule or
// decline (the target side), join (invitees), a guest link (the chair), the
// conclusion and the minutes (chair, secretary). docs/api.md "Case conferences".
//
// For tests: window.tuxaStaff.conf = {list, view, openId, open, joinUrl,
// joinNotBefore, guestUrl, uploads, error, …}.

import { t, tf, getLang, roleName } from './i18n.js';
import { consentTextVersion } from './protocol.js';
import {
  h, fill, fmtVnDateTime, fmtVnTime, toVnInputValue, fromVnInputValue, sortConferences,
  conferenceRights, attachmentProblem, attachmentType, fmtBytes, MAX_ATTACHMENT_BYTES,
  fetchQrDataUrl, shareOrCopy, $as,
} from './console-util.js';

const $ = (id) => document.getElementById(id);
const LIST_REFRESH_MS = 30_000;

/** An element whose text is a UI string, relabelled on a language switch. */
const tx = (tag, key, attrs = {}) => h(tag, { ...attrs, 'data-i18n': key }, t(key));

/**
 * Buttons exporting one consultation's record (docs/api.md "Record exports"):
 * JSON and FHIR are fetched with the staff session and saved as files; the
 * minutes open in a new tab, where the session cookie goes with the request
 * (as a page of its own, with its own CSP and styles: a blob of it would
 * inherit the console's CSP, which refuses its inline styles).
 * `ctx.ts.exports` records each download for the tests.
 */
export function exportButtons(ctx, consultationId, prefix, onError) {
  const id = encodeURIComponent(consultationId);
  const save = async (format, path, filename) => {
    const el = /** @type {HTMLButtonElement | null} */ (document.getElementById(`${prefix}-export-${format}`));
    if (el) el.disabled = true;
    let res = null;
    try {
      res = await fetch(path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch { /* shown below */ }
    if (el) el.disabled = false;
    if (!res || !res.ok) {
      if (res && res.status === 401) ctx.unauthorized();
      else onError({ key: 'conf_export_failed' });
      (ctx.ts.exports ||= []).push({ format, status: res ? res.status : 0 });
      return;
    }
    const blob = await res.blob();
    (ctx.ts.exports ||= []).push({ format, status: res.status, bytes: blob.size, filename });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  };
  return h('div', { class: 'cs-export', role: 'group', 'aria-label': t('conf_export') },
    h('button', { type: 'button', class: 'btn btn-secondary', id: `${prefix}-export-json`, 'data-i18n': 'conf_export_json',
      onclick: () => save('json', `/api/v1/consultations/${id}/record.json`, `tuxa-${consultationId}.json`) }, t('conf_export_json')),
    h('button', { type: 'button', class: 'btn btn-secondary', id: `${prefix}-export-fhir`, 'data-i18n': 'conf_export_fhir',
      onclick: () => save('fhir', `/api/v1/consultations/${id}/record.fhir.json`, `tuxa-${consultationId}.fhir.json`) }, t('conf_export_fhir')),
    h('a', { class: 'btn btn-secondary', id: `${prefix}-minutes`, 'data-i18n': 'conf_export_minutes',
      href: `/consultations/${id}/minutes`, target: '_blank', rel: 'noopener' }, t('conf_export_minutes')),
    h('a', { class: 'btn btn-secondary', id: `${prefix}-recordings`, 'data-i18n': 'conf_recordings',
      href: `/consultations/${id}/recordings`, target: '_blank', rel: 'noopener' }, t('conf_recordings')));
}

export function createConferences(ctx) {
  const cs = {
    list: [],
    loaded: false,
    view: 'list', // list | form | detail
    openId: null,
    open: null, // the request shown
    sort: 'newest',
    facilities: null, // upper-level facilities for the form
    staff: null, // staff to invite (coordinators)
    staffFacilities: null,
    uploads: [], // {key, confId, file, name, size, state, progress, code}
    joinUrl: null,
    joinNotBefore: null,
    joinFor: null,
    guestUrl: null,
    error: null,
    busy: false,
    records: null, // ended consultations, when their section was opened
    renders: 0, // times the open request was drawn
    loads: 0, // times the open request came from the server (tests wait for a refresh)
  };
  ctx.ts.conf = cs;
  let listTimer = null;
  let shown = false;
  let errorLine = null; // {code} | {key}
  let noticeKey = null;
  let uploadSeq = 0;
  let drawnKey = null; // what the open request's drawing shows (detailKey)

  const me = () => ctx.me();
  const role = () => me()?.staff?.role;
  const mayRequest = () => role() === 'doctor' || role() === 'nurse';

  // -------------------------------------------------------------------------
  // Rendering.

  function showError(e) {
    errorLine = e;
    cs.error = e ? (e.code || e.key) : null;
    const el = $('conf-error');
    el.hidden = !e;
    el.textContent = e ? (e.code ? ctx.errorText(e.code) : t(e.key)) : '';
  }

  function showNotice(key) {
    noticeKey = key;
    $('conf-notice').hidden = !key;
    $('conf-notice').textContent = key ? t(key) : '';
  }

  function render() {
    if (!me()) return;
    $('conf-new-btn').hidden = !mayRequest() || cs.view !== 'list';
    $('conf-form').hidden = cs.view !== 'form';
    $('conf-detail').hidden = cs.view !== 'detail';
    $('conf-list').hidden = cs.view !== 'list';
    $('conf-records').hidden = cs.view !== 'list';
    $('conf-sort').closest('label').hidden = cs.view !== 'list';
    $('conf-empty').hidden = cs.view !== 'list' || !cs.loaded || cs.list.length > 0;
    if (errorLine) showError(errorLine);
    if (noticeKey) showNotice(noticeKey);
    const badge = cs.list.filter((c) => {
      const r = conferenceRights(c, me());
      return r.schedule || r.join;
    }).length;
    $('conf-badge').hidden = badge === 0;
    $('conf-badge').textContent = String(badge);
    $('conf-badge').setAttribute('aria-label', tf('conf_badge_label', { n: badge }));
    if (cs.view === 'form') renderFileList();
    renderUploads();
  }

  function statusBadge(status) {
    return h('span', { class: `cs-badge cs-status-${status}`, 'data-i18n': `conf_status_${status}` }, t(`conf_status_${status}`));
  }

  function urgencyBadge(urgency) {
    return h('span', { class: `cs-badge cs-urgency-${urgency}`, 'data-i18n': `conf_urgency_${urgency}` }, t(`conf_urgency_${urgency}`));
  }

  function renderList() {
    const ul = $('conf-list');
    const items = sortConferences(cs.list, cs.sort).map((c) => {
      const when = c.schedule ? `${t('conf_scheduled_at')} ${fmtVnDateTime(c.schedule.starts_at)}` : `${t('conf_requested_at')} ${fmtVnDateTime(c.created_at)}`;
      return h('li', { class: 'cs-item', dataset: { id: c.id } },
        h('button', { type: 'button', class: 'cs-item-btn', onclick: () => openRequest(c.id), 'aria-label': `${c.patient?.name || ''}, ${t(`conf_urgency_${c.urgency}`)}, ${t(`conf_status_${c.status}`)}` },
          h('span', { class: 'cs-item-head' }, urgencyBadge(c.urgency), statusBadge(c.status),
            h('span', { class: 'cs-item-specialty' }, c.specialty || '')),
          h('span', { class: 'cs-item-patient' }, c.patient?.name || ''),
          h('span', { class: 'cs-item-route' }, `${c.from_facility?.name || '?'} → ${c.to_facility?.name || '?'}`),
          h('span', { class: 'cs-item-time' }, when)));
    });
    fill(ul, items);
  }

  // -------------------------------------------------------------------------
  // Loading.

  async function loadList() {
    const r = await ctx.api('GET', '/api/v1/conferences');
    if (r.status === 200 && r.json && Array.isArray(r.json.conferences)) {
      cs.list = r.json.conferences;
      cs.loaded = true;
      if (errorLine && errorLine.from === 'list') showError(null);
      renderList();
    } else if (r.status !== 401) {
      showError({ code: r.code, from: 'list' });
    }
    render();
  }

  async function openRequest(id) {
    showError(null);
    showNotice(null);
    const r = await ctx.api('GET', `/api/v1/conferences/${id}`);
    if (r.status !== 200 || !r.json || r.json.id == null) {
      if (r.status !== 401) showError({ code: r.code });
      render();
      return;
    }
    const newlyShown = cs.view !== 'detail' || cs.openId !== id;
    const focusWasIn = $('conf-detail').contains(document.activeElement);
    if (cs.openId !== id) {
      cs.joinUrl = null;
      cs.joinNotBefore = null;
      cs.guestUrl = null;
      cs.guestQr = null;
    }
    cs.openId = id;
    setOpen(r.json);
    cs.view = 'detail';
    render();
    // Only a request newly shown takes the focus (and the scroll), or one
    // whose redrawing took away the focused control: a refresh otherwise
    // leaves the reader, the keyboard and the pointer where they were.
    const focusLost = focusWasIn && !$('conf-detail').contains(document.activeElement);
    if (newlyShown || focusLost) $('conf-detail').focus({ preventScroll: false });
    cs.loads += 1;
  }

  /** A request as the server returned it after an action: shown and put in the list. */
  function setOpen(conf) {
    cs.open = conf;
    const i = cs.list.findIndex((c) => c.id === conf.id);
    if (i >= 0) cs.list[i] = conf;
    else cs.list.unshift(conf);
    renderList();
    renderDetail();
  }

  function backToList() {
    cs.view = 'list';
    cs.openId = null;
    cs.open = null;
    showError(null);
    render();
    loadList();
  }

  // -------------------------------------------------------------------------
  // One request.

  function row(key, value) {
    if (value == null || value === '') return [];
    return [tx('dt', key), h('dd', {}, value)];
  }

  function sexText(sex) {
    return sex ? h('span', { 'data-i18n': `conf_sex_${sex}` }, t(`conf_sex_${sex}`)) : null;
  }

  /** Everything the open request's drawing depends on. */
  function detailKey(c) {
    const nb = cs.joinFor === c.id ? cs.joinNotBefore : null;
    const joinState = cs.joinFor === c.id ? [cs.joinUrl, cs.popupBlocked, !!(nb && nb * 1000 > Date.now())] : null;
    return JSON.stringify([c, me(), getLang(), joinState, cs.guestUrl, !!cs.guestQr]);
  }

  function renderDetail() {
    const c = cs.open;
    const el = $('conf-detail');
    if (!c) {
      cs.renders += 1;
      drawnKey = null;
      fill(el);
      return;
    }
    // Drawn again only when something it shows changed: a refresh that
    // brings the same answer keeps every button where it is (the one under
    // the pointer is not swapped for a copy, which would lose the click) and
    // keeps what was typed in its forms.
    const key = detailKey(c);
    if (key === drawnKey && el.firstChild) return;
    drawnKey = key;
    cs.renders += 1;
    const rights = conferenceRights(c, me());
    const patient = c.patient || {};
    const sched = c.schedule;
    const consent = c.consent || {};
    const yesNo = (v) => h('span', { 'data-i18n': v ? 'conf_yes' : 'conf_no' }, t(v ? 'conf_yes' : 'conf_no'));

    const parts = [
      tx('button', 'console_back', { type: 'button', class: 'btn btn-secondary cs-back', onclick: backToList }),
      h('h2', { class: 'cs-detail-title', id: 'conf-detail-title' }, `${t('conf_request')} #${c.id}`),
      h('p', { class: 'cs-item-head' }, urgencyBadge(c.urgency), statusBadge(c.status), h('span', {}, c.specialty || '')),
      h('dl', { class: 'cs-dl' },
        row('conf_route', `${c.from_facility?.name || '?'} → ${c.to_facility?.name || '?'}`),
        row('conf_patient', [patient.name || '', patient.birth_year ? ` (${patient.birth_year})` : '', patient.sex ? ', ' : '', sexText(patient.sex)]),
        patient.address ? row('conf_address', patient.address) : [],
        patient.citizen_id ? row('conf_citizen_id', h('span', { id: 'conf-citizen-id' }, patient.citizen_id)) : [],
        patient.record_number ? row('conf_record_number', patient.record_number) : [],
        row('conf_requested_by', c.requested_by ? [c.requested_by.name, c.requested_by.licence_number ? ` · ${c.requested_by.licence_number}` : ''] : null),
        row('conf_requested_at', fmtVnDateTime(c.created_at)),
        row('conf_summary', h('span', { class: 'cs-pre' }, c.summary || '')),
        row('conf_question', h('span', { class: 'cs-pre' }, c.question || '')),
        row('conf_consent_title', h('span', { class: 'cs-consent' },
          tx('span', 'conf_consent_exam_short'), ': ', yesNo(consent.remote_examination), ' · ',
          tx('span', 'conf_consent_third_short'), ': ', yesNo(consent.third_parties), ' · ',
          tx('span', 'conf_consent_recording_short'), ': ', yesNo(consent.recording))),
        c.status === 'declined' ? row('conf_decline_reason', h('span', { class: 'cs-pre' }, c.decline_reason || '')) : [],
        c.status === 'cancelled' && c.cancelled ? [
          ...row('conf_cancelled_at', fmtVnDateTime(c.cancelled.at)),
          ...row('conf_cancel_reason', h('span', { class: 'cs-pre', id: 'conf-cancel-reason' }, c.cancelled.reason || '')),
        ] : []),
    ];

    // Attachments.
    const atts = c.attachments || [];
    parts.push(h('section', { class: 'cs-block', 'aria-labelledby': 'conf-att-title' },
      tx('h3', 'conf_attachments', { id: 'conf-att-title' }),
      atts.length ? h('ul', { class: 'cs-plain', id: 'conf-attachments' }, atts.map((a) => h('li', {},
        h('a', { href: `/api/v1/conferences/${c.id}/attachments/${a.id}`, download: a.name, class: 'cs-att' }, a.name),
        h('span', { class: 'muted-text' }, ` ${fmtBytes(a.size, getLang())} · ${fmtVnDateTime(a.uploaded_at)}`))))
        : tx('p', 'conf_no_attachments', { class: 'muted-text' }),
      h('ul', { class: 'cs-files', id: 'conf-uploads', 'aria-live': 'polite' }),
      rights.attach ? h('label', { class: 'tf', for: 'conf-more-files' },
        tx('span', 'conf_add_files', { class: 'tf-label' }),
        h('input', { id: 'conf-more-files', type: 'file', multiple: true, accept: $as('input', 'cf-files').accept, onchange: (ev) => {
          const files = [...ev.target.files];
          ev.target.value = '';
          queueUploads(c.id, files);
        } })) : null));

    // Schedule and invitees.
    if (sched) {
      parts.push(h('section', { class: 'cs-block', 'aria-labelledby': 'conf-sched-title' },
        tx('h3', 'conf_schedule', { id: 'conf-sched-title' }),
        h('dl', { class: 'cs-dl' },
          row('conf_starts_at', `${fmtVnDateTime(sched.starts_at)} – ${fmtVnTime(sched.starts_at + (sched.duration_min || 0) * 60)} (${t('conf_vn_time')})`),
          row('conf_chair', sched.chair ? sched.chair.name : null),
          c.secretary ? row('conf_secretary', c.secretary.name) : [],
          row('conf_invitees', h('ul', { class: 'cs-plain', id: 'conf-invitees' }, (sched.invitees || []).map((i) => h('li', {},
            [i.name, ' — ', staffRoleText(i.role), i.facility ? `, ${i.facility}` : '', i.licence_number ? ` · ${i.licence_number}` : '']))))),
        rights.join ? joinBlock(c) : null,
        rights.minutes ? exportBlock(sched.consultation_id, 'conf') : null));
    }
    if (rights.guestLink) parts.push(guestBlock(c));
    if (c.conclusion || rights.conclusion) parts.push(conclusionBlock(c, rights));
    if (rights.schedule) parts.push(scheduleBlock(c));
    if (rights.decline) parts.push(declineBlock(c));
    if (rights.reschedule && sched) parts.push(rescheduleBlock(c));
    if (rights.cancel) parts.push(cancelBlock(c));
    fill(el, parts);
    el.setAttribute('aria-labelledby', 'conf-detail-title');
    el.tabIndex = -1;
    renderUploads();
    if (rights.schedule) {
      fillSchedulePickers();
      loadInvitable();
    }
  }

  function staffRoleText(r) {
    return r === 'coordinator' || r === 'admin' ? t(`st_role_${r}`) : roleName(r);
  }

  function formError(id) {
    return h('p', { class: 'st-error', id, role: 'alert', hidden: true });
  }

  function setFormError(id, e) {
    const el = $(id);
    if (!el) return;
    el.hidden = !e;
    el.textContent = e ? (e.code ? ctx.errorText(e.code) : t(e.key)) : '';
    if (e) cs.error = e.code || e.key;
  }

  // ---- Join (invitees).

  function joinBlock(c) {
    const nb = cs.joinFor === c.id ? cs.joinNotBefore : null;
    const notYet = nb && nb * 1000 > Date.now();
    return h('div', { class: 'cs-join' },
      tx('button', 'conf_join', { type: 'button', class: 'btn btn-primary btn-big btn-block', id: 'conf-join-btn', onclick: () => join(c.id) }),
      notYet ? h('p', { class: 'st-notice', id: 'conf-join-note', role: 'status' }, tf('conf_join_not_yet', { at: fmtVnDateTime(nb) })) : null,
      cs.joinFor === c.id && cs.popupBlocked && !notYet ? tx('p', 'conf_popup_blocked', { class: 'st-notice', role: 'status' }) : null,
      cs.joinFor === c.id && cs.joinUrl && !notYet
        ? h('a', { class: 'btn btn-secondary btn-block', id: 'conf-join-link', href: cs.joinUrl, target: '_blank', rel: 'noopener' }, t('conf_open_call'))
        : null,
      formError('conf-join-error'));
  }

  async function join(id) {
    setFormError('conf-join-error', null);
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/join`, {});
    if (r.status !== 200 || !r.json || !r.json.url) {
      if (r.status !== 401) setFormError('conf-join-error', { code: r.code });
      return;
    }
    cs.joinFor = id;
    cs.joinUrl = ctx.sameOriginUrl(r.json.url);
    cs.joinNotBefore = Number.isFinite(r.json.not_before) ? r.json.not_before : null;
    ctx.log('join link for conference', id, 'not before', cs.joinNotBefore);
    const notYet = cs.joinNotBefore && cs.joinNotBefore * 1000 > Date.now();
    cs.popupBlocked = false;
    if (!notYet && !ctx.noopen) {
      // Still within the click's user activation (the answer is quick); a
      // blocked window leaves the "Mở phòng hội chẩn" link below the button.
      let w = null;
      try { w = window.open(cs.joinUrl, '_blank'); } catch (e) { ctx.log('window.open failed', e); }
      if (w) {
        try { w.opener = null; } catch { /* ignore */ }
      } else {
        cs.popupBlocked = true;
        ctx.log('the new window was blocked');
      }
    }
    renderDetail();
  }

  // ---- Guest link (the chair).

  function guestBlock(c) {
    return h('form', { class: 'st-form cs-block', id: 'conf-guest-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); guestLink(c.id); } },
      tx('h3', 'conf_guest_link', { class: 'cs-legend' }),
      tx('p', 'conf_guest_hint', { class: 'muted-text' }),
      h('label', { class: 'tf', for: 'cg-role' }, tx('span', 'console_role', { class: 'tf-label' }),
        h('select', { id: 'cg-role' },
          h('option', { value: 'patient' }, roleName('patient')), h('option', { value: 'guest' }, roleName('guest')))),
      h('label', { class: 'tf', for: 'cg-name' }, tx('span', 'console_name', { class: 'tf-label' }),
        h('input', { id: 'cg-name', type: 'text', maxlength: '100', required: true, autocomplete: 'off' })),
      h('label', { class: 'tf', for: 'cg-facility' }, h('span', { class: 'tf-label' }, tx('span', 'console_facility'), ' ', tx('span', 'q_optional', { class: 'tf-optional' })),
        h('input', { id: 'cg-facility', type: 'text', maxlength: '200', autocomplete: 'off' })),
      tx('button', 'conf_make_link', { type: 'submit', class: 'btn btn-primary', id: 'cg-submit' }),
      formError('cg-error'),
      cs.guestUrl ? h('div', { class: 'cs-copy' },
        h('label', { class: 'tf', for: 'cg-url' }, tx('span', 'conf_guest_url', { class: 'tf-label' }),
          h('input', { id: 'cg-url', type: 'text', readonly: true, value: cs.guestUrl })),
        tx('button', 'conf_copy', { type: 'button', class: 'btn btn-secondary', id: 'cg-copy', onclick: copyGuestUrl }),
        // Issue 12: the link as a QR code (drawn by the server from a POST body:
        // the token never goes into a URL) and through the phone's share sheet.
        tx('button', 'conf_qr', { type: 'button', class: 'btn btn-secondary', id: 'cg-qr-btn', onclick: showGuestQr }),
        tx('button', 'conf_share', { type: 'button', class: 'btn btn-secondary', id: 'cg-share', onclick: shareGuestUrl }),
        h('span', { class: 'muted-text', id: 'cg-copied', role: 'status' }),
        cs.guestQr ? h('img', { id: 'cg-qr', class: 'cs-qr', src: cs.guestQr, alt: t('conf_qr_alt') }) : null) : null);
  }

  async function guestLink(id) {
    const name = $as('input', 'cg-name').value.trim();
    if (!name) {
      setFormError('cg-error', { key: 'conf_err_guest_name' });
      $('cg-name').focus();
      return;
    }
    const body = { role: $as('select', 'cg-role').value, name };
    const facility = $as('input', 'cg-facility').value.trim();
    if (facility) body.facility = facility;
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/guest-link`, body);
    if ((r.status === 201 || r.status === 200) && r.json && r.json.url) {
      cs.guestUrl = ctx.sameOriginUrl(r.json.url);
      cs.guestQr = null;
      renderDetail();
      $('cg-url')?.focus();
      $as('input', 'cg-url')?.select();
    } else if (r.status !== 401) setFormError('cg-error', { code: r.code });
  }

  async function showGuestQr() {
    const url = cs.guestUrl;
    const qr = await fetchQrDataUrl(url);
    if (cs.guestUrl !== url) return;
    if (!qr) {
      $('cg-copied').textContent = t('conf_qr_failed');
      return;
    }
    cs.guestQr = qr;
    renderDetail();
  }

  async function shareGuestUrl() {
    const how = await shareOrCopy({ url: cs.guestUrl });
    $('cg-copied').textContent = how === 'copied' ? t('conf_copied') : how === 'failed' ? t('conf_copy_failed') : '';
  }

  async function copyGuestUrl() {
    const input = $as('input', 'cg-url');
    let ok = false;
    try {
      await navigator.clipboard.writeText(input.value);
      ok = true;
    } catch {
      input.select();
      try { ok = document.execCommand('copy'); } catch { ok = false; }
    }
    $('cg-copied').textContent = t(ok ? 'conf_copied' : 'conf_copy_failed');
  }

  // ---- Record exports (whoever may read the record: Permission::Export).

  function exportBlock(consultationId, prefix) {
    return exportButtons(ctx, consultationId, prefix, (e) => { showError(e); });
  }

  // ---- Ended records (visits and conferences), each with its export buttons.
  // Loaded when the section is opened (and on "Làm mới"), never on a timer:
  // a redraw would take the button from under a click.

  async function loadRecords() {
    if (!$as('details', 'conf-records').open) return;
    const r = await ctx.api('GET', '/api/v1/consultations?status=ended');
    const err = $('conf-records-error');
    if (r.status === 200 && r.json && Array.isArray(r.json.consultations)) {
      cs.records = r.json.consultations;
      err.hidden = true;
      renderRecords();
    } else if (r.status !== 401) {
      err.hidden = false;
      err.textContent = ctx.errorText(r.code);
    }
  }

  function renderRecords() {
    const list = cs.records || [];
    $('conf-records-empty').hidden = list.length > 0;
    fill($('conf-records-list'), list.map((k) => h('li', { class: 'cs-item', dataset: { id: k.id } },
      h('p', { class: 'cs-item-head' }, h('b', {}, k.title || k.id)),
      h('p', { class: 'muted-text' }, `${t(`conf_kind_${k.kind === 'conference' ? 'conference' : 'visit'}`)} · ${fmtVnDateTime(k.ended_at)}`),
      exportButtons(ctx, k.id, `rec-${k.id}`, (e) => showError(e)))));
  }

  // ---- Conclusion (chair, secretary) and minutes.

  function conclusionBlock(c, rights) {
    const k = c.conclusion;
    return h('section', { class: 'cs-block', 'aria-labelledby': 'conf-concl-title' },
      tx('h3', 'conf_conclusion', { id: 'conf-concl-title' }),
      k ? h('div', { id: 'conf-conclusion' }, h('p', { class: 'cs-pre' }, k.text),
        k.management_plan ? [tx('h4', 'conf_management_plan'), h('p', { class: 'cs-pre', id: 'conf-plan' }, k.management_plan)] : null,
        h('p', { class: 'muted-text' }, `${k.by ? k.by.name : ''} · ${fmtVnDateTime(k.at)}`)) : null,
      rights.conclusion ? h('form', { class: 'st-form', id: 'conf-concl-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); saveConclusion(c.id); } },
        h('label', { class: 'tf', for: 'cc-text' }, tx('span', k ? 'conf_conclusion_edit' : 'conf_conclusion_enter', { class: 'tf-label' }),
          h('textarea', { id: 'cc-text', maxlength: '20000', rows: '6', required: true }, k ? k.text : '')),
        h('label', { class: 'tf', for: 'cc-plan' }, tx('span', 'conf_management_plan', { class: 'tf-label' }),
          h('textarea', { id: 'cc-plan', maxlength: '20000', rows: '4' }, k && k.management_plan ? k.management_plan : '')),
        tx('button', 'conf_save', { type: 'submit', class: 'btn btn-primary', id: 'cc-submit' }),
        formError('cc-error')) : null);
  }

  async function saveConclusion(id) {
    const text = $as('textarea', 'cc-text').value.trim();
    if (!text) {
      setFormError('cc-error', { key: 'conf_err_conclusion' });
      return;
    }
    const body = { text };
    const plan = $as('textarea', 'cc-plan').value.trim();
    if (plan) body.management_plan = plan;
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/conclusion`, body);
    if (r.status === 200 && r.json && r.json.id != null) {
      setOpen(r.json);
      showNotice('conf_conclusion_saved');
    } else if (r.status !== 401) setFormError('cc-error', { code: r.code });
  }

  // ---- Schedule and decline (the target side).

  async function loadInvitable() {
    if (cs.staff || role() === 'doctor') return;
    const [s, f] = await Promise.all([ctx.api('GET', '/api/v1/staff'), ctx.api('GET', '/api/v1/facilities')]);
    if (f.status === 200 && f.json && Array.isArray(f.json.facilities)) cs.staffFacilities = f.json.facilities;
    if (s.status === 200 && s.json && Array.isArray(s.json.staff)) {
      cs.staff = s.json.staff.filter((x) => !x.disabled);
      fillSchedulePickers();
    } else if (s.status !== 401) setFormError('cs-error', { code: s.code });
  }

  function staffLabel(s) {
    const f = (cs.staffFacilities || []).find((x) => x.id === s.facility_id);
    return `${s.name} — ${staffRoleText(s.role)}${f ? `, ${f.name}` : ''}`;
  }

  function fillSchedulePickers() {
    const chair = $as('select', 'cs-chair');
    const box = $('cs-invitees');
    if (!chair || !box) return;
    const self = me().staff;
    if (role() === 'doctor') {
      fill(chair, h('option', { value: String(self.id) }, `${self.name} (${t('conf_you')})`));
      fill(box, tx('p', 'conf_doctor_invites_none', { class: 'muted-text' }));
      return;
    }
    if (!cs.staff) return;
    const keep = chair.value;
    // The chair is a doctor or a nurse (the server's rule); doctors first.
    const doctors = [...cs.staff.filter((s) => s.role === 'doctor'), ...cs.staff.filter((s) => s.role === 'nurse')];
    fill(chair, tx('option', 'conf_pick_chair', { value: '' }), doctors.map((s) => h('option', { value: String(s.id) }, staffLabel(s))));
    if (keep) chair.value = keep;
    const checked = new Set([.../** @type {NodeListOf<HTMLInputElement>} */ (box.querySelectorAll('input:checked'))].map((i) => i.value));
    const requester = cs.open && cs.open.requested_by ? cs.open.requested_by.staff_id : null;
    const invitable = cs.staff.filter((s) => (s.role === 'doctor' || s.role === 'nurse' || s.role === 'coordinator') && s.id !== requester);
    fill(box, invitable.map((s) => h('label', { class: 'check cs-invitee', dataset: { name: `${s.name} ${s.username}`.toLowerCase() } },
      h('input', { type: 'checkbox', value: String(s.id), checked: checked.has(String(s.id)), autocomplete: 'off' }),
      h('span', {}, staffLabel(s)))));
  }

  function filterInvitees() {
    const q = $as('input', 'cs-filter').value.trim().toLowerCase();
    for (const l of /** @type {NodeListOf<HTMLElement>} */ ($('cs-invitees').querySelectorAll('.cs-invitee'))) l.hidden = !!q && !l.dataset.name.includes(q);
  }

  function defaultStart() {
    const now = Math.floor(Date.now() / 1000) + 30 * 60;
    return Math.ceil(now / 900) * 900; // the next quarter hour, at least 30 min ahead
  }

  function scheduleBlock(c) {
    const doctor = role() === 'doctor';
    return h('form', { class: 'st-form cs-block', id: 'conf-schedule-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); schedule(c.id); } },
      tx('h3', 'conf_schedule_title', { class: 'cs-legend' }),
      h('div', { class: 'cs-row' },
        h('label', { class: 'tf', for: 'cs-start' }, tx('span', 'conf_starts_at_vn', { class: 'tf-label' }),
          h('input', { id: 'cs-start', type: 'datetime-local', required: true, value: toVnInputValue(defaultStart()), step: '60' })),
        h('label', { class: 'tf', for: 'cs-duration' }, tx('span', 'conf_duration', { class: 'tf-label' }),
          h('select', { id: 'cs-duration' }, [30, 45, 60, 90, 120].map((m) => h('option', { value: String(m), selected: m === 60 }, tf('st_minutes', { n: m })))))),
      h('label', { class: 'tf', for: 'cs-chair' }, tx('span', 'conf_chair', { class: 'tf-label' }), h('select', { id: 'cs-chair', required: true })),
      h('fieldset', { class: 'cs-invite-box' },
        tx('legend', 'conf_invitees', { class: 'tf-label' }),
        tx('p', 'conf_invitees_hint', { class: 'muted-text' }),
        doctor ? null : h('input', { id: 'cs-filter', type: 'search', 'aria-label': t('conf_filter_staff'), placeholder: t('conf_filter_staff'), oninput: filterInvitees, autocomplete: 'off' }),
        h('div', { id: 'cs-invitees', class: 'cs-invitees' }, tx('p', 'st_loading', { class: 'muted-text' }))),
      tx('button', 'conf_schedule_submit', { type: 'submit', class: 'btn btn-primary btn-big', id: 'cs-submit' }),
      formError('cs-error'));
  }

  async function schedule(id) {
    setFormError('cs-error', null);
    const startsAt = fromVnInputValue($as('input', 'cs-start').value);
    if (startsAt == null) {
      setFormError('cs-error', { key: 'conf_err_start' });
      $('cs-start').focus();
      return;
    }
    if (startsAt < Date.now() / 1000 - 60) {
      setFormError('cs-error', { key: 'conf_err_past' });
      $('cs-start').focus();
      return;
    }
    const chair = Number($as('select', 'cs-chair').value);
    if (!chair) {
      setFormError('cs-error', { key: 'conf_err_chair' });
      $('cs-chair').focus();
      return;
    }
    const invite = [.../** @type {NodeListOf<HTMLInputElement>} */ ($('cs-invitees').querySelectorAll('input:checked'))].map((i) => Number(i.value)).filter((x) => x && x !== chair);
    const body = { starts_at: startsAt, duration_min: Number($as('select', 'cs-duration').value), chair_staff_id: chair, invite_staff_ids: invite };
    $as('button', 'cs-submit').disabled = true;
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/schedule`, body);
    if ($('cs-submit')) $as('button', 'cs-submit').disabled = false;
    if (r.status === 200 && r.json && r.json.id != null) {
      setOpen(r.json);
      showNotice('conf_scheduled_ok');
    } else if (r.status !== 401) setFormError('cs-error', { code: r.code });
  }

  function declineBlock(c) {
    return h('details', { class: 'cs-block', id: 'conf-decline' },
      tx('summary', 'conf_decline'),
      h('form', { class: 'st-form', id: 'conf-decline-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); decline(c.id); } },
        h('label', { class: 'tf', for: 'cd-reason' }, tx('span', 'conf_decline_reason', { class: 'tf-label' }),
          h('textarea', { id: 'cd-reason', maxlength: '4000', rows: '3', required: true })),
        tx('button', 'conf_decline_submit', { type: 'submit', class: 'btn btn-danger', id: 'cd-submit' }),
        formError('cd-error')));
  }

  async function decline(id) {
    const reason = $as('textarea', 'cd-reason').value.trim();
    if (!reason) {
      setFormError('cd-error', { key: 'conf_err_reason' });
      $('cd-reason').focus();
      return;
    }
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/decline`, { reason });
    if (r.status === 200 && r.json && r.json.id != null) {
      setOpen(r.json);
      showNotice('conf_declined_ok');
    } else if (r.status !== 401) setFormError('cd-error', { code: r.code });
  }

  // -------------------------------------------------------------------------
  // Reschedule and cancel a scheduled conference (docs/api.md), by those who
  // schedule; the server refuses once someone has entered the room.

  function rescheduleBlock(c) {
    const sched = c.schedule;
    const durations = [30, 45, 60, 90, 120];
    if (sched.duration_min && !durations.includes(sched.duration_min)) durations.push(sched.duration_min);
    durations.sort((a, b) => a - b);
    // The input's own display follows the browser's locale: the line under it
    // says the chosen time as dd/mm/yyyy HH:MM, Vietnam time, whatever that is.
    const showNew = () => {
      const at = fromVnInputValue($as('input', 'cr-start').value);
      $('cr-start-vn').textContent = at == null ? '' : `${t('conf_new_time')} ${fmtVnDateTime(at)} (${t('conf_vn_time')})`;
    };
    const block = h('details', { class: 'cs-block', id: 'conf-reschedule' },
      tx('summary', 'conf_reschedule', { id: 'conf-reschedule-summary' }),
      h('form', { class: 'st-form', id: 'conf-reschedule-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); reschedule(c.id); } },
        tx('p', 'conf_reschedule_hint', { class: 'muted-text' }),
        h('div', { class: 'cs-row' },
          h('label', { class: 'tf', for: 'cr-start' }, tx('span', 'conf_starts_at_vn', { class: 'tf-label' }),
            h('input', { id: 'cr-start', type: 'datetime-local', required: true, value: toVnInputValue(sched.starts_at), step: '60', oninput: showNew })),
          h('label', { class: 'tf', for: 'cr-duration' }, tx('span', 'conf_duration', { class: 'tf-label' }),
            h('select', { id: 'cr-duration' }, durations.map((m) => h('option', { value: String(m), selected: m === sched.duration_min }, tf('st_minutes', { n: m })))))),
        h('p', { class: 'cs-newtime', id: 'cr-start-vn', 'aria-live': 'polite' }),
        tx('button', 'conf_reschedule_submit', { type: 'submit', class: 'btn btn-primary', id: 'cr-submit' }),
        formError('cr-error')));
    queueMicrotask(() => { if ($('cr-start')) showNew(); });
    return block;
  }

  /** A refusal of reschedule or cancel: a conflict says why in words; others as the server said. */
  function changeError(r) {
    return r.status === 409 ? { key: 'conf_err_not_changeable' } : { code: r.code };
  }

  async function reschedule(id) {
    setFormError('cr-error', null);
    const startsAt = fromVnInputValue($as('input', 'cr-start').value);
    if (startsAt == null) {
      setFormError('cr-error', { key: 'conf_err_start' });
      $('cr-start').focus();
      return;
    }
    if (startsAt < Date.now() / 1000) {
      setFormError('cr-error', { key: 'conf_err_past' });
      $('cr-start').focus();
      return;
    }
    $as('button', 'cr-submit').disabled = true;
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/reschedule`, {
      starts_at: startsAt, duration_min: Number($as('select', 'cr-duration').value),
    });
    if ($('cr-submit')) $as('button', 'cr-submit').disabled = false;
    if (r.status === 200 && r.json && r.json.id != null) {
      setOpen(r.json);
      showNotice('conf_rescheduled_ok');
    } else if (r.status !== 401) setFormError('cr-error', changeError(r));
  }

  function cancelBlock(c) {
    const ask = (on) => {
      $('cx-confirm').hidden = !on;
      $('cx-submit').hidden = on;
      $as('textarea', 'cx-reason').readOnly = on;
      (on ? $('cx-no') : $('cx-submit')).focus();
    };
    return h('details', { class: 'cs-block', id: 'conf-cancel' },
      tx('summary', 'conf_cancel', { id: 'conf-cancel-summary' }),
      h('form', { class: 'st-form', id: 'conf-cancel-form', novalidate: true, onsubmit: (ev) => {
        ev.preventDefault();
        setFormError('cx-error', null);
        if (!$as('textarea', 'cx-reason').value.trim()) {
          setFormError('cx-error', { key: 'conf_err_cancel_reason' });
          $('cx-reason').focus();
          return;
        }
        ask(true);
      } },
        h('label', { class: 'tf', for: 'cx-reason' }, tx('span', 'conf_cancel_reason', { class: 'tf-label' }),
          h('textarea', { id: 'cx-reason', maxlength: '4000', rows: '3', required: true })),
        tx('button', 'conf_cancel_submit', { type: 'submit', class: 'btn btn-danger', id: 'cx-submit' }),
        h('div', { class: 'cs-confirm', id: 'cx-confirm', role: 'alertdialog', 'aria-labelledby': 'cx-confirm-text', hidden: true },
          tx('p', 'conf_cancel_confirm', { id: 'cx-confirm-text' }),
          h('div', { class: 'cs-actions' },
            tx('button', 'conf_cancel_yes', { type: 'button', class: 'btn btn-danger', id: 'cx-yes', onclick: () => cancelConference(c.id) }),
            tx('button', 'conf_cancel_no', { type: 'button', class: 'btn btn-secondary', id: 'cx-no', onclick: () => ask(false) }))),
        formError('cx-error')));
  }

  async function cancelConference(id) {
    const reason = $as('textarea', 'cx-reason').value.trim();
    $as('button', 'cx-yes').disabled = true;
    const r = await ctx.api('POST', `/api/v1/conferences/${id}/cancel`, { reason });
    if ($('cx-yes')) $as('button', 'cx-yes').disabled = false;
    if (r.status === 200 && r.json && r.json.id != null) {
      setOpen(r.json);
      showNotice('conf_cancelled_ok');
    } else if (r.status !== 401) setFormError('cx-error', changeError(r));
  }

  // -------------------------------------------------------------------------
  // A new request.

  let chosenFiles = [];

  async function openForm() {
    showError(null);
    showNotice(null);
    cs.view = 'form';
    setFormErrorForm(null);
    for (const id of ['cf-consent-exam', 'cf-consent-third', 'cf-consent-recording']) $as('input', id).checked = false;
    render();
    $('cf-to').focus();
    if (!cs.facilities) {
      fill($('cf-to'), tx('option', 'st_loading', { value: '' }));
      const r = await ctx.api('GET', '/api/v1/facilities?upper=1');
      if (r.status === 200 && r.json && Array.isArray(r.json.facilities)) {
        cs.facilities = r.json.facilities.filter((f) => f.tier === 'province' || f.tier === 'cdc');
      } else {
        if (r.status !== 401) setFormErrorForm({ code: r.code });
        fill($('cf-to'));
        return;
      }
    }
    const keep = $as('select', 'cf-to').value;
    fill($('cf-to'), tx('option', 'conf_pick_facility', { value: '' }),
      cs.facilities.map((f) => h('option', { value: String(f.id) }, f.name)));
    if (keep) $as('select', 'cf-to').value = keep;
    else if (cs.facilities.length === 1) $as('select', 'cf-to').value = String(cs.facilities[0].id);
  }

  function closeForm() {
    cs.view = 'list';
    render();
  }

  function setFormErrorForm(e) {
    const el = $('cf-error');
    el.hidden = !e;
    el.textContent = e ? (e.code ? ctx.errorText(e.code) : t(e.key)) : '';
    if (e) cs.error = e.code || e.key;
  }

  function renderFileList() {
    fill($('cf-file-list'), chosenFiles.map((f) => {
      const problem = attachmentProblem(f);
      return h('li', { class: problem ? 'cs-file is-bad' : 'cs-file' },
        h('span', { class: 'cs-file-name' }, f.name), ` ${fmtBytes(f.size, getLang())}`,
        problem ? h('span', { class: 'cs-file-problem' }, ` — ${t(`conf_file_${problem}`)}`) : null);
    }));
  }

  function onFilesChosen() {
    chosenFiles = [...$as('input', 'cf-files').files];
    renderFileList();
  }

  async function submitRequest(ev) {
    ev.preventDefault();
    if (cs.busy) return;
    setFormErrorForm(null);
    const need = (id, key) => {
      if (/** @type {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} */ ($(id)).value.trim()) return false;
      setFormErrorForm({ key });
      $(id).setAttribute('aria-invalid', 'true');
      $(id).focus();
      return true;
    };
    for (const id of ['cf-to', 'cf-specialty', 'cf-pname', 'cf-summary', 'cf-question']) $(id).removeAttribute('aria-invalid');
    if (need('cf-to', 'conf_err_facility') || need('cf-specialty', 'conf_err_specialty') || need('cf-pname', 'conf_err_patient')
      || need('cf-summary', 'conf_err_summary') || need('cf-question', 'conf_err_question')) return;
    const yearText = $as('input', 'cf-pyear').value.trim();
    const year = yearText ? Number(yearText) : null;
    if (yearText && !(Number.isInteger(year) && year >= 1900 && year <= new Date().getFullYear())) {
      setFormErrorForm({ key: 'conf_err_birth_year' });
      $('cf-pyear').focus();
      return;
    }
    // Spaces as people group the digits are dropped; then exactly 12 digits.
    const citizenId = $as('input', 'cf-pcitizen').value.replace(/\s+/g, '');
    $('cf-pcitizen').removeAttribute('aria-invalid');
    if (citizenId && !/^[0-9]{12}$/.test(citizenId)) {
      setFormErrorForm({ key: 'conf_err_citizen_id' });
      $('cf-pcitizen').setAttribute('aria-invalid', 'true');
      $('cf-pcitizen').focus();
      return;
    }
    if (!$as('input', 'cf-consent-exam').checked) {
      setFormErrorForm({ key: 'conf_err_consent' });
      $('cf-consent-exam').focus();
      return;
    }
    const bad = chosenFiles.find((f) => attachmentProblem(f));
    if (bad) {
      setFormErrorForm({ key: `conf_file_${attachmentProblem(bad)}` });
      $('cf-files').focus();
      return;
    }
    const patient = { name: $as('input', 'cf-pname').value.trim() };
    if (year) patient.birth_year = year;
    if ($as('select', 'cf-psex').value) patient.sex = $as('select', 'cf-psex').value;
    const address = $as('input', 'cf-paddress').value.trim();
    if (address) patient.address = address;
    const recordNumber = $as('input', 'cf-precord').value.trim();
    if (recordNumber) patient.record_number = recordNumber;
    if (citizenId) patient.citizen_id = citizenId;
    const body = {
      to_facility_id: Number($as('select', 'cf-to').value),
      specialty: $as('input', 'cf-specialty').value.trim(),
      urgency: /** @type {HTMLInputElement | null} */ (document.querySelector('input[name="cf-urgency"]:checked'))?.value || 'routine',
      patient,
      summary: $as('textarea', 'cf-summary').value.trim(),
      question: $as('textarea', 'cf-question').value.trim(),
      consent: {
        text_version: consentTextVersion(getLang(), { conference: true }),
        remote_examination: true,
        third_parties: $as('input', 'cf-consent-third').checked,
        recording: $as('input', 'cf-consent-recording').checked,
      },
    };
    cs.busy = true;
    $as('button', 'cf-submit').disabled = true;
    const r = await ctx.api('POST', '/api/v1/conferences', body);
    cs.busy = false;
    $as('button', 'cf-submit').disabled = false;
    if ((r.status === 201 || r.status === 200) && r.json && r.json.id != null) {
      ctx.log('conference requested', r.json.id);
      const files = chosenFiles;
      resetForm();
      cs.view = 'detail';
      cs.openId = r.json.id;
      cs.joinUrl = null;
      cs.guestUrl = null;
      cs.guestQr = null;
      setOpen(r.json);
      showNotice('conf_requested_ok');
      render();
      queueUploads(r.json.id, files);
      return;
    }
    if (r.status !== 401) setFormErrorForm({ code: r.code });
  }

  function resetForm() {
    $as('form', 'conf-form').reset();
    chosenFiles = [];
    renderFileList();
  }

  // -------------------------------------------------------------------------
  // Uploads, one at a time, with progress.

  function queueUploads(confId, files) {
    for (const file of files) {
      const problem = attachmentProblem(file);
      cs.uploads.push({
        key: ++uploadSeq, confId, file, name: file.name, size: file.size,
        state: problem ? 'refused' : 'waiting', progress: 0, code: problem ? null : null, problem,
      });
    }
    renderUploads();
    pumpUploads();
  }

  let uploading = false;

  async function pumpUploads() {
    if (uploading) return;
    const next = cs.uploads.find((u) => u.state === 'waiting');
    if (!next) return;
    uploading = true;
    next.state = 'uploading';
    renderUploads();
    const r = await uploadFile(next, (p) => { next.progress = p; renderUploadProgress(next); });
    uploading = false;
    if (r.status === 201 || r.status === 200) {
      next.state = 'done';
      next.progress = 1;
      ctx.log('uploaded', next.name);
      if (cs.open && cs.open.id === next.confId && r.json && r.json.id != null) {
        cs.open.attachments = [...(cs.open.attachments || []).filter((a) => a.id !== r.json.id), r.json];
        const done = cs.uploads.filter((u) => u.confId === next.confId && u.state === 'done');
        cs.uploads = cs.uploads.filter((u) => !done.includes(u));
        renderDetail();
      }
    } else {
      if (r.status === 401) ctx.unauthorized();
      next.state = 'failed';
      next.code = r.code;
    }
    renderUploads();
    pumpUploads();
  }

  function uploadFile(u, onProgress) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `/api/v1/conferences/${u.confId}/attachments?name=${encodeURIComponent(u.name)}`);
      xhr.setRequestHeader('Content-Type', attachmentType(u.name, u.file.type));
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        let json = null;
        try { json = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        resolve({ status: xhr.status, json, code: ctx.codeOf(xhr.status, json) });
      };
      xhr.onerror = () => resolve({ status: 0, json: null, code: 'network_error' });
      xhr.send(u.file);
    });
  }

  function renderUploadProgress(u) {
    const bar = /** @type {HTMLProgressElement | null} */ (document.querySelector(`#conf-uploads li[data-key="${u.key}"] progress`));
    if (bar) bar.value = Math.round(u.progress * 100);
  }

  function renderUploads() {
    const ul = $('conf-uploads');
    if (!ul) return;
    const mine = cs.uploads.filter((u) => cs.open && u.confId === cs.open.id);
    fill(ul, mine.map((u) => h('li', { class: `cs-file cs-up-${u.state}`, dataset: { key: u.key } },
      h('span', { class: 'cs-file-name' }, u.name), ` ${fmtBytes(u.size, getLang())} `,
      u.state === 'uploading' || u.state === 'waiting'
        ? h('progress', { max: '100', value: String(Math.round(u.progress * 100)), 'aria-label': tf('conf_uploading', { name: u.name }) }) : null,
      h('span', { class: 'cs-up-state' }, u.state === 'failed' ? ` ${ctx.errorText(u.code)}`
        : u.state === 'refused' ? ` ${t(`conf_file_${u.problem}`)}` : ` ${t(`conf_upload_${u.state}`)}`),
      u.state === 'failed' ? h('button', { type: 'button', class: 'btn btn-secondary cs-small', onclick: () => { u.state = 'waiting'; u.progress = 0; renderUploads(); pumpUploads(); } }, t('retry')) : null)));
  }

  // -------------------------------------------------------------------------
  // Wiring.

  $('conf-new-btn').addEventListener('click', openForm);
  $('cf-cancel').addEventListener('click', closeForm);
  $('conf-form').addEventListener('submit', submitRequest);
  $('cf-files').addEventListener('change', onFilesChosen);
  $('conf-refresh-btn').addEventListener('click', () => (cs.view === 'detail' && cs.openId != null ? openRequest(cs.openId) : (loadList(), loadRecords())));
  $('conf-records').addEventListener('toggle', loadRecords);
  $('conf-sort').addEventListener('change', () => { cs.sort = $as('select', 'conf-sort').value; renderList(); });

  return {
    /** The tab is shown: load, and keep the list fresh while it stays shown. */
    show() {
      shown = true;
      if (cs.view === 'list') loadList();
      clearInterval(listTimer);
      listTimer = setInterval(() => {
        if (shown && cs.view === 'list' && document.visibilityState === 'visible') loadList();
      }, LIST_REFRESH_MS);
    },
    hide() {
      shown = false;
      clearInterval(listTimer);
      listTimer = null;
    },
    /** Signed in: load once for the badge. */
    enter() { loadList(); },
    reset() {
      this.hide();
      Object.assign(cs, {
        list: [], loaded: false, view: 'list', openId: null, open: null, facilities: null, staff: null,
        staffFacilities: null, uploads: [], joinUrl: null, joinNotBefore: null, joinFor: null, guestUrl: null, error: null,
      });
      errorLine = null;
      noticeKey = null;
      drawnKey = null;
      resetForm();
      fill($('conf-list'));
      fill($('conf-detail'));
      cs.records = null;
      $as('details', 'conf-records').open = false;
      fill($('conf-records-list'));
    },
    render,
    /** A language switch: labels relabel themselves; rebuild what mixes text and data. */
    relabel() {
      renderList();
      if (cs.records) renderRecords();
      if (cs.view === 'detail' && !document.querySelector('#conf-detail input:focus, #conf-detail textarea:focus')) renderDetail();
      fillSchedulePickers();
      render();
    },
    maxBytes: MAX_ATTACHMENT_BYTES,
  };
}
