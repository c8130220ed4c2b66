// Global Privacy Control (R-GPC-1): a browser that sends the signal is opted out of sale/share before
// any tag can fire, is told so, and the opt-out is recorded; overriding it takes an explicit
// confirmation, which is recorded too.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  anonymousId,
  banner,
  dataLayer,
  eventsOf,
  eventually,
  lastUpdate,
  launch,
  ledger,
  ofType,
  open,
  preferences,
  reopen,
  screenshot,
} from './lib.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(() => browser?.close());

const AD_SIGNALS = ['ad_storage', 'ad_user_data', 'ad_personalization'];

test('R-GPC-1: the opt-out applies before any tag and any tracking, is shown as honored, and is recorded', async () => {
  const { context, page, requests } = await open(browser, { gpc: true });
  const b = banner(page);
  await b.getByText('Opt-out request honored').waitFor();
  await screenshot(page, 'banner-gpc.png');
  const entries = await dataLayer(page);
  assert.deepEqual(entries[0].slice(0, 2), ['consent', 'default']);
  for (const s of AD_SIGNALS) assert.equal(entries[0][2][s], 'denied', s);

  await b.getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  // The banner's record, then the "Do Not Sell or Share" request.
  const state = await ledger(id, 2);
  assert.equal(state.gpc, true);
  assert.equal(state.purposes.sale_share.state, 'gpc_opt_out');
  assert.equal(state.purposes.analytics.state, 'granted');
  const [sent] = requests.filter((r) => r.path === '/v1/consent').map((r) => r.body);
  assert.equal(sent.gpc, true);
  assert.ok(sent.denied.includes('sale_share') && !sent.granted.includes('sale_share'), JSON.stringify(sent));
  const optOut = await eventually(
    () => requests.find((r) => r.method === 'POST' && r.path === '/v1/me/opt-out'),
    8000,
    'the opt-out request'
  );
  assert.deepEqual(optOut.body, { anonymousId: id });
  const update = lastUpdate(await dataLayer(page));
  for (const s of AD_SIGNALS) assert.equal(update[s], 'denied', s);
  assert.equal(update.analytics_storage, 'granted');

  // In the log, the opt-out comes before the first tracked event.
  await page.evaluate(() => window.Lethe.flush());
  const events = await eventsOf(id, (ev) => ofType(ev, 'page.viewed').length > 0, 'a page view');
  const firstConsent = ofType(events, 'consent.changed')[0];
  assert.equal(firstConsent.payload.gpc, true);
  assert.ok(firstConsent.position < ofType(events, 'page.viewed')[0].position);

  // The preferences dialog says it too.
  await reopen(page).click();
  const dialog = preferences(page);
  await dialog.getByText('Opt-out request honored').waitFor();
  assert.equal(await dialog.getByRole('switch', { name: 'Sale or sharing for advertising' }).isChecked(), false);
  await context.close();
});

test('R-GPC-1: overriding the signal takes an explicit confirmation, and the override is recorded', async () => {
  const { context, page, requests } = await open(browser, { gpc: true });
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id, 2);
  await reopen(page).click();
  const dialog = preferences(page);
  const saleShare = dialog.getByRole('switch', { name: 'Sale or sharing for advertising' });
  // Switching it on asks first; keeping the opt-out leaves it off.
  await saleShare.click();
  assert.equal(await saleShare.isChecked(), false);
  const confirm = dialog.getByRole('group', { name: /Allow it anyway/ });
  await confirm.waitFor();
  await screenshot(page, 'gpc-confirm.png');
  await confirm.getByRole('button', { name: 'Keep opted out' }).click();
  assert.equal(await saleShare.isChecked(), false);
  await saleShare.click();
  await confirm.getByRole('button', { name: 'Allow on this site' }).click();
  assert.equal(await saleShare.isChecked(), true);
  await dialog.getByRole('button', { name: 'Save choices' }).click();
  const state = await ledger(id, 3);
  assert.equal(state.purposes.sale_share.state, 'granted');
  const last = requests.filter((r) => r.path === '/v1/consent').at(-1).body;
  assert.equal(last.gpc, true, 'the override is recorded with the signal it overrides');
  assert.ok(last.granted.includes('sale_share'));
  assert.equal(lastUpdate(await dataLayer(page)).ad_storage, 'granted');
  await context.close();
});
