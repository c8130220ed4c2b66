// Personalized slots: the page keeps its default content when the decision API is late or down
// (invariant 8, "serve open"), fills a slot from its template or the variant's content when a
// decision comes in time, reports impressions and clicks, and the decision service personalizes only
// with consent and history.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { anonymousId, banner, eventually, launch, ledger, open, screenshot } from './lib.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(() => browser?.close());

const hero = (page) => page.locator('[data-lethe-slot="home-hero"]');
const cta = (page) => page.locator('[data-lethe-slot="home-cta"]');

function answer(slot, id, content = {}, mode = 'personalized') {
  return {
    decisionId: `0190f000-0000-7000-8000-${slot === 'home-hero' ? '000000000001' : '000000000002'}`,
    slot,
    mode,
    reason: null,
    modelVersion: 'test',
    variants: [{ id, score: 0.9, propensity: 0.95, content }],
  };
}

/** Answers `/v1/decide` from `decide(body)` after `delay` ms, or aborts when it returns null. */
async function fakeDecisions(page, decide, delay = 0) {
  const asked = [];
  await page.route('**/v1/decide', async (route) => {
    const body = route.request().postDataJSON();
    asked.push(body);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const a = decide(body);
    if (a === null) await route.abort('connectionrefused').catch(() => {});
    else await route.fulfill({ json: a }).catch(() => {});
  });
  return asked;
}

async function recordOutcomes(page) {
  const outcomes = [];
  await page.route('**/v1/outcomes', async (route) => {
    outcomes.push(route.request().postDataJSON());
    await route.fulfill({ status: 202, json: { accepted: true } });
  });
  return outcomes;
}

async function assertDefault(page) {
  assert.equal(await hero(page).locator('.hero').getAttribute('data-variant'), 'default');
  assert.equal(await hero(page).getAttribute('data-lethe-decision'), null);
  assert.match(await cta(page).innerText(), /Ten percent off/);
}

test('a late decision keeps the default content', async () => {
  const { context, page } = await open(browser, { path: null });
  const asked = await fakeDecisions(
    page,
    (b) => answer(b.slot, b.slot === 'home-hero' ? 'outdoor-gear' : 'trail-guide', { title: 'Trail guide' }),
    700
  );
  const outcomes = await recordOutcomes(page);
  await page.goto('/demo');
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  await page.waitForTimeout(1200);
  assert.ok(asked.length >= 2, 'the slots asked');
  await assertDefault(page);
  assert.deepEqual(outcomes, [], 'nothing was shown, so no impression');
  await context.close();
});

test('a decision service that is down keeps the default content', async () => {
  const { context, page } = await open(browser, { path: null });
  const asked = await fakeDecisions(page, () => null);
  await page.goto('/demo');
  await banner(page).getByRole('button', { name: 'Reject all' }).click();
  await page.waitForTimeout(400);
  assert.ok(asked.length >= 2);
  await assertDefault(page);
  await context.close();
});

test('a decision in time fills the slot from its template or its content, and reports impression and click', async () => {
  const { context, page } = await open(browser, { path: null });
  const asked = await fakeDecisions(page, (b) =>
    b.slot === 'home-hero'
      ? answer(b.slot, 'outdoor-gear')
      : answer(b.slot, 'running-club', { title: 'Join the running club', body: 'Weekly runs.', href: '/demo#running' })
  );
  const outcomes = await recordOutcomes(page);
  await page.route('**/v1/recommendations*', (route) =>
    route.fulfill({
      json: { items: [{ id: 'trail-shoes', score: 0.8, title: 'Trail shoes' }], mode: 'personalized', reason: null },
    })
  );
  await page.goto('/demo');
  // Before a choice the slots are not asked: there is no one to ask for.
  await banner(page).waitFor();
  assert.deepEqual(asked, []);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await page.waitForSelector('[data-lethe-slot="home-hero"] .hero-outdoor');
  assert.match(await hero(page).innerText(), /Outdoor gear: 20% off/);
  assert.equal(await hero(page).getAttribute('data-lethe-variant'), 'outdoor-gear');
  // No template for this variant: its content is rendered (as text, its link checked).
  const link = cta(page).locator('a.lethe-variant');
  await link.waitFor();
  assert.match(await link.innerText(), /Join the running club/);
  assert.equal(new URL(await link.getAttribute('href')).pathname, '/demo');
  await page.locator('[data-lethe-recommendations] li', { hasText: 'Trail shoes' }).waitFor();
  // The request: an anonymous id, the slot, a coarse context.
  const heroAsk = asked.find((b) => b.slot === 'home-hero');
  assert.deepEqual(Object.keys(heroAsk).sort(), ['anonymousId', 'context', 'count', 'slot']);
  assert.equal(heroAsk.anonymousId, id);
  assert.equal(heroAsk.context.device, 'desktop');
  assert.equal(heroAsk.context.page, '/demo');
  await screenshot(page, 'demo-personalized.png');
  await page.waitForTimeout(200);
  const impressions = outcomes.filter((o) => o.type === 'impression');
  assert.deepEqual(impressions.map((o) => o.variant).sort(), ['outdoor-gear', 'running-club']);
  await hero(page).locator('a').click();
  await page.waitForTimeout(200);
  const clicks = outcomes.filter((o) => o.type === 'click');
  assert.deepEqual(clicks, [{ decisionId: answer('home-hero').decisionId, type: 'click', variant: 'outdoor-gear' }]);
  await context.close();
});

