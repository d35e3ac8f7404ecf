/**
 * usage-ping's browser tracking, on the official Snowplow browser tracker.
 *
 * Bundled by `make js` into `src/usage_ping/tracking/static/usage-ping-tracking.js`, an IIFE that
 * defines `window.UsagePingTracking` (see frontend/README.md for the page-side set-up):
 *
 *   UsagePingTracking.init(options)                    start tracking (once); usually automatic
 *   UsagePingTracking.Tracking.event(category, action, {label, property, value, extra, context})
 *   UsagePingTracking.Tracking.bindDocument(root)      click tracking (automatic on `document`)
 *   UsagePingTracking.Tracking.trackLoadEvents(root)   render events (automatic on load)
 *   UsagePingTracking.trackRedisCounterEvent(event)    POST {event} to /usage_data/increment_counter
 *   UsagePingTracking.trackRedisHllUserEvent(event)    POST {event} to /usage_data/increment_unique_users
 *
 * Every event carries the standard context (iglu:dev.usage-ping/standard_context/jsonschema/1-0-0)
 * with source "usage-ping-js". Nothing here throws into the page: failures return false.
 */

import { flushBuffer, newTracker, trackPageView, trackStructEvent } from '@snowplow/browser-tracker';

export const STANDARD_CONTEXT_SCHEMA = 'iglu:dev.usage-ping/standard_context/jsonschema/1-0-0';
export const SOURCE = 'usage-ping-js';
/** The id of the `<script type="application/json">` element that may hold the options. */
export const CONFIG_ELEMENT_ID = 'usage-ping-tracking-config';
/** Elements whose `data-track-action` is this are tracked when rendered, not when clicked. */
export const RENDER_ACTION = 'render';

const CLICK_SELECTOR = `[data-track-action]:not([data-track-action="${RENDER_ACTION}"])`;
const RENDER_SELECTOR = `[data-track-action="${RENDER_ACTION}"]`;
const QUEUE_LIMIT = 100;

/**
 * The options of `init`; the same names, in kebab case, as `data-*` attributes of the bundle's
 * `<script>` tag (`data-collector-url`, `data-user-id`...).
 */
export const DEFAULTS = Object.freeze({
  collectorUrl: null, // the collector's base URL; without it nothing is tracked
  appId: '',
  trackerNamespace: 'usage-ping',
  environment: 'production',
  plan: null,
  namespaceId: null,
  projectId: null,
  userId: null,
  eventMethod: 'post',
  credentials: 'include', // send the collector's cookie; 'omit' for collectors without CORS credentials
  respectDoNotTrack: true, // a browser asking not to be tracked is not tracked
  pageView: true, // track a page view on init
  autoTrack: true, // click and render tracking from data-track-* attributes
  usageDataCounterPath: '/usage_data/increment_counter',
  usageDataUniqueUsersPath: '/usage_data/increment_unique_users',
  tracker: null, // more options for Snowplow's newTracker, as they are
});

const BOOLEAN_OPTIONS = ['respectDoNotTrack', 'pageView', 'autoTrack'];

const state = {
  options: { ...DEFAULTS },
  started: false, // init has run (whatever its outcome)
  trackerId: null, // set when tracking is on
  queue: [], // events tracked before init
  boundRoots: new WeakSet(),
  rendered: new WeakSet(),
};

// Captured now: document.currentScript is only set while this script runs.
const ownScript = typeof document !== 'undefined' ? document.currentScript : null;

function warn(error) {
  if (typeof console !== 'undefined' && console.warn) {
    console.warn('usage-ping tracking:', error);
  }
}

function toId(value) {
  if (value === null || value === undefined || value === '') return null;
  const number = typeof value === 'number' ? value : Number(String(value).trim());
  return Number.isInteger(number) ? number : null;
}

