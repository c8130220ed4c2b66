// The banner and the consent ledger: nothing before consent (R-CONSENT-4), choices recorded with the
// notice shown (R-CONSENT-1), withdrawal as easy as granting (R-CONSENT-2), a new notice asks again
// (R-CONSENT-3), Google Consent Mode v2 default before any tag and update on every change (R-GCM-1),
// and the whole banner by keyboard.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SDK_PATHS,
  SIGNALS,
  anonymousId,
  banner,
  config,
  dataLayer,
  focused,
  lastUpdate,
  launch,
  ledger,
  open,
  preferences,
  reopen,
  screenshot,
} from './lib.mjs';

let browser;
let notice;
before(async () => {
  browser = await launch();
  notice = (await config()).notice;
});
after(() => browser?.close());

function consentPosts(requests) {
  return requests.filter((r) => r.method === 'POST' && r.path === '/v1/consent').map((r) => r.body);
}

test('R-CONSENT-4: before a choice, no cookie, no storage and no request but the SDK and its config', async () => {
  const { context, page, requests } = await open(browser);
  await banner(page).waitFor();
  await screenshot(page, 'banner.png');
  // Scroll, click a product, wait: still nothing.
  await page.mouse.wheel(0, 2000);
  await page.locator('a.tile').first().click();
  await page.waitForTimeout(800);
  const fetched = requests.filter((r) => r.path !== '/demo').map((r) => r.path);
  assert.ok(fetched.length >= 2, `the SDK and its config: ${fetched}`);
  for (const path of fetched) assert.match(path, SDK_PATHS, `requested before consent: ${path}`);
  assert.deepEqual(await context.cookies(), []);
  const storage = await page.evaluate(() => ({
    writes: window.__writes,
    local: window.localStorage.length,
    session: window.sessionStorage.length,
  }));
  assert.deepEqual(storage, { writes: [], local: 0, session: 0 });
  assert.equal(await anonymousId(page), null);
  await context.close();
});

test('R-GCM-1: the Consent Mode default (seven signals denied) is the first dataLayer entry, before any tag', async () => {
  const { context, page } = await open(browser);
  await banner(page).waitFor();
  const entries = await dataLayer(page);
  const [command, kind, state] = entries[0];
  assert.deepEqual([command, kind], ['consent', 'default']);
  for (const s of SIGNALS) assert.equal(state[s], 'denied', s);
  const tag = entries.findIndex((e) => e.event === 'gtm.js');
  assert.ok(tag > 0, `the page's tag comes after the default: ${JSON.stringify(entries)}`);
  // Before a choice, only the strictly necessary signals are granted.
  const update = lastUpdate(entries);
  assert.equal(update.security_storage, 'granted');
  assert.equal(update.analytics_storage, 'denied');
  assert.equal(update.ad_storage, 'denied');
  await context.close();
});

test('R-CONSENT-1: "Accept all" reaches the ledger with the notice shown; Consent Mode is updated', async () => {
  const { context, page, requests } = await open(browser);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  await banner(page).waitFor({ state: 'hidden' });
  const id = await anonymousId(page);
  assert.match(id, /^[0-9a-f-]{36}$/);
  const state = await ledger(id);
  for (const p of ['analytics', 'personalization', 'sale_share']) assert.equal(state.purposes[p].state, 'granted', p);
  assert.deepEqual(state.notice, { id: notice.id, version: notice.version, content_hash: notice.contentHash });
  assert.equal(state.reprompt, false);
  const [sent] = consentPosts(requests);
  assert.deepEqual(sent.notice, { id: notice.id, version: notice.version, contentHash: notice.contentHash });
  assert.equal(sent.method, 'banner');
  assert.equal(sent.locale, 'en');
  assert.equal(sent.gpc, false);
  assert.equal(sent.sdkVersion, '1.0.0');
  const update = lastUpdate(await dataLayer(page));
  for (const s of SIGNALS) assert.equal(update[s], 'granted', s);
  const events = (await dataLayer(page)).filter((e) => e.event === 'lethe_consent_update');
  assert.equal(events.at(-1).lethe.purposes.analytics, true);
  // The choice is remembered: strictly necessary storage, after the choice.
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('lethe.consent')));
  assert.equal(stored.notice.contentHash, notice.contentHash);
  await screenshot(page, 'demo-after-consent.png');
  // A returning visitor is not asked again, and its choice is in the dataLayer before any tag.
  await page.reload();
  await reopen(page).waitFor();
  assert.equal(await banner(page).isVisible(), false);
  const entries = await dataLayer(page);
  assert.deepEqual(entries[1].slice(0, 2), ['consent', 'update']);
  assert.equal(entries[1][2].analytics_storage, 'granted');
  assert.ok(entries.findIndex((e) => e.event === 'gtm.js') > 1);
  await context.close();
});

