import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createOpenAI } from '@ai-sdk/openai';
import { createVertex } from '@ai-sdk/google-vertex';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createEnvelope, createStep, Topic, type Envelope, type RoutingStep } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { permissionsFor } from '../../src/services/auth/roles.js';
import { createLlmBotService, OUT_OF_WORDS_REPLY, USER_CAP_REPLY, type LlmBotOptions } from '../../src/services/llm-bot/index.js';
import apiGateway from '../../src/services/api-gateway/index.js';
import { usageKeys } from '../../src/services/llm-bot/usage.js';
import { tokensSpentToday } from '../../src/services/llm-bot/limits.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeOpenAI, type FakeOpenAI, type RecordedRequest } from '../fakes/openai.js';
import { startFakeVertex, type FakeVertex } from '../fakes/vertex.js';
import { startEchoHttpServer, type EchoCall } from '../fakes/mcp-echo-server.js';
import { collect, startTestHost } from '../support/harness.js';

const encoder = new TextEncoder();
const API_KEY = 'sk-test-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LLM_TOPIC = 'internal.llm-bot.v1';

let seq = 0;
const unique = (prefix: string) => `${prefix}${++seq}${Math.random().toString(36).slice(2, 6)}`;

function chat(options: { text: string; channel: string; login?: string; role?: string; step?: Partial<RoutingStep> }): Envelope {
  const login = options.login ?? 'alice';
  const role = options.role ?? 'viewer';
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: options.channel, channelId: `${options.channel}-id` },
    user: { id: `u-${login}`, name: login, displayName: login, profileImageUrl: '', role, permissions: permissionsFor([role]) },
    payload: { text: options.text },
    routingSlip: [createStep('llm-bot', options.step)],
    extra: { message: { text: options.text } },
  });
}

const replyOf = (envelope: Envelope) => envelope.candidates?.find((candidate) => candidate.source === 'llm-bot')?.text;
const labels = (envelope: Envelope) => (envelope.annotations ?? []).filter((a) => a.source === 'llm-bot').map((a) => a.label);
const userMessages = (request: RecordedRequest) => request.messages.filter((m) => m.role === 'user').map((m) => m.text);

