/**
 * The kick service end to end against the fake Kick (test/fakes/kick.ts): signed webhooks over real HTTP
 * into the host's port, the real pipeline (auth → router → analyzer → commands → egress → finalizer), replies
 * on the fake's chat endpoint, stream status on /api/sources, and reactions to follows and subs through the
 * router rule that matches Twitch's and Kick's events by kind.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import apiGateway from '../../src/services/api-gateway/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import eventRouter from '../../src/services/event-router/index.js';
import { DEFAULT_RULES_FILE } from '../../src/services/event-router/load.js';
import finalizer from '../../src/services/finalizer/index.js';
import kick from '../../src/services/kick/index.js';
import moderation from '../../src/services/moderation/index.js';
import persistence from '../../src/services/persistence/index.js';
import reactions from '../../src/services/reactions/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import type { Store } from '../../src/store/index.js';
import { startFakeKick, type FakeKick } from '../fakes/kick.js';
import { collect, startTestHost } from '../support/harness.js';
import { KICK_BROADCASTER as BROADCASTER, KICK_EVENTS, kickViewer, seedKickStreamer, staleKickSubscription } from '../support/kick.js';
import { waitForComponent, waitForSource } from '../support/pipeline.js';
import { createRefusingBus, type RefusingBus } from '../support/refusing-bus.js';
import { openEmbeddedStore, useEmbeddedStore } from '../support/service-test.js';
import { waitFor } from '../support/wait.js';

const INSTANCE = 'kick-test-1';
const VIEWER = kickViewer({ username_color: '#00FF00', badges: [] });

/** The shipped rules: the reaction rules answer Kick's follows and subs as they do Twitch's. */
async function rulesFile(_dir: string): Promise<string> {
  return DEFAULT_RULES_FILE;
}