function toNumber(value) {
  if (value === null || value === undefined || value === '') return undefined;
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

function toText(value) {
  return value === null || value === undefined || value === '' ? undefined : String(value);
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function normalise(raw) {
  const options = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    if (raw[key] !== undefined) options[key] = raw[key];
  }
  for (const key of BOOLEAN_OPTIONS) {
    if (typeof options[key] === 'string') options[key] = options[key] !== 'false';
  }
  options.eventMethod = String(options.eventMethod).toLowerCase() === 'get' ? 'get' : 'post';
  options.namespaceId = toId(options.namespaceId);
  options.projectId = toId(options.projectId);
  options.userId = toId(options.userId);
  options.plan = toText(options.plan) ?? null;
  if (typeof options.tracker === 'string') options.tracker = JSON.parse(options.tracker);
  return options;
}

function doNotTrack() {
  if (!state.options.respectDoNotTrack || typeof navigator === 'undefined') return false;
  const value = navigator.doNotTrack || (typeof window !== 'undefined' && window.doNotTrack);
  return value === '1' || value === 'yes';
}

/** The standard context entity, with `extra` (an object) or null. */
export function standardContext(extra = null) {
  const options = state.options;
  return {
    schema: STANDARD_CONTEXT_SCHEMA,
    data: {
      environment: String(options.environment),
      source: SOURCE,
      plan: options.plan,
      namespace_id: options.namespaceId,
      project_id: options.projectId,
      user_id: options.userId,
      extra: isPlainObject(extra) && Object.keys(extra).length > 0 ? extra : null,
    },
  };
}

/**
 * Start tracking: create the Snowplow tracker, track a page view, bind the automatic tracking
 * and send the events tracked before. Runs once; returns whether tracking is on.
 */
export function init(options = {}) {
  try {
    if (state.started) return state.trackerId !== null;
    state.started = true;
    state.options = normalise(options || {});
    const queued = state.queue;
    state.queue = [];
    const opts = state.options;
    if (!opts.collectorUrl || doNotTrack()) return false;
    newTracker(opts.trackerNamespace, String(opts.collectorUrl), {
      appId: String(opts.appId ?? ''),
      platform: 'web',
      eventMethod: opts.eventMethod,
      credentials: opts.credentials,
      respectDoNotTrack: opts.respectDoNotTrack,
      bufferSize: 1,
      // A click that also navigates (a link, a form) must not cancel its own event: keepalive
      // requests outlive the page that sent them.
      keepalive: true,
      contexts: { webPage: true },
      ...(isPlainObject(opts.tracker) ? opts.tracker : {}),
    });
    state.trackerId = opts.trackerNamespace;
    if (opts.pageView) {
      trackPageView({ context: [standardContext()] }, [state.trackerId]);
    }
    for (const args of queued) event(...args);
    if (opts.autoTrack && typeof document !== 'undefined') {
      whenReady(() => {
        bindDocument(document);
        trackLoadEvents(document);
      });
    }
    return true;
  } catch (error) {
    warn(error);
    state.trackerId = null;
    return false;
  }
}

/**
 * Track a structured event with the standard context.
 *
 * `category` defaults to the page's `<body data-page>`; `data` may have `label`, `property`,
 * `value` (a number), `extra` (an object, sent in the standard context) and `context` (more
 * self-describing entities). Returns true when the event was tracked (or queued until `init`).
 */
export function event(category, action, data = {}) {
  try {
    if (!state.started) {
      if (state.queue.length >= QUEUE_LIMIT) return false;
      state.queue.push([category, action, data]);
      return true;
    }
    if (state.trackerId === null || doNotTrack()) return false;
    const given = isPlainObject(data) ? data : {};
    const more = given.context ? [].concat(given.context) : [];
    trackStructEvent(
      {
        category: toText(category) ?? pageCategory(),
        action: toText(action) ?? 'generic',
        label: toText(given.label),
        property: toText(given.property),
        value: toNumber(given.value),
        context: [standardContext(given.extra), ...more],
      },
      [state.trackerId],
    );
    return true;
  } catch (error) {
    warn(error);
    return false;
  }
}

function pageCategory() {
  const body = typeof document !== 'undefined' ? document.body : null;
  return (body && body.dataset && body.dataset.page) || 'default';
}

function parseExtra(text) {
  if (!text) return null;
  try {
    const parsed = JSON.parse(text);
    return isPlainObject(parsed) ? parsed : null;
  } catch (error) {
    warn(`data-track-extra is not a JSON object: ${text}`);
    return null;
  }
}

function elementValue(element) {
  const given = element.dataset.trackValue;
  if (given !== undefined) return given;
  if (element.type === 'checkbox' && !element.checked) return 0;
  const tag = element.tagName;
  return tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA' ? element.value : undefined;
}

/** The event data that an element's data-track-* attributes describe. */
function elementData(element) {
  const dataset = element.dataset;
  return {
    label: dataset.trackLabel,
    property: dataset.trackProperty,
    value: elementValue(element),
    extra: parseExtra(dataset.trackExtra),
  };
}

function onClick(domEvent) {
  try {
    const target = domEvent.target;
    const element = target && target.closest ? target.closest(CLICK_SELECTOR) : null;
    if (!element) return;
    event(element.dataset.trackCategory, element.dataset.trackAction, elementData(element));
  } catch (error) {
    warn(error);
  }
}

/**
 * Track clicks on elements with `data-track-action` (other than "render") inside `root`.
 * Listens in the capture phase, so handlers that stop propagation do not hide clicks.
 * Returns a function that unbinds.
 */
export function bindDocument(root = document) {
  if (!root || state.boundRoots.has(root)) return () => {};
  state.boundRoots.add(root);
  root.addEventListener('click', onClick, true);
  return () => {
    root.removeEventListener('click', onClick, true);
    state.boundRoots.delete(root);
  };
}

/**
 * Track a "render" event for each element with `data-track-action="render"` inside `root`
 * (each element once). Call it again for content added later.
 */
export function trackLoadEvents(root = document) {
  try {
    const elements = root.querySelectorAll(RENDER_SELECTOR);
    for (const element of elements) {
      if (state.rendered.has(element)) continue;
      state.rendered.add(element);
      event(element.dataset.trackCategory, RENDER_ACTION, elementData(element));
    }
  } catch (error) {
    warn(error);
  }
}

function whenReady(callback) {
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', callback, { once: true });
  } else {
    callback();
  }
}