describe('the llm-bot service', () => {
  let store: Store;
  let fake: FakeOpenAI;
  let bus: MessageBus | undefined;
  let host: Host | undefined;

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    fake = await startFakeOpenAI();
  });
  afterAll(async () => {
    await fake?.stop();
    await store?.close();
  });
  afterEach(async () => {
    await host?.stop();
    host = undefined;
    await bus?.close();
    bus = undefined;
    fake.reset();
  });

  const openaiEnv = (extra: Record<string, string | undefined> = {}) => ({
    LLM_PROVIDER: 'openai',
    LLM_MODEL: 'gpt-test',
    OPENAI_BASE_URL: fake.baseURL,
    OPENAI_API_KEY: API_KEY,
    BOT_NAME: 'BratBot',
    LLM_DAILY_TOKEN_BUDGET: '0',
    LLM_USER_RATE_PER_MIN: '0',
    LLM_CHANNEL_RATE_PER_MIN: '0',
    ...extra,
  });

  const start = async (env: Record<string, string | undefined>, options: LlmBotOptions = {}, withGateway = false) => {
    bus = createMemoryBus();
    await bus.connect();
    const observer = await collect(bus, [Topic.finalizer, Topic.deadletter]);
    host = await startTestHost({
      services: [createLlmBotService(options), ...(withGateway ? [apiGateway] : [])],
      bus,
      env,
      extra: { store },
    });
    const ask = async (envelope: Envelope): Promise<Envelope> => {
      await bus!.publish(LLM_TOPIC, encoder.encode(JSON.stringify(envelope)));
      return await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id, 20_000);
    };
    return { ask, observer };
  };

  const seedStream = async (channel: string) => {
    await store.mergeSource({
      id: `twitch:${channel}-id`,
      platform: 'twitch',
      displayName: channel,
      streamStatus: 'online',
      viewerCount: 42,
      metadata: { title: 'Any% speedruns all day', game: 'Celeste', startedAt: new Date(Date.now() - (65 * 60_000 + 5_000)).toISOString() },
    });
  };

  it('answers a question with a reply candidate carrying the model text', async () => {
    const channel = unique('chan');
    fake.reply({ text: 'Hi alice! We are speedrunning Celeste today.' });
    const { ask } = await start(openaiEnv());
    const final = await ask(chat({ text: '@BratBot what are we doing today?', channel }));
    expect(final.outcome).toBe('completed');
    expect(replyOf(final)).toBe('Hi alice! We are speedrunning Celeste today.');
    expect(final.routingSlip[0]).toMatchObject({ id: 'llm-bot', status: 'OK' });
    expect(labels(final)).toContain('answered');
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.api).toBe('chat');
    expect(fake.requests[0]!.model).toBe('gpt-test');
    expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${API_KEY}`);
  });

  it('sends a system prompt with the bot name, the requester role and the stream state, and the chat text only as user content', async () => {
    const channel = unique('chan');
    await seedStream(channel);
    const { ask } = await start(openaiEnv({ LLM_BOT_SYSTEM_PROMPT: 'You are BratBot, a sarcastic but kind speedrun fan.' }));
    const question = 'how long has the stream been live?';
    await ask(chat({ text: question, channel, login: 'modmary', role: 'moderator' }));
    const request = fake.requests[0]!;
    expect(request.system).toHaveLength(1);
    const system = request.system[0]!;
    expect(system).toContain('You are BratBot, a sarcastic but kind speedrun fan.');
    expect(system).toContain('Your name is BratBot');
    expect(system).toMatch(/modmary.*role: moderator/);
    expect(system).toContain('online for 1h 5m');
    expect(system).toContain('"Celeste"');
    expect(system).toContain('"Any% speedruns all day"');
    expect(system).toContain('42 viewers');
    expect(system).not.toContain(question);
    expect(userMessages(request).at(-1)).toBe(`modmary: ${question}`);
  });

  it('remembers the conversation of a channel across messages', async () => {
    const channel = unique('chan');
    fake.replyOnce({ text: 'Nice to meet you, alice! Blue is a great colour.' }, { text: 'You told me blue.' });
    const { ask } = await start(openaiEnv());
    await ask(chat({ text: 'my favourite colour is blue', channel }));
    const second = await ask(chat({ text: 'what is my favourite colour?', channel, login: 'alice' }));
    expect(replyOf(second)).toBe('You told me blue.');
    const request = fake.requests[1]!;
    expect(request.messages.map((m) => `${m.role}:${m.text}`)).toEqual([
      `system:${request.system[0]}`,
      'user:alice: my favourite colour is blue',
      'assistant:Nice to meet you, alice! Blue is a great colour.',
      'user:alice: what is my favourite colour?',
    ]);
    // Another channel has its own memory.
    await ask(chat({ text: 'hello', channel: unique('other') }));
    expect(fake.requests[2]!.messages.filter((m) => m.role !== 'system')).toHaveLength(1);
    expect(await store.getConversation(`twitch:${channel}`)).toHaveLength(4);
  });

  it('runs a tool the model asks for and answers with its result', async () => {
    const channel = unique('chan');
    await seedStream(channel);
    fake.reply((request) => {
      const result = request.toolResults[0];
      if (!result) return { toolCalls: [{ name: 'stream_status', args: {} }] };
      const status = JSON.parse(result.output) as { game: string; uptime: string };
      return { text: `We are playing ${status.game}, live for ${status.uptime}.` };
    });
    const { ask } = await start(openaiEnv());
    const final = await ask(chat({ text: 'what game is this?', channel }));
    expect(replyOf(final)).toBe('We are playing Celeste, live for 1h 5m.');
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[0]!.tools).toEqual(expect.arrayContaining(['stream_status', 'user_info', 'list_commands']));
    const toolResult = JSON.parse(fake.requests[1]!.toolResults[0]!.output);
    expect(toolResult).toMatchObject({ online: true, game: 'Celeste', title: 'Any% speedruns all day', viewerCount: 42 });
    const answered = final.annotations!.find((a) => a.label === 'answered')!;
    expect(answered.payload).toMatchObject({ steps: 2, tools: [expect.objectContaining({ tool: 'stream_status', outcome: 'ok' })] });
  });

  it('never offers or runs a moderator tool for a viewer, and does for a moderator', async () => {
    const channel = unique('chan');
    const target = unique('target');
    await store.touchUser({ platform: 'twitch', userId: `u-${target}`, login: target, at: new Date().toISOString() });
    const platformCalls: string[] = [];
    fake.reply((request) => {
      if (request.toolResults.length > 0) return { text: `done: ${request.toolResults[0]!.output.slice(0, 80)}` };
      return { toolCalls: [{ name: 'set_user_role', args: { login: target, role: 'trusted', action: 'add' } }] };
    });
    const { ask } = await start(openaiEnv(), { onPlatformToolCall: (event) => platformCalls.push(`${event.tool}:${event.outcome}`) });

    await ask(chat({ text: `please make ${target} trusted`, channel, login: 'viewervic', role: 'viewer' }));
    expect(fake.requests[0]!.tools).not.toContain('set_user_role');
    expect(fake.requests[0]!.system[0]).not.toContain('set_user_role');
    // The model called it anyway: the SDK refused (unknown tool), nothing ran, the roles are unchanged.
    expect(fake.requests[1]!.toolResults[0]!.output).toMatch(/unavailable tool 'set_user_role'/);
    expect(platformCalls).toEqual([]);
    expect((await store.findUserByLogin('twitch', target))!.roles).toEqual([]);

    fake.requests.length = 0;
    const final = await ask(chat({ text: `please make ${target} trusted`, channel, login: 'modmary', role: 'moderator' }));
    expect(fake.requests[0]!.tools).toContain('set_user_role');
    expect(platformCalls).toEqual(['set_user_role:ok']);
    expect((await store.findUserByLogin('twitch', target))!.roles).toEqual(['trusted']);
    expect(replyOf(final)).toMatch(/^done: /);
  });

  it('retries a provider 500 and finalizes the event as failed after maxAttempts', async () => {
    fake.reply({ status: 500, message: 'upstream exploded' });
    const { ask } = await start(openaiEnv());
    const final = await ask(chat({ text: 'hello?', channel: unique('chan') }));
    expect(fake.requests).toHaveLength(3);
    expect(final.outcome).toBe('failed');
    expect(final.routingSlip[0]).toMatchObject({ status: 'ERROR', attempt: 3, error: { code: 'PROVIDER_ERROR', retryable: true } });
    expect(final.errors![0]!.message).toMatch(/provider error 500: upstream exploded \(gave up after 3 attempts\)/);
    expect(replyOf(final)).toBeUndefined();
  });

  it('treats a dropped connection as retryable and a 4xx as permanent', async () => {
    fake.replyOnce({ drop: true });
    fake.reply({ text: 'second time lucky' });
    const { ask } = await start(openaiEnv());
    const recovered = await ask(chat({ text: 'hello?', channel: unique('chan') }));
    expect(replyOf(recovered)).toBe('second time lucky');
    expect(recovered.routingSlip[0]).toMatchObject({ status: 'OK', attempt: 2 });

    fake.requests.length = 0;
    fake.reply({ status: 401, message: `Incorrect API key provided: ${API_KEY}` });
    const rejected = await ask(chat({ text: 'hello?', channel: unique('chan') }));
    expect(fake.requests).toHaveLength(1);
    expect(rejected.routingSlip[0]).toMatchObject({ status: 'ERROR', attempt: 1, error: { code: 'PROVIDER_ERROR', retryable: false } });
    expect(rejected.errors![0]!.message).toContain('check the API key');
    expect(JSON.stringify(rejected)).not.toContain(API_KEY);
  });

  it('fails with DEADLINE when the model does not answer within LLM_TIMEOUT_MS', async () => {
    fake.reply({ delayMs: 5_000, text: 'too late' });
    const { ask } = await start(openaiEnv({ LLM_TIMEOUT_MS: '300' }));
    const started = Date.now();
    const final = await ask(chat({ text: 'are you there?', channel: unique('chan') }));
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(final.outcome).toBe('failed');
    expect(final.routingSlip[0]).toMatchObject({ status: 'ERROR', attempt: 1, error: { code: 'DEADLINE', retryable: false } });
    expect(final.errors![0]!.message).toContain('300 ms');
  });

  it('rate-limits per user and per channel with an annotation and no reply', async () => {
    // The windows are clock minutes: start one second into a minute on a clock that runs at real speed
    // (only Date is faked), so the whole test stays inside one window however slowly it runs.
    vi.useFakeTimers({ toFake: ['Date'], now: Math.ceil(Date.now() / 60_000) * 60_000 + 1_000, shouldAdvanceTime: true });
    onTestFinished(() => void vi.useRealTimers());
    const channel = unique('chan');
    const { ask } = await start(openaiEnv({ LLM_USER_RATE_PER_MIN: '2', LLM_CHANNEL_RATE_PER_MIN: '3' }));
    const a1 = await ask(chat({ text: 'q1', channel, login: 'spammy' }));
    const a2 = await ask(chat({ text: 'q2', channel, login: 'spammy' }));
    const a3 = await ask(chat({ text: 'q3', channel, login: 'spammy' }));
    expect([replyOf(a1), replyOf(a2)]).toEqual([expect.any(String), expect.any(String)]);
    expect(replyOf(a3)).toBeUndefined();
    expect(a3.outcome).toBe('handled');
    expect(a3.annotations!.find((a) => a.label === 'rate-limited')!.payload).toMatchObject({ scope: 'user', limitPerMinute: 2 });

    const b1 = await ask(chat({ text: 'q4', channel, login: 'polite' }));
    const b2 = await ask(chat({ text: 'q5', channel, login: 'polite' }));
    expect(replyOf(b1)).toEqual(expect.any(String));
    expect(b2.annotations!.find((a) => a.label === 'rate-limited')!.payload).toMatchObject({ scope: 'channel', limitPerMinute: 3 });
    expect(fake.requests).toHaveLength(3);
  });

  it('counts tokens from usage and says it is out of words once the daily budget is spent', async () => {
    const channel = unique('chan');
    const before = await tokensSpentToday(store);
    fake.reply({ text: 'A budget-conscious answer.', usage: { input: 120, output: 30 } });
    const { ask } = await start(openaiEnv({ LLM_DAILY_TOKEN_BUDGET: String(before + 100) }));
    const first = await ask(chat({ text: 'tell me something', channel }));
    expect(replyOf(first)).toBe('A budget-conscious answer.');
    expect(first.annotations!.find((a) => a.label === 'answered')!.payload).toMatchObject({ tokens: 150 });
    expect(await tokensSpentToday(store)).toBe(before + 150);

    const second = await ask(chat({ text: 'and another thing', channel }));
    expect(replyOf(second)).toBe(OUT_OF_WORDS_REPLY);
    expect(labels(second)).toContain('budget-exhausted');
    const third = await ask(chat({ text: 'hello?', channel }));
    expect(replyOf(third)).toBeUndefined();
    expect(labels(third)).toContain('budget-exhausted');
    expect(fake.requests).toHaveLength(1);
  });

  it('caps a user at LLM_USER_DAILY_TOKENS: told once, then only annotated, while others are still answered', async () => {
    const channel = unique('chan');
    const greedy = unique('greedy');
    fake.reply({ text: 'Here is a long answer.', usage: { input: 120, output: 30 } });
    const { ask } = await start(openaiEnv({ LLM_USER_DAILY_TOKENS: '100' }));
    expect(replyOf(await ask(chat({ text: 'first', channel, login: greedy })))).toBe('Here is a long answer.');

    const second = await ask(chat({ text: 'second', channel, login: greedy }));
    expect(replyOf(second)).toBe(`@${greedy} ${USER_CAP_REPLY}`);
    expect(second.outcome).toBe('handled');
    expect(second.annotations!.find((a) => a.label === 'user-capped')!.payload).toMatchObject({
      scope: 'user-tokens',
      spent: 150,
      cap: 100,
    });
    const third = await ask(chat({ text: 'third', channel, login: greedy }));
    expect(replyOf(third)).toBeUndefined();
    expect(labels(third)).toContain('user-capped');

    expect(replyOf(await ask(chat({ text: 'mine', channel, login: unique('other') })))).toBe('Here is a long answer.');
    expect(fake.requests).toHaveLength(2);
  });

  it('prices usage per model, caps a user and the day at their dollar caps, and reports the spend on /api/llm/usage', async () => {
    const channel = unique('chan');
    const [first, second, third] = [unique('payer'), unique('payer'), unique('payer')];
    // 120 input tokens at $2/MTok + 30 output tokens at $10/MTok = $0.00054 per answer.
    const perAnswer = 0.00054;
    const dayBefore = await store.incrementCounter(usageKeys.cost(Date.now()), 0);
    fake.reply({ text: 'Priced answer.', usage: { input: 120, output: 30 } });
    const { ask } = await start(
      openaiEnv({
        LLM_PRICE_INPUT_PER_MTOK: '2',
        LLM_PRICE_OUTPUT_PER_MTOK: '10',
        LLM_USER_DAILY_COST_USD: '0.0005',
        LLM_DAILY_COST_USD: String(dayBefore + 1.5 * perAnswer),
        LLM_DAILY_TOKEN_BUDGET: '0',
        API_GATEWAY_TOKENS: 'owner-token-for-usage:owner',
      }),
      {},
      true,
    );
    expect(replyOf(await ask(chat({ text: 'q', channel, login: first })))).toBe('Priced answer.');
    const capped = await ask(chat({ text: 'again', channel, login: first }));
    expect(capped.annotations!.find((a) => a.label === 'user-capped')!.payload).toMatchObject({ scope: 'user-cost', cap: 0.0005 });
    expect(replyOf(capped)).toBe(`@${first} ${USER_CAP_REPLY}`);

    expect(replyOf(await ask(chat({ text: 'q', channel, login: second })))).toBe('Priced answer.');
    // The day has now cost more than its cap: everyone is refused, with the budget notice.
    const overDay = await ask(chat({ text: 'q', channel, login: third }));
    expect(overDay.annotations!.find((a) => a.label === 'budget-exhausted')!.payload).toMatchObject({ scope: 'daily-cost' });
    expect(replyOf(overDay)).toBe(OUT_OF_WORDS_REPLY);
    expect(fake.requests).toHaveLength(2);

    const headers = { authorization: 'Bearer owner-token-for-usage' };
    const usage = await host!.app.inject({ method: 'GET', url: '/api/llm/usage?top=100', headers });
    expect(usage.statusCode).toBe(200);
    const report = usage.json();
    expect(report.costUsd).toBeCloseTo(dayBefore + 2 * perAnswer, 9);
    expect(report.caps).toEqual({
      dailyTokens: 0,
      dailyCostUsd: dayBefore + 1.5 * perAnswer,
      userDailyTokens: 0,
      userDailyCostUsd: 0.0005,
      model: 'gpt-test',
      pricePerMTok: { input: 2, output: 10 },
    });
    const mine = report.topUsers.filter((entry: { user: string }) =>
      [first, second, third].some((login) => entry.user === `twitch:u-${login}`),
    );
    expect(mine.map((entry: { user: string }) => entry.user).sort()).toEqual([`twitch:u-${first}`, `twitch:u-${second}`].sort());
    for (const entry of mine) {
      expect(entry.tokens).toBe(150);
      expect(entry.costUsd).toBeCloseTo(perAnswer, 9);
    }
    expect((await host!.app.inject({ method: 'GET', url: '/api/llm/usage' })).statusCode).toBe(401);
    expect((await host!.app.inject({ method: 'GET', url: '/api/llm/usage?top=0', headers })).statusCode).toBe(400);
  });

  it('caps with the same per-model price the cost metric uses (LLM_PRICES), with no LLM_PRICE_* set', async () => {
    const channel = unique('chan');
    const payer = unique('payer');
    fake.reply({ text: 'Priced by the table.', usage: { input: 120, output: 30 } });
    const { ask } = await start(
      openaiEnv({ LLM_PRICES: '{"gpt-test":{"input":2,"output":10}}', LLM_USER_DAILY_COST_USD: '0.0005', LLM_DAILY_TOKEN_BUDGET: '0' }),
    );
    const metric = async () =>
      (await host!.metrics.platform.llmCostUsd.get()).values.find((value) => value.labels.model === 'gpt-test')?.value ?? 0;
    const before = await metric();
    expect(replyOf(await ask(chat({ text: 'q', channel, login: payer })))).toBe('Priced by the table.');
    // 120 × $2 + 30 × $10 per million tokens, in the metric and in the user's counter alike.
    expect((await metric()) - before).toBeCloseTo(0.00054, 12);
    expect(await store.incrementCounter(usageKeys.userCost(Date.now(), `twitch:u-${payer}`), 0)).toBeCloseTo(0.00054, 12);
    const capped = await ask(chat({ text: 'again', channel, login: payer }));
    expect(capped.annotations!.find((a) => a.label === 'user-capped')!.payload).toMatchObject({ scope: 'user-cost', cap: 0.0005 });
  });

  it('refuses a negative or non-numeric price or cap at start-up, naming each', async () => {
    await expect(start(openaiEnv({ LLM_PRICE_INPUT_PER_MTOK: '-1', LLM_USER_DAILY_COST_USD: 'lots' }))).rejects.toThrow(
      /LLM_PRICE_INPUT_PER_MTOK[\s\S]*LLM_USER_DAILY_COST_USD|LLM_USER_DAILY_COST_USD[\s\S]*LLM_PRICE_INPUT_PER_MTOK/,
    );
  });

  it('skips with a not-configured annotation when no provider is set', async () => {
    const { ask } = await start({ OPENAI_API_KEY: API_KEY });
    const final = await ask(chat({ text: 'hello bot', channel: unique('chan') }));
    expect(final.routingSlip[0]!.status).toBe('SKIP');
    expect(replyOf(final)).toBeUndefined();
    const annotation = final.annotations!.find((a) => a.label === 'not-configured')!;
    expect(annotation.payload!.reason).toMatch(/LLM_PROVIDER/);
    expect(fake.requests).toHaveLength(0);
  });

  describe('with Vertex AI', () => {
    let vertex: FakeVertex;
    beforeAll(async () => {
      vertex = await startFakeVertex();
    });
    afterAll(async () => {
      await vertex?.stop();
    });

    it('answers through the Gemini API, tools included, without real Google credentials', async () => {
      const channel = unique('chan');
      await seedStream(channel);
      vertex.reply((request) =>
        request.toolResults.length === 0
          ? { toolCalls: [{ name: 'stream_status', args: {} }] }
          : { text: `Gemini says: ${JSON.parse(request.toolResults[0]!.output).game}` },
      );
      const { ask } = await start(
        {
          LLM_PROVIDER: 'vertex',
          LLM_MODEL: 'gemini-test',
          VERTEX_PROJECT: vertex.project,
          VERTEX_LOCATION: vertex.location,
          VERTEX_BASE_URL: vertex.baseURL,
          BOT_NAME: 'BratBot',
          LLM_DAILY_TOKEN_BUDGET: '0',
        },
        // A pre-authorized auth client instead of Application Default Credentials.
        { vertexAuth: { authClient: { getAccessToken: async () => ({ token: 'ya29.fake-access-token' }) } as never } },
      );
      const final = await ask(chat({ text: 'what game?', channel, role: 'subscriber' }));
      expect(replyOf(final)).toBe('Gemini says: Celeste');
      expect(vertex.requests).toHaveLength(2);
      const request = vertex.requests[0]!;
      expect(request.path).toBe(
        `/v1beta1/projects/${vertex.project}/locations/${vertex.location}/publishers/google/models/gemini-test:generateContent`,
      );
      expect(request.headers.authorization).toBe('Bearer ya29.fake-access-token');
      expect(request.system[0]).toMatch(/BratBot[\s\S]*role: subscriber/);
      expect(request.tools).toContain('stream_status');
      expect(final.annotations!.find((a) => a.label === 'answered')!.payload).toMatchObject({ provider: 'vertex', model: 'gemini-test' });
    });
  });

  describe('with an external MCP server over stdio', () => {
    it('offers its tools by policy, runs an allowed one and never a forbidden one', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'mcp-echo-'));
      const logFile = path.join(dir, 'calls.jsonl');
      const servers = [
        {
          name: 'echo',
          command: path.join(ROOT, 'node_modules/.bin/tsx'),
          args: [path.join(ROOT, 'test/fakes/mcp-echo-server.ts'), '--stdio'],
          env: { MCP_ECHO_LOG: logFile },
          minRole: 'viewer',
          tools: { wipe_chat: { minRole: 'broadcaster' } },
        },
      ];
      fake.reply((request) => {
        if (request.toolResults.length > 0) return { text: request.toolResults.map((r) => r.output).join(' | ') };
        return {
          toolCalls: [
            { name: 'echo_echo', args: { text: 'ping' } },
            { name: 'echo_wipe_chat', args: {} },
          ],
        };
      });
      const { ask } = await start(openaiEnv({ MCP_SERVERS: JSON.stringify(servers) }));
      const final = await ask(chat({ text: 'echo ping and wipe the chat', channel: unique('chan'), login: 'viewervic', role: 'viewer' }));
      expect(fake.requests[0]!.tools).toEqual(expect.arrayContaining(['echo_echo', 'echo_add', 'stream_status']));
      expect(fake.requests[0]!.tools).not.toContain('echo_wipe_chat');
      expect(replyOf(final)).toMatch(/^echo: ping \| Model tried to call unavailable tool 'echo_wipe_chat'/);
      const calls = readFileSync(logFile, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      expect(calls.map((call) => call.tool)).toEqual(['echo']);
      // The server learns who asked.
      expect(calls[0].meta['bitbrat/requester']).toMatchObject({ login: 'viewervic', role: 'viewer' });

      // A broadcaster gets the dangerous tool.
      fake.requests.length = 0;
      fake.reply((request) => (request.toolResults.length > 0 ? { text: 'wiped' } : { toolCalls: [{ name: 'echo_wipe_chat', args: {} }] }));
      await ask(chat({ text: 'wipe it', channel: unique('chan'), login: 'streamer', role: 'broadcaster' }));
      expect(fake.requests[0]!.tools).toContain('echo_wipe_chat');
      expect(existsSync(logFile) && readFileSync(logFile, 'utf8')).toContain('"tool":"wipe_chat"');
    });
  });
  describe('with an external MCP server over streamable HTTP', () => {
    it('gates a whole server by allowedRoles', async () => {
      const calls: EchoCall[] = [];
      const web = await startEchoHttpServer((call) => calls.push(call));
      try {
        fake.reply((request) =>
          request.toolResults.length > 0
            ? { text: `sum is ${request.toolResults[0]!.output}` }
            : { toolCalls: [{ name: 'web_add', args: { a: 2, b: 40 } }] },
        );
        const { ask } = await start(
          openaiEnv({ MCP_SERVERS: JSON.stringify([{ name: 'web', url: web.url, allowedRoles: ['subscriber', 'vip'] }]) }),
        );
        const sub = await ask(chat({ text: 'what is 2 + 40?', channel: unique('chan'), login: 'subsam', role: 'subscriber' }));
        expect(fake.requests[0]!.tools).toEqual(expect.arrayContaining(['web_echo', 'web_add', 'web_wipe_chat']));
        expect(replyOf(sub)).toBe('sum is {"sum":42}');
        expect(calls.map((call) => call.tool)).toEqual(['add']);

        fake.requests.length = 0;
        await ask(chat({ text: 'what is 2 + 40?', channel: unique('chan'), login: 'modmary', role: 'moderator' }));
        // Not in allowedRoles, even though a moderator outranks a subscriber.
        expect(fake.requests[0]!.tools.filter((name) => name.startsWith('web_'))).toEqual([]);
        expect(calls).toHaveLength(1);
      } finally {
        await web.stop();
      }
    });

    it('keeps answering without a server that cannot be reached', async () => {
      fake.reply({ text: 'still here' });
      const { ask } = await start(openaiEnv({ MCP_SERVERS: JSON.stringify([{ name: 'gone', url: 'http://127.0.0.1:9/mcp' }]) }));
      const final = await ask(chat({ text: 'hello?', channel: unique('chan') }));
      expect(replyOf(final)).toBe('still here');
      expect(host!.health.snapshot()['llm-bot.mcp']?.detail).toMatch(/unavailable: gone/);
    });
  });
});

describe('the fake LLM servers speak the real wire protocols', () => {
  it('serve chat completions and responses, streaming and not, with tool calls and usage', async () => {
    const fake = await startFakeOpenAI();
    try {
      const openai = createOpenAI({ baseURL: fake.baseURL, apiKey: 'sk-test' });
      const tools = {
        lookup: tool({
          description: 'looks up',
          inputSchema: jsonSchema<{ q: string }>({ type: 'object', properties: { q: { type: 'string' } }, required: ['q'] }),
          execute: async ({ q }) => `found ${q}`,
        }),
      };
      fake.reply((request) =>
        request.toolResults.length === 0
          ? { toolCalls: [{ name: 'lookup', args: { q: 'x' } }] }
          : { text: `answer: ${request.toolResults[0]!.output}`, usage: { input: 10, output: 5 } },
      );
      for (const model of [openai.chat('m'), openai.responses('m')]) {
        const generated = await generateText({ model, system: 'S', prompt: 'q', tools, stopWhen: stepCountIs(3), maxRetries: 0 });
        expect(generated.text).toBe('answer: found x');
        expect(generated.steps.at(-1)!.usage).toMatchObject({ inputTokens: 10, outputTokens: 5 });
        const streamed = streamText({ model, system: 'S', prompt: 'q', tools, stopWhen: stepCountIs(3), maxRetries: 0 });
        expect(await streamed.text).toBe('answer: found x');
      }
      expect(fake.requests.map((r) => `${r.api}:${r.stream}`)).toEqual([
        'chat:false',
        'chat:false',
        'chat:true',
        'chat:true',
        'responses:false',
        'responses:false',
        'responses:true',
        'responses:true',
      ]);
      expect(fake.requests.every((r) => r.system[0] === 'S' && r.tools[0] === 'lookup')).toBe(true);
    } finally {
      await fake.stop();
    }
  });

  it('serves Gemini generateContent and streamGenerateContent', async () => {
    const vertex = await startFakeVertex();
    try {
      const provider = createVertex({
        project: vertex.project,
        location: vertex.location,
        baseURL: vertex.baseURL,
        googleAuthOptions: { authClient: { getAccessToken: async () => ({ token: 't' }) } as never },
      });
      vertex.reply({ text: 'gemini here', usage: { input: 7, output: 3 } });
      const generated = await generateText({ model: provider('gemini-x'), prompt: 'hi', maxRetries: 0 });
      expect(generated.text).toBe('gemini here');
      expect(generated.usage).toMatchObject({ inputTokens: 7, outputTokens: 3, totalTokens: 10 });
      expect(await streamText({ model: provider('gemini-x'), prompt: 'hi', maxRetries: 0 }).text).toBe('gemini here');
      expect(vertex.requests.map((r) => r.stream)).toEqual([false, true]);
      vertex.reply({ status: 503 });
      await expect(generateText({ model: provider('gemini-x'), prompt: 'hi', maxRetries: 0 })).rejects.toMatchObject({
        statusCode: 503,
        isRetryable: true,
      });
    } finally {
      await vertex.stop();
    }
  });
});