describe('the kick service with the fake Kick', () => {
  let fake: FakeKick;
  let store: Store;
  let bus: MemoryBus;
  /** The host publishes through this; a test makes it refuse ingress. */
  let refusing: RefusingBus;
  let host: Host;
  let dir: string;
  let rules: string;
  let observed: Awaited<ReturnType<typeof collect>>;
  let seedToken: string;

  const webhookUrl = (running: Host) => `http://127.0.0.1:${(running.app.server.address() as AddressInfo).port}/webhooks/kick`;
  /** What webhooks put on ingress (the status heartbeats left out). */
  const ingress = () => observed.envelopes(Topic.ingress).filter((envelope) => envelope.type !== 'system.source.status');

  async function startKickHost(): Promise<Host> {
    return await startTestHost({
      services: [
        kick,
        authService,
        eventRouter,
        createQueryAnalyzer(),
        moderation,
        createCommandsService(),
        persistence,
        finalizer,
        apiGateway,
        reactions,
      ],
      bus: refusing,
      listen: true,
      env: {
        INSTANCE_ID: INSTANCE,
        BOT_NAME: 'bratbot',
        RULES_FILE: rules,
        KICK_CHANNELS: 'streamer',
        KICK_CLIENT_ID: fake.clientId,
        KICK_CLIENT_SECRET: fake.clientSecret,
        KICK_API_URL: fake.url,
        KICK_AUTH_URL: fake.url,
        KICK_ACCESS_TOKEN: seedToken,
        SOURCE_HEARTBEAT_MS: '250',
        API_GATEWAY_ALLOW_ANONYMOUS: 'true',
        DATA_DIR: 'memory://',
        // Small, so a test can fill it; no publish retries, so a refused publish waits in it at once.
        INGRESS_BUFFER_MAX: '2',
        PUBLISH_MAX_RETRIES: '0',
      },
      extra: { store },
    });
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'bitbrat-kick-'));
    rules = await rulesFile(dir);
    fake = await startFakeKick();
    seedKickStreamer(fake, { is_live: false, start_time: '0001-01-01T00:00:00Z', viewer_count: 0 });
    store = await openEmbeddedStore({ tokenKey: 'c' });
    const broadcaster = fake.issueToken(1001);
    await store.putToken({
      id: 'kick:broadcaster',
      accessToken: broadcaster.accessToken,
      refreshToken: broadcaster.refreshToken,
      scopes: ['events:subscribe'],
      obtainedAt: new Date().toISOString(),
      userId: '1001',
      login: 'Streamer',
    });
    seedToken = fake.issueToken(2002).accessToken;
    // Left over from an earlier configuration: another channel, and a duplicate.
    fake.subscriptions.push(
      staleKickSubscription(fake, 'old-1', 1003, 'channel.followed'),
      staleKickSubscription(fake, 'old-2', 1001, 'chat.message.sent'),
      staleKickSubscription(fake, 'old-3', 1001, 'chat.message.sent'),
    );
    bus = createMemoryBus();
    await bus.connect();
    refusing = createRefusingBus(bus, Topic.ingress);
    observed = await collect(bus, [Topic.ingress, Topic.finalizer, Topic.deadletter]);
    host = await startKickHost();
    await observed.waitFor(
      Topic.ingress,
      (value) =>
        value.type === 'system.source.status' && value.payload.sourceId === 'kick:streamer' && value.payload.status === 'connected',
    );
  });

  afterAll(async () => {
    await host?.stop();
    await bus?.close();
    await store?.close();
    await fake?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reconciles the webhook subscriptions at start: every event for the channel once, the stale ones deleted', () => {
    expect(fake.subscriptions.map((sub) => `${sub.broadcaster_user_id}:${sub.event}`).sort()).toEqual(
      KICK_EVENTS.map((event) => `1001:${event}`).sort(),
    );
    expect(fake.subscriptions.some((sub) => sub.id === 'old-1')).toBe(false);
    // Subscriptions are made with the broadcaster's token.
    expect(fake.requestsTo('/public/v1/events/subscriptions', 'POST').every((request) => request.userId === 1001)).toBe(true);
  });

  it('answers !ping from Kick chat with "pong" threaded to the message on Kick, and records it delivered', async () => {
    const sent = await fake.deliver(webhookUrl(host), {
      type: 'chat.message.sent',
      payload: {
        message_id: 'km-ping',
        broadcaster: BROADCASTER,
        sender: VIEWER,
        content: '!ping',
        emotes: [],
        created_at: new Date().toISOString(),
      },
    });
    expect(sent.status).toBe(200);
    const reply = await waitFor(() => fake.chats.find((chat) => chat.reply_to_message_id === 'km-ping'));
    expect(reply).toMatchObject({ content: 'pong', broadcaster_user_id: 1001, type: 'user', senderUserId: 2002 });
    const chat = (await observed.waitFor(Topic.ingress, (value) => value.message?.id === 'km-ping')) as Envelope;
    const final = (await observed.waitFor(Topic.finalizer, (value) => value.id === chat.id)) as Envelope;
    expect(final.delivery).toMatchObject({ delivered: true, destination: 'kick:streamer', platformMessageIds: [reply.message_id] });
    expect(final.routingSlip.map((step) => step.id)).toContain('commands');
  });

  it("does not process the bot's own chat messages that Kick echoes back", async () => {
    const before = ingress().length;
    const bot = { ...VIEWER, user_id: 2002, username: 'BratBot', channel_slug: 'bratbot' };
    const sent = await fake.deliver(webhookUrl(host), {
      type: 'chat.message.sent',
      payload: { message_id: 'km-own', broadcaster: BROADCASTER, sender: bot, content: 'pong' },
    });
    expect(JSON.parse(sent.body)).toEqual({ ok: true, ignored: 'own message' });
    expect(ingress().length).toBe(before);
  });

  it('refuses a tampered body or signature with 403 and publishes nothing', async () => {
    const before = ingress().length;
    for (const tamper of ['body', 'signature'] as const) {
      const sent = await fake.deliver(webhookUrl(host), {
        type: 'chat.message.sent',
        tamper,
        payload: { message_id: `km-${tamper}`, broadcaster: BROADCASTER, sender: VIEWER, content: '!ping' },
      });
      expect(sent.status).toBe(403);
      expect(JSON.parse(sent.body)).toMatchObject({ error: 'FORBIDDEN' });
    }
    const unsigned = await fetch(webhookUrl(host), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(unsigned.status).toBe(401);
    expect(ingress().length).toBe(before);
  });

  it('refuses a correctly signed delivery whose timestamp is ten minutes old', async () => {
    const before = ingress().length;
    const sent = await fake.deliver(webhookUrl(host), {
      type: 'channel.followed',
      timestamp: new Date(Date.now() - 10 * 60_000).toISOString(),
      payload: { broadcaster: BROADCASTER, follower: VIEWER },
    });
    expect(sent.status).toBe(403);
    expect(JSON.parse(sent.body).message).toContain('stale');
    expect(ingress().length).toBe(before);
  });

  it('puts livestream.status.updated on the kick:streamer source, as /api/sources shows it', async () => {
    // The status heartbeat carries the stream state read from GET /channels at start.
    await waitForSource(store, 'kick:streamer', (source) => source.status === 'connected' && source.streamStatus === 'offline');
    const offline = await host.app.inject({ method: 'GET', url: '/api/sources' });
    expect(offline.json().items.find((source: { id: string }) => source.id === 'kick:streamer')).toMatchObject({
      platform: 'kick',
      status: 'connected',
      streamStatus: 'offline',
      metadata: { subscriptions: expect.arrayContaining(KICK_EVENTS) },
    });
    const startedAt = new Date(Date.now() - 60_000).toISOString();
    const sent = await fake.deliver(webhookUrl(host), {
      type: 'livestream.status.updated',
      payload: { broadcaster: BROADCASTER, is_live: true, title: 'Kick speedruns', started_at: startedAt, ended_at: null },
    });
    expect(sent.status).toBe(200);
    await waitForSource(store, 'kick:streamer', (source) => source.streamStatus === 'online');
    const sources = (await host.app.inject({ method: 'GET', url: '/api/sources' })).json().items as Array<{
      id: string;
      streamStatus?: string;
      metadata?: Record<string, unknown>;
    }>;
    expect(sources.find((source) => source.id === 'kick:streamer')).toMatchObject({
      streamStatus: 'online',
      metadata: { title: 'Kick speedruns', startedAt },
    });
  });

  it('thanks a follower and a new subscriber on Kick chat through the reaction rules', async () => {
    await fake.deliver(webhookUrl(host), { type: 'channel.followed', payload: { broadcaster: BROADCASTER, follower: VIEWER } });
    await fake.deliver(webhookUrl(host), {
      type: 'channel.subscription.new',
      payload: {
        broadcaster: BROADCASTER,
        subscriber: { ...VIEWER, user_id: 3005, username: 'New_Sub', channel_slug: 'new_sub' },
        duration: 1,
        created_at: new Date().toISOString(),
      },
    });
    expect(await waitFor(() => fake.chats.find((chat) => chat.content === 'Thanks for the follow, Viewer_Vic! Welcome in.'))).toMatchObject(
      { broadcaster_user_id: 1001 },
    );
    await waitFor(() => fake.chats.find((chat) => chat.content === 'Thank you for subscribing, New_Sub!'));
    const follow = (await observed.waitFor(Topic.finalizer, (value) => value.externalEvent?.kind === 'channel.follow')) as Envelope;
    expect(follow).toMatchObject({
      type: 'kick.event.v1',
      source: { platform: 'kick', channel: 'streamer' },
      delivery: { delivered: true },
    });
  });

  it("reports webhook lag from the event's created_at as a histogram on /metrics", async () => {
    const createdAt = new Date(Date.now() - 4_000).toISOString();
    await fake.deliver(webhookUrl(host), {
      type: 'channel.subscription.renewal',
      payload: { broadcaster: BROADCASTER, subscriber: VIEWER, duration: 5, created_at: createdAt },
    });
    const metrics = (await host.app.inject({ method: 'GET', url: '/metrics' })).body;
    const sum = Number(/bitbrat_kick_webhook_lag_seconds_sum\{event="channel.subscription.renewal"\} ([\d.e+-]+)/.exec(metrics)?.[1]);
    expect(sum).toBeGreaterThanOrEqual(4);
    expect(metrics).toMatch(/bitbrat_kick_webhook_lag_seconds_count\{event="chat.message.sent"\} [1-9]/);
    const status = (await observed.waitFor(Topic.ingress, (value) => value.type === 'external.chat.message.v1')) as Envelope;
    expect(status.source.platform).toBe('kick');
  });

  it("holds events the bus refuses, answers 503 with the message id unclaimed when the buffer is full, and takes Kick's retry once the bus is back", async () => {
    const chat = (id: string) => ({
      type: 'chat.message.sent',
      messageId: `delivery-${id}`,
      payload: {
        message_id: id,
        broadcaster: BROADCASTER,
        sender: VIEWER,
        content: `hello ${id}`,
        emotes: [],
        created_at: new Date().toISOString(),
      },
    });
    refusing.down = true;
    try {
      for (const id of ['held-1', 'held-2']) expect((await fake.deliver(webhookUrl(host), chat(id))).status).toBe(200);
      const full = await fake.deliver(webhookUrl(host), chat('over-1'));
      expect(full.status).toBe(503);
      expect(JSON.parse(full.body)).toMatchObject({ error: 'BUS_UNAVAILABLE' });
      expect(ingress().some((envelope) => envelope.message?.id?.startsWith('held-'))).toBe(false);
    } finally {
      refusing.down = false;
    }
    await waitFor(() => ingress().some((envelope) => envelope.message?.id === 'held-2'), {
      timeoutMs: 20_000,
      message: 'the held events on ingress',
    });
    expect(
      ingress()
        .filter((envelope) => envelope.message?.id?.startsWith('held-'))
        .map((envelope) => envelope.message?.id),
    ).toEqual(['held-1', 'held-2']);
    // Kick retries the refused delivery with the same message id: it is taken, not a duplicate.
    const retry = await fake.deliver(webhookUrl(host), chat('over-1'));
    expect(retry.status).toBe(200);
    expect(JSON.parse(retry.body)).toEqual({ ok: true });
    await waitFor(() => ingress().some((envelope) => envelope.message?.id === 'over-1'), { message: 'the retried event on ingress' });
    // The refusal shows on the source; nothing was lost, since Kick retried it.
    const status = await observed.waitFor(
      Topic.ingress,
      (value) =>
        value.type === 'system.source.status' &&
        value.payload.sourceId === 'kick:streamer' &&
        value.payload.lastError?.code === 'INGRESS_FULL',
    );
    expect(status.payload.metrics).toMatchObject({ lost: 0 });
  });

  it('processes a repeated message id once, also after a restart, and a restart creates no subscriptions', async () => {
    const payload = { broadcaster: BROADCASTER, follower: { ...VIEWER, user_id: 3009, username: 'Repeat', channel_slug: 'repeat' } };
    const first = await fake.deliver(webhookUrl(host), { type: 'channel.followed', messageId: 'repeat-1', payload });
    expect(first.status).toBe(200);
    const again = await fake.deliver(webhookUrl(host), { type: 'channel.followed', messageId: 'repeat-1', payload });
    expect(JSON.parse(again.body)).toEqual({ ok: true, duplicate: true });

    const posts = fake.requestsTo('/public/v1/events/subscriptions', 'POST').length;
    const deletes = fake.requestsTo('/public/v1/events/subscriptions', 'DELETE').length;
    await host.stop();
    host = await startKickHost();
    await waitFor(() =>
      fake.requestsTo('/public/v1/events/subscriptions', 'GET').length >= 2 && host.app.server.listening ? true : undefined,
    );
    await waitForComponent(host, 'kick.kick', (component) => Boolean(component.detail?.includes('subscribed')));
    const afterRestart = await fake.deliver(webhookUrl(host), { type: 'channel.followed', messageId: 'repeat-1', payload });
    expect(afterRestart.status).toBe(200);
    expect(JSON.parse(afterRestart.body)).toEqual({ ok: true, duplicate: true });
    expect(ingress().filter((envelope) => envelope.externalEvent?.id === 'repeat-1')).toHaveLength(1);
    expect(fake.requestsTo('/public/v1/events/subscriptions', 'POST').length).toBe(posts);
    expect(fake.requestsTo('/public/v1/events/subscriptions', 'DELETE').length).toBe(deletes);
  });
});

