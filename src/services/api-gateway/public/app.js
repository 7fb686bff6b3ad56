// @ts-check
/// <reference lib="dom" />
// BitBrat dashboard: plain ES module, no build step. Signing in turns the token into an HttpOnly
// session cookie (POST /api/session), so the token never stays in the page, its storage or a URL; the
// API, /api/live (server-sent events read with fetch) and /ws/v1 (chat) all authenticate by that cookie.

/** @typedef {import('./api-types').SessionInfo} SessionInfo */
/** @typedef {import('./api-types').EventSummary} EventSummary */
/** @typedef {import('./api-types').EventDetail} EventDetail */
/** @typedef {import('./api-types').SourceState} SourceState */
/** @typedef {import('./api-types').HealthReport} HealthReport */
/** @typedef {import('./api-types').ServiceHealth} ServiceHealth */
/** @typedef {import('./api-types').DeadLetterSummary} DeadLetterSummary */
/** @typedef {import('./api-types').DeadLetterPage} DeadLetterPage */
/** @typedef {import('./api-types').RuleRecord} RuleRecord */
/** @typedef {import('./api-types').RulePage} RulePage */
/** @typedef {import('./api-types').RestoreResult} RestoreResult */
/** @typedef {import('./api-types').ReplayResult} ReplayResult */
/** @typedef {import('./api-types').CommandRecord} CommandRecord */
/** @typedef {import('./api-types').CommandHelp} CommandHelp */
/** @typedef {import('./api-types').StatsSeries} StatsSeries */
/** @typedef {import('./api-types').StatsBucket} StatsBucket */
/** @typedef {import('./api-types').ListPage<EventSummary>} EventPage */
/** @typedef {import('./api-types').TwitchSetup} TwitchSetup */
/** @typedef {import('./api-types').TwitchAccount} TwitchAccount */
/** @typedef {import('./api-types').Reaction} Reaction */
/** A form whose controls are read by name. */
/** @typedef {HTMLFormElement & { elements: HTMLFormControlsCollection & Record<string, HTMLInputElement & HTMLSelectElement & HTMLTextAreaElement> }} NamedForm */

const MAX_FEED = 200;
const MAX_CHAT = 200;
/** Writes made with the cookie carry this header; another site cannot set it without CORS. */
const CSRF = { 'x-bitbrat-csrf': '1' };

/**
 * @type {{
 *   me: SessionInfo | null, staleSince: string | null, activity: Map<string, EventSummary>, channelChat: Map<string, EventSummary>,
 *   commandHelp: CommandHelp | null, defaultRules: string[], stats: StatsSeries | null, consoleSent: Map<string, HTMLElement>,
 *   view: string, events: Map<string, EventSummary>, nextCursor: string | undefined, sources: Map<string, SourceState>,
 *   samples: Map<string, { previous?: Sample, current: Sample }>, health: HealthReport | null, deadletters: DeadLetterSummary[],
 *   rules: RuleRecord[], commands: CommandRecord[], editingRule: string | null, editingCommand: string | null,
 *   live: AbortController | null, chat: { send(frame: ChatFrame): void, close(): void } | null,
 *   twitch: TwitchSetup | null, reactions: Reaction[],
 * }}
 */
const state = {
  me: null,
  twitch: null,
  reactions: [],
  /** When the live stream last delivered anything; set while the server is unreachable. */
  staleSince: null,
  activity: new Map(),
  channelChat: new Map(),
  commandHelp: null,
  defaultRules: [],
  stats: null,
  /** Console messages by envelope id, until the pipeline has answered or said why not. */
  consoleSent: new Map(),
  view: 'overview',
  events: new Map(),
  nextCursor: undefined,
  sources: new Map(),
  samples: new Map(),
  health: null,
  deadletters: [],
  rules: [],
  commands: [],
  editingRule: null,
  editingCommand: null,
  live: null,
  chat: null,
};

/** @typedef {{ at: number, in: number, out: number }} Sample */
/** @typedef {{ type: 'chat', id: string, text: string, user: { name: string, role: string } }} ChatFrame */
/** @typedef {Node | string | number | null | undefined | false | Child[]} Child */

// ------------------------------------------------------------------------------------------ helpers

/**
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {HTMLElement}
 */
const $ = (selector, root = document) => {
  const found = root.querySelector(selector);
  if (!(found instanceof HTMLElement)) throw new Error(`dashboard: ${selector} is missing`);
  return found;
};
/**
 * An element of the page by its data-testid; the page always has it (a missing one is a bug, so it throws).
 * @param {string} id
 * @param {ParentNode} [root]
 */
const byTestId = (id, root = document) => $(`[data-testid="${CSS.escape(id)}"]`, root);
/** @param {string} id */
const formOf = (id) => /** @type {NamedForm} */ (byTestId(id));
/** @param {string} id */
const inputOf = (id) => /** @type {HTMLInputElement} */ (byTestId(id));

/**
 * Element builder; children are nodes or text (never parsed as HTML).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...Child} children
 * @returns {HTMLElement}
 */
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key === 'testid') element.dataset.testid = value;
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (value === true) element.setAttribute(key, '');
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat(4)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** @param {string | null | undefined} iso */
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '—');
/** HH:MM:SS.mmm, for step timings. */
/** @param {string | undefined} iso */
const preciseTime = (iso) =>
  iso ? `${new Date(iso).toLocaleTimeString([], { hour12: false })}.${String(new Date(iso).getMilliseconds()).padStart(3, '0')}` : '—';
/** @param {string | undefined} iso */
const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
/** @param {number | undefined} value */
const ms = (value) => (typeof value === 'number' ? `${Math.round(value)} ms` : '—');
/** @param {string | undefined} iso */
const ago = (iso) => {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
};
const canWrite = () => Boolean(state.me && (state.me.role === 'moderator' || state.me.role === 'owner'));

class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{ message?: string, problems?: string[] } | undefined} body
   */
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls the API with the session cookie; the caller names the answer's type (from api-types).
 * @template T
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<T>}
 */
async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = method === 'GET' ? {} : { ...CSRF };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = { message: text };
  }
  if (response.status === 401 && state.me) signOut('Your session has ended. Sign in again.', false);
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/**
 * The server's message (it already lists every problem in plain words).
 * @param {unknown} error
 */
const errorText = (error) => (error instanceof Error ? error.message : String(error));

// -------------------------------------------------------------------------------------------- login

/** With a token: exchanges it for the session cookie. Without: asks whether the cookie (or anonymous access) lets us in. */
/**
 * @param {string} token
 * @returns {Promise<ApiError | Error | undefined>}
 */
async function signIn(token) {
  try {
    if (token) state.me = /** @type {SessionInfo} */ (await api('POST', '/api/session', { token }));
    else {
      const session = /** @type {SessionInfo} */ (await api('GET', '/api/session'));
      if (!session.signedIn) return new ApiError(401, { message: 'not signed in' });
      state.me = session;
    }
  } catch (error) {
    state.me = null;
    return error instanceof Error ? error : new Error(String(error));
  }
  showApp();
  return undefined;
}

/** Ends the session on the server (the cookie is cleared) and shows the sign-in form. */
function signOut(message = '', endSession = true) {
  if (endSession) void fetch('/api/session', { method: 'DELETE', headers: CSRF, credentials: 'same-origin' }).catch(() => undefined);
  state.me = null;
  state.live?.abort();
  state.live = null;
  state.chat?.close();
  state.chat = null;
  document.body.dataset.signedIn = 'false';
  byTestId('nav').hidden = true;
  byTestId('session').hidden = true;
  for (const view of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.view'))) view.hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-error').textContent = message;
  inputOf('login-token').focus();
}

function showApp() {
  if (!state.me) return;
  const me = state.me;
  document.body.dataset.signedIn = 'true';
  document.body.dataset.role = me.role;
  byTestId('login').hidden = true;
  byTestId('nav').hidden = false;
  byTestId('session').hidden = false;
  byTestId('session-role').textContent = `${me.anonymous ? 'anonymous ' : ''}${me.role}`;
  for (const button of /** @type {NodeListOf<HTMLButtonElement>} */ (document.querySelectorAll('[data-requires-write]')))
    button.disabled = !canWrite();
  show(state.view);
  startLive();
  connectChat();
}

