// The demo's "your privacy" page: download, opt out and erase through the subject rights API, with a
// subject token for the visitor's own anonymous id; after the erasure the browser starts over.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { anonymousId, banner, launch, ledger, open, screenshot } from './lib.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(() => browser?.close());

test('the privacy page exports, opts out and erases the visitor, then the banner asks again', async () => {
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id);
  await page.evaluate(() => window.Lethe.flush());
  await page.getByRole('link', { name: 'Your privacy' }).first().click();
  await page.waitForURL('**/demo/privacy');

  await page.getByRole('button', { name: 'Download my data' }).click();
  await page.locator('#export-result a[download]').waitFor();
  assert.match(await page.locator('#export-result').innerText(), /\d+ events, \d+ consent records/);

  await page.getByRole('button', { name: 'Opt out' }).click();
  await page.locator('#opt-out-result', { hasText: 'Opt-out request honored' }).waitFor();
  const state = await ledger(id, 2);
  assert.equal(state.purposes.sale_share.allowed, false);
  await screenshot(page, 'privacy.png');

  await page.getByRole('button', { name: 'Erase my data' }).click();
  await page.locator('#erase-result', { hasText: 'Erased. Certificate' }).waitFor();
  // The browser forgets its id and choice; the banner asks again.
  await banner(page).waitFor();
  assert.equal(await anonymousId(page), null);
  assert.deepEqual(await page.evaluate(() => Object.keys(localStorage)), []);
  assert.equal(await page.getByRole('button', { name: 'Erase my data' }).isDisabled(), true);
  await context.close();
});

test("a subject token is only handed to the demo's own pages", async () => {
  const { context, page } = await open(browser);
  const status = await page.evaluate(async () => {
    const r = await fetch('/demo/subject-token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ anonymousId: 'someone' }),
    });
    return r.status;
  });
  assert.equal(status, 200);
  const foreign = await fetch(`${new URL(page.url()).origin}/demo/subject-token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Origin: 'https://elsewhere.example' },
    body: JSON.stringify({ anonymousId: 'someone' }),
  });
  assert.equal(foreign.status, 403);
  await context.close();
});
