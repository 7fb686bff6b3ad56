/**
 * The discord service with the real discord.js against the fake Discord (test/fakes/discord.ts), a
 * memory bus and the embedded PGlite store.
 */
import { describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import {
  createEnvelope,
  createReply,
  createStep,
  instanceEgressTopic,
  normalizeTraceId,
  Topic,
  type Envelope,
} from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import discordService from '../../src/services/discord/index.js';
import ingressEgressService from '../../src/services/ingress-egress/index.js';
import persistenceService from '../../src/services/persistence/index.js';
import eventRouter, { type EventRouterInstance } from '../../src/services/event-router/index.js';
import { createLlmBotService } from '../../src/services/llm-bot/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { createModerationService } from '../../src/services/moderation/index.js';
import type { ServiceDefinition } from '../../src/runtime/service.js';
import type { Store } from '../../src/store/index.js';
import { startFakeDiscord, type FakeDiscord, type FakeDiscordOptions } from '../fakes/discord.js';
import { startFakeOpenAI } from '../fakes/openai.js';
import { startFakeOtlpCollector } from '../fakes/otlp.js';
import { collect, startTestHost } from '../support/harness.js';
import { stopAfterEach, useEmbeddedStore } from '../support/service-test.js';
import { createRefusingBus, type RefusingBus } from '../support/refusing-bus.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'discord-bot-token-abc.def.ghi';
const INSTANCE = 'discord-test-1';
const CHANNEL = '700000000000000001';
const ANNOUNCE = '700000000000000002';
const MOD_ROLE = { id: '500000000000000001', name: 'Stream Mods' };
const NAMED_ROLE = { id: '500000000000000002', name: 'Helpers' };
const MANAGER_ROLE = { id: '500000000000000003', name: 'Janitors', permissions: String(1 << 13) };
const VIEWER = { id: '600000000000000001', username: 'viewer_one' };
const encoder = new TextEncoder();

let store: Store;
let fake: FakeDiscord | undefined;
let bus: MessageBus | undefined;
let host: Host | undefined;

useEmbeddedStore((opened) => (store = opened));
stopAfterEach(
  () => ({ host, bus, fakes: [fake] }),
  () => {
    host = undefined;
    bus = undefined;
    fake = undefined;
  },
);

async function start(
  options: {
    fake?: Partial<FakeDiscordOptions>;
    env?: Record<string, string>;
    services?: ServiceDefinition[];
    wrap?: (bus: MessageBus) => MessageBus;
  } = {},
) {
  fake = await startFakeDiscord({
    token: TOKEN,
    channels: [
      { id: CHANNEL, name: 'general' },
      { id: ANNOUNCE, name: 'announcements' },
    ],
    roles: [MOD_ROLE, NAMED_ROLE, MANAGER_ROLE],
    members: [VIEWER],
    heartbeatIntervalMs: 200,
    ...options.fake,
  });
  bus = createMemoryBus();
  await bus.connect();
  const observer = await collect(bus, [Topic.ingress, Topic.finalizer, Topic.deadletter, Topic.authenticated]);
  host = await startTestHost({
    services: options.services ?? [discordService],
    bus: options.wrap ? options.wrap(bus) : bus,
    architecture: loadArchitecture(),
    env: { INSTANCE_ID: INSTANCE, DISCORD_BOT_TOKEN: TOKEN, DISCORD_API_URL: fake.apiUrl, SOURCE_HEARTBEAT_MS: '100', ...options.env },
    extra: { store },
  });
  return observer;
}

type Observer = Awaited<ReturnType<typeof start>>;
const statuses = (observer: Observer) =>
  observer
    .envelopes(Topic.ingress)
    .filter((envelope) => envelope.type === 'system.source.status' && envelope.source.platform === 'discord');

function chatReply(text: string, messageId = '123456789012345678'): Envelope {
  const envelope = createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'discord', channel: 'BitBrat HQ #general', channelId: CHANNEL, egressDestination: instanceEgressTopic(INSTANCE) },
    user: { id: VIEWER.id, name: VIEWER.username, displayName: VIEWER.username, profileImageUrl: '', role: 'viewer' },
    payload: { text: 'hi', messageId },
    extra: { message: { id: messageId, text: 'hi' }, candidates: [createReply('test', text)], qos: { maxResponseMs: 30_000 } },
  });
  return envelope;
}

