// @ts-check
// What the staff console's tabs share: Vietnam-time conversions, ordering
// of conference requests, file checks, and a small DOM builder. The pure
// functions use no DOM (web-client/test/console.test.mjs runs them in Node);
// `h` touches `document` only when called.

/** Vietnam time is UTC+7 all year (no daylight saving). */
export const VN_OFFSET_SECS = 7 * 3600;

const pad = (n) => String(n).padStart(2, '0');

/** The parts of a Unix time in Vietnam time: {y, m (1–12), d, hh, mm, weekday (0 = Monday)}. */
export function vnParts(unixSecs) {
  const d = new Date((Math.floor(unixSecs) + VN_OFFSET_SECS) * 1000);
  return {
    y: d.getUTCFullYear(), m: d.getUTCMonth() + 1, d: d.getUTCDate(),
    hh: d.getUTCHours(), mm: d.getUTCMinutes(), weekday: (d.getUTCDay() + 6) % 7,
  };
}

/** `dd/mm/yyyy HH:MM` in Vietnam time (as the minutes print it); '' for no time. */
export function fmtVnDateTime(unixSecs) {
  if (!Number.isFinite(unixSecs)) return '';
  const p = vnParts(unixSecs);
  return `${pad(p.d)}/${pad(p.m)}/${p.y} ${pad(p.hh)}:${pad(p.mm)}`;
}

/** `HH:MM` in Vietnam time. */
export function fmtVnTime(unixSecs) {
  if (!Number.isFinite(unixSecs)) return '';
  const p = vnParts(unixSecs);
  return `${pad(p.hh)}:${pad(p.mm)}`;
}

/** The value of an `<input type="datetime-local">` showing this time in Vietnam: `yyyy-mm-ddTHH:MM`. */
export function toVnInputValue(unixSecs) {
  const p = vnParts(unixSecs);
  return `${p.y}-${pad(p.m)}-${pad(p.d)}T${pad(p.hh)}:${pad(p.mm)}`;
}

/** The value of an `<input type="date">` for this time's day in Vietnam: `yyyy-mm-dd`. */
export function toVnDateValue(unixSecs) {
  return toVnInputValue(unixSecs).slice(0, 10);
}

/**
 * A `datetime-local` value (`yyyy-mm-ddTHH:MM`, seconds allowed) read as
 * Vietnam time → Unix seconds; null when it is not a real date and time.
 */
export function fromVnInputValue(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(String(value || '').trim());
  if (!m) return null;
  const [y, mo, d, hh, mm, ss] = [m[1], m[2], m[3], m[4], m[5], m[6] || '0'].map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 59) return null;
  const ms = Date.UTC(y, mo - 1, d, hh, mm, ss);
  const check = new Date(ms);
  if (check.getUTCDate() !== d || check.getUTCMonth() !== mo - 1) return null; // 31/02 …
  return ms / 1000 - VN_OFFSET_SECS;
}

/** A `date` value (`yyyy-mm-dd`) → Unix seconds at 00:00 that day in Vietnam; null if not a date. */
export function fromVnDateValue(value) {
  return fromVnInputValue(`${String(value || '').trim()}T00:00`);
}

/**
 * The report period of two `date` inputs, both days included, as the API's
 * `from` (inclusive) and `to` (exclusive) Unix seconds; null when a date is
 * missing or `to` is before `from`.
 */
export function vnDayRange(fromDate, toDate) {
  const from = fromVnDateValue(fromDate);
  const toStart = fromVnDateValue(toDate);
  if (from == null || toStart == null || toStart < from) return null;
  return { from, to: toStart + 86_400 };
}

/** `HH:MM` (00:00–24:00) → minutes after midnight; null otherwise. */
export function parseHhMm(text) {
  const m = /^(\d{1,2}):(\d{2})$/.exec(String(text || '').trim());
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (min > 59 || h > 24 || (h === 24 && min !== 0)) return null;
  return h * 60 + min;
}

/** Minutes after midnight → `HH:MM` (1440 → `24:00`). */
export function fmtMinutes(mins) {
  return `${pad(Math.floor(mins / 60))}:${pad(mins % 60)}`;
}

// ---------------------------------------------------------------------------
// Conference requests.

export const URGENCIES = Object.freeze(['emergency', 'urgent', 'routine']);
const URGENCY_RANK = { emergency: 0, urgent: 1, routine: 2 };
const STATUS_RANK = { requested: 0, scheduled: 1, held: 2, declined: 3 };

/** Lower first: emergency, urgent, routine; anything unknown last. */
export function urgencyRank(urgency) {
  return URGENCY_RANK[urgency] ?? 3;
}

/**
 * The requests ordered for the list: `newest` (by `created_at`, then id,
 * newest first — the server's order), or `urgency`: open requests first
 * (requested, then scheduled by start time), most urgent first within
 * each, then newest. Returns a new array.
 */
