import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createMemoryBus } from '../../src/bus/index.js';
import { createEnvelope, type DeadLetter } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { service as auth } from '../../src/services/auth/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import { service as queryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { service as moderation } from '../../src/services/moderation/index.js';
import { service as commands } from '../../src/services/commands/index.js';
import { service as persistence } from '../../src/services/persistence/index.js';
import { service as finalizer } from '../../src/services/finalizer/index.js';
import { service as gateway } from '../../src/services/api-gateway/index.js';
import { service as llmBot } from '../../src/services/llm-bot/index.js';
import { service as oauthFlow } from '../../src/services/oauth-flow/index.js';
import { startTestHost } from '../support/harness.js';

/** Debian's chromium (the CI script installs it; locally: apt-get install -y chromium). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = path.resolve('test-output/screenshots');
const OWNER = 'dashboard-owner-token';
const VIEWER = 'dashboard-viewer-token';
const UI_TIMEOUT = 20_000;

let host: Host;
let store: Store;
let browser: Browser;
let base: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `chromium is required for the dashboard test but ${CHROMIUM} does not exist (apt-get install -y chromium, or set CHROMIUM_PATH)${process.env.CI === 'true' ? ' [CI]' : ''}`,
    );
  }
  await mkdir(SCREENSHOTS, { recursive: true });
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  host = await startTestHost({
    services: [auth, eventRouter, queryAnalyzer, moderation, commands, persistence, finalizer, gateway],
    bus: createMemoryBus(),
    listen: true,
    architecture: loadArchitecture(),
    env: { INSTANCE_ID: 'dash', HOST: '127.0.0.1', API_GATEWAY_TOKENS: `${OWNER}:owner,${VIEWER}:viewer`, API_GATEWAY_LIVE_POLL_MS: '250' },
    extra: { store },
  });
  base = `http://127.0.0.1:${host.port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
});

afterAll(async () => {
  await browser?.close();
  await host?.stop();
  await store?.close();
});

const DESKTOP = { width: 1440, height: 900 };
const PHONE = { width: 390, height: 844 };

/** Console errors and page errors per page: a dashboard page must close without any. */
const problems = new WeakMap<Page, string[]>();
function watch(page: Page): Page {
  const list: string[] = [];
  problems.set(page, list);
  page.on('console', (message) => message.type() === 'error' && list.push(`console: ${message.text()}`));
  page.on('pageerror', (error) => list.push(`page error: ${error.message}`));
  page.setDefaultTimeout(UI_TIMEOUT);
  return page;
}

/** `expected` names console lines the test caused on purpose (the browser logs every 4xx answer). */
async function closeClean(page: Page, expected?: RegExp): Promise<void> {
  const seen = (problems.get(page) ?? []).filter((line) => !expected?.test(line));
  await page.close();
  expect(seen).toEqual([]);
}

/** Widest element's right edge against the viewport: nothing may stick out sideways. */
const overflow = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

/**
 * Screenshots the page at 1440×900 and at 390×844 (`<name>-desktop.png`, `<name>-phone.png`), checking at
 * both that the page is no wider than the screen, then goes back to the desktop size.
 */
