/*! Lethe consent SDK | Apache-2.0 | consent banner, Global Privacy Control, Google Consent Mode v2,
 * behavior tracking after consent, personalized slots. Served by `lethe serve` as /sdk.js. */
/*
 * What this script stores and sends, and when (R-CONSENT-4, ePrivacy 5(3)):
 *
 * - Before the visitor chooses, it stores nothing (no cookie, no localStorage or sessionStorage
 *   write) and requests nothing but /sdk/config.json (after itself). The Google Consent Mode
 *   `default` (every signal denied) is pushed into window.dataLayer, which is page memory.
 * - At the first choice, whatever it is, it creates a random anonymous id (a UUID) and keeps, in
 *   localStorage under `lethe.consent`, the record of the choice: notice id, version and content
 *   hash, the choice per purpose, the GPC state, the time and that id. This record is strictly
 *   necessary: it is what keeps the banner from asking again, and the id is the reference of the
 *   choice in the consent ledger, where the choice is posted (`POST /v1/consent`) so that it can be
 *   proven, changed and withdrawn (GDPR 7(1)). Refusing everything stores this record too; the id
 *   then serves nothing but the ledger.
 * - Behavior (page views, clicks, scroll depth, time on page, visit length) is collected only while
 *   analytics is granted; only then are `lethe.queue` (events waiting to be sent while offline) and
 *   `lethe.session` (start and last activity of the visit) written, and both are removed when
 *   analytics is withdrawn.
 * - Personalized slots ask the decision API only once a choice exists; outcomes are reported only
 *   while personalization is granted.
 */
