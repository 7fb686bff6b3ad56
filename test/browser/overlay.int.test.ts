/**
 * The OBS browser-source overlays in real Chromium: a Twitch EventSub raid (sent by the fake Twitch over
 * the EventSub WebSocket to the real Twurple listener) shows the alert with the raider's name; the chat
 * box shows chat; the overlay key is not an API token and can be rotated; the page reconnects by itself
 * after the platform restarts.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { Topic } from '../../src/core/index.js';
import { buildEventSubEnvelope } from '../../src/platforms/twitch/eventsub.js';
import { normalizeChatMessage } from '../../src/platforms/twitch/normalize.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import { service as gateway } from '../../src/services/api-gateway/index.js';
import { service as auth } from '../../src/services/auth/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import { service as finalizer } from '../../src/services/finalizer/index.js';
import { service as ingressEgress } from '../../src/services/ingress-egress/index.js';
import { service as obs } from '../../src/services/obs/index.js';
import { service as persistence } from '../../src/services/persistence/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeObs, type FakeObs } from '../fakes/obs.js';
import { startFakeTwitch, useFakeTwitch, type FakeTwitch } from '../fakes/twitch-api.js';
import { startTestHost } from '../support/harness.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = path.resolve('test-output/screenshots');
const OWNER = 'overlay-owner-token';
const VIEWER = 'overlay-viewer-token';
const UI_TIMEOUT = 20_000;
const BROADCASTER = { id: '1001', login: 'streamer', displayName: 'Streamer' };
const SCOPES = ['moderator:read:followers', 'channel:read:subscriptions', 'bits:read', 'channel:read:redemptions'];
const encoder = new TextEncoder();

let twitch: FakeTwitch;
let fakeObs: FakeObs;
let restoreEnv: () => void;
let store: Store;
let bus: MemoryBus;
let host: Host;
let browser: Browser;
let port: number;
let base: string;

async function startPlatform(listenPort: number): Promise<Host> {
  bus = createMemoryBus();
  return startTestHost({
    services: [ingressEgress, auth, eventRouter, persistence, finalizer, gateway, obs],
    bus,
    listen: true,
    architecture: loadArchitecture(),
    env: {
      INSTANCE_ID: 'overlay',
      HOST: '127.0.0.1',
      PORT: String(listenPort),
      API_GATEWAY_TOKENS: `${OWNER}:owner,${VIEWER}:viewer`,
      API_GATEWAY_LIVE_POLL_MS: '200',
      TWITCH_EVENTSUB_ENABLED: 'true',
      TWITCH_CLIENT_ID: twitch.clientId,
      TWITCH_CLIENT_SECRET: twitch.clientSecret,
      // EventSub subscribes per channel of TWITCH_CHANNELS (with the broadcaster's stored token here).
      TWITCH_CHANNELS: BROADCASTER.login,
      SOURCE_HEARTBEAT_MS: '60000',
      OBS_WEBSOCKET_URL: fakeObs.url,
    },
    extra: { store },
  });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `chromium is required for the overlay test but ${CHROMIUM} does not exist (apt-get install -y chromium, or set CHROMIUM_PATH)`,
    );
  await mkdir(SCREENSHOTS, { recursive: true });
  fakeObs = await startFakeObs();
  twitch = await startFakeTwitch();
  restoreEnv = useFakeTwitch(twitch);
  twitch.addUser(BROADCASTER);
  const token = twitch.issueToken(BROADCASTER.id, { scopes: SCOPES });
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  await store.init();
  await store.putToken({
    id: 'twitch:broadcaster',
    accessToken: token.accessToken,
    refreshToken: token.refreshToken,
    scopes: SCOPES,
    expiresAt: new Date(Date.now() + 4 * 3_600_000).toISOString(),
    obtainedAt: new Date().toISOString(),
    userId: BROADCASTER.id,
    login: BROADCASTER.login,
  });
  host = await startPlatform(0);
  port = host.port!;
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--autoplay-policy=no-user-gesture-required'],
  });
});

afterAll(async () => {
  await browser?.close();
  await host?.stop();
  await store?.close();
  restoreEnv?.();
  await twitch?.stop();
  await fakeObs?.stop();
});

async function overlayKey(): Promise<{ key: string; urls: { alerts: string; chat: string } }> {
  const response = await fetch(`${base}/api/overlay`, { headers: { authorization: `Bearer ${OWNER}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as { key: string; urls: { alerts: string; chat: string } };
}

async function openOverlay(url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(UI_TIMEOUT);
  await page.goto(url);
  await page.locator('body[data-state="connected"]').waitFor({ state: 'attached' });
  return page;
}

describe('OBS on the dashboard', () => {
  it('shows the obs:studio source as connected with the live scene, from GET /api/sources too', async () => {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.setDefaultTimeout(UI_TIMEOUT);
    await page.goto(`${base}/#token=${OWNER}`);
    const card = page.getByTestId('source-card-obs:studio');
    await card.and(page.locator('[data-status="connected"]')).waitFor();
    await expect.poll(() => card.getByTestId('source-obs-scene').textContent(), { timeout: UI_TIMEOUT }).toBe('Main');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'dashboard-obs-source.png') });
    const { items: sources } = (await (await fetch(`${base}/api/sources`, { headers: { authorization: `Bearer ${OWNER}` } })).json()) as {
      items: Array<{ id: string; platform: string; status: string; metadata: Record<string, unknown> }>;
    };
    expect(sources.find((source) => source.id === 'obs:studio')).toMatchObject({
      platform: 'obs',
      status: 'connected',
      metadata: { programScene: 'Main', streaming: false, recording: false },
    });
    await page.close();
  });
});

describe('overlays in Chromium', () => {
  it('shows an EventSub raid as an alert with the raider’s name on a transparent page', async () => {
    await twitch.waitFor(() => twitch.activeSubscriptions('channel.raid').length === 1, 15_000, 'the raid subscription');
    const { urls } = await overlayKey();
    expect(urls.alerts).toBe(`${base}/overlay/alerts?key=${urls.alerts.split('key=')[1]}`);
    const page = await openOverlay(`${urls.alerts}&duration=3000`);
    const background = await page.evaluate(() => [
      getComputedStyle(document.documentElement).backgroundColor,
      getComputedStyle(document.body).backgroundColor,
    ]);
    expect(background).toEqual(['rgba(0, 0, 0, 0)', 'rgba(0, 0, 0, 0)']);

    twitch.notify('channel.raid', undefined, {
      from_broadcaster_user_id: '3001',
      from_broadcaster_user_login: 'raidqueen',
      from_broadcaster_user_name: 'RaidQueen',
      to_broadcaster_user_id: BROADCASTER.id,
      to_broadcaster_user_login: BROADCASTER.login,
      to_broadcaster_user_name: BROADCASTER.displayName,
      viewers: 42,
    });
    const text = page.getByTestId('overlay-alert-text');
    await expect.poll(() => text.textContent(), { timeout: UI_TIMEOUT }).toBe('RaidQueen is raiding with 42 viewers!');
    expect(await page.getByTestId('overlay-alert').getAttribute('data-kind')).toBe('raid');
    await page.locator('.alert.show').waitFor();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'overlay-raid-alert.png'), omitBackground: true });
    await page.close();
  });

  it('queues alerts, shows them one at a time with the page’s own text templates, and plays an alert’s sound', async () => {
    const { urls } = await overlayKey();
    const page = await openOverlay(
      `${urls.alerts}&duration=1000&follow=${encodeURIComponent('Welcome, {name}!')}&follow.sound=${encodeURIComponent('/overlay/assets/ding.ogg')}`,
    );
    // The follow's sound is fetched when its alert shows (the file need not exist for the request to be seen).
    const sound = page.waitForRequest((request) => request.url().endsWith('/overlay/assets/ding.ogg'));
    const shown: string[] = [];
    await page.exposeFunction('reportAlert', (value: string) => shown.push(value));
    await page.evaluate(() => {
      const box = document.querySelector('.alert-text')!;
      new MutationObserver(
        () => box.textContent && (window as unknown as { reportAlert(v: string): void }).reportAlert(box.textContent),
      ).observe(box, { childList: true, characterData: true, subtree: true });
    });
    twitch.notify('channel.follow', undefined, {
      user_id: '2001',
      user_login: 'fan_one',
      user_name: 'Fan_One',
      broadcaster_user_id: BROADCASTER.id,
      broadcaster_user_login: BROADCASTER.login,
      broadcaster_user_name: BROADCASTER.displayName,
      followed_at: new Date().toISOString(),
    });
    twitch.notify('channel.cheer', undefined, {
      is_anonymous: false,
      user_id: '2003',
      user_login: 'cheerer',
      user_name: 'Cheerer',
      broadcaster_user_id: BROADCASTER.id,
      broadcaster_user_login: BROADCASTER.login,
      broadcaster_user_name: BROADCASTER.displayName,
      message: 'Cheer100',
      bits: 100,
    });
    await expect.poll(() => shown.length, { timeout: UI_TIMEOUT }).toBe(2);
    expect(shown.sort()).toEqual(['Cheerer cheered 100 bits!', 'Welcome, Fan_One!']);
    expect((await sound).url()).toBe(`${base}/overlay/assets/ding.ogg`);
    await page.close();
  });

  it('shows chat messages in the chat box', async () => {
    const { urls } = await overlayKey();
    const page = await openOverlay(urls.chat);
    const envelope = normalizeChatMessage({
      channel: 'streamer',
      userLogin: 'chatty',
      text: 'hello overlay <b>world</b>',
      tags: { id: 'msg-1', 'display-name': 'Chatty', color: '#FF0000', 'user-id': '4001', 'room-id': BROADCASTER.id },
    });
    await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
    const line = page.getByTestId('overlay-chat').locator('li');
    await expect.poll(() => line.first().textContent(), { timeout: UI_TIMEOUT }).toBe('Chattyhello overlay <b>world</b>');
    expect(
      await line
        .first()
        .locator('.name')
        .evaluate((node) => getComputedStyle(node).color),
    ).toBe('rgb(255, 0, 0)');
    await page.close();
  });

  it('refuses a wrong key, keeps the key from viewers, and cuts off old overlays when the owner rotates it', async () => {
    expect((await fetch(`${base}/overlay/alerts?key=not-the-key-at-all`)).status).toBe(401);
    expect((await fetch(`${base}/overlay/feed?kind=alerts&key=${OWNER}`)).status).toBe(401);
    expect((await fetch(`${base}/api/overlay`)).status).toBe(401);
    expect((await fetch(`${base}/api/overlay`, { headers: { authorization: `Bearer ${VIEWER}` } })).status).toBe(403);
    const { key, urls } = await overlayKey();
    // The overlay key opens overlays only, never the API.
    expect((await fetch(`${base}/api/sources`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(401);
    const page = await openOverlay(urls.alerts);
    expect((await fetch(`${base}/api/overlay/key`, { method: 'POST', headers: { authorization: `Bearer ${VIEWER}` } })).status).toBe(403);
    const rotated = await fetch(`${base}/api/overlay/key`, { method: 'POST', headers: { authorization: `Bearer ${OWNER}` } });
    expect(rotated.status).toBe(200);
    const fresh = (await rotated.json()) as { key: string };
    expect(fresh.key).not.toBe(key);
    await page.locator('body[data-state="reconnecting"]').waitFor({ state: 'attached' });
    expect((await fetch(`${base}/overlay/alerts?key=${key}`)).status).toBe(401);
    expect((await fetch(`${base}/overlay/alerts?key=${fresh.key}`)).status).toBe(200);
    await page.close();
  });

  it('reconnects by itself after the platform restarts and shows the next alert', async () => {
    const { urls } = await overlayKey();
    const page = await openOverlay(`${urls.alerts}&duration=3000`);
    await host.stop();
    await page.locator('body[data-state="reconnecting"]').waitFor({ state: 'attached' });
    host = await startPlatform(port);
    await page.locator('body[data-state="connected"]').waitFor({ state: 'attached' });
    const envelope = buildEventSubEnvelope({
      messageId: 'after-restart-1',
      kind: 'channel.subscribe',
      version: '1',
      event: {
        user_id: '2002',
        user_login: 'subber',
        user_name: 'Subber',
        broadcaster_user_id: BROADCASTER.id,
        broadcaster_user_login: BROADCASTER.login,
        broadcaster_user_name: BROADCASTER.displayName,
        tier: '2000',
        is_gift: false,
      },
      receivedAt: new Date(),
      broadcaster: { id: BROADCASTER.id, login: BROADCASTER.login },
    });
    await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
    await expect
      .poll(() => page.getByTestId('overlay-alert-text').textContent(), { timeout: UI_TIMEOUT })
      .toBe('Subber subscribed at tier 2!');
    await page.close();
  });
});