test('R-CONSENT-1: "Reject all" is recorded too, and grants no signal but the necessary ones', async () => {
  const { context, page, requests } = await open(browser);
  const reject = banner(page).getByRole('button', { name: 'Reject all' });
  const accept = banner(page).getByRole('button', { name: 'Accept all' });
  // As easy to find as "Accept all": same size, same style.
  const [r, a] = [await reject.boundingBox(), await accept.boundingBox()];
  assert.equal(Math.round(r.height), Math.round(a.height));
  assert.ok(Math.abs(r.width - a.width) < 2, `${r.width} vs ${a.width}`);
  const style = (l) =>
    l.evaluate((e) => {
      const s = getComputedStyle(e);
      return [s.backgroundColor, s.color, s.fontSize, s.fontWeight];
    });
  assert.deepEqual(await style(reject), await style(accept));
  await reject.click();
  const id = await anonymousId(page);
  const state = await ledger(id);
  for (const p of ['analytics', 'personalization', 'sale_share']) assert.equal(state.purposes[p].state, 'denied', p);
  assert.equal(state.notice.content_hash, notice.contentHash);
  const [sent] = consentPosts(requests);
  assert.deepEqual(sent.granted, []);
  assert.deepEqual(sent.denied.sort(), ['analytics', 'personalization', 'sale_share']);
  const update = lastUpdate(await dataLayer(page));
  assert.deepEqual(
    SIGNALS.filter((s) => update[s] === 'granted'),
    ['functionality_storage', 'security_storage']
  );
  // Nothing but the record of the choice is stored.
  const keys = await page.evaluate(() => Object.keys(localStorage));
  assert.deepEqual(keys, ['lethe.consent']);
  await context.close();
});

test('R-CONSENT-1: a custom choice per purpose reaches the ledger', async () => {
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Choose' }).click();
  const dialog = preferences(page);
  await dialog.waitFor();
  await screenshot(page, 'preferences.png');
  // Strictly necessary is on and cannot be switched off.
  const necessary = dialog.getByRole('switch', { name: /Strictly necessary/ });
  assert.equal(await necessary.isChecked(), true);
  assert.equal(await necessary.isDisabled(), true);
  await dialog.getByRole('switch', { name: 'Analytics' }).check();
  await dialog.getByRole('button', { name: 'Save choices' }).click();
  const state = await ledger(await anonymousId(page));
  assert.equal(state.purposes.analytics.state, 'granted');
  assert.equal(state.purposes.personalization.state, 'denied');
  assert.equal(state.purposes.sale_share.state, 'denied');
  const update = lastUpdate(await dataLayer(page));
  assert.equal(update.analytics_storage, 'granted');
  assert.equal(update.personalization_storage, 'denied');
  assert.equal(update.ad_storage, 'denied');
  await context.close();
});

test('R-CONSENT-2: withdrawing from the reopened dialog takes no more steps than granting', async () => {
  const { context, page } = await open(browser);
  await banner(page).getByRole('button', { name: 'Accept all' }).click();
  const id = await anonymousId(page);
  await ledger(id, 1);

  // One purpose: a switch and "Save" (two steps), both ways.
  let clicks = 0;
  const click = async (locator) => {
    clicks += 1;
    await locator.click();
  };
  await reopen(page).click();
  clicks = 0;
  await click(preferences(page).getByRole('switch', { name: 'Analytics' }));
  await click(preferences(page).getByRole('button', { name: 'Save choices' }));
  const withdrawSteps = clicks;
  let state = await ledger(id, 2);
  assert.equal(state.purposes.analytics.state, 'withdrawn');
  assert.equal(lastUpdate(await dataLayer(page)).analytics_storage, 'denied');

  await reopen(page).click();
  clicks = 0;
  await click(preferences(page).getByRole('switch', { name: 'Analytics' }));
  await click(preferences(page).getByRole('button', { name: 'Save choices' }));
  const grantSteps = clicks;
  state = await ledger(id, 3);
  assert.equal(state.purposes.analytics.state, 'granted');
  assert.ok(withdrawSteps <= grantSteps, `withdraw ${withdrawSteps} steps, grant ${grantSteps}`);

  // Everything: one button, as "Accept all" is.
  await reopen(page).click();
  await preferences(page).getByRole('button', { name: 'Reject all' }).click();
  state = await ledger(id, 4);
  for (const p of ['analytics', 'personalization', 'sale_share']) assert.equal(state.purposes[p].state, 'withdrawn', p);
  assert.equal(lastUpdate(await dataLayer(page)).analytics_storage, 'denied');
  // Behavior stops at once: the queue and the visit are gone from storage.
  const keys = await page.evaluate(() => Object.keys(localStorage));
  assert.deepEqual(keys, ['lethe.consent']);
  await context.close();
});