describe('the kick service without Kick configured', () => {
  let store: Store;
  useEmbeddedStore((opened) => (store = opened), { tokenKey: 'c' });

  it('stays ready, says what to set, and publishes a not_configured kick source', async () => {
    const bus = createMemoryBus();
    await bus.connect();
    const observed = await collect(bus, [Topic.ingress]);
    const host = await startTestHost({ services: [kick], bus, env: { INSTANCE_ID: INSTANCE, DATA_DIR: 'memory://' }, extra: { store } });
    try {
      const ready = await host.app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json().components['kick.kick']).toMatchObject({
        ready: true,
        configured: false,
        detail: expect.stringContaining('KICK_CHANNELS'),
      });
      const status = (await observed.waitFor(Topic.ingress, (value) => value.type === 'system.source.status')) as Envelope;
      expect(status.payload).toMatchObject({
        sourceId: 'kick:chat',
        status: 'not_configured',
        metadata: { howToConnect: expect.stringContaining('/oauth/kick/start') },
      });
      const webhook = await host.app.inject({
        method: 'POST',
        url: '/webhooks/kick',
        headers: { 'content-type': 'application/json' },
        payload: '{}',
      });
      expect(webhook.statusCode).toBe(503);
      expect(webhook.json()).toMatchObject({ error: 'NOT_CONFIGURED' });
    } finally {
      await host.stop();
      await bus.close();
    }
  });

  it('picks up a token the OAuth flow stores after start-up and then subscribes', async () => {
    const fake = await startFakeKick();
    fake.users.set(2002, { user_id: 2002, name: 'BratBot' });
    fake.channels.set('other', {
      broadcaster_user_id: 1010,
      slug: 'other',
      stream_title: '',
      stream: { is_live: false, start_time: '', viewer_count: 0 },
    });
    const bus = createMemoryBus();
    await bus.connect();
    await store.deleteToken('kick:bot');
    await store.deleteToken('kick:broadcaster');
    const host = await startTestHost({
      services: [kick],
      bus,
      env: {
        INSTANCE_ID: INSTANCE,
        DATA_DIR: 'memory://',
        KICK_CHANNELS: 'other',
        KICK_CLIENT_ID: fake.clientId,
        KICK_API_URL: fake.url,
        KICK_AUTH_URL: fake.url,
        SOURCE_HEARTBEAT_MS: '100',
      },
      extra: { store },
    });
    try {
      expect((await host.app.inject({ method: 'GET', url: '/readyz' })).json().components['kick.kick']).toMatchObject({
        configured: false,
        detail: expect.stringContaining('/oauth/kick/start'),
      });
      expect(fake.requestsTo('/public/v1/events/subscriptions', 'POST')).toHaveLength(0);
      const issued = fake.issueToken(2002);
      await store.putToken({
        id: 'kick:bot',
        accessToken: issued.accessToken,
        refreshToken: issued.refreshToken,
        scopes: ['chat:write', 'events:subscribe'],
        obtainedAt: new Date().toISOString(),
        userId: '2002',
      });
      await waitForComponent(host, 'kick.kick', (component) => component.configured === true && fake.subscriptions.length === 6);
      expect(fake.subscriptions.every((sub) => sub.broadcaster_user_id === 1010)).toBe(true);
    } finally {
      await host.stop();
      await bus.close();
      await fake.stop();
    }
  });

  it('fails at start-up listing every bad setting', async () => {
    const bus = createMemoryBus();
    const started = startTestHost({
      services: [kick],
      bus,
      env: { KICK_CHANNELS: 'ok,not a slug', KICK_PUBLIC_KEY: 'not a key', KICK_API_URL: 'nope' },
    });
    await expect(started).rejects.toThrow(/KICK_CHANNELS[\s\S]*KICK_API_URL|KICK_API_URL[\s\S]*KICK_CHANNELS/);
    await expect(started).rejects.toThrow(/KICK_PUBLIC_KEY/);
    await bus.close();
  });
});