/** @param {string} view */
function show(view) {
  state.view = view;
  for (const section of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.view')))
    section.hidden = section.dataset.view !== view;
  for (const tab of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.tab'))) {
    if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (view === 'deadletters') loadDeadLetters();
  if (view === 'rules') loadRules();
  if (view === 'commands') loadCommands();
  if (view === 'overview') void loadStats();
  if (view === 'reactions') void loadReactions();
  if (view === 'console') inputOf('console-text').focus();
}

// --------------------------------------------------------------------------------------------- live

/**
 * @param {string} value
 * @param {string} text
 */
function setLiveState(value, text) {
  const element = byTestId('live-status');
  element.dataset.state = value;
  element.textContent = text;
}

/**
 * The server writes to the live stream at least every 15 s (a keep-alive comment); this much silence
 * means the connection is dead even if the socket was never closed (a sleeping laptop, a dropped network).
 */
const LIVE_SILENCE_MS = 45_000;

/** Reads /api/live (SSE over fetch) and reconnects with backoff. */
function startLive() {
  state.live?.abort();
  const controller = new AbortController();
  state.live = controller;
  let delay = 1000;
  const run = async () => {
    while (!controller.signal.aborted) {
      const attempt = new AbortController();
      const stop = () => attempt.abort();
      controller.signal.addEventListener('abort', stop);
      let heardAt = Date.now();
      const watchdog = setInterval(() => Date.now() - heardAt > LIVE_SILENCE_MS && attempt.abort(), 5_000);
      try {
        setLiveState('connecting', 'connecting…');
        const response = await fetch('/api/live', { credentials: 'same-origin', signal: attempt.signal });
        if (response.status === 401) return signOut('Your session has ended. Sign in again.', false);
        if (!response.ok || !response.body) throw new Error(`live: HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          heardAt = Date.now();
          buffer += value;
          let split;
          while ((split = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, split);
            buffer = buffer.slice(split + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trim();
            }
            if (data) {
              delay = 1000;
              onLive(event, JSON.parse(data));
            }
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        console.warn('live stream interrupted', error);
      } finally {
        clearInterval(watchdog);
        controller.signal.removeEventListener('abort', stop);
      }
      if (controller.signal.aborted) return;
      setLiveState('reconnecting', 'server unreachable · retrying…');
      markStale();
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(10_000, delay * 2);
    }
  };
  void run();
}

/**
 * @param {string} event
 * @param {any} data what the server sent for `event` (see LiveMessage)
 */
function onLive(event, data) {
  switch (event) {
    case 'hello':
      return;
    case 'sources':
      // Sent once the stream is subscribed: from here on nothing is missed, so (re)load the lists.
      setLiveState('connected', 'live');
      markFresh();
      state.sources.clear();
      for (const source of data) upsertSource(source);
      renderSources();
      void loadEvents(true);
      void loadDeadLetters();
      void loadActivityAndChat();
      void loadStats();
      void loadTwitch();
      return;
    case 'source':
      upsertSource(data);
      renderSources();
      return;
    case 'event':
      upsertEvent(data);
      upsertActivity(data);
      upsertChat(data);
      explainConsoleMessage(data);
      return;
    case 'deadletter':
      upsertDeadLetter(data);
      return;
    case 'health':
      if (data) {
        state.health = data;
        renderHealth();
      }
      return;
    default:
  }
}

// ------------------------------------------------------------------------------------------ health

function renderHealth() {
  const list = byTestId('health-list');
  const report = state.health;
  const overall = byTestId('health-overall');
  if (!report) return;
  const stale = Boolean(state.staleSince);
  /** @param {ServiceHealth} service */
  const notConfigured = (service) =>
    Object.entries(service.components ?? {}).filter(([, component]) => component.ready && component.configured === false);
  const attention = report.services.some((service) => service.state === 'not_ready' || service.state === 'unreachable');
  // Never "all ready" from a report the server can no longer confirm.
  const unseen = report.services.filter((service) => service.state === 'unknown').length;
  // "all ready" only when every service was actually seen ready; the others run elsewhere, unseen.
  overall.textContent = stale
    ? 'unknown (server unreachable)'
    : attention
      ? 'attention'
      : unseen
        ? `${report.services.length - unseen} ready · ${unseen} not visible here`
        : report.services.some((service) => notConfigured(service).length)
          ? 'ready · some not configured'
          : 'all ready';
  overall.dataset.state = stale ? 'unknown' : attention ? 'bad' : 'ok';
  list.replaceChildren(
    ...report.services.map((service) => {
      const unset = notConfigured(service);
      const shown = stale ? 'unknown' : service.state === 'ready' && unset.length ? 'not_configured' : service.state;
      const detail = stale
        ? `last known: ${service.state.replace('_', ' ')}`
        : (service.detail ??
          Object.entries(service.components ?? {})
            .filter(([, component]) => !component.ready || component.configured === false)
            .map(([name, component]) => `${name}: ${component.detail ?? 'not ready'}`)
            .join('; '));
      return h(
        'li',
        { testid: `health-service-${service.name}`, dataset: { state: shown } },
        h('span', { class: `dot ${shown}`, 'aria-hidden': 'true' }),
        h('span', { class: 'name' }, service.name),
        h('span', { class: 'state' }, shown === 'not_configured' ? 'not configured' : shown.replace('_', ' ')),
        detail ? h('span', { class: 'detail', testid: 'health-detail' }, detail) : null,
      );
    }),
  );
}

/** The live stream is down: everything shown is only the last thing known. */
function markStale() {
  if (!state.staleSince) state.staleSince = new Date().toISOString();
  byTestId('stale-banner').hidden = false;
  byTestId('stale-since').textContent = time(state.staleSince);
  document.body.dataset.stale = 'true';
  renderHealth();
  renderSources();
  renderStreams();
}

function markFresh() {
  state.staleSince = null;
  byTestId('stale-banner').hidden = true;
  document.body.dataset.stale = 'false';
  renderHealth();
}

// ----------------------------------------------------------------------------------------- sources

/** @param {SourceState} source */
function upsertSource(source) {
  const previous = state.samples.get(source.id);
  const now = source.metrics?.lastHeartbeat ? Date.parse(source.metrics.lastHeartbeat) : Date.now();
  const sample = { at: now, in: source.metrics?.messagesIn ?? 0, out: source.metrics?.messagesOut ?? 0 };
  if (!previous || sample.at - previous.current.at >= 1000 || sample.in < previous.current.in) {
    state.samples.set(source.id, { previous: previous?.current, current: sample });
  } else {
    previous.current = { ...sample, at: previous.current.at };
  }
  state.sources.set(source.id, source);
}

/** Messages per minute between the last two samples, or undefined until there are two. */
/** @param {string} id */
function rates(id) {
  const entry = state.samples.get(id);
  if (!entry?.previous) return undefined;
  const minutes = (entry.current.at - entry.previous.at) / 60_000;
  if (minutes <= 0) return undefined;
  return {
    in: Math.max(0, (entry.current.in - entry.previous.in) / minutes),
    out: Math.max(0, (entry.current.out - entry.previous.out) / minutes),
  };
}

/** @type {Record<string, string>} */
const STATUS_TEXT = {
  connected: 'connected',
  disconnected: 'disconnected',
  connecting: 'connecting',
  error: 'error',
  not_configured: 'not configured',
  unknown: 'unknown',
};

function renderSources() {
  renderStreams();
  const container = byTestId('source-cards');
  const sources = [...state.sources.values()].sort((a, b) => a.id.localeCompare(b.id));
  // A placeholder card (how to connect a platform) gives way once that platform has a real source.
  const real = new Set(sources.filter((source) => !source.metadata?.placeholder).map((source) => source.platform));
  container.replaceChildren(
    ...sources
      .filter((source) => !(source.metadata?.placeholder && real.has(source.platform)))
      .map((source) => {
        const stale = Boolean(state.staleSince);
        // While the server is unreachable nothing here is confirmed: shown as unknown, last state kept as a hint.
        const status = stale ? 'unknown' : String(source.status ?? 'unknown').toLowerCase();
        const stream = stale ? 'unknown' : String(source.streamStatus ?? 'unknown').toLowerCase();
        const rate = rates(source.id);
        const metrics = source.metrics ?? {};
        // The Twitch card names exactly what is missing, from the same facts as the Twitch panel.
        const twitchHelp =
          source.platform === 'twitch' && status === 'not_configured' && state.twitch
            ? `${state.twitch.nextStep}${state.twitch.missing.length ? ' See the Twitch panel for what each one is.' : ''}`
            : null;
        const help = stale
          ? `Last known: ${STATUS_TEXT[String(source.status)] ?? source.status} (server unreachable since ${time(state.staleSince)})`
          : (twitchHelp ??
            source.metadata?.howToConnect ??
            (status === 'not_configured'
              ? (source.metadata?.hint ?? `Not configured: ${source.lastError?.message ?? 'see the Twitch setup below'}`)
              : null));
        /** @param {number | undefined} value */
        const perMinute = (value) => (value === undefined ? '— /min' : `${value < 10 ? value.toFixed(1) : Math.round(value)} /min`);
        return h(
          'article',
          {
            class: `card status-${status}`,
            testid: `source-card-${source.id}`,
            dataset: { status, stream },
            'aria-label': `${source.displayName ?? source.id}: ${STATUS_TEXT[status] ?? status}`,
          },
          h('header', {}, h('h4', {}, source.displayName ?? source.id), h('span', { class: 'platform' }, source.platform)),
          h(
            'div',
            { class: 'pills' },
            h('span', { class: `pill status ${status}`, testid: 'source-status' }, STATUS_TEXT[status] ?? status),
            source.platform === 'api' || source.platform === 'discord'
              ? null
              : h('span', { class: `pill stream ${stream}`, testid: 'source-stream' }, `stream ${stream}`),
            source.authStatus && source.authStatus !== 'unknown'
              ? h('span', { class: `pill auth ${source.authStatus}` }, `auth ${source.authStatus}`)
              : null,
          ),
          help ? h('p', { class: 'help', testid: 'source-help' }, String(help)) : null,
          h(
            'dl',
            { class: 'metrics' },
            h('dt', {}, 'In'),
            h('dd', { testid: 'source-in' }, `${metrics.messagesIn ?? 0} · ${perMinute(rate?.in)}`),
            h('dt', {}, 'Out'),
            h('dd', { testid: 'source-out' }, `${metrics.messagesOut ?? 0} · ${perMinute(rate?.out)}`),
            h('dt', {}, 'Reconnects'),
            h('dd', { testid: 'source-reconnects' }, String(metrics.reconnects ?? 0)),
            h('dt', {}, 'Errors'),
            h('dd', {}, String(metrics.errors ?? 0)),
            typeof source.viewerCount === 'number' ? [h('dt', {}, 'Viewers'), h('dd', {}, String(source.viewerCount))] : null,
            source.platform === 'obs' && source.metadata?.programScene
              ? [
                  h('dt', {}, 'Scene'),
                  h(
                    'dd',
                    { testid: 'source-obs-scene' },
                    `${source.metadata.programScene}${source.metadata.streaming ? ' · streaming' : ''}${source.metadata.recording ? ' · recording' : ''}`,
                  ),
                ]
              : null,
            source.platform === 'discord'
              ? [h('dt', {}, 'Guilds'), h('dd', { testid: 'source-guilds' }, String(source.metadata?.guilds ?? 0))]
              : null,
            typeof source.latencyMs === 'number'
              ? [h('dt', {}, 'Latency'), h('dd', { testid: 'source-latency' }, `${source.latencyMs} ms`)]
              : null,
            source.platform === 'api'
              ? [h('dt', {}, 'Clients'), h('dd', {}, String(source.metadata?.clients ?? 0))]
              : [h('dt', {}, 'Heartbeat'), h('dd', {}, ago(metrics.lastHeartbeat ?? source.lastStatusUpdate))],
          ),
          source.lastError?.message
            ? h(
                'p',
                { class: 'last-error', testid: 'source-last-error' },
                h('strong', {}, 'Last error: '),
                `${source.lastError.code ? `${source.lastError.code}: ` : ''}${source.lastError.message}`,
                source.lastError.at ? ` (${ago(source.lastError.at)})` : '',
              )
            : null,
        );
      }),
  );
}

// ------------------------------------------------------------------------------------------ events

const CHAT_TYPE = 'external.chat.message.v1';

/** Human names for event types (and platform event kinds), shown instead of the wire strings. */
/** @type {Record<string, string>} */
const TYPE_NAMES = {
  'external.chat.message.v1': 'chat message',
  'system.stream.online': 'stream went live',
  'system.stream.offline': 'stream ended',
  'system.source.status': 'connection status',
  'twitch.eventsub.v1': 'Twitch event',
  'channel.follow': 'follow',
  'channel.subscribe': 'subscription',
  'channel.subscription.message': 'resubscription',
  'channel.subscription.gift': 'gift subs',
  'channel.cheer': 'cheer',
  'channel.raid': 'raid',
  'channel.channel_points_custom_reward_redemption.add': 'channel points redemption',
  'channel.update': 'title or game changed',
  'stream.online': 'stream went live',
  'stream.offline': 'stream ended',
};

/** `twitch.eventsub.v1` with kind `channel.raid` → "raid"; unknown types keep their own name. */
/** @param {{ type?: string, kind?: string }} event */
const typeName = (event) =>
  TYPE_NAMES[String(event.type === 'twitch.eventsub.v1' || event.type?.endsWith('.event.v1') ? (event.kind ?? event.type) : event.type)] ??
  TYPE_NAMES[String(event.type)] ??
  event.type ??
  'event';

const ACTIVITY_KINDS = new Set([
  'channel.follow',
  'channel.subscribe',
  'channel.subscription.message',
  'channel.subscription.gift',
  'channel.cheer',
  'channel.raid',
  'channel.channel_points_custom_reward_redemption.add',
]);

/** chat, activity (a viewer did something: follow, sub, raid…) or system (connections, stream state). */
/** @param {EventSummary} event */
function categoryOf(event) {
  if (event.type === CHAT_TYPE) return 'chat';
  if (event.kind && ACTIVITY_KINDS.has(event.kind)) return 'activity';
  if (event.type?.startsWith('system.') || event.type === 'twitch.eventsub.v1') return 'system';
  return 'activity';
}

/** @param {any} value a user object from a platform event payload */
const person = (value) =>
  value && typeof value === 'object' ? (value.displayName ?? value.name ?? value.login) : typeof value === 'string' ? value : undefined;

/** One sentence for a viewer's activity: "RaiderOne raided with 25 viewers". */
/** @param {EventSummary} event */
function activityText(event) {
  /** @type {Record<string, any>} */
  const detail = event.detail ?? {};
  const who = person(detail.user) ?? person(detail.fromBroadcaster) ?? event.userName ?? 'Someone';
  const tier = typeof detail.tierLevel === 'number' ? ` at tier ${detail.tierLevel}` : '';
  switch (event.kind) {
    case 'channel.follow':
      return `${who} followed`;
    case 'channel.subscribe':
      return detail.isGift ? `${who} received a gifted sub${tier}` : `${who} subscribed${tier}`;
    case 'channel.subscription.message': {
      const months = detail.cumulativeMonths ?? detail.months;
      return `${who} resubscribed${typeof months === 'number' ? ` for ${months} months` : ''}${tier}${(detail.message?.text ?? detail.message) ? `: “${detail.message?.text ?? detail.message}”` : ''}`;
    }
    case 'channel.subscription.gift': {
      const giver = detail.isAnonymous ? 'An anonymous gifter' : who;
      const total = detail.total ?? detail.count ?? 1;
      return `${giver} gifted ${total} sub${total === 1 ? '' : 's'}${tier}`;
    }
    case 'channel.cheer':
      return `${detail.isAnonymous ? 'An anonymous viewer' : who} cheered ${detail.bits ?? 0} bits${detail.message ? `: “${detail.message}”` : ''}`;
    case 'channel.raid':
      return `${who} raided with ${detail.viewers ?? 0} viewers`;
    case 'channel.channel_points_custom_reward_redemption.add':
      return `${who} redeemed ${detail.reward?.title ?? detail.rewardTitle ?? 'a reward'}${detail.userInput ? `: “${detail.userInput}”` : ''}`;
    default:
      return `${who}: ${typeName(event)}`;
  }
}

function filters() {
  const form = formOf('event-filters');
  const params = new URLSearchParams();
  for (const name of ['outcome', 'user', 'channel']) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  // Chat is one type, so the server filters it; the other categories are sorted out here.
  if (form.elements.category.value === 'chat') params.set('type', CHAT_TYPE);
  return params;
}

/**
 * A connection-status event that only repeats the source's previous status (an unconfigured source
 * reports every 30 s) says nothing new: it is left out of the feed.
 */
/** @param {EventSummary} event */
function isRepeatedStatus(event) {
  if (event.type !== 'system.source.status') return false;
  const key = `${event.channel ?? ''}|${event.platform ?? ''}`;
  const previous = [...state.events.values()]
    .filter(
      (other) =>
        other.type === event.type &&
        other.id !== event.id &&
        `${other.channel ?? ''}|${other.platform ?? ''}` === key &&
        other.receivedAt < event.receivedAt,
    )
    .sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : -1))[0];
  return Boolean(previous && previous.kind === event.kind);
}

/** @param {EventSummary} event */
function matchesFilters(event) {
  const params = filters();
  const category = formOf('event-filters').elements.category.value;
  if (category && categoryOf(event) !== category) return false;
  if (params.get('outcome') && event.outcome !== params.get('outcome')) return false;
  if (params.get('user') && (event.userName ?? '').toLowerCase() !== String(params.get('user')).toLowerCase()) return false;
  if (params.get('channel') && event.channel !== params.get('channel')) return false;
  return true;
}

/** @param {boolean} reset */
async function loadEvents(reset) {
  const params = filters();
  params.set('limit', '50');
  if (!reset && state.nextCursor) params.set('cursor', state.nextCursor);
  try {
    const page = /** @type {EventPage} */ (await api('GET', `/api/events?${params}`));
    if (reset) state.events.clear();
    for (const event of page.items) if (matchesFilters(event)) state.events.set(event.id, event);
    state.nextCursor = page.nextCursor;
    byTestId('events-more').hidden = !page.nextCursor;
    renderEvents();
  } catch (error) {
    console.warn('could not load events', error);
  }
}

/** @param {EventSummary} event */
function upsertEvent(event) {
  if (!matchesFilters(event)) return;
  state.events.set(event.id, { ...state.events.get(event.id), ...event });
  renderEvents();
}

function renderEvents() {
  const list = byTestId('event-feed');
  const events = [...state.events.values()]
    .filter((event) => !isRepeatedStatus(event))
    .sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : a.receivedAt > b.receivedAt ? -1 : 0))
    .slice(0, MAX_FEED);
  list.replaceChildren(
    ...events.map((event) => {
      const outcome = event.outcome ?? 'in flight';
      return h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: 'event-row',
            testid: `event-row-${event.id}`,
            dataset: { outcome: event.outcome ?? 'pending', id: event.id, category: categoryOf(event) },
            onclick: () => openEvent(event.id),
            'aria-label': `Open ${typeName(event)} from ${event.userName ?? 'system'}`,
          },
          h('span', { class: 'time' }, time(event.receivedAt)),
          h('span', { class: 'type', title: event.type, testid: 'event-type' }, typeName(event)),
          h('span', { class: 'user' }, event.userName ?? '—'),
          h(
            'span',
            { class: 'text' },
            event.text ??
              (categoryOf(event) === 'activity'
                ? activityText(event)
                : event.type === 'system.source.status'
                  ? `${event.channel ?? event.platform ?? ''} ${String(event.kind ?? '').replace('_', ' ')}`
                  : ''),
            event.replyText
              ? h('span', { class: 'reply' }, ` → ${event.replyText}`)
              : event.noReplyReason
                ? h('span', { class: 'muted', testid: 'event-noreply' }, ` · no reply: ${event.noReplyReason}`)
                : null,
          ),
          h('span', { class: `pill outcome ${outcome.replace(' ', '-')}`, testid: 'event-outcome' }, outcome),
          h('span', { class: 'latency' }, ms(event.latencyMs)),
        ),
      );
    }),
  );
}

/** @param {string} id */
async function openEvent(id) {
  const dialog = /** @type {HTMLDialogElement} */ (byTestId('event-detail'));
  let record;
  try {
    record = /** @type {EventDetail} */ (await api('GET', `/api/events/${encodeURIComponent(id)}`));
  } catch (error) {
    byTestId('event-facts').replaceChildren(h('p', { class: 'error' }, errorText(error)));
    if (!dialog.open) dialog.showModal();
    return;
  }
  dialog.dataset.eventId = id;
  const facts = [
    ['Id', record.id],
    [
      'Type',
      `${typeName({ ...record, kind: record.final?.externalEvent?.kind ?? record.ingress?.envelope?.externalEvent?.kind })} (${record.type})`,
    ],
    ['User', record.userName ?? '—'],
    ['Channel', `${record.platform ?? ''} ${record.channel ?? ''}`.trim() || '—'],
    ['Text', record.text ?? '—'],
    [
      'Outcome',
      record.outcome ??
        (record.stalled
          ? `stalled at ${record.stalled.at?.step ?? 'an unknown step'}${record.stalled.cause ? ` (${record.stalled.cause})` : ''}`
          : 'in flight'),
    ],
    [
      'Reply',
      record.replyText
        ? `${record.replyText}${record.replyDelivered ? ' (delivered)' : ' (not delivered)'}`
        : record.final
          ? `none: ${record.noReplyReason ?? 'no reply was planned'}`
          : '—',
    ],
    ['Received', dateTime(record.receivedAt)],
    ['Latency', ms(record.latencyMs)],
  ];
  byTestId('event-facts').replaceChildren(
    ...facts.flatMap(([term, value]) => [h('dt', {}, term), h('dd', { testid: `fact-${term.toLowerCase()}` }, value)]),
  );
  const delivery = record.final?.delivery;
  const rows = record.timeline.map((step) =>
    h(
      'tr',
      { testid: `slip-step-${step.index}`, dataset: { stepId: step.id, status: step.status } },
      h('td', {}, String(step.index)),
      h('th', { scope: 'row' }, step.id),
      h('td', {}, h('span', { class: `pill step ${step.status.toLowerCase()}` }, step.status)),
      h('td', {}, `${step.attempt}${step.maxAttempts ? ` / ${step.maxAttempts}` : ''}`),
      h('td', {}, `${preciseTime(step.startedAt)} → ${preciseTime(step.endedAt)}`),
      h('td', {}, ms(step.durationMs)),
      h(
        'td',
        { class: step.error ? 'error-cell' : 'muted' },
        step.error ? `${step.error.code}${step.error.message ? `: ${step.error.message}` : ''}` : (step.notes ?? ''),
      ),
    ),
  );
  if (delivery) {
    rows.push(
      h(
        'tr',
        { testid: 'slip-delivery', dataset: { status: delivery.delivered ? 'OK' : 'NOT_DELIVERED' } },
        h('td', {}, ''),
        h('th', { scope: 'row' }, 'egress'),
        h(
          'td',
          {},
          h('span', { class: `pill step ${delivery.delivered ? 'ok' : 'error'}` }, delivery.delivered ? 'DELIVERED' : 'NOT DELIVERED'),
        ),
        h('td', {}, ''),
        h('td', {}, `→ ${preciseTime(delivery.at)}`),
        h('td', {}, ''),
        h('td', { class: 'error-cell' }, delivery.reason ?? ''),
      ),
    );
  }
  if (rows.length === 0)
    rows.push(h('tr', {}, h('td', { colspan: '7', class: 'muted' }, 'No routing slip (the event was recorded only).')));
  $('tbody', byTestId('slip-timeline')).replaceChildren(...rows);
  const errors = record.errors ?? [];
  byTestId('event-errors').replaceChildren(
    ...(errors.length
      ? [
          h('h3', {}, 'Errors'),
          h(
            'ul',
            { class: 'errors' },
            ...errors.map((error) => h('li', {}, `${error.code}${error.step ? ` at ${error.step}` : ''}: ${error.message ?? ''}`)),
          ),
        ]
      : []),
  );
  if (!dialog.open) dialog.showModal();
}

// -------------------------------------------------------------------------------- activity and chat

/** @param {EventSummary} event */
function upsertActivity(event) {
  if (categoryOf(event) !== 'activity') return;
  state.activity.set(event.id, event);
  renderActivity();
}

function renderActivity() {
  const items = [...state.activity.values()].sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : -1)).slice(0, 50);
  const list = byTestId('activity-feed');
  if (items.length === 0) {
    list.replaceChildren(h('li', { class: 'muted' }, 'No follows, subs, cheers, raids or redemptions yet.'));
    return;
  }
  list.replaceChildren(
    ...items.map((event) =>
      h(
        'li',
        { testid: `activity-${event.id}`, dataset: { kind: event.kind ?? event.type } },
        h('span', { class: `pill kind ${String(event.kind ?? '').replace(/[^a-z]/g, '-')}` }, typeName(event)),
        h('span', { class: 'sentence', testid: 'activity-text' }, activityText(event)),
        h('time', { class: 'muted', datetime: event.receivedAt }, time(event.receivedAt)),
      ),
    ),
  );
}

/** @param {EventSummary} event */
function upsertChat(event) {
  if (event.type !== CHAT_TYPE) return;
  state.channelChat.set(event.id, event);
  if (state.channelChat.size > MAX_CHAT) state.channelChat.delete(String(state.channelChat.keys().next().value));
  renderChat();
}

function renderChat() {
  const list = byTestId('channel-chat');
  const items = [...state.channelChat.values()].sort((a, b) => (a.receivedAt < b.receivedAt ? -1 : 1));
  list.replaceChildren(
    ...(items.length
      ? items.map((event) =>
          h(
            'li',
            { testid: `chat-line-${event.id}`, dataset: { platform: event.platform ?? '' } },
            h('time', { class: 'muted', datetime: event.receivedAt }, time(event.receivedAt)),
            ' ',
            h('span', { class: 'platform' }, event.platform === 'api' ? 'console' : (event.platform ?? '')),
            event.channel ? h('span', { class: 'muted' }, ` #${event.channel}`) : null,
            ' ',
            h('strong', { class: 'chat-user' }, event.userName ?? 'someone'),
            ': ',
            h('span', { class: 'chat-text' }, event.text ?? ''),
            event.replyText ? h('span', { class: 'reply' }, ` → bot: ${event.replyText}`) : null,
          ),
        )
      : [h('li', { class: 'muted' }, 'No chat yet.')]),
  );
  list.scrollTop = list.scrollHeight;
}

async function loadActivityAndChat() {
  try {
    const [chat, recent] = await Promise.all([
      /** @type {Promise<EventPage>} */ (api('GET', `/api/events?type=${CHAT_TYPE}&limit=100`)),
      /** @type {Promise<EventPage>} */ (api('GET', '/api/events?type=twitch.eventsub.v1&limit=100')),
    ]);
    state.channelChat.clear();
    for (const event of chat.items) state.channelChat.set(event.id, event);
    for (const event of recent.items) if (categoryOf(event) === 'activity') state.activity.set(event.id, event);
    renderChat();
    renderActivity();
  } catch (error) {
    console.warn('could not load chat and activity', error);
  }
}

/** Why a chat message got no reply, from the outcome alone (the event says more once finalized). */
/** @param {string} outcome */
const noReplyText = (outcome) =>
  /** @type {Record<string, string>} */ ({
    unrouted: 'no rule matched it (not a command or a question to the bot)',
    failed: 'the pipeline failed on it',
    handled: 'it was handled without a reply',
    completed: 'nothing answered it',
  })[outcome] ?? String(outcome);

/**
 * A console message the pipeline finished without answering (no frame comes back for it) gets a line
 * saying why, from the finalized event in the live feed.
 */
/** @param {EventSummary} event */
function explainConsoleMessage(event) {
  if (!state.consoleSent.has(event.id) || !event.outcome || event.replyText) return;
  state.consoleSent.delete(event.id);
  consoleLine('info', `no reply: ${event.noReplyReason ?? noReplyText(event.outcome)}`, {
    testid: 'console-noreply',
    dataset: { kind: 'info', outcome: event.outcome, envelopeId: event.id },
  });
}

/** Replaces the console's "no reply" line with the recorded reason once the event is finalized. */
/** @param {string} envelopeId */
async function explainNoReply(envelopeId) {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const record = /** @type {EventDetail} */ (await api('GET', `/api/events/${encodeURIComponent(envelopeId)}`));
      if (record.noReplyReason) {
        for (const line of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[data-testid="console-noreply"]'))) {
          if (line.dataset.envelopeId === envelopeId || !line.dataset.envelopeId) {
            line.dataset.envelopeId = envelopeId;
            line.textContent = `no reply: ${record.noReplyReason}`;
          }
        }
        return;
      }
    } catch {
      // Not recorded yet: try again shortly.
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// ------------------------------------------------------------------------------------------ stream

/** Twitch sources that know the stream: live or offline, title, game, viewers, uptime. */
function renderStreams() {
  // `twitch:chat` is the connector's own record before it knows a channel, not a stream.
  const streams = [...state.sources.values()].filter(
    (source) => source.platform === 'twitch' && source.id !== 'twitch:chat' && !source.metadata?.placeholder,
  );
  const panel = byTestId('stream-panel');
  panel.hidden = streams.length === 0;
  const stale = Boolean(state.staleSince);
  byTestId('stream-list').replaceChildren(
    ...streams.map((source) => {
      const metadata = source.metadata ?? {};
      const live = !stale && source.streamStatus === 'online';
      const started = typeof metadata.startedAt === 'string' ? Date.parse(metadata.startedAt) : Number.NaN;
      const uptime = live && Number.isFinite(started) ? duration(Date.now() - started) : null;
      const state_ = stale ? 'unknown' : live ? 'live' : source.streamStatus === 'offline' ? 'offline' : 'unknown';
      return h(
        'article',
        { class: `stream ${state_}`, testid: `stream-${source.id}`, dataset: { state: state_ } },
        h('span', { class: `pill ${live ? 'live' : state_}`, testid: 'stream-state' }, stale ? 'unknown' : live ? 'LIVE' : state_),
        h('strong', { class: 'channel' }, source.displayName ?? source.id),
        h(
          'span',
          { class: 'title', testid: 'stream-title' },
          typeof metadata.title === 'string' && metadata.title ? metadata.title : 'no title',
        ),
        h(
          'span',
          { class: 'muted', testid: 'stream-game' },
          typeof metadata.game === 'string' ? metadata.game : typeof metadata.gameName === 'string' ? metadata.gameName : '',
        ),
        live ? h('span', { testid: 'stream-viewers' }, `${source.viewerCount ?? metadata.viewerCount ?? 0} viewers`) : null,
        uptime ? h('span', { testid: 'stream-uptime' }, `up ${uptime}`) : null,
      );
    }),
  );
}

/** `1h 23m`, `5m`, `42s`. */
/** @param {number} ms */
function duration(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return hours ? `${hours}h ${minutes}m` : `${minutes}m`;
}

// ------------------------------------------------------------------------------------------ twitch

async function loadTwitch() {
  try {
    state.twitch = /** @type {TwitchSetup} */ (await api('GET', '/api/twitch'));
    renderTwitch();
  } catch (error) {
    byTestId('twitch-error').textContent = errorText(error);
  }
}

/** The Twitch card: what is missing by name, connect buttons for the owner, accounts with scopes and token health. */
function renderTwitch() {
  const setup = state.twitch;
  const panel = byTestId('twitch-setup');
  if (!setup) return;
  panel.hidden = false;
  const done = setup.nextStep === 'Twitch is set up.';
  const pill = byTestId('twitch-next-pill');
  pill.textContent = done ? 'connected' : setup.missing.length ? 'not configured' : 'needs an account';
  pill.className = `pill ${done ? 'connected' : 'not_configured'}`;
  panel.dataset.state = done ? 'ready' : setup.missing.length ? 'not_configured' : 'needs_account';
  byTestId('twitch-next-step').textContent = setup.nextStep;
  byTestId('twitch-missing').replaceChildren(
    ...setup.missing.map((setting) =>
      h('li', { testid: `twitch-missing-${setting.name}` }, h('code', {}, setting.name), ` (${setting.kind}): ${setting.why}`),
    ),
  );
  const owner = state.me?.role === 'owner';
  byTestId('twitch-accounts').replaceChildren(...setup.accounts.map((account) => twitchAccount(account, setup, owner)));
  renderSources();
}

/**
 * @param {TwitchAccount} account
 * @param {TwitchSetup} setup
 * @param {boolean} owner
 */
function twitchAccount(account, setup, owner) {
  const label = account.identity === 'bot' ? 'Bot account' : 'Broadcaster account';
  const connect =
    setup.appConfigured && owner
      ? // A plain link: the session cookie goes with it, so no token is put in the URL.
        h(
          'a',
          { class: 'button', href: setup.connectUrls[account.identity], testid: `twitch-connect-${account.identity}` },
          account.connected ? `Reconnect ${account.identity} account` : `Connect ${account.identity} account`,
        )
      : h(
          'button',
          {
            type: 'button',
            disabled: true,
            testid: `twitch-connect-${account.identity}`,
            title: setup.appConfigured ? 'needs an owner sign-in' : 'set TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET first',
          },
          `Connect ${account.identity} account`,
        );
  return h(
    'article',
    { class: `account ${account.health}`, testid: `twitch-account-${account.identity}`, dataset: { health: account.health } },
    h(
      'header',
      {},
      h('h4', {}, label),
      h(
        'span',
        {
          class: `pill ${account.health === 'ok' ? 'connected' : account.health === 'missing' ? 'not_configured' : 'error'}`,
          testid: 'twitch-account-health',
        },
        account.connected ? account.health : 'not connected',
      ),
    ),
    account.login ? h('p', { testid: 'twitch-account-login' }, account.login) : null,
    h('p', { class: 'muted', testid: 'twitch-account-detail' }, account.detail),
    account.expiresAt ? h('p', { class: 'muted' }, `token expires ${dateTime(account.expiresAt)}`) : null,
    account.scopes?.length
      ? h('p', { class: 'scopes', testid: 'twitch-account-scopes' }, ...account.scopes.map((scope) => h('code', {}, scope)))
      : null,
    h(
      'div',
      { class: 'buttons' },
      connect,
      account.connected && account.scopes
        ? deleteButton(
            `twitch-disconnect-${account.identity}`,
            `the ${account.identity} account`,
            async () => {
              try {
                await api('DELETE', `/api/twitch/accounts/${account.identity}`);
                await loadTwitch();
              } catch (error) {
                byTestId('twitch-error').textContent = errorText(error);
              }
            },
            'Disconnect',
            owner,
          )
        : null,
    ),
  );
}

// --------------------------------------------------------------------------------------- reactions

async function loadReactions() {
  try {
    state.reactions = /** @type {import('./api-types').ListPage<Reaction>} */ (await api('GET', '/api/reactions')).items;
    renderReactions();
  } catch (error) {
    byTestId('reaction-error').textContent = errorText(error);
  }
}

function renderReactions() {
  byTestId('reaction-list').replaceChildren(
    ...state.reactions.map((reaction) => {
      const form = /** @type {NamedForm} */ (
        h(
          'form',
          {
            class: 'editor reaction',
            testid: `reaction-${reaction.name}`,
            dataset: { enabled: String(reaction.enabled) },
            novalidate: true,
          },
          h(
            'h3',
            {},
            `${typeName({ type: 'twitch.eventsub.v1', kind: reaction.kind })}`,
            h('span', { class: 'muted' }, ` — ${reaction.description}`),
          ),
          h(
            'label',
            { class: 'inline' },
            h('input', { type: 'checkbox', name: 'enabled', checked: reaction.enabled, testid: `reaction-enabled-${reaction.name}` }),
            ' Say something in chat',
          ),
          reaction.name === 'raid'
            ? h(
                'label',
                { class: 'inline' },
                h('input', { type: 'checkbox', name: 'shoutout', checked: reaction.shoutout === true, testid: 'reaction-shoutout-raid' }),
                ' Also send a Twitch shoutout',
              )
            : null,
          h(
            'label',
            { class: 'wide' },
            'Message',
            h('textarea', { name: 'template', rows: '2', maxlength: '400', testid: `reaction-template-${reaction.name}` }),
          ),
          h(
            'p',
            { class: 'wide muted' },
            'Variables: ',
            ...reaction.variables.flatMap((variable) => [h('code', {}, `{${variable}}`), ' ']),
            h('span', {}, `Default: “${reaction.defaultTemplate}”`),
          ),
          h(
            'div',
            { class: 'buttons' },
            h('button', { type: 'submit', testid: `reaction-save-${reaction.name}`, disabled: !canWrite() }, 'Save'),
            h(
              'button',
              {
                type: 'button',
                class: 'secondary',
                testid: `reaction-reset-${reaction.name}`,
                disabled: !canWrite(),
                onclick: () => void saveReaction(reaction.name, { template: null }),
              },
              'Restore default wording',
            ),
          ),
          h('p', { class: 'error', role: 'alert', testid: `reaction-error-${reaction.name}` }),
          h('p', { class: 'ok', role: 'status', testid: `reaction-status-${reaction.name}` }),
        )
      );
      form.elements.template.value = reaction.template;
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        void saveReaction(reaction.name, {
          enabled: form.elements.enabled.checked,
          template: form.elements.template.value,
          ...(reaction.name === 'raid' ? { shoutout: form.elements.shoutout.checked } : {}),
        });
      });
      return form;
    }),
  );
}

/**
 * @param {string} name
 * @param {{ enabled?: boolean, template?: string | null, shoutout?: boolean }} update
 */
async function saveReaction(name, update) {
  const errorBox = byTestId(`reaction-error-${name}`);
  errorBox.textContent = '';
  try {
    const saved = /** @type {Reaction} */ (await api('PUT', `/api/reactions/${encodeURIComponent(name)}`, update));
    state.reactions = state.reactions.map((reaction) => (reaction.name === saved.name ? saved : reaction));
    renderReactions();
    byTestId(`reaction-status-${name}`).textContent = `${saved.enabled ? 'On' : 'Off'}: “${saved.template}”`;
  } catch (error) {
    byTestId(`reaction-error-${name}`).textContent = errorText(error);
  }
}

// ------------------------------------------------------------------------------------------ charts

async function loadStats() {
  try {
    state.stats = /** @type {StatsSeries} */ (await api('GET', '/api/stats?hours=3'));
    renderCharts();
  } catch (error) {
    console.warn('could not load stats', error);
  }
}

const SVG = 'http://www.w3.org/2000/svg';
/**
 * @param {string} tag
 * @param {Record<string, string | number | undefined>} [attrs]
 * @param {...(Node | string)} children
 */
function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined) element.setAttribute(key, String(value));
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

