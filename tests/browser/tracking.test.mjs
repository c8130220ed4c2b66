// Behavior tracking: nothing before consent; after it, page views, clicks on marked elements, scroll
// depth, time on page and visit length reach the log (read back through the admin's access export),
// with every property classified, batched, sent by beacon when the page goes away, and retried
// after the network comes back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { anonymousId, banner, dataLayer, eventsOf, eventually, launch, ledger, open, ofType } from './lib.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(() => browser?.close());

/** Every `/v1/batch` answer the page could read. */
function batchAnswers(page) {
  const answers = [];
  page.on('response', async (r) => {
    if (new URL(r.url()).pathname !== '/v1/batch') return;
    try {
      answers.push({ status: r.status(), body: await r.json() });
    } catch {
      /* a beacon's answer is not readable */
    }
  });
  return answers;
}

async function scrollToBottom(page) {
  for (const f of [0.3, 0.6, 1]) {
    await page.evaluate((f) => window.scrollTo(0, document.documentElement.scrollHeight * f), f);
    await page.waitForTimeout(80);
  }
}

test('before consent nothing is sent; after it, page view, click, scroll and timing events reach the log', async () => {
  const { context, page, requests } = await open(browser);
  const answers = batchAnswers(page);
  await banner(page).waitFor();
  // Before a choice: clicks, scrolling and the site's own calls go nowhere.
  await page.locator('a.tile[data-lethe-product-id="espresso-maker"]').click();
  await scrollToBottom(page);
  await page.evaluate(() => window.Lethe.track('Element Clicked', { product_id: 'before-consent' }));
  await page.waitForTimeout(300);
  assert.deepEqual(
    requests.filter((r) => r.path.startsWith('/v1/')),
    []
  );

  await page.evaluate(() => window.scrollTo(0, 0));
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id);
  await page.locator('a.tile[data-lethe-product-id="tent-2p"]').click();
  await scrollToBottom(page);
  await page.waitForTimeout(1100);
  await page.evaluate(() => window.Lethe.flush());
  // Read a batch's answer while the page that sent it is still there (a busy machine answers late,
  // and a page that has gone away cannot read its answers).
  await eventually(() => answers.length > 0, 8000, 'a batch sent with fetch, answered');
  // Leaving the page reports the time spent, by beacon.
  await page.goto('/demo/privacy');

  const events = await eventsOf(
    id,
    (ev) =>
      ofType(ev, 'time.spent').length > 0 &&
      ofType(ev, 'scroll.depth').length >= 4 &&
      ofType(ev, 'page.viewed').length >= 2,
    'page view, click, scroll and time events'
  );
  const views = ofType(events, 'page.viewed');
  assert.deepEqual(
    views.map((e) => e.payload.path),
    ['/demo', '/demo/privacy']
  );
  assert.equal(views[0].payload.title, 'Lethe Outfitters: a demo shop');
  const clicks = ofType(events, 'element.clicked');
  assert.equal(clicks.length, 1, JSON.stringify(clicks));
  assert.deepEqual(clicks[0].payload.properties, {
    element: 'a',
    label: 'product',
    product_id: 'tent-2p',
    category: 'outdoor',
    name: 'Two-person tent',
    price: 199,
    position: 1,
  });
  assert.deepEqual(
    ofType(events, 'scroll.depth').map((e) => e.payload.properties.depth),
    [25, 50, 75, 100]
  );
  const spent = ofType(events, 'time.spent');
  assert.ok(spent[0].payload.properties.seconds >= 1, JSON.stringify(spent));
  for (const e of [...views, ...clicks, ...spent]) assert.equal(e.purpose, 'analytics', e.type);
  // Every property sent was classified: nothing dropped at the edge.
  assert.ok(answers.length > 0, 'a batch was sent with fetch');
  for (const a of answers) {
    assert.equal(a.status, 200);
    for (const r of a.body.results) {
      assert.equal(r.status, 'stored', JSON.stringify(r));
      assert.equal(r.dropped_fields, undefined, JSON.stringify(r));
    }
  }
  // The site's tags see the events too.
  await page.goto('/demo');
  await page.locator('a.tile[data-lethe-product-id="headlamp"]').click();
  const pushed = (await dataLayer(page)).filter((e) => e.event === 'lethe_track').map((e) => e.lethe.event);
  assert.ok(pushed.includes('Element Clicked'), JSON.stringify(pushed));
  await context.close();
});

test('the length of a visit is reported once it has ended', async () => {
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id);
  await page.close();
  // The visitor comes back: the visit's last activity was 31 minutes ago, so this page view ends it.
  const later = await context.newPage();
  await later.addInitScript(() => {
    const t = Date.now();
    const s = { id: 'visit-1', start: t - 40 * 60000, last: t - 31 * 60000, pages: 3 };
    localStorage.setItem('lethe.session', JSON.stringify(s));
  });
  await later.goto('/demo');
  await later.evaluate(() => window.Lethe.ready.then(() => window.Lethe.flush()));
  const events = await eventsOf(id, (ev) => ofType(ev, 'session.ended').length === 1, 'session.ended');
  assert.deepEqual(ofType(events, 'session.ended')[0].payload.properties, { seconds: 540, pages: 3 });
  await context.close();
});

test('events wait while the network is down, in storage only after consent, and are sent when it is back', async () => {
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id);
  await page.evaluate(() => window.Lethe.flush());
  await context.setOffline(true);
  await page.locator('a.tile[data-lethe-product-id="sleeping-bag"]').click();
  await page.evaluate(() => window.Lethe.flush());
  const queued = await page.evaluate(() => JSON.parse(localStorage.getItem('lethe.queue') || '[]'));
  assert.ok(
    queued.some((m) => m.properties?.product_id === 'sleeping-bag'),
    JSON.stringify(queued)
  );
  await context.setOffline(false);
  const events = await eventsOf(
    id,
    (ev) => ofType(ev, 'element.clicked').some((e) => e.payload.properties.product_id === 'sleeping-bag'),
    'the click sent after the network came back'
  );
  assert.equal(ofType(events, 'element.clicked').length, 1);
  await context.close();
});

test("identify links the anonymous id to the site's user id, as a pseudonym", async () => {
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Reject all' }).click();
  const id = await anonymousId(page);
  await ledger(id);
  const user = `user-${id.slice(0, 8)}`;
  await page.evaluate((u) => window.Lethe.identify(u), user);
  await page.evaluate(() => window.Lethe.flush());
  const events = await eventsOf(user, (ev) => ofType(ev, 'identify').length === 1, 'the identify call');
  const linked = ofType(events, 'identify')[0].payload.linked_anonymous;
  assert.match(linked, /^[0-9a-f]{64}$/, 'the anonymous id is linked as a keyed pseudonym');
  assert.ok(!JSON.stringify(events).includes(id), 'the raw anonymous id is not stored');
  await context.close();
});