test('a non-personalized answer naming the default leaves the page as it is', async () => {
  const { context, page } = await open(browser, { path: null });
  await fakeDecisions(page, (b) =>
    answer(b.slot, b.slot === 'home-hero' ? 'default' : 'newsletter', {}, 'non_personalized')
  );
  await page.goto('/demo');
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  await page.waitForFunction(() =>
    document.querySelector('[data-lethe-slot="home-hero"]').hasAttribute('data-lethe-decision')
  );
  assert.equal(await hero(page).getAttribute('data-lethe-variant'), 'default');
  assert.match(await cta(page).innerText(), /Ten percent off/);
  await context.close();
});

test('the decision service personalizes the hero with consent and history, and not without consent', async () => {
  // Without consent to personalization: the same answer as everyone's.
  {
    const { context, page } = await open(browser);
    const [r] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/v1/decide') && r.request().postDataJSON().slot === 'home-hero'),
      banner(page).getByRole('button', { name: 'Reject all' }).click(),
    ]);
    assert.equal(r.status(), 200);
    const d = await r.json();
    assert.equal(d.mode, 'non_personalized');
    assert.equal(d.reason, 'consent_denied');
    await page.waitForFunction(() =>
      document.querySelector('[data-lethe-slot="home-hero"]').hasAttribute('data-lethe-decision')
    );
    assert.equal(await hero(page).getAttribute('data-lethe-variant'), 'default');
    await context.close();
  }
  // With consent and a history of outdoor gear.
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id);
  for (const p of ['tent-2p', 'sleeping-bag', 'headlamp', 'trail-shoes']) {
    await page.locator(`a.tile[data-lethe-product-id="${p}"]`).click();
  }
  await page.evaluate(() => window.Lethe.flush());
  // The feature views follow the log every second.
  await page.waitForTimeout(2500);
  const outcomes = [];
  page.on('response', (r) => {
    if (r.url().endsWith('/v1/outcomes')) outcomes.push(r.status());
  });
  const [r] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/decide') && r.request().postDataJSON().slot === 'home-hero'),
    page.reload(),
  ]);
  assert.equal(r.status(), 200);
  const d = await r.json();
  assert.equal(d.mode, 'personalized', JSON.stringify(d));
  const chosen = d.variants[0].id;
  await page.waitForFunction(() =>
    document.querySelector('[data-lethe-slot="home-hero"]').hasAttribute('data-lethe-decision')
  );
  assert.equal(await hero(page).getAttribute('data-lethe-decision'), d.decisionId);
  assert.equal(await hero(page).getAttribute('data-lethe-variant'), chosen);
  assert.equal(await hero(page).locator('.hero').getAttribute('data-variant'), chosen);
  if (!d.explored) assert.equal(chosen, 'outdoor-gear', JSON.stringify(d));
  await eventually(() => outcomes.length > 0, 3000, 'an impression');
  assert.deepEqual([...new Set(outcomes)], [202]);
  await context.close();
});
