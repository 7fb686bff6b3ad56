// BitBrat dashboard: plain ES module, no build step. Talks to the gateway's /api (Bearer token),
// /api/live (server-sent events read with fetch, so the token stays in a header) and /ws/v1 (chat).

const TOKEN_KEY = 'bitbrat.token';
const MAX_FEED = 200;

const state = {
  token: '',
  me: null,
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

// ------------------------------------------------------------------------------------------ helpers

const $ = (selector, root = document) => root.querySelector(selector);
const byTestId = (id, root = document) => root.querySelector(`[data-testid="${CSS.escape(id)}"]`);

/** Element builder; children are nodes or text (never parsed as HTML). */
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
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '—');
/** HH:MM:SS.mmm, for step timings. */
const preciseTime = (iso) => (iso ? `${new Date(iso).toLocaleTimeString([], { hour12: false })}.${String(new Date(iso).getMilliseconds()).padStart(3, '0')}` : '—');
const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
const ms = (value) => (typeof value === 'number' ? `${Math.round(value)} ms` : '—');
const ago = (iso) => {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
};
const canWrite = () => state.me && (state.me.role === 'moderator' || state.me.role === 'owner');

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = { message: text };
  }
  if (response.status === 401 && state.me) signOut('Your token is no longer accepted. Sign in again.');
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/** The server's message plus every listed problem. */
const errorText = (error) => {
  const problems = error?.body?.problems;
  return Array.isArray(problems) && problems.length ? `${error.message}` : String(error?.message ?? error);
};

// -------------------------------------------------------------------------------------------- login

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api('GET', '/api/me');
  } catch (error) {
    state.token = '';
    state.me = null;
    return error;
  }
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  showApp();
  return undefined;
}

function signOut(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = '';
  state.me = null;
  state.live?.abort();
  state.live = null;
  state.chat?.close();
  state.chat = null;
  document.body.dataset.signedIn = 'false';
  byTestId('nav').hidden = true;
  byTestId('session').hidden = true;
  for (const view of document.querySelectorAll('.view')) view.hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-error').textContent = message;
  byTestId('login-token').focus();
}

function showApp() {
  document.body.dataset.signedIn = 'true';
  document.body.dataset.role = state.me.role;
  byTestId('login').hidden = true;
  byTestId('nav').hidden = false;
  byTestId('session').hidden = false;
  byTestId('session-role').textContent = `${state.me.anonymous ? 'anonymous ' : ''}${state.me.role}`;
  for (const button of document.querySelectorAll('[data-requires-write]')) button.disabled = !canWrite();
  show(state.view);
  startLive();
  connectChat();
}

function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.dataset.view !== view;
  for (const tab of document.querySelectorAll('.tab')) {
    if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (view === 'deadletters') loadDeadLetters();
  if (view === 'rules') loadRules();
  if (view === 'commands') loadCommands();
  if (view === 'console') byTestId('console-text').focus();
}

// --------------------------------------------------------------------------------------------- live

function setLiveState(value, text) {
  const element = byTestId('live-status');
  element.dataset.state = value;
  element.textContent = text;
}