test('keyboard only: focus moves into the banner, Tab reaches "Reject all", Enter records it', async () => {
  const { context, page } = await open(browser);
  await banner(page).waitFor();
  await page.waitForFunction(() => document.activeElement?.id === 'lethe-consent');
  await page.keyboard.press('Tab');
  assert.equal(await focused(page), 'reject');
  // Tab cycles inside the banner.
  for (const expected of ['accept', 'customize', 'reject']) {
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), expected);
  }
  await page.keyboard.press('Shift+Tab');
  assert.equal(await focused(page), 'customize');
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await focused(page), 'reject');
  await page.keyboard.press('Enter');
  await banner(page).waitFor({ state: 'hidden' });
  const state = await ledger(await anonymousId(page));
  assert.equal(state.purposes.analytics.state, 'denied');
  // Focus lands on the reopen button; Enter opens the dialog with focus inside it; Escape closes it
  // and gives focus back.
  assert.equal(await focused(page), 'reopen');
  await page.keyboard.press('Enter');
  await preferences(page).waitFor();
  assert.equal(
    await page.evaluate(() => document.getElementById('lethe-consent').shadowRoot.activeElement.getAttribute('role')),
    'dialog'
  );
  const dialog = preferences(page);
  assert.equal(await dialog.getAttribute('aria-modal'), 'true');
  await page.keyboard.press('Tab');
  assert.equal(await focused(page), '\u00d7');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await focused(page), 'reopen');
  await context.close();
});

test('R-CONSENT-3: a choice made under an older notice version asks again', async () => {
  const old = (n) => {
    localStorage.setItem(
      'lethe.consent',
      JSON.stringify({
        v: 1,
        notice: { id: n.id, version: n.version - 1 || 0, contentHash: '0'.repeat(64) },
        choices: { analytics: true },
        anonymousId: '5f0e4bb8-7a0d-4d7e-9b7b-2d1cf1f1a001',
      })
    );
  };
  const { context, page } = await open(browser, { path: null });
  await page.addInitScript(old, notice);
  await page.goto('/demo');
  await banner(page).waitFor();
  await context.close();
});

test('the banner speaks the notice locale the page asks for', async () => {
  const { context, page } = await open(browser, { path: null });
  await page.route('**/demo', async (route) => {
    const response = await route.fetch();
    const body = (await response.text()).replace('<html lang="en">', '<html lang="fr">');
    await route.fulfill({ response, body });
  });
  await page.goto('/demo');
  const dialog = page.getByRole('dialog', { name: notice.texts.fr.title });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Tout refuser' }).click();
  const state = await ledger(await anonymousId(page));
  assert.equal(state.purposes.analytics.state, 'denied');
  await context.close();
});

test('the banner is readable: every text in it has a WCAG AA contrast of at least 4.5:1', async () => {
  const { context, page } = await open(browser);
  const b = banner(page);
  await b.waitFor();
  const ratios = await b.evaluate((root) => {
    const rgba = (s) => {
      const m = s.match(/rgba?\(([^)]+)\)/);
      if (!m) return [0, 0, 0, 0];
      const p = m[1].split(',').map((x) => parseFloat(x));
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const luminance = ([r, g, b]) => {
      const c = [r, g, b].map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    // The first opaque background behind an element (the page is white underneath).
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c[3] > 0.99) return c;
      }
      return [255, 255, 255, 1];
    };
    const out = [];
    for (const el of root.querySelectorAll('*')) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || el.getClientRects().length === 0) continue;
      const fg = luminance(rgba(getComputedStyle(el).color));
      const bg = luminance(background(el));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      out.push({ text: el.textContent.trim().slice(0, 30), ratio });
    }
    return out;
  });
  assert.ok(ratios.length >= 4, JSON.stringify(ratios));
  for (const r of ratios) assert.ok(r.ratio >= 4.5, `${r.text}: ${r.ratio.toFixed(2)}:1`);
  await context.close();
});