/** Whether tracking is on. */
export function enabled() {
  return state.trackerId !== null && !doNotTrack();
}

/** Send buffered events now (only useful with a `tracker.bufferSize` above 1). */
export function flush() {
  try {
    if (state.trackerId !== null) flushBuffer({}, [state.trackerId]);
  } catch (error) {
    warn(error);
  }
}

export const Tracking = Object.freeze({
  init,
  event,
  enabled,
  flush,
  bindDocument,
  trackLoadEvents,
  standardContext,
});

// -- the host's UsageData API (counters, unique users) ---------------------------------------

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute('content') : null;
}

function postUsageData(path, eventName) {
  try {
    if (!eventName) return Promise.resolve(false);
    const headers = { 'Content-Type': 'application/json' };
    const token = csrfToken();
    if (token) headers['X-CSRF-Token'] = token;
    return fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers,
      body: JSON.stringify({ event: String(eventName) }),
    }).then(
      // Read the (small) body too, so the request is complete before the caller moves on.
      (response) => response.text().then(
        () => response.ok,
        () => response.ok,
      ),
      () => false,
    );
  } catch (error) {
    warn(error);
    return Promise.resolve(false);
  }
}

/** Count `event` once (an ordinary counter); resolves to whether the host accepted it. */
export function trackRedisCounterEvent(eventName) {
  return postUsageData(state.options.usageDataCounterPath, eventName);
}

/** Count the current user for `event` (a unique-users counter); resolves like the above. */
export function trackRedisHllUserEvent(eventName) {
  return postUsageData(state.options.usageDataUniqueUsersPath, eventName);
}

// -- automatic start --------------------------------------------------------------------------

function pageConfig() {
  let found = null;
  if (ownScript && ownScript.dataset && Object.keys(ownScript.dataset).length > 0) {
    found = { ...ownScript.dataset };
  }
  const element = document.getElementById(CONFIG_ELEMENT_ID);
  if (element) {
    try {
      const parsed = JSON.parse(element.textContent || '{}');
      if (isPlainObject(parsed)) found = { ...(found || {}), ...parsed };
    } catch (error) {
      warn(`#${CONFIG_ELEMENT_ID} is not a JSON object`);
    }
  }
  return found;
}

function autoStart() {
  try {
    const config = pageConfig();
    if (config) {
      init(config);
    } else if (document.readyState === 'loading') {
      // The JSON element may come after this script: look again once the page is parsed.
      document.addEventListener(
        'DOMContentLoaded',
        () => {
          const later = pageConfig();
          if (later) init(later);
        },
        { once: true },
      );
    }
  } catch (error) {
    warn(error);
  }
}

if (typeof document !== 'undefined') autoStart();
