/**
 * LLM-bot step overhead: chat questions through the real llm-bot service (memory bus, PGlite store,
 * real AI SDK + OpenAI provider) against the fake OpenAI server answering with zero model latency, so
 * what is measured is BitBrat's own cost per answer: slip bookkeeping, rate-limit and budget counters,
 * stream state and conversation memory reads/writes, prompt building, guards, tool listing, the HTTP
 * round trip to the fake and the finalization hop. Also reports the bare `generateText` round trip to
 * the same fake for comparison. Prints requests/s and p50/p99 latency in ms.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { generateText } from 'ai';
import { createMemoryBus } from '../src/bus/index.js';
import { createEnvelope, createStep, Topic, type Envelope } from '../src/core/index.js';
import { createHost } from '../src/runtime/index.js';
import { createLlmBotService } from '../src/services/llm-bot/index.js';
import { createStore } from '../src/store/index.js';
import { startFakeOpenAI } from '../test/fakes/openai.js';
import { testArchitecture } from '../test/support/harness.js';
import { percentile, round } from './stats.js';

const LLM_TOPIC = 'internal.llm-bot.v1';

const architecture = testArchitecture([{ name: 'llm-bot', consumes: [LLM_TOPIC] }]);

const QUESTIONS = [
  'what game is this?',
  'how long has the stream been live?',
  'any tips for the next level?',
  'who made this game?',
  'what is the title today?',
  'hi BratBot, how are you?',
];

export async function benchLlmBot(
  options: { sequential?: number; concurrent?: number; window?: number } = {},
): Promise<Record<string, unknown>> {
  const sequential = options.sequential ?? 300;
  const concurrent = options.concurrent ?? 1_000;
  const window = options.window ?? 8;
  const fake = await startFakeOpenAI({
    defaultScript: { text: 'We are playing Celeste, live for about an hour. Good luck on the next level!' },
  });
  const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
  await store.init();
  const bus = createMemoryBus();
  const host = await createHost({
    services: [createLlmBotService()],
    bus,
    store,
    env: {
      LOG_LEVEL: 'silent',
      MAX_IN_FLIGHT: String(window * 2),
      LLM_PROVIDER: 'openai',
      LLM_MODEL: 'gpt-bench',
      OPENAI_BASE_URL: fake.baseURL,
      OPENAI_API_KEY: 'sk-bench-0000000000000000000000',
      BOT_NAME: 'BratBot',
      // Limits on, but never reached: their store round trips are part of the measured cost.
      LLM_DAILY_TOKEN_BUDGET: String(1e12),
      LLM_USER_RATE_PER_MIN: String(1e9),
      LLM_CHANNEL_RATE_PER_MIN: String(1e9),
    },
    architecture,
    listen: false,
    defaultMetrics: false,
  });
  await host.start();
  const channels = Array.from({ length: 8 }, (_, i) => `bench_channel_${i}`);
  for (const [i, channel] of channels.entries()) {
    await store.mergeSource({
      id: `twitch:${channel}-id`,
      platform: 'twitch',
      streamStatus: 'online',
      viewerCount: 100 + i,
      metadata: { title: 'Bench stream', game: 'Celeste', startedAt: new Date(Date.now() - 3_600_000).toISOString() },
    });
  }

  const encoder = new TextEncoder();
  const waiting = new Map<string, (envelope: Envelope) => void>();
  let finished = 0;
  let replies = 0;
  await bus.subscribe(Topic.finalizer, 'bench-observer', async (message) => {
    const envelope = JSON.parse(new TextDecoder().decode(message.data)) as Envelope;
    finished += 1;
    if (envelope.candidates?.some((candidate) => candidate.source === 'llm-bot')) replies += 1;
    waiting.get(envelope.id)?.(envelope);
    waiting.delete(envelope.id);
    await message.ack();
  });
  const ask = async (i: number): Promise<void> => {
    const channel = channels[i % channels.length]!;
    const login = `viewer${i % 50}`;
    const text = QUESTIONS[i % QUESTIONS.length]!;
    const envelope = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'twitch', channel, channelId: `${channel}-id` },
      user: {
        id: `u-${login}`,
        name: login,
        displayName: login,
        profileImageUrl: '',
        role: i % 10 === 0 ? 'moderator' : 'viewer',
        permissions: ['chat'],
      },
      payload: { text },
      routingSlip: [createStep('llm-bot')],
      extra: { message: { text } },
    });
    const done = new Promise<Envelope>((resolve) => waiting.set(envelope.id, resolve));
    await bus.publish(LLM_TOPIC, encoder.encode(JSON.stringify(envelope)));
    await done;
  };

  try {
    for (let i = 0; i < 20; i += 1) await ask(i); // warm-up (JIT, connections, tables)

    const latencies: number[] = [];
    const seqStarted = performance.now();
    for (let i = 0; i < sequential; i += 1) {
      const t0 = performance.now();
      await ask(i);
      latencies.push(performance.now() - t0);
    }
    const seqElapsed = performance.now() - seqStarted;

    const concLatencies: number[] = [];
    let next = 0;
    const concStarted = performance.now();
    await Promise.all(
      Array.from({ length: window }, async () => {
        while (next < concurrent) {
          const i = next++;
          const t0 = performance.now();
          await ask(i);
          concLatencies.push(performance.now() - t0);
        }
      }),
    );
    const concElapsed = performance.now() - concStarted;

    // The same model call without BitBrat around it.
    const model = createOpenAI({ baseURL: fake.baseURL, apiKey: 'sk-bench' }).chat('gpt-bench');
    const raw: number[] = [];
    for (let i = 0; i < 200; i += 1) {
      const t0 = performance.now();
      await generateText({ model, system: 'You are a bot.', prompt: QUESTIONS[i % QUESTIONS.length]!, maxRetries: 0 });
      raw.push(performance.now() - t0);
    }

    return {
      bench: 'llm-bot',
      modelLatencyMs: 0,
      sequential: {
        requests: sequential,
        requestsPerSec: round((sequential / seqElapsed) * 1000, 1),
        p50Ms: round(percentile(latencies, 50)),
        p99Ms: round(percentile(latencies, 99)),
      },
      concurrent: {
        requests: concurrent,
        window,
        requestsPerSec: round((concurrent / concElapsed) * 1000, 1),
        p50Ms: round(percentile(concLatencies, 50)),
        p99Ms: round(percentile(concLatencies, 99)),
      },
      bareGenerateText: { p50Ms: round(percentile(raw, 50)), p99Ms: round(percentile(raw, 99)) },
      overheadP50Ms: round(percentile(latencies, 50) - percentile(raw, 50)),
      finalized: finished,
      replies,
      modelRequests: fake.requests.length,
    };
  } finally {
    await host.stop();
    await bus.close();
    await store.close();
    await fake.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(await benchLlmBot()) + '\n');
  process.exit(0);
}
