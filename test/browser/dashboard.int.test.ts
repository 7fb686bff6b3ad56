import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    throw new Error(`chromium is required for the dashboard test but ${CHROMIUM} does not exist (apt-get install -y chromium, or set CHROMIUM_PATH)${process.env.CI === 'true' ? ' [CI]' : ''}`);
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
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
});

afterAll(async () => {
  await browser?.close();
  await host?.stop();
  await store?.close();
});

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });

async function signedIn(token = OWNER): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(UI_TIMEOUT);
  await page.goto(`${base}/#token=${token}`);
  await page.getByTestId('live-status').and(page.locator('[data-state="connected"]')).waitFor();
  return page;
}

describe('dashboard', () => {
  it('signs in with the token from the form, refusing a wrong one, and forgets the URL fragment', async () => {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
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
    await page.close();

    const linked = await signedIn();
    expect(new URL(linked.url()).hash).toBe('');
    expect(await linked.evaluate(() => sessionStorage.getItem('bitbrat.token'))).toBe(OWNER);
    await linked.close();
  });

  it('shows every service and source, and a source card changes live when the connector drops', async () => {
    const page = await signedIn();
    await page.getByTestId('health-service-api-gateway').and(page.locator('[data-state="ready"]')).waitFor();
    await page.getByTestId('health-service-ingress-egress').and(page.locator('[data-state="unknown"]')).waitFor();
    // No Twitch source yet: a card says how to connect.
    await page.getByTestId('source-card-twitch').and(page.locator('[data-status="not_configured"]')).waitFor();
    expect(await page.getByTestId('source-card-twitch').getByTestId('source-help').textContent()).toContain('TWITCH_CLIENT_ID');

    const heartbeat = () => new Date().toISOString();
    await store.mergeSource({ id: 'twitch:4242', platform: 'twitch', displayName: 'bitbrat_bot', status: 'connected', streamStatus: 'online', authStatus: 'valid', metrics: { messagesIn: 10, messagesOut: 2, reconnects: 0, errors: 0, lastHeartbeat: heartbeat() } });
    const card = page.getByTestId('source-card-twitch:4242');
    await card.and(page.locator('[data-status="connected"][data-stream="online"]')).waitFor();
    await expect.poll(() => page.getByTestId('source-card-twitch').count(), { timeout: UI_TIMEOUT }).toBe(0);
    await shot(page, '01-overview-connected');

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await store.mergeSource({ id: 'twitch:4242', platform: 'twitch', status: 'disconnected', streamStatus: 'offline', lastError: { code: 'IRC_CLOSED', message: 'connection reset by peer', at: heartbeat() }, metrics: { messagesIn: 70, reconnects: 1, lastHeartbeat: heartbeat() } });
    await card.and(page.locator('[data-status="disconnected"][data-stream="offline"]')).waitFor();
    expect(await card.getByTestId('source-status').textContent()).toBe('disconnected');
    expect(await card.getByTestId('source-last-error').textContent()).toContain('IRC_CLOSED: connection reset by peer');
    expect(await card.getByTestId('source-reconnects').textContent()).toBe('1');
    // 60 more messages in about a second: the rate is per minute and far above zero.
    expect(await card.getByTestId('source-in').textContent()).toMatch(/^70 · \d+ \/min$/);
    await shot(page, '02-overview-source-disconnected');
    await page.close();
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
    const steps = await detail.locator('[data-testid^="slip-step-"]').evaluateAll((rows) => rows.map((element) => [(element as HTMLElement).dataset.stepId, (element as HTMLElement).dataset.status]));
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
    await page.close();
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
    await shot(page, '05-deadletters-pending');
    await page.getByTestId('deadletter-replay-dl-dashboard-1').click();
    await row.and(page.locator('[data-replayed="true"]')).waitFor();
    expect(await page.getByTestId('deadletter-state-dl-dashboard-1').textContent()).toMatch(/^replayed 1×/);
    expect((await store.getDeadLetter('dl-dashboard-1'))!.replayCount).toBe(1);
    // The replayed message went through the pipeline and was recorded.
    await expect.poll(async () => (await store.getEvent(envelope.id))?.outcome, { timeout: UI_TIMEOUT }).toBeTruthy();
    await shot(page, '06-deadletters-replayed');
    await page.close();
  });

  it('adds a command in the editor that then answers in the console, and a rule with validation errors shown', async () => {
    const page = await signedIn();
    await page.getByTestId('nav-commands').click();
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
    await expect.poll(() => page.getByTestId('console-reply').allTextContents(), { timeout: UI_TIMEOUT }).toContainEqual('Follow us everywhere, fan!');

    await page.getByTestId('nav-rules').click();
    await page.getByTestId('rule-id').fill('dash-rule');
    await page.getByTestId('rule-logic').fill('{ "==": [ { "var": "type" }');
    await page.getByTestId('rule-save').click();
    await expect.poll(() => page.getByTestId('rule-error').textContent(), { timeout: UI_TIMEOUT }).toContain('logic is not valid JSON');
    await page.getByTestId('rule-logic').fill('{ "==": [{ "var": "type" }, "test.dashboard.v1"] }');
    await page.getByTestId('rule-action').fill('{}');
    await page.getByTestId('rule-save').click();
    await expect.poll(() => page.getByTestId('rule-error').textContent(), { timeout: UI_TIMEOUT }).toContain('an action needs a slip or an outcome');
    await page.getByTestId('rule-action').fill('{ "outcome": "handled" }');
    await page.getByTestId('rule-save').click();
    await page.getByTestId('rule-row-dash-rule').waitFor();
    expect((await store.getRule('dash-rule'))?.action).toEqual({ outcome: 'handled' });
    await shot(page, '08-rules');
    await page.close();
  });

  it('gives viewers a read-only dashboard: replay and save are disabled', async () => {
    const page = await signedIn(VIEWER);
    expect(await page.getByTestId('session-role').textContent()).toBe('viewer');
    await page.getByTestId('nav-deadletters').click();
    await page.getByTestId('deadletter-row-dl-dashboard-1').waitFor();
    expect(await page.getByTestId('deadletter-replay-dl-dashboard-1').isDisabled()).toBe(true);
    await page.getByTestId('nav-rules').click();
    expect(await page.getByTestId('rule-save').isDisabled()).toBe(true);
    await page.close();
  });
});
