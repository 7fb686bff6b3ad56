/**
 * The whole reaction side, end to end on one bus: ingress → auth → router → query-analyzer → router →
 * commands | llm-bot → egress → finalizer (persistence records ingress), with the real services, a
 * PGlite store and the real AI SDK against the fake OpenAI-compatible server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { createEnvelope, Topic, type Envelope } from '../../src/core/index.js';
import { continueWith, defineService, type Host, type ServiceDefinition } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import eventRouter from '../../src/services/event-router/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import { createLlmBotService } from '../../src/services/llm-bot/index.js';
import persistence from '../../src/services/persistence/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { createModerationService } from '../../src/services/moderation/index.js';
import { createStore, type EventRecord, type Store } from '../../src/store/index.js';
import { startFakeOpenAI, type FakeOpenAI } from '../fakes/openai.js';
import { collect, startTestHost, testArchitecture } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

const API_KEY = 'sk-e2e-test-key-0123456789';

/** Stands in for a platform's egress: "delivers" the reply, then the runtime finalizes. */
const egress = defineService({
  name: 'test-egress',
  setup: () => ({
    consumers: {
      [Topic.egress]: {
        mode: 'stage',
        next: 'finalization',
        handle: async (envelope) =>
          continueWith({ ...envelope, delivery: { delivered: true, at: new Date().toISOString(), destination: 'test' } }),
      },
    },
  }),
});

function services(llm: boolean): ServiceDefinition[] {
  return [
    authService,
    eventRouter,
    createQueryAnalyzer(),
    createModerationService(),
    createCommandsService(),
    ...(llm ? [createLlmBotService()] : []),
    persistence,
    finalizer,
    egress,
  ];
}

function architectureFor(list: ServiceDefinition[]) {
  const consumes: Record<string, string[]> = {
    auth: [Topic.ingress],
    'event-router': [Topic.authenticated, Topic.router],
    'query-analyzer': ['internal.query-analyzer.v1'],
    moderation: ['internal.moderation.v1'],
    commands: ['internal.commands.v1'],
    'llm-bot': ['internal.llm-bot.v1'],
    persistence: [Topic.ingress],
    finalizer: [Topic.finalizer, Topic.deadletter],
    'test-egress': [Topic.egress],
  };
  return testArchitecture(list.map((service) => ({ name: service.name, consumes: consumes[service.name]! })));
}

let counter = 0;
function chat(text: string, user: { login: string; badges?: string[] } = { login: 'viewer_vic' }): Envelope {
  counter += 1;
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1000', egressDestination: Topic.egress },
    user: { id: `id-${user.login}`, name: user.login, displayName: user.login, profileImageUrl: '', role: '' },
    payload: {
      text,
      messageId: `m${counter}`,
      badges: user.badges ?? [],
      isMod: (user.badges ?? []).includes('moderator'),
      isSubscriber: false,
      emotes: [],
    },
    extra: { message: { id: `m${counter}`, text }, qos: { maxResponseMs: 30_000 } },
  });
}

async function start(store: Store, env: Record<string, string>, llm: boolean) {
  const bus = createMemoryBus();
  await bus.connect();
  const observer = await collect(bus, [Topic.egress, Topic.finalizer, Topic.deadletter]);
  const list = services(llm);
  const host = await startTestHost({
    services: list,
    bus,
    env: { BOT_NAME: 'bitbrat', ...env },
    architecture: architectureFor(list),
    extra: { store },
  });
  return { bus, observer, host };
}

const finalRecord = (store: Store, id: string) =>
  waitFor(
    async () => {
      const record = await store.getEvent(id);
      return record?.outcome ? record : undefined;
    },
    { timeoutMs: 20_000, message: `the final record of ${id}` },
  );

const steps = (record: EventRecord) => record.final!.routingSlip.map((step) => `${step.id}:${step.status}`);