/** Reads /api/live (SSE over fetch) and reconnects with backoff. */
function startLive() {
  state.live?.abort();
  const controller = new AbortController();
  state.live = controller;
  let delay = 1000;
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        setLiveState('connecting', 'connecting…');
        const response = await fetch('/api/live', { headers: state.token ? { authorization: `Bearer ${state.token}` } : {}, signal: controller.signal });
        if (response.status === 401) return signOut('Your token is no longer accepted. Sign in again.');
        if (!response.ok || !response.body) throw new Error(`live: HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
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
      }
      if (controller.signal.aborted) return;
      setLiveState('reconnecting', 'reconnecting…');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(10_000, delay * 2);
    }
  };
  void run();
}

function onLive(event, data) {
  switch (event) {
    case 'hello':
      return;
    case 'sources':
      // Sent once the stream is subscribed: from here on nothing is missed, so (re)load the lists.
      setLiveState('connected', 'live');
      for (const source of data) upsertSource(source);
      renderSources();
      void loadEvents(true);
      void loadDeadLetters();
      return;
    case 'source':
      upsertSource(data);
      renderSources();
      return;
    case 'event':
      upsertEvent(data);
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
  overall.textContent = report.ready ? 'all ready' : 'attention';
  overall.dataset.state = report.ready ? 'ok' : 'bad';
  list.replaceChildren(
    ...report.services.map((service) => {
      const detail = service.detail ?? Object.entries(service.components ?? {})
        .filter(([, component]) => !component.ready)
        .map(([name, component]) => `${name}: ${component.detail ?? 'not ready'}`)
        .join('; ');
      return h(
        'li',
        { testid: `health-service-${service.name}`, dataset: { state: service.state } },
        h('span', { class: `dot ${service.state}`, 'aria-hidden': 'true' }),
        h('span', { class: 'name' }, service.name),
        h('span', { class: 'state' }, service.state.replace('_', ' ')),
        detail ? h('span', { class: 'detail' }, detail) : null,
      );
    }),
  );
}

// ----------------------------------------------------------------------------------------- sources

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
function rates(id) {
  const entry = state.samples.get(id);
  if (!entry?.previous) return undefined;
  const minutes = (entry.current.at - entry.previous.at) / 60_000;
  if (minutes <= 0) return undefined;
  return { in: Math.max(0, (entry.current.in - entry.previous.in) / minutes), out: Math.max(0, (entry.current.out - entry.previous.out) / minutes) };
}

const STATUS_TEXT = { connected: 'connected', disconnected: 'disconnected', connecting: 'connecting', error: 'error', not_configured: 'not configured' };

function renderSources() {
  const container = byTestId('source-cards');
  const sources = [...state.sources.values()].sort((a, b) => a.id.localeCompare(b.id));
  // A placeholder card (how to connect a platform) gives way once that platform has a real source.
  const real = new Set(sources.filter((source) => !source.metadata?.placeholder).map((source) => source.platform));
  container.replaceChildren(
    ...sources
      .filter((source) => !(source.metadata?.placeholder && real.has(source.platform)))
      .map((source) => {
        const status = String(source.status ?? 'unknown').toLowerCase();
        const stream = String(source.streamStatus ?? 'unknown').toLowerCase();
        const rate = rates(source.id);
        const metrics = source.metrics ?? {};
        const help = source.metadata?.howToConnect ?? (status === 'not_configured' ? 'Not configured: set its credentials in the environment and restart.' : null);
        const perMinute = (value) => (value === undefined ? '— /min' : `${value < 10 ? value.toFixed(1) : Math.round(value)} /min`);
        return h(
          'article',
          { class: `card status-${status}`, testid: `source-card-${source.id}`, dataset: { status, stream }, 'aria-label': `${source.displayName ?? source.id}: ${STATUS_TEXT[status] ?? status}` },
          h('header', {}, h('h4', {}, source.displayName ?? source.id), h('span', { class: 'platform' }, source.platform)),
          h(
            'div',
            { class: 'pills' },
            h('span', { class: `pill status ${status}`, testid: 'source-status' }, STATUS_TEXT[status] ?? status),
            source.platform === 'api' || source.platform === 'discord' ? null : h('span', { class: `pill stream ${stream}`, testid: 'source-stream' }, `stream ${stream}`),
            source.authStatus && source.authStatus !== 'unknown' ? h('span', { class: `pill auth ${source.authStatus}` }, `auth ${source.authStatus}`) : null,
          ),
          help ? h('p', { class: 'help', testid: 'source-help' }, help) : null,
          h(
            'dl',
            { class: 'metrics' },
            h('dt', {}, 'In'), h('dd', { testid: 'source-in' }, `${metrics.messagesIn ?? 0} · ${perMinute(rate?.in)}`),
            h('dt', {}, 'Out'), h('dd', { testid: 'source-out' }, `${metrics.messagesOut ?? 0} · ${perMinute(rate?.out)}`),
            h('dt', {}, 'Reconnects'), h('dd', { testid: 'source-reconnects' }, String(metrics.reconnects ?? 0)),
            h('dt', {}, 'Errors'), h('dd', {}, String(metrics.errors ?? 0)),
            typeof source.viewerCount === 'number' ? [h('dt', {}, 'Viewers'), h('dd', {}, String(source.viewerCount))] : null,
            source.platform === 'obs' && source.metadata?.programScene ? [h('dt', {}, 'Scene'), h('dd', { testid: 'source-obs-scene' }, `${source.metadata.programScene}${source.metadata.streaming ? ' · streaming' : ''}${source.metadata.recording ? ' · recording' : ''}`)] : null,
            source.platform === 'discord' ? [h('dt', {}, 'Guilds'), h('dd', { testid: 'source-guilds' }, String(source.metadata?.guilds ?? 0))] : null,
            typeof source.latencyMs === 'number' ? [h('dt', {}, 'Latency'), h('dd', { testid: 'source-latency' }, `${source.latencyMs} ms`)] : null,
            source.platform === 'api' ? [h('dt', {}, 'Clients'), h('dd', {}, String(source.metadata?.clients ?? 0))] : [h('dt', {}, 'Heartbeat'), h('dd', {}, ago(metrics.lastHeartbeat ?? source.lastStatusUpdate))],
          ),
          source.lastError?.message
            ? h('p', { class: 'last-error', testid: 'source-last-error' }, h('strong', {}, 'Last error: '), `${source.lastError.code ? `${source.lastError.code}: ` : ''}${source.lastError.message}`, source.lastError.at ? ` (${ago(source.lastError.at)})` : '')
            : null,
        );
      }),
  );
}

// ------------------------------------------------------------------------------------------ events

function filters() {
  const form = byTestId('event-filters');
  const params = new URLSearchParams();
  for (const name of ['type', 'outcome', 'user', 'channel']) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function matchesFilters(event) {
  const params = filters();
  if (params.get('type') && event.type !== params.get('type')) return false;
  if (params.get('outcome') && event.outcome !== params.get('outcome')) return false;
  if (params.get('user') && (event.userName ?? '').toLowerCase() !== params.get('user').toLowerCase()) return false;
  if (params.get('channel') && event.channel !== params.get('channel')) return false;
  return true;
}

async function loadEvents(reset) {
  const params = filters();
  params.set('limit', '50');
  if (!reset && state.nextCursor) params.set('cursor', state.nextCursor);
  try {
    const page = await api('GET', `/api/events?${params}`);
    if (reset) state.events.clear();
    for (const event of page.items) state.events.set(event.id, event);
    state.nextCursor = page.nextCursor;
    byTestId('events-more').hidden = !page.nextCursor;
    renderEvents();
  } catch (error) {
    console.warn('could not load events', error);
  }
}

function upsertEvent(event) {
  if (!matchesFilters(event)) return;
  state.events.set(event.id, { ...state.events.get(event.id), ...event });
  renderEvents();
}

function renderEvents() {
  const list = byTestId('event-feed');
  const events = [...state.events.values()].sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : a.receivedAt > b.receivedAt ? -1 : 0)).slice(0, MAX_FEED);
  list.replaceChildren(
    ...events.map((event) => {
      const outcome = event.outcome ?? 'in flight';
      return h(
        'li',
        {},
        h(
          'button',
          { type: 'button', class: 'event-row', testid: `event-row-${event.id}`, dataset: { outcome: event.outcome ?? 'pending', id: event.id }, onclick: () => openEvent(event.id), 'aria-label': `Open event ${event.type} from ${event.userName ?? 'system'}` },
          h('span', { class: 'time' }, time(event.receivedAt)),
          h('span', { class: 'type' }, event.type),
          h('span', { class: 'user' }, event.userName ?? '—'),
          h('span', { class: 'text' }, event.text ?? '', event.replyText ? h('span', { class: 'reply' }, ` → ${event.replyText}`) : null),
          h('span', { class: `pill outcome ${outcome.replace(' ', '-')}`, testid: 'event-outcome' }, outcome),
          h('span', { class: 'latency' }, ms(event.latencyMs)),
        ),
      );
    }),
  );
}

async function openEvent(id) {
  const dialog = byTestId('event-detail');
  let record;
  try {
    record = await api('GET', `/api/events/${encodeURIComponent(id)}`);
  } catch (error) {
    byTestId('event-facts').replaceChildren(h('p', { class: 'error' }, errorText(error)));
    if (!dialog.open) dialog.showModal();
    return;
  }
  dialog.dataset.eventId = id;
  const facts = [
    ['Id', record.id],
    ['Type', record.type],
    ['User', record.userName ?? '—'],
    ['Channel', `${record.platform ?? ''} ${record.channel ?? ''}`.trim() || '—'],
    ['Text', record.text ?? '—'],
    ['Outcome', record.outcome ?? (record.stalled ? `stalled at ${record.stalled.at?.step ?? 'an unknown step'}${record.stalled.cause ? ` (${record.stalled.cause})` : ''}` : 'in flight')],
    ['Reply', record.replyText ? `${record.replyText}${record.replyDelivered ? ' (delivered)' : ' (not delivered)'}` : '—'],
    ['Received', dateTime(record.receivedAt)],
    ['Latency', ms(record.latencyMs)],
  ];
  byTestId('event-facts').replaceChildren(...facts.flatMap(([term, value]) => [h('dt', {}, term), h('dd', { testid: `fact-${term.toLowerCase()}` }, value)]));
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
      h('td', { class: 'error-cell' }, step.error ? `${step.error.code}${step.error.message ? `: ${step.error.message}` : ''}` : ''),
    ),
  );
  if (delivery) {
    rows.push(
      h(
        'tr',
        { testid: 'slip-delivery', dataset: { status: delivery.delivered ? 'OK' : 'NOT_DELIVERED' } },
        h('td', {}, ''),
        h('th', { scope: 'row' }, 'egress'),
        h('td', {}, h('span', { class: `pill step ${delivery.delivered ? 'ok' : 'error'}` }, delivery.delivered ? 'DELIVERED' : 'NOT DELIVERED')),
        h('td', {}, ''),
        h('td', {}, `→ ${preciseTime(delivery.at)}`),
        h('td', {}, ''),
        h('td', { class: 'error-cell' }, delivery.reason ?? ''),
      ),
    );
  }
  if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: '7', class: 'muted' }, 'No routing slip (the event was recorded only).')));
  $('tbody', byTestId('slip-timeline')).replaceChildren(...rows);
  const errors = record.errors ?? [];
  byTestId('event-errors').replaceChildren(
    ...(errors.length ? [h('h3', {}, 'Errors'), h('ul', { class: 'errors' }, ...errors.map((error) => h('li', {}, `${error.code}${error.step ? ` at ${error.step}` : ''}: ${error.message ?? ''}`)))] : []),
  );
  if (!dialog.open) dialog.showModal();
}

// ------------------------------------------------------------------------------------ dead letters

async function loadDeadLetters() {
  const include = byTestId('deadletter-include-replayed').checked;
  try {
    const page = await api('GET', `/api/deadletters?limit=100${include ? '&includeReplayed=true' : ''}`);
    state.deadletters = page.summaries;
    renderDeadLetters();
  } catch (error) {
    byTestId('deadletter-error').textContent = errorText(error);
  }
}

function upsertDeadLetter(summary) {
  const index = state.deadletters.findIndex((item) => item.id === summary.id);
  if (index >= 0) state.deadletters[index] = summary;
  else state.deadletters.unshift(summary);
  renderDeadLetters();
}

function renderDeadLetters() {
  const include = byTestId('deadletter-include-replayed').checked;
  const items = state.deadletters.filter((item) => include || !item.replayedAt);
  const pending = state.deadletters.filter((item) => !item.replayedAt).length;
  byTestId('deadletter-count').textContent = pending ? String(pending) : '';
  const body = $('tbody', byTestId('deadletter-list'));
  if (items.length === 0) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'No dead letters.')));
    return;
  }
  body.replaceChildren(
    ...items.map((item) =>
      h(
        'tr',
        { testid: `deadletter-row-${item.id}`, dataset: { replayed: item.replayedAt ? 'true' : 'false' } },
        h('td', {}, dateTime(item.receivedAt)),
        h('td', {}, h('strong', {}, item.code), ' ', h('span', { class: 'muted' }, item.message)),
        h('td', {}, `${item.service} @ ${item.topic}`),
        h('td', { testid: `deadletter-state-${item.id}` }, item.replayedAt ? `replayed ${item.replayCount}× (${ago(item.replayedAt)})` : 'pending'),
        h(
          'td',
          {},
          h('button', { type: 'button', testid: `deadletter-replay-${item.id}`, disabled: !canWrite(), title: canWrite() ? undefined : 'needs a moderator or owner token', onclick: (event) => replay(item.id, event.currentTarget) }, item.replayedAt ? 'Replay again' : 'Replay'),
        ),
      ),
    ),
  );
}

async function replay(id, button) {
  byTestId('deadletter-error').textContent = '';
  button.disabled = true;
  try {
    const result = await api('POST', `/api/deadletters/${encodeURIComponent(id)}/replay`, {});
    const existing = state.deadletters.find((item) => item.id === id);
    if (existing) upsertDeadLetter({ ...existing, replayedAt: result.replayedAt, replayCount: result.replayCount });
  } catch (error) {
    byTestId('deadletter-error').textContent = errorText(error);
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------- console

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
  const queue = [];
  const lines = new Map();
  let socket;
  let ready = false;
  let closed = false;
  let delay = 1000;
  const status = (text) => (byTestId('console-status').textContent = text);

  const open = () => {
    socket = new WebSocket(url);
    ready = false;
    socket.addEventListener('open', () => {
      if (state.token) socket.send(JSON.stringify({ type: 'auth', token: state.token }));
    });
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
          while (queue.length) socket.send(queue.shift());
          break;
        case 'ack': {
          const line = lines.get(frame.id);
          if (line) {
            line.dataset.envelopeId = frame.envelopeId;
            line.dataset.state = 'sent';
            line.append(' ', h('button', { type: 'button', class: 'link', testid: `console-open-${frame.envelopeId}`, onclick: () => openEvent(frame.envelopeId) }, `as ${frame.role} · open event`));
          }
          break;
        }
        case 'reply':
          consoleLine('bot', frame.text, { testid: 'console-reply', dataset: { kind: 'bot', inReplyTo: frame.inReplyTo, envelopeId: frame.envelopeId } });
          break;
        case 'noreply':
          consoleLine('info', `no reply (${frame.outcome})`, { testid: 'console-noreply' });
          break;
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
      const line = consoleLine('user', `${frame.user.name} (${frame.user.role}): ${frame.text}`, { testid: 'console-sent', dataset: { kind: 'user', id: frame.id } });
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
    state.rules = (await api('GET', '/api/rules')).items;
    renderRules();
  } catch (error) {
    byTestId('rule-error').textContent = errorText(error);
  }
}

const actionSummary = (action) => [action?.slip ? `slip: ${action.slip.map((step) => (typeof step === 'string' ? step : step.id)).join(' → ')}` : '', action?.outcome ? `outcome: ${action.outcome}` : ''].filter(Boolean).join('; ');

/** A delete button that asks for a second click instead of a modal confirm. */
function deleteButton(testid, label, onConfirm) {
  const button = h('button', { type: 'button', class: 'danger', testid, disabled: !canWrite() }, 'Delete');
  let armed;
  button.addEventListener('click', async () => {
    if (!armed) {
      button.textContent = `Delete ${label}?`;
      armed = setTimeout(() => {
        armed = undefined;
        button.textContent = 'Delete';
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = undefined;
    await onConfirm();
  });
  return button;
}

function renderRules() {
  const body = $('tbody', byTestId('rules-list'));
  body.replaceChildren(
    ...state.rules.map((rule) =>
      h(
        'tr',
        { testid: `rule-row-${rule.id}` },
        h('th', { scope: 'row' }, rule.id),
        h('td', {}, String(rule.priority)),
        h('td', {}, rule.enabled ? 'yes' : 'no'),
        h('td', {}, actionSummary(rule.action)),
        h('td', { class: 'muted' }, rule.description ?? ''),
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

function editRule(rule) {
  const form = byTestId('rule-form');
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

async function saveRule(event) {
  event.preventDefault();
  const form = byTestId('rule-form');
  const errorBox = byTestId('rule-error');
  errorBox.textContent = '';
  byTestId('rule-status').textContent = '';
  const parse = (name) => {
    try {
      return JSON.parse(form.elements[name].value);
    } catch (error) {
      throw new Error(`${name} is not valid JSON: ${error.message}`);
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
    errorBox.textContent = error.message;
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
    state.commands = (await api('GET', '/api/commands')).items;
    renderCommands();
  } catch (error) {
    byTestId('command-error').textContent = errorText(error);
  }
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
        h('th', { scope: 'row' }, `!${command.name}`, command.aliases?.length ? h('span', { class: 'muted' }, ` (${command.aliases.map((alias) => `!${alias}`).join(', ')})`) : null),
        h('td', {}, command.response),
        h('td', {}, command.minRole),
        h('td', {}, `${command.cooldownSec}s / user ${command.userCooldownSec}s`),
        h('td', {}, command.enabled ? 'yes' : 'no'),
        h('td', {}, String(command.uses)),
        h(
          'td',
          { class: 'actions' },
          h('button', { type: 'button', class: 'secondary', testid: `command-edit-${command.name}`, onclick: () => editCommand(command) }, 'Edit'),
          deleteButton(`command-delete-${command.name}`, `!${command.name}`, async () => {
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

function editCommand(command) {
  const form = byTestId('command-form');
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

async function saveCommand(event) {
  event.preventDefault();
  const form = byTestId('command-form');
  const errorBox = byTestId('command-error');
  errorBox.textContent = '';
  byTestId('command-status').textContent = '';
  const name = form.elements.name.value.trim().replace(/^!/, '');
  const body = {
    response: form.elements.response.value.trim(),
    minRole: form.elements.minRole.value,
    cooldownSec: Number(form.elements.cooldownSec.value),
    userCooldownSec: Number(form.elements.userCooldownSec.value),
    aliases: form.elements.aliases.value.split(',').map((alias) => alias.trim()).filter(Boolean),
    enabled: form.elements.enabled.checked,
  };
  try {
    if (state.editingCommand) await api('PUT', `/api/commands/${encodeURIComponent(state.editingCommand)}`, body);
    else await api('POST', '/api/commands', { name, ...body });
    byTestId('command-status').textContent = `Command !${name} saved.`;
    state.editingCommand = name.toLowerCase();
    form.elements.name.readOnly = true;
    byTestId('command-form-title').textContent = `Edit !${name.toLowerCase()}`;
    await loadCommands();
  } catch (error) {
    errorBox.textContent = errorText(error);
  }
}

// --------------------------------------------------------------------------------------------- boot

function boot() {
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => show(tab.dataset.view));
  byTestId('logout').addEventListener('click', () => signOut());
  byTestId('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = byTestId('login-token').value.trim();
    if (!token) {
      byTestId('login-error').textContent = 'Enter a token.';
      return;
    }
    const error = await signIn(token);
    if (error) byTestId('login-error').textContent = error.status === 401 ? 'That token is not accepted.' : `Could not sign in: ${error.message}`;
  });
  byTestId('event-filters').addEventListener('submit', (event) => {
    event.preventDefault();
    void loadEvents(true);
  });
  byTestId('events-more').addEventListener('click', () => void loadEvents(false));
  byTestId('event-detail-close').addEventListener('click', () => byTestId('event-detail').close());
  byTestId('deadletter-include-replayed').addEventListener('change', () => void loadDeadLetters());
  byTestId('console-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const text = form.elements.text.value.trim();
    if (!text || !state.chat) return;
    const id = crypto.randomUUID();
    state.chat.send({ type: 'chat', id, text, user: { name: form.elements.user.value.trim() || 'console', role: form.elements.role.value } });
    form.elements.text.value = '';
    form.elements.text.focus();
  });
  byTestId('rule-form').addEventListener('submit', saveRule);
  byTestId('rule-new').addEventListener('click', () => editRule(null));
  byTestId('command-form').addEventListener('submit', saveCommand);
  byTestId('command-new').addEventListener('click', () => editCommand(null));
  for (const id of ['rule-save', 'command-save']) byTestId(id).dataset.requiresWrite = '';

  // A token in the URL fragment (never sent to the server) wins; it is moved to sessionStorage.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) history.replaceState(null, '', location.pathname + location.search);
  const token = fromUrl ?? sessionStorage.getItem(TOKEN_KEY) ?? '';
  void signIn(token).then((error) => {
    if (!error) return;
    signOut(token ? (error.status === 401 ? 'That token is not accepted.' : `Could not sign in: ${error.message}`) : '');
  });
  setInterval(() => state.me && state.sources.size && renderSources(), 10_000);
}

boot();