async function shot(page: Page, name: string): Promise<void> {
  for (const [label, size] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    await page.setViewportSize(size);
    // Layout settles on the next frame after a resize.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    expect(await overflow(page), `${name} at ${label} is wider than the screen`).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(DESKTOP);
}

async function signedIn(token = OWNER, context?: BrowserContext): Promise<Page> {
  const page = watch(await (context ?? (await browser.newContext({ viewport: DESKTOP }))).newPage());
  await page.goto(`${base}/#token=${token}`);
  await page.getByTestId('live-status').and(page.locator('[data-state="connected"]')).waitFor();
  return page;
}

describe('dashboard', () => {
  it('signs in with the token from the form, refusing a wrong one, and forgets the URL fragment', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    await page.goto(base + '/');
    await page.getByTestId('login-form').waitFor();
    await page.getByTestId('login-token').fill('not-the-token');
    await page.getByTestId('login-submit').click();
    await expect.poll(() => page.getByTestId('login-error').textContent(), { timeout: UI_TIMEOUT }).toContain('not accepted');
    await shot(page, '00-login-refused');
    await page.getByTestId('login-token').fill(OWNER);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('nav-overview').waitFor();
    expect(await page.getByTestId('session-role').textContent()).toBe('owner');
    await context.close();

    const linked = await signedIn();
    expect(new URL(linked.url()).hash).toBe('');
    await closeClean(linked);
  });

  it('keeps the session in an HttpOnly cookie: new tabs and a restarted browser stay signed in, sign-out ends it, and no token is in a URL or page storage', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const urls: string[] = [];
    context.on('request', (request) => urls.push(request.url()));
    context.on('page', (opened) => opened.on('websocket', (socket) => urls.push(socket.url())));
    const first = await signedIn(OWNER, context);
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: 'bitbrat_session', httpOnly: true, sameSite: 'Strict' });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000 + 7 * 86_400);
    expect(cookie!.value).not.toContain(OWNER);
    expect(await first.evaluate(() => document.cookie)).toBe('');
    expect(await first.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }))).not.toContain(OWNER);
    // The chat socket works on the cookie alone.
    await first.getByTestId('nav-console').click();
    await expect.poll(() => first.getByTestId('console-status').textContent(), { timeout: UI_TIMEOUT }).toBe('connected as owner');

    // A new tab (a bookmark, no token anywhere) is signed in.
    const tab = watch(await context.newPage());
    await tab.goto(base + '/');
    await tab.getByTestId('live-status').and(tab.locator('[data-state="connected"]')).waitFor();
    expect(await tab.getByTestId('session-role').textContent()).toBe('owner');
    await shot(tab, '00-session-new-tab');
    await closeClean(tab);

    // A browser restart: a fresh context with only the stored cookies.
    const restarted = await browser.newContext({ viewport: DESKTOP, storageState: await context.storageState() });
    const again = watch(await restarted.newPage());
    await again.goto(base + '/');
    await again.getByTestId('live-status').and(again.locator('[data-state="connected"]')).waitFor();
    await closeClean(again);

    // Only the very first link carried the token (in its fragment); no request, stream or socket after it did.
    expect(urls.some((url) => url.includes('/api/live')) && urls.some((url) => url.includes('/ws/v1'))).toBe(true);
    expect(urls.filter((url) => (url.includes(OWNER) || url.includes('token=')) && url !== `${base}/#token=${OWNER}`)).toEqual([]);

    await first.getByTestId('logout').click();
    await first.getByTestId('login-form').waitFor();
    await expect.poll(async () => (await context.cookies()).length, { timeout: UI_TIMEOUT }).toBe(0);
    // The old cookie is refused even if someone kept a copy.
    const replayed = await fetch(`${base}/api/me`, { headers: { cookie: `${cookie!.name}=${cookie!.value}` } });
    expect(replayed.status).toBe(401);
    const reopened = await again.context().newPage();
    await reopened.goto(base + '/');
    await reopened.getByTestId('login-form').waitFor();
    await closeClean(first);
    await restarted.close();
    await context.close();
  });

  it('refuses a cookie-authenticated change from another origin or without the CSRF header', async () => {
    const page = await signedIn();
    const [cookie] = await page.context().cookies();
    const headers = { cookie: `${cookie!.name}=${cookie!.value}`, 'content-type': 'application/json' };
    const noHeader = await fetch(`${base}/api/rules/restore-defaults`, { method: 'POST', headers, body: '{}' });
    expect(noHeader.status).toBe(403);
    expect(((await noHeader.json()) as { message: string }).message).toContain('x-bitbrat-csrf');
    const foreign = await fetch(`${base}/api/rules/restore-defaults`, {
      method: 'POST',
      headers: { ...headers, 'x-bitbrat-csrf': '1', origin: 'https://evil.example' },
      body: '{}',
    });
    expect(foreign.status).toBe(403);
    // A chat socket opened from another site with the cookie is refused before the upgrade.
    const status = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`${base.replace('http', 'ws')}/ws/v1`, {
        headers: { cookie: headers.cookie, origin: 'https://evil.example' },
      });
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.on('open', () => reject(new Error('the socket was accepted')));
      socket.on('error', () => undefined);
    });
    expect(status).toBe(403);
    await closeClean(page);
  });

  it('shows every service and source, and a source card changes live when the connector drops', async () => {
    const page = await signedIn();
    await page.getByTestId('health-service-api-gateway').and(page.locator('[data-state="ready"]')).waitFor();
    await page.getByTestId('health-service-ingress-egress').and(page.locator('[data-state="unknown"]')).waitFor();
    // No Twitch source yet: a card says how to connect.
    await page.getByTestId('source-card-twitch').and(page.locator('[data-status="not_configured"]')).waitFor();
    expect(await page.getByTestId('source-card-twitch').getByTestId('source-help').textContent()).toContain('TWITCH_CLIENT_ID');

    const heartbeat = () => new Date().toISOString();
    const startedAt = new Date(Date.now() - (83 * 60_000 + 5_000)).toISOString();
    await store.mergeSource({
      id: 'twitch:4242',
      platform: 'twitch',
      displayName: 'bitbrat_bot',
      status: 'connected',
      streamStatus: 'online',
      authStatus: 'valid',
      viewerCount: 37,
      metadata: { title: 'Speedrun night', game: 'Celeste', startedAt },
      metrics: { messagesIn: 10, messagesOut: 2, reconnects: 0, errors: 0, lastHeartbeat: heartbeat() },
    });
    const card = page.getByTestId('source-card-twitch:4242');
    await card.and(page.locator('[data-status="connected"][data-stream="online"]')).waitFor();
    await expect.poll(() => page.getByTestId('source-card-twitch').count(), { timeout: UI_TIMEOUT }).toBe(0);
    // The stream panel: live, title, game, viewers and uptime.
    const stream = page.getByTestId('stream-twitch:4242');
    await stream.and(page.locator('[data-state="live"]')).waitFor();
    expect(await stream.getByTestId('stream-title').textContent()).toBe('Speedrun night');
    expect(await stream.getByTestId('stream-game').textContent()).toBe('Celeste');
    expect(await stream.getByTestId('stream-viewers').textContent()).toBe('37 viewers');
    expect(await stream.getByTestId('stream-uptime').textContent()).toBe('up 1h 23m');
    await shot(page, '01-overview-connected');

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await store.mergeSource({
      id: 'twitch:4242',
      platform: 'twitch',
      status: 'disconnected',
      streamStatus: 'offline',
      lastError: { code: 'IRC_CLOSED', message: 'connection reset by peer', at: heartbeat() },
      metrics: { messagesIn: 70, reconnects: 1, lastHeartbeat: heartbeat() },
    });
    await card.and(page.locator('[data-status="disconnected"][data-stream="offline"]')).waitFor();
    // The stream panel follows live: offline now, without uptime or viewers.
    await stream.and(page.locator('[data-state="offline"]')).waitFor();
    expect(await stream.getByTestId('stream-uptime').count()).toBe(0);
    expect(await card.getByTestId('source-status').textContent()).toBe('disconnected');
    expect(await card.getByTestId('source-last-error').textContent()).toContain('IRC_CLOSED: connection reset by peer');
    expect(await card.getByTestId('source-reconnects').textContent()).toBe('1');
    // 60 more messages in about a second: the rate is per minute and far above zero.
    expect(await card.getByTestId('source-in').textContent()).toMatch(/^70 · \d+ \/min$/);
    await shot(page, '02-overview-source-disconnected');
    await closeClean(page);
  });

  it('sends !ping from the console, shows the pong reply, and opens the event with every slip step', async () => {
    const page = await signedIn();
    await page.getByTestId('nav-console').click();
    await page.getByTestId('console-role').selectOption('moderator');
    await page.getByTestId('console-user').fill('dash_user');
    await page.getByTestId('console-text').fill('!ping');
    await page.getByTestId('console-send').click();
    const reply = page.getByTestId('console-reply').first();
    await reply.waitFor();
    expect(await reply.textContent()).toBe('pong');
    const envelopeId = await reply.getAttribute('data-envelope-id');
    expect(envelopeId).toBeTruthy();
    await shot(page, '03-console-pong');

    // The same message is in the live feed; once finalized it opens with its whole slip.
    await page.getByTestId('nav-overview').click();
    const row = page.getByTestId(`event-row-${envelopeId}`);
    await row.and(page.locator('[data-outcome="completed"]')).waitFor();
    expect(await row.textContent()).toContain('!ping');
    await row.click();
    const detail = page.getByTestId('event-detail');
    await detail.waitFor();
    await detail.getByTestId('slip-step-3').waitFor();
    const steps = await detail
      .locator('[data-testid^="slip-step-"]')
      .evaluateAll((rows) => rows.map((element) => [(element as HTMLElement).dataset.stepId, (element as HTMLElement).dataset.status]));
    expect(steps).toEqual([
      ['query-analyzer', 'OK'],
      ['moderation', 'SKIP'],
      ['router', 'OK'],
      ['commands', 'OK'],
    ]);
    expect(await detail.getByTestId('slip-delivery').getAttribute('data-status')).toBe('OK');
    expect(await detail.getByTestId('fact-reply').textContent()).toContain('pong (delivered)');
    await shot(page, '04-event-slip-timeline');
    await detail.getByTestId('event-detail-close').click();
    await closeClean(page);
  });

  it('replays a dead letter and shows it as replayed', async () => {
    const envelope = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'test', channel: 'dash', channelId: 'dash' },
      user: { id: 'u-dl', name: 'dl_user', displayName: 'dl_user', profileImageUrl: '', role: 'viewer' },
      payload: { text: 'hello again' },
      extra: { message: { text: 'hello again' } },
    });
    const letter: DeadLetter = {
      kind: 'bitbrat.deadletter.v1',
      id: 'dl-dashboard-1',
      at: new Date().toISOString(),
      reason: { code: 'HANDLER_EXCEPTION', message: 'the store was down' },
      topic: 'internal.ingress.v1',
      service: 'auth',
      replayTopic: 'internal.ingress.v1',
      raw: JSON.stringify(envelope),
      rawEncoding: 'utf8',
      envelope,
      envelopeId: envelope.id,
    };
    await store.insertDeadLetter({ id: letter.id, receivedAt: new Date().toISOString(), deadLetter: letter });

    const page = await signedIn();
    await page.getByTestId('nav-deadletters').click();
    const row = page.getByTestId('deadletter-row-dl-dashboard-1');
    await row.and(page.locator('[data-replayed="false"]')).waitFor();
    expect(await row.textContent()).toContain('HANDLER_EXCEPTION');
    // Who sent what, with a link to the event.
    expect(await page.getByTestId('deadletter-from-dl-dashboard-1').textContent()).toContain('dl_user: “hello again”');
    await shot(page, '05-deadletters-pending');
    await page.getByTestId('deadletter-replay-dl-dashboard-1').click();
    await row.and(page.locator('[data-replayed="true"]')).waitFor();
    expect(await page.getByTestId('deadletter-state-dl-dashboard-1').textContent()).toMatch(/^replayed 1×/);
    expect(await row.getAttribute('class')).toContain('replayed');
    expect((await store.getDeadLetter('dl-dashboard-1'))!.replayCount).toBe(1);
    // The replayed message went through the pipeline and was recorded.
    await expect.poll(async () => (await store.getEvent(envelope.id))?.outcome, { timeout: UI_TIMEOUT }).toBeTruthy();
    await shot(page, '06-deadletters-replayed');
    await page.getByTestId('deadletter-open-dl-dashboard-1').click();
    await page
      .getByTestId('event-detail')
      .and(page.locator(`[data-event-id="${envelope.id}"]`))
      .waitFor();
    expect(await page.getByTestId('fact-text').textContent()).toBe('hello again');
    await page.getByTestId('event-detail-close').click();
    await closeClean(page);
  });

  it('adds a command in the editor that then answers in the console, and a rule with validation errors shown', async () => {
    const page = await signedIn();
    await page.getByTestId('nav-commands').click();
    // Built-ins are listed with the configured prefix, and the template variables are explained inline.
    expect(await page.getByTestId('builtin-uptime').textContent()).toContain('!uptime');
    for (const variable of ['user', 'touser', 'args', 'uptime', 'game', 'title', 'count'])
      expect(await page.getByTestId(`variable-${variable}`).textContent()).not.toBe('');
    // An empty response is refused in plain words.
    await page.getByTestId('command-name').fill('empty');
    await page.getByTestId('command-save').click();
    await expect
      .poll(() => page.getByTestId('command-error').textContent(), { timeout: UI_TIMEOUT })
      .toContain('response must not be empty');
    expect(await page.getByTestId('command-error').textContent()).not.toContain('Too small');
    await page.getByTestId('command-name').fill('socials');
    await page.getByTestId('command-response').fill('Follow us everywhere, {user}!');
    await page.getByTestId('command-cooldown').fill('0');
    await page.getByTestId('command-save').click();
    await page.getByTestId('command-row-socials').waitFor();
    await shot(page, '07-commands');

    await page.getByTestId('nav-console').click();
    await page.getByTestId('console-user').fill('fan');
    await page.getByTestId('console-text').fill('!socials');
    await page.getByTestId('console-send').click();
    await expect
      .poll(() => page.getByTestId('console-reply').allTextContents(), { timeout: UI_TIMEOUT })
      .toContainEqual('Follow us everywhere, fan!');

    await page.getByTestId('nav-rules').click();
    await page.getByTestId('rule-id').fill('dash-rule');
    await page.getByTestId('rule-logic').fill('{ "==": [ { "var": "type" }');
    await page.getByTestId('rule-save').click();
    await expect.poll(() => page.getByTestId('rule-error').textContent(), { timeout: UI_TIMEOUT }).toContain('logic is not valid JSON');
    await page.getByTestId('rule-logic').fill('{ "==": [{ "var": "type" }, "test.dashboard.v1"] }');
    await page.getByTestId('rule-action').fill('{}');
    await page.getByTestId('rule-save').click();
    await expect
      .poll(() => page.getByTestId('rule-error').textContent(), { timeout: UI_TIMEOUT })
      .toContain('an action needs a slip or an outcome');
    await page.getByTestId('rule-action').fill('{ "outcome": "handled" }');
    await page.getByTestId('rule-save').click();
    await page.getByTestId('rule-row-dash-rule').waitFor();
    expect((await store.getRule('dash-rule'))?.action).toEqual({ outcome: 'handled' });
    await shot(page, '08-rules');

    // A core rule deleted by accident comes back with "Restore default rules"; the own rule stays.
    await page.getByTestId('rule-delete-commands').click();
    await page.getByTestId('rule-delete-commands').click();
    await expect.poll(() => page.getByTestId('rule-row-commands').count(), { timeout: UI_TIMEOUT }).toBe(0);
    expect(await page.getByTestId('rules-missing').textContent()).toContain('Missing default rules: commands');
    await shot(page, '08-rules-core-deleted');
    await page.getByTestId('rules-restore-defaults').click();
    await page.getByTestId('rule-row-commands').waitFor();
    expect(await page.getByTestId('rules-restore-status').textContent()).toContain('Restored commands');
    expect(await store.getRule('commands')).toBeTruthy();
    expect(await store.getRule('dash-rule')).toBeTruthy();
    // Saving bad input is answered 400 on purpose here.
    await closeClean(page, /status of 400 \(Bad Request\)/);
  });

  it('gives viewers a read-only dashboard: replay and save are disabled', async () => {
    const page = await signedIn(VIEWER);
    expect(await page.getByTestId('session-role').textContent()).toBe('viewer');
    await page.getByTestId('nav-deadletters').click();
    await page.getByTestId('deadletter-row-dl-dashboard-1').waitFor();
    expect(await page.getByTestId('deadletter-replay-dl-dashboard-1').isDisabled()).toBe(true);
    await page.getByTestId('nav-rules').click();
    expect(await page.getByTestId('rule-save').isDisabled()).toBe(true);
    await closeClean(page);
  });
});