export function sortConferences(list, mode = 'newest') {
  const newest = (a, b) => (b.created_at ?? 0) - (a.created_at ?? 0) || (b.id ?? 0) - (a.id ?? 0);
  const out = [...(list || [])];
  if (mode !== 'urgency') return out.sort(newest);
  return out.sort((a, b) => {
    const s = (STATUS_RANK[a.status] ?? 4) - (STATUS_RANK[b.status] ?? 4);
    if (s) return s;
    const u = urgencyRank(a.urgency) - urgencyRank(b.urgency);
    if (u) return u;
    if (a.status === 'scheduled' && a.schedule && b.schedule) {
      const st = (a.schedule.starts_at ?? 0) - (b.schedule.starts_at ?? 0);
      if (st) return st;
    }
    return newest(a, b);
  });
}

/**
 * What the signed-in staff member may do with a request, as far as the
 * client can tell (the server decides; this only chooses what to show).
 * `me` is the /api/v1/me answer.
 */
export function conferenceRights(conf, me) {
  const staff = (me && me.staff) || {};
  const facility = (me && me.facility) || {};
  const myId = staff.id;
  const toId = conf && conf.to_facility && conf.to_facility.id;
  const fromId = conf && conf.from_facility && conf.from_facility.id;
  const sched = conf && conf.schedule;
  const coordinatorLike = staff.role === 'coordinator' || staff.role === 'admin';
  const scopeHasTo = facility.tier === 'province' || facility.id === toId;
  const mayDecide = (coordinatorLike && scopeHasTo) || (staff.role === 'doctor' && facility.id === toId);
  const isChair = !!(sched && sched.chair && sched.chair.staff_id === myId);
  const invited = !!(sched && (isChair || (sched.invitees || []).some((i) => i.staff_id === myId)));
  const isSecretary = !!(sched && myId != null && conf.secretary_staff_id === myId);
  const open = conf && (conf.status === 'requested' || conf.status === 'scheduled');
  const sideOf = (id) => facility.tier === 'province' && coordinatorLike ? true : facility.id === id;
  return {
    schedule: !!conf && conf.status === 'requested' && mayDecide,
    decline: !!conf && conf.status === 'requested' && mayDecide,
    // Before it starts (the server also refuses once someone has entered).
    reschedule: !!conf && conf.status === 'scheduled' && mayDecide,
    cancel: !!conf && conf.status === 'scheduled' && mayDecide,
    join: !!conf && conf.status === 'scheduled' && invited,
    guestLink: !!conf && conf.status === 'scheduled' && isChair,
    conclusion: !!conf && (conf.status === 'scheduled' || conf.status === 'held') && (isChair || isSecretary),
    minutes: !!(sched && sched.consultation_id) && (invited || sideOf(toId) || sideOf(fromId)),
    attach: !!open && (sideOf(fromId) || mayDecide),
    chairOnlySelf: staff.role === 'doctor',
    isChair,
    invited,
  };
}

// ---------------------------------------------------------------------------
// Attachments.

/** Most a single attachment may weigh (the server's limit too). */
export const MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024;

export const ATTACHMENT_TYPES = Object.freeze([
  'image/jpeg', 'image/png', 'application/pdf', 'application/dicom', 'video/mp4', 'text/plain',
]);

const TYPE_BY_EXT = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', pdf: 'application/pdf',
  dcm: 'application/dicom', dicom: 'application/dicom', mp4: 'video/mp4', txt: 'text/plain',
};

/** The Content-Type to send for a file (phones often give none for DICOM): null if not allowed. */
export function attachmentType(name, browserType) {
  const t = String(browserType || '').toLowerCase();
  if (ATTACHMENT_TYPES.includes(t)) return t;
  const ext = String(name || '').toLowerCase().split('.').pop();
  return TYPE_BY_EXT[ext] || null;
}

/** Why a file cannot be attached (`too_large`, `type`), or null. */
export function attachmentProblem(file) {
  if (!file) return 'type';
  if (file.size > MAX_ATTACHMENT_BYTES) return 'too_large';
  if (!attachmentType(file.name, file.type)) return 'type';
  return null;
}

/** 183211 → "179 KB"; 3.5 MiB → "3,5 MB" in Vietnamese. */
export function fmtBytes(n, lang = 'vi') {
  if (!Number.isFinite(n) || n < 0) return '';
  let text;
  if (n < 1024) text = `${n} B`;
  else if (n < 1024 * 1024) text = `${Math.round(n / 1024)} KB`;
  else text = `${(n / (1024 * 1024)).toFixed(1)} MB`;
  return lang === 'vi' ? text.replace('.', ',') : text;
}

// ---------------------------------------------------------------------------
// The translated text of an API error.

/**
 * The error code to show for an API answer: its `error.code`, except where
 * the HTTP status says more (409: the value is taken; 413: too large; 429:
 * too many); `network_error` when the server was not reached.
 */
export function apiErrorCode(status, json) {
  const code = json && json.error && typeof json.error.code === 'string' ? json.error.code : null;
  if (status === 0) return 'network_error';
  if (status === 409) return 'conflict';
  if (status === 413) return 'payload_too_large';
  if (status === 429) return 'too_many_attempts';
  if (code) return code;
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status >= 500) return 'internal';
  return 'unknown_error';
}

