// Helpers for the staff console's browser tests (tests/11-…, tests/12-…):
// directory set-up through the admin API, console pages, sign-in with the
// authenticator's code computed here.

import {
  BASE, openParticipant, waitFor, sleep, adminPost, totpCode, waitForPageState, pageGlobal, Participant, clickSettled,
} from './harness.mjs';

export const tag = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** A facility of the given tier (names made unique: tests share a server). */
export async function facility(name, tier, parent_id) {
  const body = { name: `${name} ${tag()}`, tier };
  if (parent_id != null) body.parent_id = parent_id;
  return adminPost('/api/v1/facilities', body);
}

/** A staff account with a known password; doctors and nurses get a practitioner record. */
export async function account(fac, role, name, specialty = 'Nội khoa') {
  const t = tag();
  const body = { username: `${role.slice(0, 4)}.${t}`.slice(0, 32), name, role, facility_id: fac.id, password: `mat-khau-${t}` };
  if (role === 'doctor' || role === 'nurse') {
    const p = await adminPost('/api/v1/practitioners', {
      name, title: role === 'doctor' ? 'BSCKI' : 'ĐD', licence_number: `${t.toUpperCase()}/AH-CCHN`, specialty, facility_id: fac.id,
    });
    body.practitioner_id = p.id;
  }
  const made = await adminPost('/api/v1/staff', body);
  return { ...made.staff, password: body.password, secret: made.totp.secret };
}

/** A console page in its own window, with the console's state in its diagnostics. */
export async function consolePage(browser, name) {
  const p = await openParticipant(browser, name);
  return {
    ...p,
    page: p.page,
    name,
    goto: (u) => p.goto(u),
    async diagnostics() {
      let extra;
      try { extra = JSON.stringify(await pageGlobal(p, 'tuxaStaff'), null, 2); } catch (e) { extra = String(e); }
      return `${await p.diagnostics()}\n--- window.tuxaStaff ---\n${extra}`;
    },
  };
}

export async function signIn(who, acct) {
  await who.goto(`${BASE}/staff`);
  await waitForPageState(who, 'tuxaStaff', 'signed-out');
  await who.page.type('#username', acct.username);
  await who.page.type('#password', acct.password);
  if (Date.now() / 1000 % 30 > 27) await sleep(3_500); // a fresh code, not about to roll over
  await who.page.type('#totp', totpCode(acct.secret));
  await who.page.click('#signin-btn');
  await waitFor(`${who.name} signed in`, async () => who.page.evaluate(() => !!window.tuxaStaff.me), 20_000);
}

export const staffState = (who, fn, ...args) => who.page.evaluate(fn, ...args);
export const visible = (who, sel) => who.page.evaluate((s) => {
  const el = document.querySelector(s);
  return !!el && !el.closest('[hidden]') && el.getClientRects().length > 0;
}, sel);


/**
 * On a console showing a scheduled request: refresh, press "Vào hội chẩn",
 * and follow the call into the window it opens; returns that page (a
 * Participant, added to `all` for diagnostics) once it is `in-call`.
 */
export async function joinFromConsole(who, label, all) {
  await refreshRequest(who);
  await waitFor(`${label}: the Join button`, async () => visible(who, '#conf-join-btn'), 15_000);
  const popup = who.page.browserContext().waitForTarget((t) => /\/join\/[a-z2-7]{16}/.test(t.url()), { timeout: 20_000 });
  // A real click: the call opens in a new window, which needs the user's gesture.
  await clickSettled(who, '#conf-join-btn');
  const target = await popup;
  const callPage = new Participant(`${label} call`, await target.page(), 'chromium');
  all.push(callPage);
  await callPage.waitForState('preview');
  await callPage.page.click('#join-btn');
  await callPage.waitForState('in-call');
  return callPage;
}

// The call opens in a new tab of the console's window: the console is then a
// background tab, where clicks and typing wait for frames that do not come.
// Whatever acts on a console brings it to the front first.

/** Opens a request from the list of a console on the conference tab. */
export async function openRequest(who, id) {
  await who.page.bringToFront();
  if (!(await who.page.evaluate(() => window.tuxaStaff.tab === 'conf'))) await clickSettled(who, '#tab-btn-conf');
  await waitFor(`${who.name}: request ${id} in the list`, async () => who.page.evaluate(
    (x) => !!document.querySelector(`#conf-list li[data-id="${x}"]`), id,
  ), 15_000);
  // In one step: the list may be redrawn (refreshed) between a look-up and a click.
  await who.page.evaluate((x) => document.querySelector(`#conf-list li[data-id="${x}"] button`).click(), id);
  await waitFor(`${who.name}: request ${id} open`, async () => who.page.evaluate(
    (x) => window.tuxaStaff.conf.view === 'detail' && window.tuxaStaff.conf.openId === x, id,
  ), 10_000);
}

/**
 * Presses "Làm mới" on an open request and waits until the server's answer
 * is shown (drawn again if it changed).
 */
export async function refreshRequest(who) {
  await who.page.bringToFront();
  // `loads` counts answers; a client from before it counted draws (`renders`).
  const loads = () => window.tuxaStaff.conf.loads ?? window.tuxaStaff.conf.renders;
  const before = await who.page.evaluate(loads);
  await clickSettled(who, '#conf-refresh-btn');
  await waitFor(`${who.name}: the request refreshed`, async () => (await who.page.evaluate(loads)) > before, 15_000);
}
