// @ts-check
// A queue's poster page (/q/{id}/poster, rendered by the server): print it,
// or share its link through the phone's share sheet (Web Share API) with
// copy-to-clipboard where there is none. The page's texts are the
// server's (Vietnamese with English); this script only wires the buttons.

import { shareOrCopy } from './console-util.js';

const $ = (id) => document.getElementById(id);

$('poster-print').addEventListener('click', () => window.print());

const share = $('poster-share');
share.addEventListener('click', async () => {
  const how = await shareOrCopy({ url: share.dataset.url, title: share.dataset.title });
  // Shared: the sheet said so itself. Cancelled: nothing to say.
  $('poster-status').textContent = how === 'copied' ? share.dataset.copied
    : how === 'failed' ? share.dataset.failed : '';
});