describe('dashboard: activity, chat, charts, honest state', () => {
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
  const platformEvent = (id: string, kind: string, payload: Record<string, unknown>, minutes: number) => {
    const envelope = createEnvelope({
      type: 'twitch.eventsub.v1',
      source: { platform: 'twitch', channel: 'bitbrat', channelId: '4242' },
      user: { id: `u-${id}`, name: id, displayName: id, profileImageUrl: '', role: 'viewer' },
      payload,
      extra: { externalEvent: { id, source: 'twitch.eventsub', kind, version: '1', createdAt: minutesAgo(minutes), payload } },
    });
    return {
      id: envelope.id,
      correlationId: envelope.id,
      type: 'twitch.eventsub.v1',
      platform: 'twitch',
      channel: 'bitbrat',
      receivedAt: minutesAgo(minutes),
      ingress: { envelope },
    };
  };

  it('tells follows, subs, gifts, cheers and raids in words apart from the pipeline feed, filters by category, and keeps repeated status heartbeats out', async () => {
    await store.recordIngress([
      platformEvent('RaiderOne', 'channel.raid', { fromBroadcaster: { displayName: 'RaiderOne' }, viewers: 25 }, 5),
      platformEvent('FollowFan', 'channel.follow', { user: { displayName: 'FollowFan' } }, 4),
      platformEvent('GiftGiver', 'channel.subscription.gift', { user: { displayName: 'GiftGiver' }, total: 5, tierLevel: 1 }, 3),
      platformEvent('Cheery', 'channel.cheer', { user: { displayName: 'Cheery' }, bits: 100, message: 'gg' }, 2),
    ]);
    // An unconfigured source's heartbeat every 30 s: the same status again and again.
    const status = (index: number) => {
      const envelope = createEnvelope({
        type: 'system.source.status',
        source: { platform: 'discord', channel: 'discord', channelId: 'discord' },
        user: { id: 'system', name: 'system', displayName: 'system', profileImageUrl: '', role: 'system' },
        payload: { status: 'not_configured', id: 'discord:bot' },
      });
      return {
        id: envelope.id,
        correlationId: envelope.id,
        type: 'system.source.status',
        platform: 'discord',
        channel: 'discord',
        receivedAt: minutesAgo(1 - index / 10),
        ingress: { envelope },
      };
    };
    await store.recordIngress([0, 1, 2, 3, 4, 5].map(status));

    const page = await signedIn();
    const activity = page.getByTestId('activity-feed');
    await expect
      .poll(() => activity.getByTestId('activity-text').allTextContents(), { timeout: UI_TIMEOUT })
      .toEqual([
        'Cheery cheered 100 bits: “gg”',
        'GiftGiver gifted 5 subs at tier 1',
        'FollowFan followed',
        'RaiderOne raided with 25 viewers',
      ]);
    // Human names in the pipeline feed, and one status line where six heartbeats were recorded.
    const types = await page.getByTestId('event-feed').getByTestId('event-type').allTextContents();
    expect(types).toContain('raid');
    expect(types).not.toContain('twitch.eventsub.v1');
    expect(types.filter((type) => type === 'connection status')).toHaveLength(1);
    await shot(page, '09-activity-feed');

    await page.getByTestId('filter-category').selectOption('activity');
    await expect
      .poll(
        async () =>
          new Set(
            await page
              .getByTestId('event-feed')
              .locator('[data-category]')
              .evaluateAll((rows) => rows.map((row) => (row as HTMLElement).dataset.category)),
          ),
        { timeout: UI_TIMEOUT },
      )
      .toEqual(new Set(['activity']));
    await page.getByTestId('filter-category').selectOption('system');
    await expect
      .poll(async () => page.getByTestId('event-feed').getByTestId('event-type').allTextContents(), { timeout: UI_TIMEOUT })
      .toEqual(['connection status']);
    await shot(page, '10-feed-system');
    await closeClean(page);
  });

  it("shows the channel's chat from every viewer, and why a message got no reply", async () => {
    const chat = (name: string, text: string) => {
      const envelope = createEnvelope({
        type: 'external.chat.message.v1',
        source: { platform: 'twitch', channel: 'bitbrat', channelId: '4242' },
        user: { id: `u-${name}`, name, displayName: name, profileImageUrl: '', role: 'viewer' },
        payload: { text },
        extra: { message: { text } },
      });
      return {
        id: envelope.id,
        correlationId: envelope.id,
        type: 'external.chat.message.v1',
        platform: 'twitch',
        channel: 'bitbrat',
        userName: name,
        text,
        receivedAt: new Date().toISOString(),
        ingress: { envelope },
      };
    };
    const page = await signedIn();
    await page.getByTestId('nav-console').click();
    await store.recordIngress([chat('viewer_one', 'hello from twitch'), chat('viewer_two', 'what game is this?')]);
    const lines = page.getByTestId('channel-chat');
    await expect
      .poll(() => lines.locator('.chat-user').allTextContents(), { timeout: UI_TIMEOUT })
      .toEqual(expect.arrayContaining(['viewer_one', 'viewer_two']));
    expect(await lines.textContent()).toContain('hello from twitch');

    await page.getByTestId('console-text').fill('!nosuchcommand');
    await page.getByTestId('console-send').click();
    await expect.poll(() => page.getByTestId('console-noreply').last().textContent(), { timeout: UI_TIMEOUT }).toContain('unknown command');
    // The console's own message shows up in the channel chat too.
    await expect.poll(() => lines.textContent(), { timeout: UI_TIMEOUT }).toContain('!nosuchcommand');
    await shot(page, '11-chat');
    await closeClean(page);
  });

  it('draws chat messages and events per minute and reply latency over the last hours', async () => {
    const page = await signedIn();
    const chart = page.getByTestId('chart-chat');
    await chart.waitFor();
    // Earlier tests sent chat (console and Twitch): the chat chart has points above zero.
    await expect.poll(async () => Number(await chart.getAttribute('data-max')), { timeout: UI_TIMEOUT }).toBeGreaterThanOrEqual(1);
    expect(await chart.locator('rect.series').count()).toBeGreaterThanOrEqual(1);
    // !ping and !socials were answered: the latency chart has at least one bar and a median in ms.
    expect(await page.getByTestId('chart-latency').locator('rect.series').count()).toBeGreaterThanOrEqual(1);
    expect(await page.getByTestId('chart-latency').getByTestId('chart-summary').textContent()).toMatch(/^median now \d+ ms$/);
    expect(await page.getByTestId('chart-events').locator('rect.series').count()).toBeGreaterThanOrEqual(1);
    await shot(page, '12-charts');
    await closeClean(page);
  });

  it('fits every view into 390 px, the event detail included, and serves a favicon', async () => {
    const page = await signedIn();
    for (const view of ['overview', 'console', 'deadletters', 'rules', 'commands', 'reactions']) {
      await page.getByTestId(`nav-${view}`).click();
      await shot(page, `13-view-${view}`);
    }
    await page.getByTestId('nav-overview').click();
    await page.getByTestId('event-feed').locator('[data-outcome="completed"]').first().click();
    await page.getByTestId('slip-step-0').waitFor();
    await shot(page, '14-event-detail');
    const icon = await fetch(`${base}/favicon.ico`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toBe('image/svg+xml');
    expect(await icon.text()).toContain('<svg');
    await closeClean(page);
  });

  it('says the server is unreachable instead of "all ready", and shows ready-but-unconfigured parts as not configured', async () => {
    // A gateway of its own, so stopping it leaves the other tests' server alone.
    const own = await startTestHost({
      services: [persistence, llmBot, gateway],
      bus: createMemoryBus(),
      listen: true,
      architecture: loadArchitecture(),
      env: {
        INSTANCE_ID: 'dash-down',
        HOST: '127.0.0.1',
        API_GATEWAY_TOKENS: `${OWNER}:owner`,
        API_GATEWAY_LIVE_POLL_MS: '250',
        COMMAND_PREFIX: '?',
      },
      extra: { store },
    });
    const ownBase = `http://127.0.0.1:${own.port}`;
    let stopped = false;
    try {
      const help = (await (await fetch(`${ownBase}/api/commands/help`, { headers: { authorization: `Bearer ${OWNER}` } })).json()) as {
        prefix: string;
      };
      expect(help.prefix).toBe('?');
      const page = watch(await (await browser.newContext({ viewport: DESKTOP })).newPage());
      // Losing the server is expected here: the browser reports the failed requests.
      problems.set(page, []);
      await page.goto(`${ownBase}/#token=${OWNER}`);
      await page.getByTestId('live-status').and(page.locator('[data-state="connected"]')).waitFor();
      await page.getByTestId('health-service-api-gateway').and(page.locator('[data-state="ready"]')).waitFor();
      // No LLM_PROVIDER: the LLM is ready but not configured, and says what to set.
      const llm = page.getByTestId('health-service-llm-bot');
      await llm.and(page.locator('[data-state="not_configured"]')).waitFor();
      expect(await llm.getByTestId('health-detail').textContent()).toContain('LLM_PROVIDER');
      await store.mergeSource({
        id: 'discord:bot',
        platform: 'discord',
        displayName: 'Discord',
        status: 'not_configured',
        streamStatus: 'unknown',
        metadata: { hint: 'set the DISCORD_TOKEN secret' },
      });
      await page.getByTestId('source-card-discord:bot').getByTestId('source-help').and(page.locator(':text("DISCORD_TOKEN")')).waitFor();
      await shot(page, '15-state-live');

      await own.stop();
      stopped = true;
      await page.getByTestId('stale-banner').waitFor({ state: 'visible' });
      expect(await page.getByTestId('health-overall').textContent()).toBe('unknown (server unreachable)');
      expect(await page.getByTestId('live-status').getAttribute('data-state')).toBe('reconnecting');
      expect(await page.getByTestId('health-service-api-gateway').getAttribute('data-state')).toBe('unknown');
      expect(
        await page
          .locator('[data-testid^="source-card-"]')
          .evaluateAll((cards) => cards.map((card) => (card as HTMLElement).dataset.status)),
      ).not.toContain('connected');
      expect(await page.locator('body').textContent()).not.toContain('all ready');
      await shot(page, '16-state-unreachable');
      await page.context().close();
    } finally {
      if (!stopped) await own.stop();
    }
  });

  it('turns stale when the live stream falls silent without closing (a dropped network), and live again once it is back', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = watch(await context.newPage());
    // The page's clock is fake, so a minute of silence passes at once while the connection stays open.
    await page.clock.install();
    await page.goto(`${base}/#token=${OWNER}`);
    await page.getByTestId('live-status').and(page.locator('[data-state="connected"]')).waitFor();
    expect(await page.getByTestId('stale-banner').isHidden()).toBe(true);
    // The server keeps sending updates, so the page turns live again soon after: record what it showed the
    // moment the silence was noticed instead of racing the next update.
    await page.evaluate(() => {
      const banner = document.querySelector('[data-testid="stale-banner"]') as HTMLElement;
      const overall = document.querySelector('[data-testid="health-overall"]') as HTMLElement;
      const seen = ((window as unknown as { staleSeen?: string[] }).staleSeen = [] as string[]);
      new MutationObserver(() => {
        if (!banner.hidden && seen.length === 0) seen.push(overall.textContent ?? '');
      }).observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
    });
    await page.clock.fastForward(60_000);
    const seen = await page.waitForFunction(() => (window as unknown as { staleSeen: string[] }).staleSeen[0]);
    expect(await seen.jsonValue()).toBe('unknown (server unreachable)');
    await page.screenshot({ path: path.join(SCREENSHOTS, '16-state-silent-desktop.png'), fullPage: true });
    // The retry (after its back-off) reconnects and the page is live again.
    await page.clock.fastForward(2_000);
    await page.getByTestId('live-status').and(page.locator('[data-state="connected"]')).waitFor();
    expect(await page.getByTestId('stale-banner').isHidden()).toBe(true);
    await closeClean(page);
    await context.close();
  });

  it('names each missing Twitch setting, and with the app set connects, shows and disconnects accounts with their scopes and token health', async () => {
    // Nothing set on the shared host: the card names every missing setting and the buttons wait for them.
    const bare = await signedIn();
    const panel = bare.getByTestId('twitch-setup');
    await panel.and(bare.locator('[data-state="not_configured"]')).waitFor();
    for (const name of ['TWITCH_CLIENT_ID', 'TWITCH_CLIENT_SECRET', 'TWITCH_BOT_USERNAME', 'TWITCH_CHANNELS'])
      await bare.getByTestId(`twitch-missing-${name}`).waitFor();
    expect(await bare.getByTestId('twitch-next-step').textContent()).toBe(
      'Set TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET, TWITCH_BOT_USERNAME, TWITCH_CHANNELS and restart.',
    );
    expect(await bare.getByTestId('twitch-connect-bot').isDisabled()).toBe(true);
    await shot(bare, '17-twitch-not-configured');
    await closeClean(bare);

    const own = await startTestHost({
      services: [oauthFlow, gateway],
      bus: createMemoryBus(),
      listen: true,
      architecture: loadArchitecture(),
      env: {
        INSTANCE_ID: 'dash-twitch',
        HOST: '127.0.0.1',
        API_GATEWAY_TOKENS: `${OWNER}:owner,${VIEWER}:viewer`,
        TWITCH_CLIENT_ID: 'dash-client-id',
        TWITCH_CLIENT_SECRET: 'dash-client-secret',
        TWITCH_BOT_USERNAME: 'bitbrat_bot',
        TWITCH_CHANNELS: 'bitbrat',
      },
      extra: { store },
    });
    const ownBase = `http://127.0.0.1:${own.port}`;
    try {
      await store.putToken({
        id: 'twitch:bot',
        accessToken: 'bot-access',
        refreshToken: 'bot-refresh',
        scopes: ['chat:read', 'chat:edit'],
        expiresAt: new Date(Date.now() + 4 * 3_600_000).toISOString(),
        obtainedAt: new Date().toISOString(),
        userId: '77',
        login: 'bitbrat_bot',
      });
      const context = await browser.newContext({ viewport: DESKTOP });
      const page = watch(await context.newPage());
      await page.goto(`${ownBase}/#token=${OWNER}`);
      await page.getByTestId('twitch-setup').and(page.locator('[data-state="needs_account"]')).waitFor();
      expect(await page.getByTestId('twitch-next-step').textContent()).toBe(
        'Connect the broadcaster account for follows, subs, cheers, raids and redemptions.',
      );
      const bot = page.getByTestId('twitch-account-bot');
      expect(await bot.getAttribute('data-health')).toBe('ok');
      expect(await bot.getByTestId('twitch-account-login').textContent()).toBe('bitbrat_bot');
      expect(await bot.getByTestId('twitch-account-scopes').textContent()).toContain('chat:edit');
      expect(await bot.getByTestId('twitch-account-detail').textContent()).toContain('moderator:read:followers');
      expect(await page.getByTestId('twitch-account-broadcaster').getAttribute('data-health')).toBe('missing');
      await shot(page, '18-twitch-connect');

      // "Connect broadcaster account" runs the OAuth flow: Twitch's authorize page gets the app and a signed state, and no URL carries the token.
      const authorize = new Promise<URL>((resolve) => {
        void context.route('https://id.twitch.tv/**', async (route) => {
          resolve(new URL(route.request().url()));
          await route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>Twitch</title>' });
        });
      });
      const urls: string[] = [];
      context.on('request', (request) => urls.push(request.url()));
      await page.getByTestId('twitch-connect-broadcaster').click();
      const url = await authorize;
      expect(url.searchParams.get('client_id')).toBe('dash-client-id');
      expect(url.searchParams.get('state')).toBeTruthy();
      expect(urls.filter((item) => item.includes(OWNER))).toEqual([]);
      // Back once Twitch's (stand-in) page has loaded, so the two navigations do not overlap.
      await page.waitForURL(/^https:\/\/id\.twitch\.tv\//);
      await page.goto(`${ownBase}/`);

      // Disconnect asks twice, then the bot token is gone and the card says what to do.
      await page.getByTestId('twitch-disconnect-bot').click();
      await page.getByTestId('twitch-disconnect-bot').click();
      await page.getByTestId('twitch-account-bot').and(page.locator('[data-health="missing"]')).waitFor();
      expect(await store.getToken('twitch:bot')).toBeUndefined();
      expect(await page.getByTestId('twitch-next-step').textContent()).toBe('Connect the bot account.');
      await closeClean(page);

      // A viewer sees the state but cannot connect or disconnect.
      await store.putToken({
        id: 'twitch:bot',
        accessToken: 'bot-access',
        scopes: ['chat:read'],
        expiresAt: new Date(Date.now() - 60_000).toISOString(),
        obtainedAt: new Date().toISOString(),
        login: 'bitbrat_bot',
      });
      const viewer = watch(await (await browser.newContext({ viewport: DESKTOP })).newPage());
      await viewer.goto(`${ownBase}/#token=${VIEWER}`);
      await viewer.getByTestId('twitch-account-bot').and(viewer.locator('[data-health="expired"]')).waitFor();
      expect(await viewer.getByTestId('twitch-account-bot').getByTestId('twitch-account-detail').textContent()).toBe(
        'expired and cannot be refreshed: connect the account again',
      );
      expect(await viewer.getByTestId('twitch-connect-bot').isDisabled()).toBe(true);
      expect(await viewer.getByTestId('twitch-disconnect-bot').isDisabled()).toBe(true);
      await closeClean(viewer);
      await context.close();
    } finally {
      await store.deleteToken('twitch:bot');
      await own.stop();
    }
  });

  it('edits the chat reactions: reword one, switch one off, restore the default, with unknown variables refused in words', async () => {
    const page = await signedIn();
    await page.getByTestId('nav-reactions').click();
    const follow = page.getByTestId('reaction-follow');
    await follow.waitFor();
    expect(await follow.textContent()).toContain('{user}');
    await page.getByTestId('reaction-template-follow').fill('Welcome aboard, {user}!');
    await page.getByTestId('reaction-save-follow').click();
    await expect
      .poll(() => page.getByTestId('reaction-status-follow').textContent(), { timeout: UI_TIMEOUT })
      .toBe('On: “Welcome aboard, {user}!”');
    expect(JSON.stringify((await store.getRule('reaction-follow'))?.action)).toContain('Welcome aboard, {user}!');

    await page.getByTestId('reaction-enabled-cheer').uncheck();
    await page.getByTestId('reaction-save-cheer').click();
    await page.getByTestId('reaction-cheer').and(page.locator('[data-enabled="false"]')).waitFor();
    expect((await store.getRule('reaction-cheer'))?.enabled).toBe(false);

    await page.getByTestId('reaction-template-raid').fill('Welcome {nobody}!');
    await page.getByTestId('reaction-save-raid').click();
    await expect.poll(() => page.getByTestId('reaction-error-raid').textContent(), { timeout: UI_TIMEOUT }).toContain('nobody');
    await shot(page, '19-reactions');

    await page.getByTestId('reaction-reset-follow').click();
    await expect
      .poll(() => page.getByTestId('reaction-template-follow').inputValue(), { timeout: UI_TIMEOUT })
      .toBe('Thanks for the follow, {user}! Welcome in.');
    await page.getByTestId('reaction-enabled-cheer').check();
    await page.getByTestId('reaction-save-cheer').click();
    await page.getByTestId('reaction-cheer').and(page.locator('[data-enabled="true"]')).waitFor();
    await closeClean(page, /status of 400 \(Bad Request\)/);
  });
});
