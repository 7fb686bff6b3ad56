/**
 * What the llm-bot tells an operator about its LLM calls, with the real AI SDK against the fake
 * OpenAI-compatible server: tokens, cost and requests per model in /metrics, and the call as a span
 * (with its token usage) under the llm-bot step's span, exported to the fake OTLP collector.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStep, normalizeTraceId, Topic, type Envelope } from '../../src/core/index.js';
import { permissionsFor } from '../../src/services/auth/roles.js';
import { createLlmBotService } from '../../src/services/llm-bot/index.js';
import { startFakeOpenAI, type FakeOpenAI } from '../fakes/openai.js';
import { startFakeOtlpCollector, type FakeOtlpCollector } from '../fakes/otlp.js';
import { chatEnvelope } from '../support/envelopes.js';
import { release, useStoreAndServices, type StoreAndServices } from '../support/service-test.js';

const LLM_TOPIC = 'internal.llm-bot.v1';

const question = (text: string): Envelope =>
  chatEnvelope({
    text,
    source: { platform: 'twitch', channel: 'llmchan', channelId: 'llmchan-id' },
    user: { id: 'u-alice', name: 'alice', permissions: permissionsFor(['viewer']) },
    routingSlip: [createStep('llm-bot')],
  });

describe('llm-bot metrics and spans', () => {
  let fake: FakeOpenAI;
  let collector: FakeOtlpCollector;
  let running: StoreAndServices;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    collector = await startFakeOtlpCollector();
  });
  afterAll(async () => {
    await release(fake, collector);
  });
  useStoreAndServices({
    host: () => ({
      services: [createLlmBotService()],
      observe: [Topic.finalizer],
      env: {
        LLM_PROVIDER: 'openai',
        LLM_MODEL: 'gpt-test',
        OPENAI_BASE_URL: fake.baseURL,
        OPENAI_API_KEY: 'sk-observability-0123456789abcdef',
        BOT_NAME: 'BratBot',
        LLM_DAILY_TOKEN_BUDGET: '0',
        LLM_USER_RATE_PER_MIN: '0',
        LLM_CHANNEL_RATE_PER_MIN: '0',
        LLM_PRICES: '{"gpt-test":{"input":1,"output":2}}',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
      },
    }),
    started: (started) => {
      running = started;
    },
  });

  it('counts tokens, requests and the cost per model, and traces the call under the step with its usage', async () => {
    fake.reply({ text: 'An answer worth 150 tokens.', usage: { input: 120, output: 30 } });
    const envelope = question('@BratBot what is on today?');
    await running.bus.publish(LLM_TOPIC, new TextEncoder().encode(JSON.stringify(envelope)));
    const final: Envelope = await running.observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id, 20_000);
    expect(final.outcome).toBe('completed');

    const llm = running.host.metrics.platform;
    expect((await llm.llmTokens.get()).values.map((value) => [value.labels.direction, value.labels.model, value.value])).toEqual(
      expect.arrayContaining([
        ['input', 'gpt-test', 120],
        ['output', 'gpt-test', 30],
      ]),
    );
    expect((await llm.llmCostUsd.get()).values.find((value) => value.labels.model === 'gpt-test')?.value).toBeCloseTo(
      (120 * 1 + 30 * 2) / 1_000_000,
      12,
    );
    expect((await llm.llmRequests.get()).values.find((value) => value.labels.model === 'gpt-test')).toMatchObject({
      labels: { provider: 'openai', result: 'ok' },
      value: 1,
    });

    const traceId = normalizeTraceId(envelope.traceId);
    const spans = (
      await collector.waitFor(
        (all) =>
          all.some((span) => span.traceId === traceId && span.name === 'llm generate_text') &&
          all.some((span) => span.traceId === traceId && span.attributes['bitbrat.step'] === 'llm-bot'),
      )
    ).filter((span) => span.traceId === traceId);
    const call = spans.find((span) => span.name === 'llm generate_text')!;
    const step = spans.find((span) => span.attributes['bitbrat.step'] === 'llm-bot')!;
    expect(call.parentSpanId).toBe(step.spanId);
    expect(call.attributes).toMatchObject({
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-test',
      'gen_ai.usage.input_tokens': 120,
      'gen_ai.usage.output_tokens': 30,
    });
    expect(step.attributes['bitbrat.outcome']).toBe('continue');
  });
});