// ---------------------------------------------------------------------------
// DOM.

/**
 * The element with this id, of the type its `tag` names: the page's HTML
 * (or the code that built the element) makes it one. This is for the type
 * checker only (no check at run time, as `getElementById` makes none).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} id
 * @returns {HTMLElementTagNameMap[K]}
 */
export function $as(tag, id, doc = globalThis.document) {
  return /** @type {HTMLElementTagNameMap[K]} */ (doc.getElementById(id));
}

/**
 * h('button', {class: 'btn', type: 'button', onclick: f, dataset: {id: 3}}, 'text', child…):
 * an element; `null`/`false` children are skipped, strings become text.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// ---- Issue 12 (console): sharing links, QR codes, drawing attention.

/**
 * Shares a link through the device's share sheet where there is one (a
 * phone's Web Share API), else copies it to the clipboard. Resolves to
 * 'shared', 'cancelled' (the person closed the sheet), 'copied' or 'failed'.
 * `nav` and `doc` are parameters so that Node tests can pass stand-ins.
 */
/**
 * @param {{ url: string, title?: string, text?: string }} what
 * @param {Navigator} [nav]
 * @param {Document} [doc]
 */
export async function shareOrCopy({ url, title, text }, nav = globalThis.navigator, doc = globalThis.document) {
  const data = { url, title: title || undefined, text: text || undefined };
  if (nav && typeof nav.share === 'function' && (typeof nav.canShare !== 'function' || nav.canShare(data))) {
    try {
      await nav.share(data);
      return 'shared';
    } catch (e) {
      if (e && e.name === 'AbortError') return 'cancelled';
      // NotAllowedError and the like: copying still helps.
    }
  }
  try {
    await nav.clipboard.writeText(url);
    return 'copied';
  } catch { /* no clipboard permission (or no clipboard) */ }
  if (doc && doc.body && typeof doc.execCommand === 'function') {
    const ta = doc.createElement('textarea');
    ta.value = url;
    ta.setAttribute('readonly', '');
    ta.className = 'sr-only';
    doc.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = doc.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    if (ok) return 'copied';
  }
  return 'failed';
}

/** An SVG document (ASCII, from the server) as a `data:` URL for an `<img>` (the CSP allows `data:` images, not inline markup). */
export function svgDataUrl(svg) {
  const text = String(svg);
  // Node (the unit tests) before btoa was global had only Buffer.
  const b64 = typeof btoa === 'function' ? btoa(text)
    // @ts-expect-error Buffer is Node's, absent from the DOM types; reached only under Node.
    : Buffer.from(text, 'latin1').toString('base64');
  return `data:image/svg+xml;base64,${b64}`;
}

/**
 * The tab's title with a count of what waits for the person ("(2) …"),
 * or the plain title when nothing does.
 */
export function flaggedTitle(base, count) {
  return count > 0 ? `(${count}) ${base}` : base;
}

/**
 * A QR code of a link, drawn by the server (`POST /api/v1/qr`, staff only:
 * a join link's token travels in the body, never in a URL), as a `data:`
 * URL for an `<img>`; null when it could not be had.
 */
export async function fetchQrDataUrl(url) {
  try {
    const res = await fetch('/api/v1/qr', {
      method: 'POST',
      cache: 'no-store',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'image/svg+xml' },
      body: JSON.stringify({ url }),
    });
    if (!res.ok) return null;
    return svgDataUrl(await res.text());
  } catch {
    return null;
  }
}

/** A favicon with a red dot: something waits in this tab. */
const FLAG_ICON = svgDataUrl('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
  + '<rect width="16" height="16" rx="3" fill="#0b5d52"/><circle cx="11" cy="5" r="4.5" fill="#d93025"/></svg>');

/**
 * Flags the tab for something the person has not seen: a red-dot favicon
 * while the tab is in the background or without focus, cleared as soon as
 * it is shown and focused. (The title's "(n)" says what still waits; this
 * says "look".) `flagged` is for tests.
 */
export function createTabFlag(win = globalThis) {
  const doc = win.document;
  let link = null;
  let plain = null;
  const seenNow = () => doc.visibilityState === 'visible' && (typeof doc.hasFocus !== 'function' || doc.hasFocus());
  const flag = {
    flagged: false,
    raise() {
      if (seenNow()) return false;
      if (!link) {
        link = /** @type {HTMLLinkElement | null} */ (doc.querySelector('link[rel~="icon"]')) || doc.head.appendChild(doc.createElement('link'));
        link.rel = 'icon';
        plain = link.getAttribute('href') || 'data:,';
      }
      link.href = FLAG_ICON;
      flag.flagged = true;
      return true;
    },
    clear() {
      if (!flag.flagged) return;
      if (link) link.href = plain;
      flag.flagged = false;
    },
  };
  const onSeen = () => { if (seenNow()) flag.clear(); };
  win.addEventListener('focus', onSeen);
  doc.addEventListener('visibilitychange', onSeen);
  return flag;
}