/** A small bar chart of one series as inline SVG (no library, no build step); no bar where a value is missing. */
/**
 * @param {string} id
 * @param {string} title
 * @param {'/min' | 'ms'} unit
 * @param {Array<number | undefined>} values
 * @param {StatsBucket[]} buckets
 */
function chart(id, title, unit, values, buckets) {
  const width = 300;
  const height = 90;
  const present = values.filter((value) => typeof value === 'number');
  const max = Math.max(1, ...present);
  const step = width / Math.max(1, values.length);
  // Bars, not a line: a single busy minute (or one reply) still shows.
  const bars = values.flatMap((value, index) => {
    if (typeof value !== 'number' || value <= 0) return [];
    const barHeight = Math.max(2, (value / max) * (height - 6));
    return [
      svg(
        'rect',
        {
          x: (index * step).toFixed(2),
          y: (height - barHeight).toFixed(2),
          width: Math.max(1, step * 0.8).toFixed(2),
          height: barHeight.toFixed(2),
          class: 'series',
        },
        svg('title', {}, `${time(buckets[index]?.at)}: ${value}${unit === 'ms' ? ' ms' : '/min'}`),
      ),
    ];
  });
  const latest = [...values].reverse().find((value) => typeof value === 'number');
  const total = present.reduce((sum, value) => sum + value, 0);
  const summary = unit === 'ms' ? `median now ${latest ?? '—'} ms` : `${total} in all · ${latest ?? 0}/min now`;
  const first = buckets[0]?.at;
  return h(
    'figure',
    { class: 'chart', testid: `chart-${id}`, dataset: { points: String(bars.length), max: String(max) } },
    h('figcaption', {}, h('strong', {}, title), ' ', h('span', { class: 'muted', testid: 'chart-summary' }, summary)),
    svg(
      'svg',
      { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `${title}: ${summary}` },
      svg('line', { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: 'axis' }),
      ...(bars.length ? bars : [svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'empty' }, 'no data yet')]),
    ),
    h(
      'div',
      { class: 'chart-scale muted' },
      h('span', {}, first ? time(first) : ''),
      h('span', {}, `max ${max}${unit === 'ms' ? ' ms' : '/min'}`),
      h('span', {}, 'now'),
    ),
  );
}

