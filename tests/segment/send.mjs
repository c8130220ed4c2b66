// Sends a page, a track and an identify call to Lethe with Segment's official Node library, pointed at
// Lethe by changing the host only. Usage: LETHE_HOST=http://127.0.0.1:PORT LETHE_WRITE_KEY=... node send.mjs
import { Analytics } from '@segment/analytics-node';

const analytics = new Analytics({
  writeKey: process.env.LETHE_WRITE_KEY,
  host: process.env.LETHE_HOST,
  path: '/v1/batch',
  maxEventsInBatch: 10,
  flushInterval: 100,
});
const failures = [];
analytics.on('error', (err) => failures.push(String(err && (err.reason || err.message || err))));

const anonymousId = process.env.LETHE_ANONYMOUS_ID;
analytics.page({ anonymousId, name: 'Tents', properties: { url: 'https://shop.example/outdoor/tents?utm=x', title: 'Tents' } });
analytics.track({ anonymousId, event: 'Product Clicked', properties: { product_id: 'tent-2p', category: 'outdoor' } });
analytics.track({ anonymousId, event: 'Scroll Depth', properties: { depth: 75 } });
await analytics.closeAndFlush({ timeout: 10000 });
if (failures.length) {
  console.error(JSON.stringify(failures));
  process.exit(1);
}
console.log('sent');
