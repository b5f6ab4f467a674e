// Run once by run.sh before the tests: mints a link that expires in 60 s, so
// that the bad-link test (which runs last) can use it after it expired
// without waiting a minute. Prints JSON on stdout.
import { createConsultation, mintLink } from './harness.mjs';

const room = await createConsultation('visit', 'Khám từ xa — đường dẫn hết hạn');
const expiring = await mintLink(room.id, { role: 'patient', name: 'Người Hết Hạn', expires_in_secs: 60 });
process.stdout.write(`${JSON.stringify({ expiring })}\n`);
