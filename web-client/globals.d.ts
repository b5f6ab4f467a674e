// What the type checker (scripts/check-js.sh) needs to know beyond the DOM
// library; not served (the pages are plain JS).

interface Window {
  /** The call page's state, for tests and kiosks (app.js). */
  tuxa: object;
  /** The queue page's state, for tests (queue.js). */
  tuxaQueue: object;
  /** The console's state, for tests (staff.js). */
  tuxaStaff: object;
  /** Safari before 14.1 names AudioContext so. */
  webkitAudioContext?: typeof AudioContext;
}