describe('discord connection and status', () => {
  it('connects with the Guilds, GuildMessages and MessageContent intents and reports connected, guilds and latency as source status', async () => {
    const observer = await start({ services: [discordService, persistenceService] });
    const status = await waitFor(
      () =>
        statuses(observer).find((envelope) => envelope.payload.status === 'connected' && typeof envelope.payload.latencyMs === 'number'),
      { message: 'a connected status with latency' },
    );
    expect(status.payload).toMatchObject({
      sourceId: 'discord:800000000000000001',
      platform: 'discord',
      displayName: 'Discord · BitBrat HQ',
      authStatus: 'valid',
      lastError: null,
    });
    expect((status.payload.metadata as Record<string, unknown>).guilds).toBe(1);
    expect((status.payload.metadata as Record<string, unknown>).channels).toEqual(['#general', '#announcements']);
    expect(fake!.identifies[0]!.intents).toBe((1 << 0) | (1 << 9) | (1 << 15));
    expect(fake!.calls.find((call) => call.path === '/gateway/bot')).toMatchObject({ method: 'GET', status: 200 });
    const ready = await host!.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json().components['discord.discord']).toMatchObject({ ready: true });
    // Persistence keeps it in `sources`, which /api/sources and the dashboard show.
    const source = await waitFor(() => store.getSource('discord:800000000000000001'));
    expect(source).toMatchObject({
      platform: 'discord',
      status: 'connected',
      authStatus: 'valid',
      metadata: { guilds: 1, guildName: 'BitBrat HQ' },
    });
  });

  it('says so in the status, with the Developer Portal fix, when Discord withholds message content', async () => {
    const observer = await start({ fake: { messageContent: 'not-granted' } });
    const status = await waitFor(
      () =>
        statuses(observer).find((envelope) => (envelope.payload.lastError as { code?: string } | null)?.code === 'MESSAGE_CONTENT_MISSING'),
      { message: 'a status naming the missing intent' },
    );
    expect((status.payload.metadata as Record<string, string>).howToConnect).toMatch(/Message Content Intent.*Developer Portal/);
    fake!.sendMessage({ author: VIEWER, content: '!ping' });
    const chat = await observer.waitFor(Topic.ingress, (value: Envelope) => value.type === 'external.chat.message.v1');
    expect(chat.message?.text).toBe('');
  });

  it('reports close code 4014 (disallowed intents) clearly and does not claim to be connected', async () => {
    const observer = await start({ fake: { messageContent: 'refuse' } });
    const status = await waitFor(
      () => statuses(observer).find((envelope) => (envelope.payload.lastError as { code?: string } | null)?.code === 'DISALLOWED_INTENTS'),
      { message: 'a 4014 status' },
    );
    expect(status.payload.status).toBe('error');
    expect((status.payload.lastError as { message: string }).message).toMatch(/4014.*Message Content Intent/);
    const ready = await host!.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json().components['discord.discord']).toMatchObject({ ready: false });
  });

  it('connects on a later try once the intent is enabled, without a restart', async () => {
    const observer = await start({ fake: { messageContent: 'refuse' }, env: { DISCORD_RECONNECT_MS: '100' } });
    await waitFor(() =>
      statuses(observer).some((envelope) => (envelope.payload.lastError as { code?: string } | null)?.code === 'DISALLOWED_INTENTS'),
    );
    fake!.setMessageContent('granted');
    const connected = await waitFor(() => statuses(observer).find((envelope) => envelope.payload.status === 'connected'), {
      message: 'connected after the fix',
      timeoutMs: 20_000,
    });
    expect(connected.payload.lastError).toBeNull();
    expect(fake!.identifies.length).toBeGreaterThanOrEqual(2);
  });

  // The fake keeps no sessions, so the client identifies anew, which discord.js spaces 5 s apart as Discord requires.
  it('reconnects when the gateway drops the connection, counting reconnects, and receives messages again', {
    timeout: 60_000,
  }, async () => {
    const observer = await start();
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    fake!.dropConnections();
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connecting'), {
      message: 'a connecting status',
    });
    const back = await waitFor(
      () =>
        statuses(observer).find(
          (envelope) => envelope.payload.status === 'connected' && (envelope.payload.metrics as { reconnects: number }).reconnects >= 1,
        ),
      { message: 'connected again', timeoutMs: 30_000 },
    );
    expect(back.payload.lastError).toBeNull();
    const messageId = fake!.sendMessage({ author: VIEWER, content: 'still here?' });
    await observer.waitFor(Topic.ingress, (value: Envelope) => value.message?.id === messageId);
    expect(fake!.identifies).toHaveLength(2);
  });

  it('refuses to start with channel names where ids belong, listing each problem', async () => {
    const bad = startTestHost({
      services: [discordService],
      bus: createMemoryBus(),
      architecture: loadArchitecture(),
      env: { DISCORD_CHANNELS: 'general,700000000000000001', DISCORD_ANNOUNCE_CHANNEL: '#announcements' },
      extra: { store },
    });
    await expect(bad).rejects.toThrow(/DISCORD_CHANNELS: must be channel ids[\s\S]*DISCORD_ANNOUNCE_CHANNEL: must be a channel id/);
  });

  it('stays ready and says what to set when no bot token is configured', async () => {
    const observer = await start({ env: { DISCORD_BOT_TOKEN: '' } });
    const status = await waitFor(() => statuses(observer).find((envelope) => envelope.payload.status === 'not_configured'));
    expect(status.payload).toMatchObject({ sourceId: 'discord:bot', authStatus: 'missing', metadata: { placeholder: true } });
    expect((status.payload.metadata as Record<string, string>).howToConnect).toMatch(/DISCORD_BOT_TOKEN/);
    const ready = await host!.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(fake!.identifies).toEqual([]);
  });
});

