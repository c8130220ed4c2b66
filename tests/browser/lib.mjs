// Shared helpers of the browser tests: a headless Chromium, pages that record every request and
// every storage write, and admin reads of the consent ledger and the log. Run by
// services/lethe/tests/browser.rs, which starts `lethe serve --demo` and passes:
//   LETHE_BASE         http://127.0.0.1:PORT
//   LETHE_ADMIN_TOKEN  an `admin` token of that server
//   LETHE_ARTIFACTS    where screenshots go (target/browser-artifacts)
//   LETHE_CHROMIUM     the Chromium binary (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = process.env.LETHE_BASE;
const ADMIN = process.env.LETHE_ADMIN_TOKEN;
const ARTIFACTS = process.env.LETHE_ARTIFACTS;
assert.ok(
  BASE && ADMIN && ARTIFACTS,
  'run through `cargo test -p lethe --test browser` (LETHE_BASE, LETHE_ADMIN_TOKEN, LETHE_ARTIFACTS)'
);
mkdirSync(ARTIFACTS, { recursive: true });

/** The SDK (either path) and its configuration: all a page may fetch before consent. */
export const SDK_PATHS = /^\/(sdk\.js|sdk\/lethe\.[0-9a-f]{16}\.js|sdk\/config\.json)$/;

export async function launch() {
  return chromium.launch({
    executablePath: process.env.LETHE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

// Runs in the page before any of its scripts: records storage and cookie writes.
const RECORD_WRITES = () => {
  window.__writes = [];
  for (const m of ['setItem', 'removeItem', 'clear']) {
    const original = Storage.prototype[m];
    Storage.prototype[m] = function (...args) {
      window.__writes.push([this === window.sessionStorage ? 'sessionStorage' : 'localStorage', m, args[0]]);
      return original.apply(this, args);
    };
  }
  const cookie = Object.getOwnPropertyDescriptor(Document.prototype, 'cookie');
  Object.defineProperty(Document.prototype, 'cookie', {
    get() {
      return cookie.get.call(this);
    },
    set(v) {
      window.__writes.push(['cookie', 'set', String(v).split('=')[0]]);
      cookie.set.call(this, v);
    },
  });
};

const GPC = () => {
  Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true, configurable: true });
};

/**
 * A fresh context (no storage) and page. `gpc`: the browser sends Global Privacy Control (the
 * navigator property and the `Sec-GPC: 1` header). Every request and JSON body is recorded.
 */
export async function open(browser, { gpc = false, init = null, path = '/demo' } = {}) {
  const context = await browser.newContext({
    baseURL: BASE,
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    extraHTTPHeaders: gpc ? { 'Sec-GPC': '1' } : {},
  });
  await context.addInitScript(RECORD_WRITES);
  if (gpc) await context.addInitScript(GPC);
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    let body = null;
    try {
      body = r.postData() ? JSON.parse(r.postData()) : null;
    } catch {
      body = r.postData();
    }
    requests.push({ method: r.method(), path: url.pathname, url: r.url(), type: r.resourceType(), body });
  });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  if (path) await page.goto(path);
  return { context, page, requests };
}

/** The banner (first layer), once the SDK has shown it. */
export function banner(page) {
  return page.getByRole('dialog', { name: 'Your privacy choices' });
}

/** The preferences dialog (second layer). */
export function preferences(page) {
  return page.getByRole('dialog', { name: 'Privacy preferences' });
}

/** The persistent "Privacy choices" button that reopens the dialog. */
export function reopen(page) {
  return page.getByRole('button', { name: 'Privacy choices' });
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, name), fullPage: false });
}

/** The text of the element focused inside the SDK's shadow root (or the document). */
export async function focused(page) {
  return page.evaluate(() => {
    const host = document.getElementById('lethe-consent');
    const inner = host && document.activeElement === host ? host.shadowRoot.activeElement : document.activeElement;
    return inner ? (inner.getAttribute('data-action') || inner.textContent || inner.tagName).trim() : null;
  });
}

/** `window.dataLayer` as plain values (gtag pushes `arguments` objects). */
export async function dataLayer(page) {
  return page.evaluate(() =>
    window.dataLayer.map((e) =>
      Object.prototype.toString.call(e) === '[object Arguments]' ? Array.from(e) : JSON.parse(JSON.stringify(e))
    )
  );
}

/** The last `['consent', 'update', {...}]` in the dataLayer. */
export function lastUpdate(entries) {
  const updates = entries.filter((e) => Array.isArray(e) && e[0] === 'consent' && e[1] === 'update');
  return updates[updates.length - 1]?.[2];
}

export const SIGNALS = [
  'ad_storage',
  'ad_user_data',
  'ad_personalization',
  'analytics_storage',
  'functionality_storage',
  'personalization_storage',
  'security_storage',
];

export async function anonymousId(page) {
  return page.evaluate(() => window.Lethe.anonymousId());
}

async function admin(path) {
  const r = await fetch(BASE + path, { headers: { Authorization: `Bearer ${ADMIN}` } });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

export async function config() {
  const r = await fetch(`${BASE}/sdk/config.json`);
  return r.json();
}

/** Polls `f` until it returns a truthy value (or throws the last assertion after `ms`). */
export async function eventually(f, ms = 8000, what = 'condition') {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
      last = new Error(`${what}: not yet`);
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw last;
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** `GET /v1/consent/{id}` as an admin, once `records` records are in. */
export async function ledger(id, records = 1) {
  return eventually(
    async () => {
      const { status, body } = await admin(`/v1/consent/${encodeURIComponent(id)}`);
      assert.equal(status, 200, JSON.stringify(body));
      return body.records >= records ? body : null;
    },
    8000,
    `${records} consent records for ${id}`
  );
}

/** The admin's access export of a subject (`GET /v1/me/export?subject=`). */
export async function exported(id) {
  const { status, body } = await admin(`/v1/me/export?subject=${encodeURIComponent(id)}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

/** The export's events of `type`, once `test(events)` holds. */
export async function eventsOf(id, test, what) {
  return eventually(
    async () => {
      const doc = await exported(id);
      return test(doc.events) ? doc.events : null;
    },
    10000,
    what
  );
}

export function ofType(events, type) {
  return events.filter((e) => e.type === type);
}