describe('whole pipeline with an LLM configured', () => {
  let store: Store;
  let fake: FakeOpenAI;
  let bus: MemoryBus;
  let host: Host;
  let observer: Awaited<ReturnType<typeof collect>>;
  const send = (envelope: Envelope) => bus.publish(Topic.ingress, new TextEncoder().encode(JSON.stringify(envelope)));

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    await store.mergeSource({
      id: 'twitch:streamer',
      platform: 'twitch',
      status: 'connected',
      streamStatus: 'online',
      lastStreamUpdate: new Date(Date.now() - 3_600_000).toISOString(),
      metadata: { title: 'Any% speedrun attempts', game: 'Celeste', startedAt: new Date(Date.now() - 3_600_000).toISOString() },
      viewerCount: 42,
    });
    ({ bus, host, observer } = await start(
      store,
      {
        LLM_PROVIDER: 'openai',
        LLM_MODEL: 'gpt-test',
        OPENAI_BASE_URL: fake.baseURL,
        OPENAI_API_KEY: API_KEY,
        LLM_USER_RATE_PER_MIN: '0',
        LLM_CHANNEL_RATE_PER_MIN: '0',
        LLM_DAILY_TOKEN_BUDGET: '0',
      },
      true,
    ));
  }, 60_000);
  afterAll(async () => {
    await host?.stop();
    await store?.close();
    await fake?.stop();
  });

  it('!ping → pong, with the whole slip recorded', async () => {
    const envelope = chat('!ping');
    await send(envelope);
    const out = await observer.waitFor(Topic.egress, (value) => value.id === envelope.id);
    expect(out.candidates.map((candidate: { text: string }) => candidate.text)).toEqual(['pong']);
    const record = await finalRecord(store, envelope.id);
    expect(record.outcome).toBe('completed');
    expect(record.replyText).toBe('pong');
    expect(record.replyDelivered).toBe(true);
    expect(steps(record)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK', 'commands:OK']);
    expect(record.ingress?.envelope.id).toBe(envelope.id);
  });

  it('a custom command fills its variables and honours its cooldown', async () => {
    await store.upsertCommand({
      name: 'hype',
      response: '{user} hypes {channel} playing {game}! ({count})',
      aliases: [],
      minRole: 'viewer',
      cooldownSec: 60,
      userCooldownSec: 0,
      enabled: true,
    });
    const first = chat('!hype', { login: 'fan_one' });
    await send(first);
    expect((await finalRecord(store, first.id)).replyText).toBe('fan_one hypes streamer playing Celeste! (1)');
    const second = chat('!hype', { login: 'fan_two' });
    await send(second);
    const record = await finalRecord(store, second.id);
    expect(record.replyText).toBeUndefined();
    expect(steps(record)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK', 'commands:SKIP']);
  });

  it('a question is answered by the LLM with the stream state and the requester role in the prompt', async () => {
    fake.reset();
    fake.reply({ text: 'We are playing Celeste, going for an any% run!' });
    const envelope = chat('what game is this?', { login: 'curious_cat', badges: ['subscriber'] });
    await send(envelope);
    const record = await finalRecord(store, envelope.id);
    expect(record.replyText).toBe('We are playing Celeste, going for an any% run!');
    expect(steps(record)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK', 'llm-bot:OK']);
    const system = fake.requests[0]!.system.join('\n');
    expect(system).toContain('Celeste');
    expect(system).toContain('Any% speedrun attempts');
    expect(system).toMatch(/subscriber/);
    expect(system).not.toContain('what game is this?');
    expect(fake.requests[0]!.messages.some((message) => message.role === 'user' && message.text.includes('what game is this?'))).toBe(true);
  });

  it('a tool call: the model asks for stream_status and answers with it', async () => {
    fake.reset();
    fake.reply((request) =>
      request.toolResults.length === 0
        ? { toolCalls: [{ name: 'stream_status', args: {} }] }
        : { text: `Live now: ${JSON.parse(request.toolResults[0]!.output).viewerCount ?? 'some'} viewers.` },
    );
    const envelope = chat('@bitbrat how many viewers are here?', { login: 'counter_carl' });
    await send(envelope);
    const record = await finalRecord(store, envelope.id);
    expect(fake.requests.length).toBe(2);
    expect(fake.requests[1]!.toolResults[0]!.output).toContain('42');
    expect(record.replyText).toContain('42');
  });

  it('spam is acted on by the moderation step: a chat warning, no answer, and a moderation annotation', async () => {
    const envelope = chat('BUY CHEAP FOLLOWERS NOW AT http://spam.example.com !!!!!!!!!!!!', { login: 'spammer_sam' });
    await send(envelope);
    const record = await finalRecord(store, envelope.id);
    expect(record.outcome).toBe('handled');
    expect(record.replyText).toMatch(/^@spammer_sam please don’t: no links/);
    expect(record.final!.annotations!.some((annotation) => annotation.kind === 'moderation')).toBe(true);
    expect(record.final!.annotations!.find((annotation) => annotation.kind === 'moderation-result')).toMatchObject({
      label: 'delete',
      payload: { filter: 'links' },
    });
  });

  it('a viewer trying !addcom gets a short refusal and no command is created', async () => {
    const envelope = chat('!addcom !free everyone gets free stuff', { login: 'sneaky_viewer' });
    await send(envelope);
    const record = await finalRecord(store, envelope.id);
    expect(record.replyText).toMatch(/moderator/i);
    expect(await store.getCommand('free')).toBeUndefined();
  });

  it('a provider outage is retried per R4, then recorded as failed', async () => {
    fake.reset();
    fake.reply({ status: 503, message: 'overloaded' });
    const envelope = chat('why is the sky blue?', { login: 'asker_ann' });
    await send(envelope);
    const record = await finalRecord(store, envelope.id);
    expect(record.outcome).toBe('failed');
    expect(record.errors?.[0]?.code).toBe('PROVIDER_ERROR');
    const llmStep = record.final!.routingSlip.find((step) => step.id === 'llm-bot')!;
    expect(llmStep.status).toBe('ERROR');
    expect(llmStep.attempt).toBe(3);
    expect(fake.requests.length).toBeGreaterThanOrEqual(3);
    expect(JSON.stringify(record)).not.toContain(API_KEY);
  });
});

describe('whole pipeline with no LLM configured', () => {
  it('stays ready, says the LLM is not configured, and does not send questions to llm-bot', async () => {
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    const { bus, host } = await start(store, {}, true);
    try {
      const ready = await host.app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(200);
      const llm = ready.json().components['llm-bot.llm'];
      expect(llm.configured).toBe(false);
      expect(llm.detail).toMatch(/LLM_PROVIDER/);
      const envelope = chat('what game is this?');
      await bus.publish(Topic.ingress, new TextEncoder().encode(JSON.stringify(envelope)));
      const record = await finalRecord(store, envelope.id);
      expect(record.outcome).toBe('unrouted');
      expect(steps(record)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK']);
      expect(record.replyText).toBeUndefined();
    } finally {
      await host.stop();
      await store.close();
    }
  });
});