describe('discord messages in and out', () => {
  // ingress-egress shares the per-instance egress topic in one process: Discord replies must not reach it.
  const pipeline = () => [
    ingressEgressService,
    authService,
    eventRouter,
    createQueryAnalyzer(),
    createModerationService(),
    createCommandsService(),
    discordService,
  ];

  it("answers a viewer's !ping with pong as a Discord reply, through the same rules as Twitch", async () => {
    const observer = await start({ services: pipeline() });
    await waitFor(() => fake!.connections() > 0 && statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    const messageId = fake!.sendMessage({ author: VIEWER, content: '!ping' });
    const reply = await waitFor(() => fake!.posted.find((message) => message.message_reference?.message_id === messageId), {
      message: 'the reply',
    });
    expect(reply).toMatchObject({ channel_id: CHANNEL, content: 'pong', allowed_mentions: { parse: ['users'] } });
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.message?.id === messageId);
    expect(final.source).toMatchObject({ platform: 'discord', channel: 'BitBrat HQ #general', channelId: CHANNEL });
    expect(final.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual([
      'query-analyzer:OK',
      'moderation:SKIP',
      'router:OK',
      'commands:OK',
    ]);
    expect(final.delivery).toMatchObject({ delivered: true, destination: `discord:${CHANNEL}`, platformMessageIds: [reply.id] });
    expect(observer.envelopes(Topic.finalizer).filter((value: Envelope) => value.message?.id === messageId)).toHaveLength(1);
    expect(fake!.posted).toHaveLength(1);
  });

  it('with tracing on, makes every REST call a client span: the login’s a root span, the reply a child in the message’s trace', async () => {
    const collector = await startFakeOtlpCollector();
    try {
      const observer = await start({
        services: pipeline(),
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '20' },
      });
      await waitFor(() => fake!.connections() > 0 && statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
      const messageId = fake!.sendMessage({ author: VIEWER, content: '!ping' });
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.message?.id === messageId);
      const traceId = normalizeTraceId(final.traceId);
      const reply = `discord.rest POST /channels/:id/messages`;
      // The egress span ends after the REST call it made, so may come in a later export: wait for both.
      const spans = await collector.waitFor((all) => {
        const sent = all.find((span) => span.name === reply && span.traceId === traceId);
        return (
          Boolean(sent && all.some((span) => span.spanId === sent.parentSpanId)) &&
          all.some((span) => span.name === 'discord.rest GET /gateway/bot')
        );
      });
      const login = spans.find((span) => span.name === 'discord.rest GET /gateway/bot')!;
      expect(login).toMatchObject({ kind: 3, parentSpanId: '', status: { code: 0 } });
      expect(login.attributes).toMatchObject({
        'http.request.method': 'GET',
        'server.address': new URL(fake!.apiUrl).hostname,
        'url.template': `${new URL(fake!.apiUrl).pathname.replace(/\/+$/, '')}/v10/gateway/bot`,
        'http.response.status_code': 200,
        'bitbrat.platform': 'discord',
      });
      const sent = spans.find((span) => span.name === reply && span.traceId === traceId)!;
      const parent = spans.find((span) => span.spanId === sent.parentSpanId);
      expect(parent?.attributes['bitbrat.service']).toBe('discord');
      expect(sent).toMatchObject({ kind: 3, status: { code: 0 } });
      expect(sent.attributes['http.response.status_code']).toBe(200);
      // The channel id stays out of the name and the attributes.
      expect(JSON.stringify(sent.attributes)).not.toContain(CHANNEL);
    } finally {
      await host?.stop();
      host = undefined;
      await collector.close();
    }
  });

  it('answers a question to the bot with the LLM, as a Discord reply', async () => {
    const llm = await startFakeOpenAI({ defaultScript: { text: 'It is Celeste, and @everyone should watch.' } });
    try {
      const env = {
        LLM_PROVIDER: 'openai',
        LLM_MODEL: 'gpt-test',
        OPENAI_BASE_URL: llm.baseURL,
        OPENAI_API_KEY: 'sk-test',
        BOT_NAME: 'bitbrat',
        LLM_DAILY_TOKEN_BUDGET: '0',
        LLM_USER_RATE_PER_MIN: '0',
        LLM_CHANNEL_RATE_PER_MIN: '0',
      };
      const observer = await start({
        services: [authService, eventRouter, createQueryAnalyzer(), createModerationService(), createLlmBotService(), discordService],
        env,
      });
      await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
      const messageId = fake!.sendMessage({ author: VIEWER, content: '<@900000000000000001> what game is this?', mentionsBot: true });
      const reply = await waitFor(() => fake!.posted.find((message) => message.message_reference?.message_id === messageId), {
        message: 'the LLM reply',
        timeoutMs: 20_000,
      });
      expect(reply.content).toBe('It is Celeste, and @\u200beveryone should watch.');
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.message?.id === messageId);
      expect(final.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual([
        'query-analyzer:OK',
        'moderation:SKIP',
        'router:OK',
        'llm-bot:OK',
      ]);
      expect(llm.requests.at(-1)?.messages.at(-1)?.text).toContain('what game is this?');
    } finally {
      await llm.stop();
    }
  });

  it('maps moderators from DISCORD_MOD_ROLES by id and by name, and from the Manage Messages permission', async () => {
    const observer = await start({ services: [authService, discordService], env: { DISCORD_MOD_ROLES: `${MOD_ROLE.id}, helpers` } });
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    const cases = [
      { author: { id: '600000000000000011', username: 'by_id', roles: [MOD_ROLE.id] }, role: 'moderator' },
      { author: { id: '600000000000000012', username: 'by_name', roles: [NAMED_ROLE.id] }, role: 'moderator' },
      { author: { id: '600000000000000013', username: 'by_permission', roles: [MANAGER_ROLE.id] }, role: 'moderator' },
      { author: { id: '600000000000000014', username: 'plain' }, role: 'viewer' },
      { author: { id: '600000000000000099', username: 'owner' }, role: 'broadcaster' },
    ];
    for (const { author, role } of cases) {
      const messageId = fake!.sendMessage({ author, content: 'hello' });
      const authenticated: Envelope = await observer.waitFor(Topic.authenticated, (value: Envelope) => value.message?.id === messageId);
      expect({ user: author.username, role: authenticated.user.role }).toEqual({ user: author.username, role });
    }
  });

  it('turns mentions into readable names, the bot as @its username, so a question to the bot reads as a mention', async () => {
    const observer = await start();
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    const messageId = fake!.sendMessage({
      author: VIEWER,
      content: `<@900000000000000001> what is <#${ANNOUNCE}> for, <@&${MOD_ROLE.id}>?`,
      mentionsBot: true,
    });
    const chat: Envelope = await observer.waitFor(Topic.ingress, (value: Envelope) => value.message?.id === messageId);
    expect(chat.message?.text).toBe('@bitbrat what is #announcements for, @Stream Mods?');
  });

  it('listens only in DISCORD_CHANNELS when it is set', async () => {
    const observer = await start({ env: { DISCORD_CHANNELS: CHANNEL } });
    const status = await waitFor(() => statuses(observer).find((envelope) => envelope.payload.status === 'connected'));
    expect((status.payload.metadata as Record<string, unknown>).channels).toEqual(['#general']);
    const ignored = fake!.sendMessage({ author: VIEWER, channelId: ANNOUNCE, content: 'not here' });
    const heard = fake!.sendMessage({ author: VIEWER, channelId: CHANNEL, content: 'here' });
    await observer.waitFor(Topic.ingress, (value: Envelope) => value.message?.id === heard);
    expect(observer.envelopes(Topic.ingress).some((value: Envelope) => value.message?.id === ignored)).toBe(false);
  });

  it('splits a long reply at 2,000 characters, replying with the first part only', async () => {
    await start();
    await waitFor(() => fake!.connections() > 0);
    const paragraph = 'word '.repeat(300).trim();
    const text = [paragraph, paragraph, paragraph].join('\n');
    await bus!.publish(instanceEgressTopic(INSTANCE), encoder.encode(JSON.stringify(chatReply(text, '111111111111111111'))));
    await waitFor(() => fake!.posted.length >= 3, { message: 'three parts' });
    expect(fake!.posted.map((message) => message.content.length).every((length) => length <= 2000)).toBe(true);
    expect(fake!.posted.map((message) => message.content).join('\n')).toBe(text);
    expect(fake!.posted.map((message) => message.message_reference?.message_id)).toEqual(['111111111111111111', undefined, undefined]);
  });

  it('neutralizes @everyone and @here in the text and allows only user mentions', async () => {
    await start();
    await waitFor(() => fake!.connections() > 0);
    await bus!.publish(
      instanceEgressTopic(INSTANCE),
      encoder.encode(JSON.stringify(chatReply('hey @everyone and @here, see <@&500000000000000001>'))),
    );
    const posted = await waitFor(() => fake!.posted[0]);
    expect(posted.content).not.toMatch(/@everyone|@here/);
    expect(posted.content).toContain('@\u200beveryone');
    expect(posted.allowed_mentions).toEqual({ parse: ['users'], replied_user: true });
  });

  it('waits out a 429 with retry_after and then delivers the reply', async () => {
    await start();
    await waitFor(() => fake!.connections() > 0);
    fake!.force429(600);
    const envelope = chatReply('after the limit');
    await bus!.publish(instanceEgressTopic(INSTANCE), encoder.encode(JSON.stringify(envelope)));
    await waitFor(() => fake!.posted[0], { message: 'the reply after the 429' });
    const creates = fake!.calls.filter((call) => call.method === 'POST' && call.path === `/channels/${CHANNEL}/messages`);
    expect(creates.map((call) => call.status)).toEqual([429, 200]);
    expect(creates[1]!.at - creates[0]!.at).toBeGreaterThanOrEqual(550);
  });

  it('records a reply whose deadline passed as not delivered instead of sending it late', async () => {
    const observer = await start();
    await waitFor(() => fake!.connections() > 0);
    const envelope = chatReply('too late');
    envelope.timestamp = new Date(Date.now() - 60_000).toISOString();
    await bus!.publish(instanceEgressTopic(INSTANCE), encoder.encode(JSON.stringify(envelope)));
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === envelope.id);
    expect(final.delivery).toMatchObject({ delivered: false, reason: 'DEADLINE' });
    expect(final.errors?.[0]?.code).toBe('DEADLINE');
    expect(fake!.posted).toEqual([]);
  });
});