function renderCharts() {
  const stats = state.stats;
  if (!stats) return;
  const per = stats.bucketMs / 60_000;
  /** @param {number} value */
  const perMinute = (value) => Math.round((value / per) * 10) / 10;
  byTestId('charts-hours').textContent = String(Math.round((Date.parse(stats.until) - Date.parse(stats.since)) / 3_600_000));
  byTestId('charts').replaceChildren(
    chart(
      'chat',
      'Chat messages per minute',
      '/min',
      stats.buckets.map((bucket) => perMinute(bucket.chat)),
      stats.buckets,
    ),
    chart(
      'events',
      'Events per minute',
      '/min',
      stats.buckets.map((bucket) => perMinute(bucket.events)),
      stats.buckets,
    ),
    chart(
      'latency',
      'Reply latency',
      'ms',
      stats.buckets.map((bucket) => bucket.latencyMs),
      stats.buckets,
    ),
  );
}

// ------------------------------------------------------------------------------------ dead letters

async function loadDeadLetters() {
  const include = inputOf('deadletter-include-replayed').checked;
  try {
    const page = /** @type {DeadLetterPage} */ (await api('GET', `/api/deadletters?limit=100${include ? '&includeReplayed=true' : ''}`));
    state.deadletters = page.summaries;
    renderDeadLetters();
  } catch (error) {
    byTestId('deadletter-error').textContent = errorText(error);
  }
}

