/**
 * The whole reaction side, end to end on one bus: ingress → auth → router → query-analyzer → router →
 * commands | llm-bot → egress → finalizer (persistence records ingress), with the real services, a
 * PGlite store and the real AI SDK against the fake OpenAI-compatible server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { createLlmBotService } from '../../src/services/llm-bot/index.js';
import { createStore, type EventRecord, type Store } from '../../src/store/index.js';
import { startFakeOpenAI, type FakeOpenAI } from '../fakes/openai.js';
import { collect, startTestHost } from '../support/harness.js';
import { chatEnvelope as chat, pingPipeline, pipelineArchitecture, waitForFinalRecord as finalRecord } from '../support/pipeline.js';

const API_KEY = 'sk-e2e-test-key-0123456789';

async function start(store: Store, env: Record<string, string>, llm: boolean) {
  const bus = createMemoryBus();
  await bus.connect();
  const observer = await collect(bus, [Topic.egress, Topic.finalizer, Topic.deadletter]);
  const list = pingPipeline(llm ? [createLlmBotService()] : []);
  const host = await startTestHost({
    services: list,
    bus,
    env: { BOT_NAME: 'bitbrat', ...env },
    architecture: pipelineArchitecture(list),
    extra: { store },
  });
  return { bus, observer, host };
}

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