describe('go-live announcements', () => {
  const online = (streamId: string) =>
    createEnvelope({
      type: 'system.stream.online',
      source: { platform: 'twitch', channel: 'streamer', channelId: '1000' },
      payload: {
        sourceId: 'twitch:streamer',
        platform: 'twitch',
        channel: 'streamer',
        channelId: '1000',
        streamStatus: 'online',
        title: 'Speedrun @everyone',
        game: 'Celeste',
        streamId,
        startedAt: '2026-12-06T10:00:00.000Z',
      },
    });
  const offline = () =>
    createEnvelope({
      type: 'system.stream.offline',
      source: { platform: 'twitch', channel: 'streamer', channelId: '1000' },
      payload: { sourceId: 'twitch:streamer', platform: 'twitch', channel: 'streamer', channelId: '1000', streamStatus: 'offline' },
    });

  it('posts once per stream through the router rule, also after a restart, and edits the post when the stream ends', async () => {
    const env = { DISCORD_ANNOUNCE_CHANNEL: ANNOUNCE, RULES_RELOAD_MS: '50' };
    const router = () => host!.instance('event-router') as EventRouterInstance;
    const services = () => [authService, eventRouter, discordService];
    let observer = await start({ env, services: services() });
    // The discord service adds its rule to the seeded table; the router picks it up on its next reload.
    await waitFor(
      () =>
        router()
          .current()
          .rules.some((rule) => rule.id === 'discord-go-live'),
      { message: 'the go-live rule in the router' },
    );
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    const first = online('stream-1');
    await bus!.publish(Topic.ingress, encoder.encode(JSON.stringify(first)));
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === first.id);
    expect(final.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['discord:OK']);
    expect(final.routingSlip[0]!.maxAttempts).toBe(10);
    expect(fake!.posted).toHaveLength(1);
    const post = fake!.posted[0]!;
    expect(post).toMatchObject({ channel_id: ANNOUNCE, allowed_mentions: { parse: [] } });
    expect(post.content).toContain('Speedrun @\u200beveryone');
    expect(post.content).toContain('Celeste');
    expect(post.content).toContain('https://twitch.tv/streamer');
    expect(final.delivery).toMatchObject({ delivered: true, destination: `discord:${ANNOUNCE}`, platformMessageIds: [post.id] });

    // A restart: a new host (and a new Discord session) on the same store sees the same stream again.
    await host!.stop();
    await bus!.close();
    const calls = fake!.posted;
    bus = createMemoryBus();
    await bus.connect();
    observer = await collect(bus, [Topic.ingress, Topic.finalizer]);
    host = await startTestHost({
      services: services(),
      bus,
      architecture: loadArchitecture(),
      env: { INSTANCE_ID: INSTANCE, DISCORD_BOT_TOKEN: TOKEN, DISCORD_API_URL: fake!.apiUrl, SOURCE_HEARTBEAT_MS: '100', ...env },
      extra: { store },
    });
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    await waitFor(() =>
      router()
        .current()
        .rules.some((rule) => rule.id === 'discord-go-live'),
    );
    const again = online('stream-1');
    await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(again)));
    const second: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === again.id);
    expect(second.annotations?.find((annotation) => annotation.kind === 'discord-announcement')?.label).toBe('already-posted');
    expect(calls).toHaveLength(1);

    const ended = offline();
    await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(ended)));
    await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === ended.id);
    expect(fake!.posted[0]).toMatchObject({ id: post.id, edited: true });
    expect(fake!.posted[0]!.content).toMatch(/stream has ended/);
    expect(fake!.calls.filter((call) => call.method === 'PATCH')).toHaveLength(1);

    const next = online('stream-2');
    await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(next)));
    await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === next.id);
    expect(fake!.posted).toHaveLength(2);
  });

  it('does not post twice when the post went out but was not remembered (Discord enforces the nonce)', async () => {
    const observer = await start({ env: { DISCORD_ANNOUNCE_CHANNEL: ANNOUNCE } });
    await waitFor(() => statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    const step = async () => {
      const envelope = online('stream-crash');
      envelope.routingSlip = [createStep('discord')];
      await bus!.publish('internal.discord.v1', encoder.encode(JSON.stringify(envelope)));
      return (await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === envelope.id)) as Envelope;
    };
    const first = await step();
    // As if the process died between posting and remembering the post.
    await store.mergeSource({ id: 'twitch:streamer', platform: 'twitch', metadata: { discordAnnouncement: null } });
    const second = await step();
    expect(fake!.posted).toHaveLength(1);
    expect(second.delivery?.platformMessageIds).toEqual(first.delivery?.platformMessageIds);
  });

  it('skips the step, saying what to set, when no announce channel is configured', async () => {
    const observer = await start();
    await waitFor(() => fake!.connections() > 0);
    const envelope = online('stream-9');
    envelope.routingSlip = [createStep('discord')];
    await bus!.publish('internal.discord.v1', encoder.encode(JSON.stringify(envelope)));
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value: Envelope) => value.id === envelope.id);
    expect(final.routingSlip[0]!.status).toBe('SKIP');
    expect(final.annotations?.find((annotation) => annotation.kind === 'discord-announcement')?.payload).toMatchObject({
      hint: expect.stringMatching(/DISCORD_ANNOUNCE_CHANNEL/),
    });
  });
});