/** @param {DeadLetterSummary} summary */
function upsertDeadLetter(summary) {
  const index = state.deadletters.findIndex((item) => item.id === summary.id);
  if (index >= 0) state.deadletters[index] = summary;
  else state.deadletters.unshift(summary);
  renderDeadLetters();
}

function renderDeadLetters() {
  const include = inputOf('deadletter-include-replayed').checked;
  const items = state.deadletters.filter((item) => include || !item.replayedAt);
  const pending = state.deadletters.filter((item) => !item.replayedAt).length;
  byTestId('deadletter-count').textContent = pending ? String(pending) : '';
  const body = $('tbody', byTestId('deadletter-list'));
  if (items.length === 0) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: '6', class: 'muted' }, 'No dead letters.')));
    return;
  }
  body.replaceChildren(
    ...items.map((item) =>
      h(
        'tr',
        {
          testid: `deadletter-row-${item.id}`,
          class: item.replayedAt ? 'replayed' : '',
          dataset: { replayed: item.replayedAt ? 'true' : 'false' },
        },
        h('td', { 'data-label': 'Received' }, dateTime(item.receivedAt)),
        h(
          'td',
          { 'data-label': 'From', testid: `deadletter-from-${item.id}` },
          item.userName ? h('strong', {}, item.userName) : h('span', { class: 'muted' }, 'unknown sender'),
          item.text
            ? [': ', h('span', { class: 'quote' }, `“${item.text}”`)]
            : item.type
              ? h('span', { class: 'muted' }, ` (${typeName(item)})`)
              : null,
          item.envelopeId
            ? h(
                'div',
                {},
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'link',
                    testid: `deadletter-open-${item.id}`,
                    onclick: () => openEvent(String(item.envelopeId)),
                  },
                  'open event',
                ),
              )
            : null,
        ),
        h('td', { 'data-label': 'Reason' }, h('strong', {}, item.code), ' ', h('span', { class: 'muted' }, item.message)),
        h('td', { 'data-label': 'Where' }, `${item.service} @ ${item.topic}`),
        h(
          'td',
          { 'data-label': 'State', testid: `deadletter-state-${item.id}` },
          item.replayedAt
            ? h('span', { class: 'pill replayed' }, `replayed ${item.replayCount}× (${ago(item.replayedAt)})`)
            : h('span', { class: 'pill pending' }, 'pending'),
        ),
        h(
          'td',
          {},
          h(
            'button',
            {
              type: 'button',
              testid: `deadletter-replay-${item.id}`,
              disabled: !canWrite(),
              title: canWrite() ? undefined : 'needs a moderator or owner token',
              onclick: (/** @type {MouseEvent} */ event) => replay(item.id, /** @type {HTMLButtonElement} */ (event.currentTarget)),
            },
            item.replayedAt ? 'Replay again' : 'Replay',
          ),
        ),
      ),
    ),
  );
}