(function (w, d) {
  'use strict';
  if (w.Lethe && w.Lethe.version) return;

  var VERSION = '1.0.0';
  var SIGNALS = [
    'ad_storage',
    'ad_user_data',
    'ad_personalization',
    'analytics_storage',
    'functionality_storage',
    'personalization_storage',
    'security_storage',
  ];
  var script = d.currentScript;
  var nav = navigator;
  var gpc = nav.globalPrivacyControl === true;
  var keys = {};
  function namespace(site) {
    var suffix = site ? '.' + site : '';
    keys = { consent: 'lethe.consent' + suffix, queue: 'lethe.queue' + suffix, session: 'lethe.session' + suffix };
  }
  namespace(script && script.getAttribute('data-site'));

  // --- Google Consent Mode v2: the default, before any tag (R-GCM-1) -------------------------------
  var dl = (w.dataLayer = w.dataLayer || []);
  function gtag() {
    dl.push(arguments);
  }
  var defaults = {};
  SIGNALS.forEach(function (s) {
    defaults[s] = 'denied';
  });
  defaults.wait_for_update = 500;
  gtag('consent', 'default', defaults);

  // --- storage: read freely, written only after a choice ------------------------------------------
  function store() {
    try {
      return w.localStorage;
    } catch (e) {
      return null;
    }
  }
  function read(key) {
    try {
      var s = store();
      var v = s && s.getItem(key);
      return v ? JSON.parse(v) : null;
    } catch (e) {
      return null;
    }
  }
  function write(key, value) {
    try {
      var s = store();
      if (s) value == null ? s.removeItem(key) : s.setItem(key, JSON.stringify(value));
    } catch (e) {
      /* storage full or blocked: the choice still holds for this page */
    }
  }

  function uuid() {
    var c = w.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = c.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) {
      return (x + 256).toString(16).slice(1);
    });
    return [h.slice(0, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10), h.slice(10)]
      .map(function (p) {
        return p.join('');
      })
      .join('-');
  }
  function now() {
    return Date.now();
  }
  function iso(t) {
    return new Date(t || now()).toISOString();
  }

  // --- state -------------------------------------------------------------------------------------
  var opts = {};
  var cfg = null;
  var record = read(keys.consent); // the stored choice, or null
  var listeners = {};
  var queue = [];
  var started = false;
  var recorded = Promise.resolve(); // the last choice's way to the ledger
  var readyResolve;
  var ready = new Promise(function (r) {
    readyResolve = r;
  });

  /** Whether processing for `purpose` is allowed now. */
  function allowed(purpose) {
    var rules = (cfg && cfg.rules) || (record && record.rules);
    if (!rules) return false;
    if (rules.free.indexOf(purpose) >= 0) return true;
    if (!record || !record.choices[purpose]) return false;
    return !(gpc && rules.optOut.indexOf(purpose) >= 0 && !record.gpcOverride);
  }

  function consentState(rules) {
    var out = {};
    SIGNALS.forEach(function (s) {
      var needs = rules.signals[s] || [];
      out[s] = needs.length && needs.every(allowed) ? 'granted' : 'denied';
    });
    return out;
  }

  function emit(name, data) {
    (listeners[name] || []).forEach(function (f) {
      try {
        f(data);
      } catch (e) {
        /* a listener's failure is the site's */
      }
    });
  }

  // A returning visitor's choice applies at once, before any tag reads the default.
  if (record && record.rules) gtag('consent', 'update', consentState(record.rules));

  // --- network -------------------------------------------------------------------------------------
  function url(path) {
    return opts.host + path;
  }
  function headers() {
    return { 'Content-Type': 'application/json', Authorization: 'Bearer ' + opts.writeKey };
  }
  function post(path, body) {
    var text = JSON.stringify(body);
    // keepalive lets a request outlive the page, up to 64 KB in flight.
    return fetch(url(path), {
      method: 'POST',
      headers: headers(),
      body: text,
      credentials: 'omit',
      keepalive: text.length < 60000,
    });
  }

  // --- consent -------------------------------------------------------------------------------------
  function purposesOnNotice() {
    return cfg.purposes.filter(function (p) {
      return p.requiresConsent && cfg.notice.purposes.indexOf(p.id) >= 0;
    });
  }

  function needsPrompt() {
    var n = cfg.notice;
    return (
      !record || !record.notice || record.notice.version !== n.version || record.notice.contentHash !== n.contentHash
    );
  }

  /**
   * Applies and records a choice: `choices` maps every consent purpose of the notice to a boolean.
   * `override` is true when the visitor confirmed allowing sale/share despite a GPC signal.
   */
  function choose(choices, override, method) {
    var n = cfg.notice;
    var granted = [];
    var denied = [];
    purposesOnNotice().forEach(function (p) {
      var yes = !!choices[p.id];
      if (yes && gpc && cfg.rules.optOut.indexOf(p.id) >= 0 && !override) yes = false;
      choices[p.id] = yes;
      (yes ? granted : denied).push(p.id);
    });
    var first = !record || !record.anonymousId;
    record = {
      v: 1,
      notice: { id: n.id, version: n.version, contentHash: n.contentHash },
      choices: choices,
      gpc: gpc,
      gpcOverride: !!(gpc && override),
      optOutSent: !!(record && record.optOutSent && record.anonymousId),
      anonymousId: (record && record.anonymousId) || uuid(),
      locale: state.locale,
      at: iso(),
      rules: cfg.rules,
    };
    write(keys.consent, record);
    var body = {
      anonymousId: record.anonymousId,
      notice: record.notice,
      granted: granted,
      denied: denied,
      method: method || 'banner',
      jurisdiction: opts.jurisdiction || cfg.jurisdiction,
      locale: state.locale,
      gpc: gpc,
      sdkVersion: VERSION,
    };
    var sent = post('/v1/consent', body)
      .then(function (r) {
        // R-GPC-1: the opt-out is also logged as a "Do Not Sell or Share" request, once per id.
        if (r.ok && gpc && !record.gpcOverride && !record.optOutSent) {
          return fetch(url('/v1/me/opt-out'), {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ anonymousId: record.anonymousId }),
            credentials: 'omit',
            keepalive: true,
          }).then(function (o) {
            if (o.ok) {
              record.optOutSent = true;
              write(keys.consent, record);
            }
          });
        }
      })
      .catch(function () {
        /* the choice holds locally; the ledger gets the next one */
      });
    recorded = sent;
    applyConsent();
    if (allowed('analytics')) startTracking();
    else stopTracking();
    // The decision service sees the choice before it is asked.
    if (first) sent.then(runSlots);
    emit('consent', api.consent());
    return sent;
  }

  /** Pushes the Consent Mode update and the site event for the current state. */
  function applyConsent() {
    gtag('consent', 'update', consentState(cfg.rules));
    var purposes = {};
    cfg.purposes.forEach(function (p) {
      purposes[p.id] = allowed(p.id);
    });
    dl.push({
      event: 'lethe_consent_update',
      lethe: { purposes: purposes, gpc: gpc, noticeVersion: cfg.notice.version },
    });
  }

  // --- the banner and the preferences dialog ------------------------------------------------------
  var state = { locale: 'en' };
  var ui = null;

  // Dark text on white and white on near-black: contrast well above WCAG AA (4.5:1). Every button of
  // a layer looks the same, so that refusing is as visible as accepting.
  var CSS = [
    ':host{all:initial}',
    '*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:15px;',
    'line-height:1.45;color:#111827}',
    '[hidden]{display:none!important}',
    '.b,.p{background:#fff;border:1px solid #9ca3af;border-radius:10px;box-shadow:0 8px 30px rgba(0,0,0,.3);',
    'padding:20px}',
    '.b{position:fixed;left:16px;right:16px;bottom:16px;max-width:760px;margin:0 auto;z-index:2147483646}',
    '.o{position:fixed;inset:0;background:rgba(17,24,39,.6);display:flex;align-items:center;',
    'justify-content:center;z-index:2147483647}',
    '.p{position:relative;width:calc(100% - 32px);max-width:640px;max-height:calc(100% - 32px);overflow:auto}',
    'h2{font-size:19px;font-weight:700;margin:0 40px 8px 0}',
    'p{margin:0 0 10px}',
    '.a{display:flex;flex-wrap:wrap;gap:8px;margin-top:14px}',
    '.a button{flex:1 1 150px;min-height:44px;padding:10px 16px;border:2px solid #111827;border-radius:6px;',
    'background:#111827;color:#fff;font-weight:600;cursor:pointer}',
    '.a button:hover{background:#374151}',
    'button:focus-visible,input:focus-visible,.b:focus-visible,.p:focus-visible{outline:3px solid #1d4ed8;',
    'outline-offset:2px}',
    'ul{list-style:none;margin:8px 0 0;padding:0}',
    'li{border-top:1px solid #e5e7eb;padding:10px 0}',
    'label{display:flex;align-items:center;gap:10px;font-weight:600}',
    'input{width:20px;height:20px;margin:0;accent-color:#111827}',
    '.d{color:#374151;font-size:14px;margin:4px 0 0 30px}',
    '.g{background:#ecfdf5;border:1px solid #047857;border-radius:6px;padding:8px 12px;color:#064e3b}',
    '.g strong{color:#064e3b}',
    '.c{border:2px solid #b45309;border-radius:6px;padding:12px;margin-top:10px}',
    '.x{position:absolute;top:8px;right:8px;width:44px;height:44px;border:0;background:none;font-size:24px;',
    'cursor:pointer}',
    '.r{position:fixed;left:12px;bottom:12px;z-index:2147483645;padding:6px 12px;border:1px solid #111827;',
    'border-radius:16px;background:#fff;color:#111827;font-size:13px;cursor:pointer}',
  ].join('');

  function el(tag, attrs, children) {
    var e = d.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) {
      if (c) e.appendChild(c);
    });
    return e;
  }

  function strings() {
    var all = cfg.strings;
    var def = all[cfg.notice.defaultLocale] || {};
    var own = all[state.locale] || {};
    var out = {};
    for (var k in def) out[k] = own[k] || def[k];
    return out;
  }

  function texts() {
    return cfg.notice.texts[state.locale] || cfg.notice.texts[cfg.notice.defaultLocale];
  }

  /** The locale served: exact match, then same language, then the notice's default (as the server). */
  function pickLocale(requested) {
    var have = Object.keys(cfg.notice.texts);
    var req = (requested || '').toLowerCase();
    var lang = req.split('-')[0];
    var exact = have.filter(function (l) {
      return l.toLowerCase() === req;
    })[0];
    var same = have.filter(function (l) {
      return l.toLowerCase().split('-')[0] === lang;
    })[0];
    return exact || same || cfg.notice.defaultLocale;
  }

  function focusables(root) {
    return Array.prototype.filter.call(root.querySelectorAll('button,input:not([disabled]),a[href]'), function (e) {
      return !e.closest('[hidden]') && !e.disabled;
    });
  }

  /** Keeps Tab inside `box`; Escape calls `onEscape` when given. */
  function trap(box, onEscape) {
    box.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && onEscape) {
        e.preventDefault();
        onEscape();
        return;
      }
      if (e.key !== 'Tab') return;
      var f = focusables(box);
      if (!f.length) return;
      var i = f.indexOf(ui.root.activeElement);
      if (e.shiftKey && i <= 0) {
        e.preventDefault();
        f[f.length - 1].focus();
      } else if (!e.shiftKey && (i === f.length - 1 || i < 0)) {
        e.preventDefault();
        f[0].focus();
      }
    });
  }

  function gpcNotice(s) {
    return gpc
      ? el('p', { class: 'g', role: 'status' }, [
          el('strong', { text: s.gpc_honored }),
          d.createTextNode('. ' + s.gpc_detail),
        ])
      : null;
  }

  function buildUi() {
    if (ui || !d.body) return;
    var s = strings();
    var t = texts();
    var host = el('div', { id: 'lethe-consent' });
    var root = host.attachShadow({ mode: 'open' });
    root.appendChild(el('style', { text: CSS }));
    ui = { host: host, root: root, returnTo: null };

    function buttons(third) {
      return el('div', { class: 'a' }, [
        el('button', { type: 'button', 'data-action': 'reject', text: s.reject_all, onclick: rejectAll }),
        el('button', { type: 'button', 'data-action': 'accept', text: s.accept_all, onclick: acceptAll }),
        third,
      ]);
    }

    // The banner (first layer).
    ui.banner = el(
      'div',
      {
        class: 'b',
        role: 'dialog',
        'aria-modal': 'true',
        'aria-labelledby': 'lethe-bt',
        'aria-describedby': 'lethe-bd',
        tabindex: '-1',
        lang: state.locale,
        hidden: '',
      },
      [
        el('h2', { id: 'lethe-bt', text: t.title }),
        el('p', { id: 'lethe-bd', text: t.body }),
        gpcNotice(s),
        buttons(
          el('button', {
            type: 'button',
            'data-action': 'customize',
            text: s.customize,
            onclick: function () {
              openPreferences(true);
            },
          })
        ),
      ]
    );
    trap(ui.banner, null);

    // The preferences dialog (second layer).
    var list = el('ul');
    ui.toggles = {};
    // What needs no consent first, then the others in id order.
    cfg.purposes
      .filter(function (p) {
        return cfg.notice.purposes.indexOf(p.id) >= 0;
      })
      .sort(function (a, b) {
        return a.requiresConsent - b.requiresConsent;
      })
      .forEach(function (p) {
        var free = !p.requiresConsent;
        var box = el('input', {
          type: 'checkbox',
          role: 'switch',
          'data-purpose': p.id,
          id: 'lethe-p-' + p.id,
          'aria-describedby': 'lethe-d-' + p.id,
        });
        if (free) {
          box.checked = true;
          box.disabled = true;
        } else {
          ui.toggles[p.id] = box;
          box.addEventListener('change', function () {
            if (box.checked && gpc && cfg.rules.optOut.indexOf(p.id) >= 0 && !ui.override) {
              box.checked = false;
              confirmOverride(box);
            }
          });
        }
        var label = (t.labels && t.labels[p.id]) || p.name;
        list.appendChild(
          el('li', {}, [
            el('label', { for: 'lethe-p-' + p.id }, [box, el('span', { text: label })]),
            el('p', { class: 'd', id: 'lethe-d-' + p.id, text: p.description }),
          ])
        );
      });
    ui.confirm = el('div', { class: 'c', role: 'group', 'aria-labelledby': 'lethe-ct', hidden: '' }, [
      el('p', { id: 'lethe-ct', text: s.gpc_confirm }),
      el('div', { class: 'a' }, [
        el('button', {
          type: 'button',
          'data-action': 'keep-opt-out',
          text: s.gpc_confirm_no,
          onclick: function () {
            closeConfirm(false);
          },
        }),
        el('button', {
          type: 'button',
          'data-action': 'allow-anyway',
          text: s.gpc_confirm_yes,
          onclick: function () {
            closeConfirm(true);
          },
        }),
      ]),
    ]);
    ui.prefs = el(
      'div',
      {
        class: 'p',
        role: 'dialog',
        'aria-modal': 'true',
        'aria-labelledby': 'lethe-pt',
        'aria-describedby': 'lethe-pd',
        tabindex: '-1',
        lang: state.locale,
      },
      [
        el('button', { type: 'button', class: 'x', 'aria-label': s.close, text: '\u00d7', onclick: closePreferences }),
        el('h2', { id: 'lethe-pt', text: s.preferences_title }),
        el('p', { id: 'lethe-pd', text: t.body }),
        gpcNotice(s),
        list,
        ui.confirm,
        buttons(el('button', { type: 'button', 'data-action': 'save', text: s.save, onclick: save })),
      ]
    );
    ui.overlay = el('div', { class: 'o', hidden: '' }, [ui.prefs]);
    trap(ui.prefs, closePreferences);

    ui.reopen = el('button', {
      type: 'button',
      class: 'r',
      'aria-haspopup': 'dialog',
      'data-action': 'reopen',
      text: s.reopen,
      hidden: '',
      onclick: function () {
        openPreferences(false);
      },
    });

    root.appendChild(ui.banner);
    root.appendChild(ui.overlay);
    root.appendChild(ui.reopen);
    d.body.appendChild(host);
  }

  function confirmOverride(box) {
    ui.pendingBox = box;
    ui.confirm.hidden = false;
    ui.confirm.querySelector('button').focus();
  }
  function closeConfirm(allow) {
    ui.confirm.hidden = true;
    if (allow) {
      ui.override = true;
      ui.pendingBox.checked = true;
    }
    ui.pendingBox.focus();
  }

  /** The focused element, looking inside the SDK's shadow root. */
  function focused() {
    var a = d.activeElement;
    return ui && a === ui.host ? ui.root.activeElement : a;
  }

  function showBanner() {
    buildUi();
    if (!ui) return;
    ui.fromBanner = false;
    ui.returnTo = focused();
    ui.reopen.hidden = true;
    ui.banner.hidden = false;
    ui.banner.focus();
  }

  function openPreferences(fromBanner) {
    buildUi();
    if (!ui) return;
    ui.fromBanner = !!fromBanner;
    if (!fromBanner) ui.returnTo = focused();
    ui.override = !!(record && record.gpcOverride);
    ui.confirm.hidden = true;
    for (var id in ui.toggles) ui.toggles[id].checked = allowed(id);
    ui.banner.hidden = true;
    ui.overlay.hidden = false;
    ui.prefs.focus();
  }

  function closePreferences() {
    ui.overlay.hidden = true;
    if (ui.fromBanner) {
      ui.banner.hidden = false;
      ui.banner.focus();
    } else {
      done();
    }
  }

  /** Closes every layer, shows the reopen button, gives focus back. */
  function done() {
    ui.banner.hidden = true;
    ui.overlay.hidden = true;
    ui.reopen.hidden = false;
    var back = ui.returnTo;
    ui.returnTo = null;
    // Focus goes back where it was; when that was nowhere in particular, to the reopen button.
    if (back && back !== d.body && back.isConnected && back !== ui.banner) back.focus();
    else ui.reopen.focus();
  }

  function all(value) {
    var c = {};
    purposesOnNotice().forEach(function (p) {
      c[p.id] = value;
    });
    return c;
  }
  function acceptAll() {
    choose(all(true), record && record.gpcOverride);
    done();
  }
  function rejectAll() {
    choose(all(false), false);
    done();
  }
  function save() {
    var c = {};
    for (var id in ui.toggles) c[id] = ui.toggles[id].checked;
    choose(c, ui.override);
    done();
  }

  // --- tracking (analytics purpose only) -----------------------------------------------------------
  var page = { scroll: {}, visibleSince: now(), visibleMs: 0 };
  var session = null;
  var timer = null;
  var sending = false;

  /** A URL without its query string and fragment (they carry identifiers); `origin` keeps only that. */
  function cleanUrl(u, origin) {
    try {
      var x = new URL(u, w.location.href);
      return origin ? x.origin : x.origin + x.pathname;
    } catch (e) {
      return '';
    }
  }

  function context() {
    var prefs = {};
    ((cfg && cfg.purposes) || []).forEach(function (p) {
      prefs[p.id] = allowed(p.id);
    });
    return {
      page: {
        url: cleanUrl(w.location.href),
        path: w.location.pathname,
        title: d.title,
        referrer: d.referrer ? cleanUrl(d.referrer, true) : '',
      },
      userAgent: nav.userAgent,
      locale: state.locale,
      library: { name: 'lethe.js', version: VERSION },
      consent: { categoryPreferences: prefs },
    };
  }

  /** Keeps only the properties the policies classify for a declared event type (none is dropped). */
  function classified(type, props) {
    var fields = cfg && cfg.fields && cfg.fields[type];
    if (!fields) return props || {};
    var out = {};
    for (var k in props || {})
      if (fields.indexOf(k) >= 0 && props[k] !== undefined && props[k] !== '') out[k] = props[k];
    return out;
  }

  function enqueue(msg, necessary) {
    if (!record || !record.anonymousId || !(necessary || allowed('analytics'))) return false;
    msg.anonymousId = record.anonymousId;
    msg.messageId = msg.messageId || uuid();
    msg.timestamp = msg.timestamp || iso();
    msg.context = context();
    queue.push(msg);
    var max = (cfg && cfg.tracking.maxQueue) || 500;
    if (queue.length > max) queue.splice(0, queue.length - max);
    persist();
    var name = msg.type === 'track' ? msg.event : msg.type;
    dl.push({ event: 'lethe_' + msg.type, lethe: { event: name, properties: msg.properties || {} } });
    if (queue.length >= ((cfg && cfg.tracking.batchSize) || 20)) flush();
    else schedule();
    return true;
  }

  function persist() {
    if (allowed('analytics')) write(keys.queue, queue.length ? queue : null);
  }

  function schedule() {
    if (timer || !cfg) return;
    timer = setTimeout(function () {
      timer = null;
      flush();
    }, cfg.tracking.flushIntervalMs);
  }

  /** Sends what waits; with `beacon`, hands it to navigator.sendBeacon (the page is going away). */
  function flush(beacon) {
    if (!opts.writeKey || !queue.length) return Promise.resolve();
    if (beacon && nav.onLine !== false && nav.sendBeacon) {
      while (queue.length) {
        var chunk = queue.slice(0, 50);
        var body = JSON.stringify({ batch: chunk, sentAt: iso(), writeKey: opts.writeKey });
        if (!nav.sendBeacon(url('/v1/batch'), new Blob([body], { type: 'text/plain;charset=UTF-8' }))) break;
        queue.splice(0, chunk.length);
      }
      persist();
      return Promise.resolve();
    }
    if (sending) return sending;
    // Events go after the choice that allows them has reached the ledger.
    sending = recorded
      .then(function () {
        var items = queue.splice(0, 100);
        if (!items.length) return;
        return post('/v1/batch', { batch: items, sentAt: iso() })
          .then(function (r) {
            // Refusals (4xx) are final: the collector said why and stored nothing. Retry the rest.
            if (r.status >= 500 || r.status === 429) throw new Error('retry');
          })
          .catch(function () {
            queue = items.concat(queue);
            retry();
          });
      })
      .then(function () {
        sending = false;
        persist();
        if (queue.length && !timer && !retryTimer) schedule();
      });
    return sending;
  }

  var retryTimer = null;
  var backoff = 1000;
  function retry() {
    if (retryTimer) return;
    retryTimer = setTimeout(function () {
      retryTimer = null;
      flush();
    }, backoff);
    backoff = Math.min(backoff * 2, 60000);
  }

  function touchSession(pages) {
    if (!session) return;
    session.last = now();
    session.pages += pages || 0;
    write(keys.session, session);
  }

  function startTracking() {
    if (started || !cfg || !allowed('analytics')) return;
    started = true;
    backoff = 1000;
    var saved = read(keys.queue);
    if (saved && saved.length) queue = saved.concat(queue);
    // The visit: its length is reported once it has ended (after the timeout without activity).
    session = read(keys.session);
    var t = now();
    if (session && t - session.last > cfg.tracking.sessionTimeoutMinutes * 60000) {
      enqueue({
        type: 'track',
        event: 'Session Ended',
        messageId: 'session-' + session.id,
        timestamp: iso(session.last),
        properties: classified('session.ended', {
          seconds: Math.round((session.last - session.start) / 1000),
          pages: session.pages,
        }),
      });
      session = null;
    }
    if (!session) session = { id: uuid(), start: t, last: t, pages: 0 };
    page.scroll = {};
    page.visibleSince = d.visibilityState === 'hidden' ? 0 : t;
    page.visibleMs = 0;
    api.page();
  }

  function stopTracking() {
    started = false;
    queue = [];
    session = null;
    write(keys.queue, null);
    write(keys.session, null);
  }

  function onScroll() {
    if (!started) return;
    var h = d.documentElement;
    var total = Math.max(h.scrollHeight, d.body ? d.body.scrollHeight : 0);
    var seen = ((w.scrollY + w.innerHeight) / total) * 100;
    cfg.tracking.scrollDepths.forEach(function (depth) {
      if (seen + 0.5 >= depth && !page.scroll[depth]) {
        page.scroll[depth] = true;
        api.track('Scroll Depth', { depth: depth });
      }
    });
  }

  function onClick(e) {
    var t = e.target && e.target.closest && e.target.closest('[data-lethe-track]');
    if (!t || !started) return;
    var props = {
      element: t.tagName.toLowerCase(),
      label: t.getAttribute('data-lethe-track') || (t.textContent || '').trim().slice(0, 80),
    };
    for (var k in t.dataset) {
      if (k.indexOf('lethe') !== 0 || k === 'letheTrack') continue;
      var name = k
        .slice(5)
        .replace(/[A-Z]/g, function (c) {
          return '_' + c.toLowerCase();
        })
        .replace(/^_/, '');
      var v = t.dataset[k];
      props[name] = v !== '' && !isNaN(v) && /^(price|position)$/.test(name) ? Number(v) : v;
    }
    api.track('Element Clicked', classified('element.clicked', props));
  }

  /** The page is hidden or going away: report the visible time, then hand the queue to a beacon. */
  function onHide() {
    if (started && page.visibleSince) {
      page.visibleMs += now() - page.visibleSince;
      page.visibleSince = 0;
      var seconds = Math.round(page.visibleMs / 1000);
      if (seconds >= 1) {
        page.visibleMs = 0;
        api.track('Time Spent', { seconds: Math.min(seconds, 86400) });
      }
      touchSession(0);
    }
    flush(true);
  }

  // --- personalized slots ----------------------------------------------------------------------------
  function device() {
    var ua = nav.userAgent;
    if (/iPad|Tablet/i.test(ua) || (/Android/i.test(ua) && !/Mobile/i.test(ua))) return 'tablet';
    return /Mobi|iPhone|Android/i.test(ua) ? 'mobile' : 'desktop';
  }

  function slotConfig(slot) {
    var s = (cfg && cfg.slots) || {};
    var own = (s.slots && s.slots[slot]) || {};
    return { deadline: own.deadlineMs || s.defaultDeadlineMs || 150, defaultVariant: own.defaultVariant || 'default' };
  }

  /** A request that gives up after `ms`: the answer, or null when late, failed or refused. */
  function timed(path, init, ms) {
    var ctrl = new AbortController();
    var t = setTimeout(function () {
      ctrl.abort();
    }, ms);
    init.signal = ctrl.signal;
    init.credentials = 'omit';
    return fetch(url(path), init)
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .catch(function () {
        return null;
      })
      .then(function (v) {
        clearTimeout(t);
        return ctrl.signal.aborted ? null : v;
      });
  }

  function outcome(decisionId, type, variant) {
    if (!allowed('personalization')) return;
    post('/v1/outcomes', { decisionId: decisionId, type: type, variant: variant }).catch(function () {});
  }

  function safeHref(h) {
    try {
      var u = new URL(h, w.location.href);
      return /^https?:$/.test(u.protocol) ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  /** Fills a slot with a variant: its `<template data-lethe-variant>`, else the variant's content. */
  function render(node, variant) {
    var tpl = Array.prototype.filter.call(node.querySelectorAll('template[data-lethe-variant]'), function (t) {
      return t.getAttribute('data-lethe-variant') === variant.id;
    })[0];
    var fresh;
    if (tpl) fresh = tpl.content.cloneNode(true);
    else {
      var c = variant.content;
      if (!c || !(c.title || c.body)) return false;
      var href = c.href && safeHref(c.href);
      var box = el(href ? 'a' : 'div', href ? { href: href, class: 'lethe-variant' } : { class: 'lethe-variant' });
      var img = c.image && safeHref(c.image);
      if (img) box.appendChild(el('img', { src: img, alt: '' }));
      if (c.title) box.appendChild(el('strong', { text: c.title }));
      if (c.body) box.appendChild(el('p', { text: c.body }));
      fresh = box;
    }
    Array.prototype.slice.call(node.childNodes).forEach(function (n) {
      if (!(n.tagName === 'TEMPLATE')) node.removeChild(n);
    });
    node.appendChild(fresh);
    return true;
  }

  function decide(slot, node) {
    if (!record || !record.anonymousId || !cfg) return Promise.resolve(null);
    var sc = slotConfig(slot);
    var body = {
      anonymousId: record.anonymousId,
      slot: slot,
      context: { device: device(), page: w.location.pathname, referrer: d.referrer ? cleanUrl(d.referrer, true) : '' },
      count: 1,
    };
    return timed('/v1/decide', { method: 'POST', headers: headers(), body: JSON.stringify(body) }, sc.deadline).then(
      function (answer) {
        if (!answer || !node) return answer;
        var v = answer.variants && answer.variants[0];
        var dflt = node.getAttribute('data-lethe-default') || sc.defaultVariant;
        node.setAttribute('data-lethe-decision', answer.decisionId);
        if (!v) return answer;
        var shown = dflt;
        // The default stays when the variant is the default, whatever the mode.
        if (v.id !== dflt && render(node, v)) shown = v.id;
        node.setAttribute('data-lethe-variant', shown);
        outcome(answer.decisionId, 'impression', shown);
        if (!node.__letheClick) {
          node.__letheClick = true;
          node.addEventListener('click', function () {
            outcome(node.getAttribute('data-lethe-decision'), 'click', node.getAttribute('data-lethe-variant'));
          });
        }
        return answer;
      }
    );
  }

  function recommendations(count, node, slot) {
    if (!record || !record.anonymousId || !cfg) return Promise.resolve(null);
    var q = '?anonymousId=' + encodeURIComponent(record.anonymousId) + '&count=' + (count || 8) + '&exclude=seen';
    if (slot) q += '&slot=' + encodeURIComponent(slot);
    var init = { headers: { Authorization: 'Bearer ' + opts.writeKey } };
    return timed('/v1/recommendations' + q, init, slotConfig(slot).deadline).then(function (answer) {
      var items = answer && answer.items;
      if (!items || !items.length || !node) return answer;
      node.textContent = '';
      items.forEach(function (it, i) {
        node.appendChild(
          el(
            'li',
            { 'data-lethe-track': 'recommendation', 'data-lethe-item-id': it.id, 'data-lethe-position': String(i + 1) },
            [el('span', { text: it.title || it.id })]
          )
        );
      });
      node.setAttribute('data-lethe-mode', answer.mode || '');
      return answer;
    });
  }

  function runSlots() {
    if (!cfg || !record || !record.anonymousId) return;
    Array.prototype.forEach.call(d.querySelectorAll('[data-lethe-slot]'), function (n) {
      decide(n.getAttribute('data-lethe-slot'), n);
    });
    Array.prototype.forEach.call(d.querySelectorAll('[data-lethe-recommendations]'), function (n) {
      recommendations(Number(n.getAttribute('data-count')) || 8, n, n.getAttribute('data-lethe-recommendations'));
    });
  }

  // --- start ---------------------------------------------------------------------------------------
  function domReady(f) {
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', f);
    else f();
  }

  function init(o) {
    if (opts.writeKey) return ready;
    o = o || {};
    if (!o.writeKey) throw new Error('Lethe.init needs a writeKey');
    opts = {
      writeKey: o.writeKey,
      host: (o.host || (script && script.src ? new URL(script.src).origin : w.location.origin)).replace(/\/$/, ''),
      site: o.site,
      locale: o.locale,
      jurisdiction: o.jurisdiction,
    };
    if (o.site) {
      namespace(o.site);
      record = read(keys.consent);
    }
    fetch(url('/sdk/config.json'), { credentials: 'omit' })
      .then(function (r) {
        if (!r.ok) throw new Error('config ' + r.status);
        return r.json();
      })
      .then(function (c) {
        cfg = c;
        state.locale = pickLocale(opts.locale || d.documentElement.lang || nav.language);
        domReady(function () {
          if (needsPrompt()) {
            // No choice yet (or one for an older notice): the necessary signals only.
            gtag('consent', 'update', consentState(cfg.rules));
            showBanner();
          } else {
            buildUi();
            if (ui) ui.reopen.hidden = false;
            // R-GPC-1: a signal that appeared after the choice opts out now, and is recorded.
            if (gpc && !record.gpc) choose(record.choices, false, 'gpc');
            else applyConsent();
          }
          startTracking();
          runSlots();
          readyResolve(api);
        });
      })
      .catch(function (e) {
        // Without the notice no banner can be shown: nothing is granted.
        readyResolve(api);
        if (w.console) console.warn('Lethe: ' + e.message);
      });
    w.addEventListener('scroll', onScroll, { passive: true });
    d.addEventListener('click', onClick, true);
    d.addEventListener('visibilitychange', function () {
      if (d.visibilityState === 'hidden') onHide();
      else if (started) page.visibleSince = now();
    });
    w.addEventListener('pagehide', onHide);
    w.addEventListener('online', function () {
      flush();
    });
    return ready;
  }

  var api = {
    version: VERSION,
    ready: ready,
    init: init,
    /** Opens the preferences dialog (for a "Privacy choices" link of the site's own). */
    showPreferences: function () {
      ready.then(function () {
        if (cfg) openPreferences(false);
      });
    },
    /** The current state: purposes allowed, GPC, the notice answered; null before any choice. */
    consent: function () {
      if (!record || !cfg) return null;
      var purposes = {};
      cfg.purposes.forEach(function (p) {
        purposes[p.id] = allowed(p.id);
      });
      return {
        purposes: purposes,
        gpc: gpc,
        gpcOverride: !!record.gpcOverride,
        notice: record.notice,
        anonymousId: record.anonymousId,
      };
    },
    anonymousId: function () {
      return record ? record.anonymousId : null;
    },
    on: function (name, f) {
      (listeners[name] = listeners[name] || []).push(f);
    },
    page: function (name, props) {
      var p = { title: d.title };
      if (name) p.name = name;
      for (var k in props || {}) p[k] = props[k];
      if (enqueue({ type: 'page', name: name, properties: classified('page.viewed', p) })) touchSession(1);
    },
    track: function (event, props) {
      if (enqueue({ type: 'track', event: String(event), properties: props || {} })) touchSession(0);
    },
    /** Links the anonymous id to the site's user id (recorded as necessary: rights reach both). */
    identify: function (userId) {
      enqueue({ type: 'identify', userId: String(userId) }, true);
    },
    decide: function (slot, node) {
      return decide(slot, node || d.querySelector('[data-lethe-slot="' + slot + '"]'));
    },
    recommendations: function (count, node, slot) {
      return recommendations(count, node, slot);
    },
    /** Sends every waiting event now; resolves when the collector answered (or the send failed). */
    flush: function () {
      return flush(false).then(function () {
        if (queue.length && !retryTimer) return flush(false);
      });
    },
    /** Forgets this browser's choice and id (after an erasure): the banner asks again. */
    reset: function () {
      stopTracking();
      record = null;
      write(keys.consent, null);
      if (cfg) {
        gtag('consent', 'update', consentState(cfg.rules));
        domReady(showBanner);
      }
    },
  };
  w.Lethe = api;

  if (script && script.getAttribute('data-write-key')) {
    init({
      writeKey: script.getAttribute('data-write-key'),
      host: script.getAttribute('data-host') || undefined,
      site: script.getAttribute('data-site') || undefined,
      locale: script.getAttribute('data-locale') || undefined,
      jurisdiction: script.getAttribute('data-jurisdiction') || undefined,
    });
  }
})(window, document);