describe('discord messages while the bus refuses them', () => {
  it('holds them in order and publishes them when the bus is back, counting the one over INGRESS_BUFFER_MAX as lost on the source status', async () => {
    let refusing: RefusingBus | undefined;
    const observer = await start({
      env: { INGRESS_BUFFER_MAX: '2', PUBLISH_MAX_RETRIES: '0' },
      wrap: (real) => (refusing = createRefusingBus(real, Topic.ingress)),
    });
    await waitFor(() => fake!.connections() > 0 && statuses(observer).some((envelope) => envelope.payload.status === 'connected'));
    refusing!.down = true;
    const ids = ['one', 'two', 'three'].map((content) => fake!.sendMessage({ author: VIEWER, content }));
    const held = await waitFor(
      async () => {
        const body = (await host!.app.inject({ method: 'GET', url: '/_debug/discord' })).json();
        return body.ingest?.lost === 1 ? body.ingest : undefined;
      },
      { message: 'one message counted as lost' },
    );
    expect(held).toMatchObject({ pending: 2, blocked: true });
    expect(observer.envelopes(Topic.ingress).filter((envelope) => envelope.type === 'external.chat.message.v1')).toEqual([]);

    refusing!.down = false;
    const chats = () => observer.envelopes(Topic.ingress).filter((envelope) => envelope.type === 'external.chat.message.v1');
    await waitFor(() => chats().length === 2, { timeoutMs: 20_000, message: 'the held messages on ingress' });
    expect(chats().map((envelope) => envelope.message?.id)).toEqual(ids.slice(0, 2));
    const status = await waitFor(() => statuses(observer).find((envelope) => (envelope.payload.metrics as { lost?: number }).lost === 1), {
      message: 'a status with lost: 1',
    });
    expect(status.payload).toMatchObject({ platform: 'discord', status: 'connected' });
  });
});