/**
 * @param {string} id
 * @param {HTMLButtonElement} button
 */
async function replay(id, button) {
  byTestId('deadletter-error').textContent = '';
  button.disabled = true;
  try {
    const result = /** @type {ReplayResult} */ (await api('POST', `/api/deadletters/${encodeURIComponent(id)}/replay`, {}));
    const existing = state.deadletters.find((item) => item.id === id);
    if (existing) upsertDeadLetter({ ...existing, replayedAt: result.replayedAt, replayCount: result.replayCount });
  } catch (error) {
    byTestId('deadletter-error').textContent = errorText(error);
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------- console

/**
 * @param {string} kind
 * @param {string} text
 * @param {Record<string, any>} [attrs]
 */
function consoleLine(kind, text, attrs = {}) {
  const log = byTestId('console-log');
  const item = h('li', { class: `msg ${kind}`, dataset: { kind }, ...attrs }, text);
  log.append(item);
  item.scrollIntoView({ block: 'nearest' });
  return item;
}

/** The chat WebSocket: authenticates with a first frame (browsers cannot set headers) and reconnects. */
function connectChat() {
  state.chat?.close();
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/v1`;
  /** @type {string[]} */
  const queue = [];
  const lines = new Map();
  /** @type {WebSocket} */
  let socket;
  let ready = false;
  let closed = false;
  let delay = 1000;
  /** @param {string} text */
  const status = (text) => (byTestId('console-status').textContent = text);

  const open = () => {
    socket = new WebSocket(url);
    ready = false;
    // The upgrade carries the session cookie; the server answers `ready` without an auth frame.
    socket.addEventListener('message', (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      switch (frame.type) {
        case 'ready':
          ready = true;
          delay = 1000;
          status(`connected as ${frame.role}`);
          for (const text of queue.splice(0)) socket.send(text);
          break;
        case 'ack': {
          const line = lines.get(frame.id);
          if (line) {
            line.dataset.envelopeId = frame.envelopeId;
            line.dataset.state = 'sent';
            state.consoleSent.set(frame.envelopeId, line);
            line.append(
              ' ',
              h(
                'button',
                { type: 'button', class: 'link', testid: `console-open-${frame.envelopeId}`, onclick: () => openEvent(frame.envelopeId) },
                `as ${frame.role} · open event`,
              ),
            );
          }
          break;
        }
        case 'reply':
          state.consoleSent.delete(frame.envelopeId);
          consoleLine('bot', frame.text, {
            testid: 'console-reply',
            dataset: { kind: 'bot', inReplyTo: frame.inReplyTo, envelopeId: frame.envelopeId },
          });
          break;
        case 'noreply': {
          state.consoleSent.delete(frame.envelopeId);
          // The finalized event may have explained it already: say it once, with the server's reason.
          const explained = document.querySelector(
            `[data-testid="console-noreply"][data-envelope-id="${CSS.escape(String(frame.envelopeId))}"]`,
          );
          if (explained) {
            if (frame.reason) explained.textContent = `no reply: ${frame.reason}`;
            break;
          }
          consoleLine('info', `no reply: ${frame.reason ?? noReplyText(frame.outcome)}`, {
            testid: 'console-noreply',
            dataset: { kind: 'info', outcome: frame.outcome, envelopeId: frame.envelopeId },
          });
          if (!frame.reason && frame.envelopeId) void explainNoReply(frame.envelopeId);
          break;
        }
        case 'error':
          consoleLine('error', `${frame.code}: ${frame.message}`, { testid: 'console-error' });
          break;
        default:
      }
    });
    socket.addEventListener('close', (event) => {
      ready = false;
      if (closed) return;
      if (event.code === 4401) {
        status('the chat connection was refused: sign in again');
        return;
      }
      status('chat disconnected; reconnecting…');
      setTimeout(() => !closed && open(), delay);
      delay = Math.min(10_000, delay * 2);
    });
  };
  open();

  state.chat = {
    send(frame) {
      const line = consoleLine('user', `${frame.user.name} (${frame.user.role}): ${frame.text}`, {
        testid: 'console-sent',
        dataset: { kind: 'user', id: frame.id },
      });
      lines.set(frame.id, line);
      const text = JSON.stringify(frame);
      if (ready && socket.readyState === WebSocket.OPEN) socket.send(text);
      else queue.push(text);
    },
    close() {
      closed = true;
      socket?.close();
    },
  };
}

// -------------------------------------------------------------------------------------------- rules

async function loadRules() {
  try {
    const page = /** @type {RulePage} */ (await api('GET', '/api/rules'));
    state.rules = page.items;
    state.defaultRules = page.defaults ?? [];
    renderRules();
  } catch (error) {
    byTestId('rule-error').textContent = errorText(error);
  }
}

/** @param {RuleRecord['action']} action */
const actionSummary = (action) =>
  [
    action?.slip
      ? `slip: ${/** @type {Array<string | { id: string }>} */ (action.slip).map((step) => (typeof step === 'string' ? step : step.id)).join(' → ')}`
      : '',
    action?.outcome ? `outcome: ${action.outcome}` : '',
  ]
    .filter(Boolean)
    .join('; ');

/** A delete button that asks for a second click instead of a modal confirm. */
/**
 * @param {string} testid
 * @param {string} label
 * @param {() => Promise<void>} onConfirm
 * @param {string} [verb]
 * @param {boolean} [allowed]
 */
function deleteButton(testid, label, onConfirm, verb = 'Delete', allowed = canWrite()) {
  const button = h('button', { type: 'button', class: 'danger', testid, disabled: !allowed }, verb);
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let armed;
  button.addEventListener('click', async () => {
    if (!armed) {
      button.textContent = `${verb} ${label}?`;
      armed = setTimeout(() => {
        armed = undefined;
        button.textContent = verb;
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = undefined;
    await onConfirm();
  });
  return button;
}

async function restoreDefaultRules() {
  const status = byTestId('rules-restore-status');
  status.textContent = '';
  byTestId('rule-error').textContent = '';
  try {
    const result = /** @type {RestoreResult} */ (await api('POST', '/api/rules/restore-defaults', {}));
    status.textContent = result.restored.length
      ? `Restored ${result.restored.join(', ')}; the other default rules were reset.`
      : 'All default rules were reset to their shipped versions.';
    await loadRules();
  } catch (error) {
    byTestId('rule-error').textContent = errorText(error);
  }
}

function renderRules() {
  const present = new Set(state.rules.map((rule) => rule.id));
  const missing = state.defaultRules.filter((id) => !present.has(id));
  byTestId('rules-missing').textContent = missing.length
    ? `Missing default rules: ${missing.join(', ')}. Restore them to get the shipped behaviour back.`
    : 'Every default rule is present. Restoring resets them to their shipped versions; your own rules are kept.';
  byTestId('rules-missing').dataset.missing = String(missing.length);
  const body = $('tbody', byTestId('rules-list'));
  body.replaceChildren(
    ...state.rules.map((rule) =>
      h(
        'tr',
        { testid: `rule-row-${rule.id}` },
        h('th', { scope: 'row' }, rule.id, state.defaultRules.includes(rule.id) ? h('span', { class: 'pill' }, 'default') : null),
        h('td', { 'data-label': 'Priority' }, String(rule.priority)),
        h('td', { 'data-label': 'Enabled' }, rule.enabled ? 'yes' : 'no'),
        h('td', { 'data-label': 'Action' }, actionSummary(rule.action)),
        h('td', { class: 'muted', 'data-label': 'Description' }, rule.description ?? ''),
        h(
          'td',
          { class: 'actions' },
          h('button', { type: 'button', class: 'secondary', testid: `rule-edit-${rule.id}`, onclick: () => editRule(rule) }, 'Edit'),
          deleteButton(`rule-delete-${rule.id}`, rule.id, async () => {
            try {
              await api('DELETE', `/api/rules/${encodeURIComponent(rule.id)}`);
              byTestId('rule-status').textContent = `Rule ${rule.id} deleted.`;
              await loadRules();
            } catch (error) {
              byTestId('rule-error').textContent = errorText(error);
            }
          }),
        ),
      ),
    ),
  );
}

/** @param {RuleRecord | null} rule */
function editRule(rule) {
  const form = formOf('rule-form');
  state.editingRule = rule?.id ?? null;
  byTestId('rule-form-title').textContent = rule ? `Edit rule ${rule.id}` : 'New rule';
  form.elements.id.value = rule?.id ?? '';
  form.elements.id.readOnly = Boolean(rule);
  form.elements.priority.value = String(rule?.priority ?? 100);
  form.elements.enabled.checked = rule?.enabled ?? true;
  form.elements.description.value = rule?.description ?? '';
  form.elements.logic.value = rule ? JSON.stringify(rule.logic, null, 2) : '{ "==": [{ "var": "stage" }, "ingress"] }';
  form.elements.action.value = rule ? JSON.stringify(rule.action, null, 2) : '{ "slip": ["query-analyzer", "router"] }';
  byTestId('rule-error').textContent = '';
  byTestId('rule-status').textContent = '';
  form.elements[rule ? 'priority' : 'id'].focus();
}

/** @param {SubmitEvent} event */
async function saveRule(event) {
  event.preventDefault();
  const form = formOf('rule-form');
  const errorBox = byTestId('rule-error');
  errorBox.textContent = '';
  byTestId('rule-status').textContent = '';
  /** @param {string} name */
  const parse = (name) => {
    try {
      return JSON.parse(form.elements[name].value);
    } catch (error) {
      throw new Error(`${name} is not valid JSON: ${errorText(error)}`);
    }
  };
  let rule;
  try {
    rule = {
      id: form.elements.id.value.trim(),
      priority: Number(form.elements.priority.value),
      enabled: form.elements.enabled.checked,
      logic: parse('logic'),
      action: parse('action'),
      ...(form.elements.description.value.trim() ? { description: form.elements.description.value.trim() } : {}),
    };
  } catch (error) {
    errorBox.textContent = errorText(error);
    return;
  }
  try {
    if (state.editingRule) await api('PUT', `/api/rules/${encodeURIComponent(state.editingRule)}`, rule);
    else await api('POST', '/api/rules', rule);
    byTestId('rule-status').textContent = `Rule ${rule.id} saved.`;
    state.editingRule = rule.id;
    form.elements.id.readOnly = true;
    byTestId('rule-form-title').textContent = `Edit rule ${rule.id}`;
    await loadRules();
  } catch (error) {
    errorBox.textContent = errorText(error);
  }
}

// ----------------------------------------------------------------------------------------- commands

async function loadCommands() {
  try {
    const [page, help] = await Promise.all([
      /** @type {Promise<import('./api-types').ListPage<CommandRecord>>} */ (api('GET', '/api/commands')),
      state.commandHelp ?? /** @type {Promise<CommandHelp>} */ (api('GET', '/api/commands/help')),
    ]);
    state.commands = page.items;
    state.commandHelp = help;
    renderCommandHelp();
    renderCommands();
  } catch (error) {
    byTestId('command-error').textContent = errorText(error);
  }
}

const prefix = () => state.commandHelp?.prefix ?? '!';

function renderCommandHelp() {
  const help = state.commandHelp;
  if (!help) return;
  byTestId('builtin-list').replaceChildren(
    ...help.builtins.map((builtin) =>
      h(
        'li',
        { testid: `builtin-${builtin.name}` },
        h('code', {}, `${help.prefix}${builtin.name}`),
        ' ',
        h('span', { class: 'muted' }, builtin.description),
      ),
    ),
  );
  byTestId('template-variables').replaceChildren(
    ...help.variables.flatMap((variable) => [
      h('dt', {}, h('code', {}, `{${variable.name}}`)),
      h('dd', { testid: `variable-${variable.name}` }, variable.description),
    ]),
  );
}

function renderCommands() {
  const body = $('tbody', byTestId('commands-list'));
  if (state.commands.length === 0) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: '7', class: 'muted' }, 'No custom commands yet.')));
    return;
  }
  body.replaceChildren(
    ...state.commands.map((command) =>
      h(
        'tr',
        { testid: `command-row-${command.name}` },
        h(
          'th',
          { scope: 'row' },
          `${prefix()}${command.name}`,
          command.aliases?.length
            ? h('span', { class: 'muted' }, ` (${command.aliases.map((alias) => `${prefix()}${alias}`).join(', ')})`)
            : null,
        ),
        h('td', { 'data-label': 'Response' }, command.response),
        h('td', { 'data-label': 'Min role' }, command.minRole),
        h('td', { 'data-label': 'Cooldown' }, `${command.cooldownSec}s / user ${command.userCooldownSec}s`),
        h('td', { 'data-label': 'Enabled' }, command.enabled ? 'yes' : 'no'),
        h('td', { 'data-label': 'Uses' }, String(command.uses)),
        h(
          'td',
          { class: 'actions' },
          h(
            'button',
            { type: 'button', class: 'secondary', testid: `command-edit-${command.name}`, onclick: () => editCommand(command) },
            'Edit',
          ),
          deleteButton(`command-delete-${command.name}`, `${prefix()}${command.name}`, async () => {
            try {
              await api('DELETE', `/api/commands/${encodeURIComponent(command.name)}`);
              byTestId('command-status').textContent = `Command !${command.name} deleted.`;
              await loadCommands();
            } catch (error) {
              byTestId('command-error').textContent = errorText(error);
            }
          }),
        ),
      ),
    ),
  );
}

/** @param {CommandRecord | null} command */
function editCommand(command) {
  const form = formOf('command-form');
  state.editingCommand = command?.name ?? null;
  byTestId('command-form-title').textContent = command ? `Edit !${command.name}` : 'New command';
  form.elements.name.value = command?.name ?? '';
  form.elements.name.readOnly = Boolean(command);
  form.elements.response.value = command?.response ?? '';
  form.elements.minRole.value = command?.minRole ?? 'viewer';
  form.elements.cooldownSec.value = String(command?.cooldownSec ?? 5);
  form.elements.userCooldownSec.value = String(command?.userCooldownSec ?? 0);
  form.elements.aliases.value = (command?.aliases ?? []).join(', ');
  form.elements.enabled.checked = command?.enabled ?? true;
  byTestId('command-error').textContent = '';
  byTestId('command-status').textContent = '';
  form.elements[command ? 'response' : 'name'].focus();
}

/** @param {SubmitEvent} event */
async function saveCommand(event) {
  event.preventDefault();
  const form = formOf('command-form');
  const errorBox = byTestId('command-error');
  errorBox.textContent = '';
  byTestId('command-status').textContent = '';
  const raw = form.elements.name.value.trim();
  const name = raw.startsWith(prefix()) ? raw.slice(prefix().length) : raw;
  const body = {
    response: form.elements.response.value.trim(),
    minRole: form.elements.minRole.value,
    cooldownSec: Number(form.elements.cooldownSec.value),
    userCooldownSec: Number(form.elements.userCooldownSec.value),
    aliases: form.elements.aliases.value
      .split(',')
      .map((alias) => alias.trim())
      .filter(Boolean),
    enabled: form.elements.enabled.checked,
  };
  try {
    if (state.editingCommand) await api('PUT', `/api/commands/${encodeURIComponent(state.editingCommand)}`, body);
    else await api('POST', '/api/commands', { name, ...body });
    byTestId('command-status').textContent = `Command ${prefix()}${name} saved.`;
    state.editingCommand = name.toLowerCase();
    form.elements.name.readOnly = true;
    byTestId('command-form-title').textContent = `Edit ${prefix()}${name.toLowerCase()}`;
    await loadCommands();
  } catch (error) {
    errorBox.textContent = errorText(error);
  }
}

// --------------------------------------------------------------------------------------------- boot

function boot() {
  for (const tab of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.tab')))
    tab.addEventListener('click', () => show(tab.dataset.view ?? 'overview'));
  byTestId('logout').addEventListener('click', () => signOut());
  byTestId('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = inputOf('login-token').value.trim();
    if (!token) {
      byTestId('login-error').textContent = 'Enter a token.';
      return;
    }
    const error = await signIn(token);
    if (error)
      byTestId('login-error').textContent =
        error instanceof ApiError && error.status === 401 ? 'That token is not accepted.' : `Could not sign in: ${error.message}`;
  });
  formOf('event-filters').addEventListener('submit', (event) => {
    event.preventDefault();
    void loadEvents(true);
  });
  byTestId('events-more').addEventListener('click', () => void loadEvents(false));
  byTestId('event-detail-close').addEventListener('click', () => /** @type {HTMLDialogElement} */ (byTestId('event-detail')).close());
  inputOf('deadletter-include-replayed').addEventListener('change', () => void loadDeadLetters());
  byTestId('console-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = formOf('console-form');
    const text = form.elements.text.value.trim();
    if (!text || !state.chat) return;
    const id = crypto.randomUUID();
    state.chat.send({
      type: 'chat',
      id,
      text,
      user: { name: form.elements.user.value.trim() || 'console', role: form.elements.role.value },
    });
    form.elements.text.value = '';
    form.elements.text.focus();
  });
  formOf('rule-form').addEventListener('submit', saveRule);
  byTestId('rule-new').addEventListener('click', () => editRule(null));
  formOf('command-form').addEventListener('submit', saveCommand);
  byTestId('command-new').addEventListener('click', () => editCommand(null));
  byTestId('rules-restore-defaults').addEventListener('click', () => void restoreDefaultRules());
  byTestId('filter-category').addEventListener('change', () => void loadEvents(true));
  for (const id of ['rule-save', 'command-save', 'rules-restore-defaults']) byTestId(id).dataset.requiresWrite = '';

  // The first link may carry the token in its fragment (never sent to the server): it is exchanged for
  // the session cookie and removed from the address bar, so bookmarks and new tabs carry no token.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token') ?? '';
  if (fromUrl) history.replaceState(null, '', location.pathname + location.search);
  void signIn(fromUrl).then((error) => {
    if (!error) return;
    signOut(
      fromUrl
        ? error instanceof ApiError && error.status === 401
          ? 'That token is not accepted.'
          : `Could not sign in: ${error.message}`
        : '',
      false,
    );
  });
  setInterval(() => state.me && state.sources.size && renderSources(), 10_000);
  setInterval(() => state.me && !state.staleSince && state.view === 'overview' && void loadStats(), 60_000);
}

boot();

/** A module (loaded with type=module): its names stay out of the global scope. */
export {};
