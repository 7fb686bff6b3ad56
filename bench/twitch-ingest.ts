/**
 * Twitch chat ingestion: the fake Twitch IRC server offers 2 000 chat lines per second for 30 s
 * (BENCH_TWITCH_SECONDS overrides the duration), batched per 10 ms tick into WebSocket frames as Twitch
 * does; the real Twurple ChatClient inside the ingress-egress service turns them into envelopes on
 * internal.ingress.v1 of a memory bus. Latency is from the line leaving the fake to the envelope arriving
 * on the bus.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createMemoryBus } from '../src/bus/index.js';
import type { Envelope } from '../src/core/index.js';
import { createHost } from '../src/runtime/index.js';
import service from '../src/services/ingress-egress/index.js';
import { createStore } from '../src/store/index.js';
import { startFakeTwitchIrc } from '../test/fakes/twitch-irc.js';
import { percentile, round } from './stats.js';

const OFFERED_PER_SEC = 2_000;
const DURATION_MS = Math.max(1, Number(process.env.BENCH_TWITCH_SECONDS ?? '30') || 30) * 1_000;
const TICK_MS = 10;
const DRAIN_TIMEOUT_MS = 15_000;
const CHANNEL = 'benchchan';
const TOKEN = 'bench-chat-token';

const decoder = new TextDecoder();

/** Sustained chat ingestion through the real ChatClient; returns one JSON-able result line. */
export async function benchTwitchIngest(): Promise<Record<string, unknown>> {
  const fake = await startFakeTwitchIrc({ acceptTokens: [TOKEN] });
  const previousMockPort = process.env.TWURPLE_MOCK_API_PORT;
  // Twurple validates the chat token over HTTP; the fake answers /auth/validate on its port.
  process.env.TWURPLE_MOCK_API_PORT = String(fake.port);
  const bus = createMemoryBus();
  const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  const host = await createHost({
    services: [service],
    bus,
    store,
    listen: false,
    defaultMetrics: false,
    env: {
      LOG_LEVEL: 'silent',
      PORT: '0',
      INSTANCE_ID: 'bench',
      TWITCH_BOT_USERNAME: 'bitbrat_bot',
      TWITCH_CHANNELS: CHANNEL,
      TWITCH_IRC_URL: fake.url,
      TWITCH_ACCESS_TOKEN: TOKEN,
      SOURCE_HEARTBEAT_MS: '60000',
    },
  });
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let lastArrival = 0;
  try {
    await bus.subscribe(
      'internal.ingress.v1',
      'bench-observer',
      async (message) => {
        const envelope = JSON.parse(decoder.decode(message.data)) as Envelope;
        const started = envelope.type === 'external.chat.message.v1' ? sentAt.get(String(envelope.payload.messageId)) : undefined;
        if (started !== undefined) {
          lastArrival = performance.now();
          latencies.push(lastArrival - started);
        }
        await message.ack();
      },
      { maxInFlight: 1_000 },
    );
    await host.start();
    const connectedBy = Date.now() + 15_000;
    while (fake.joinedClients(CHANNEL) === 0 || !host.health.isReady()) {
      if (Date.now() > connectedBy) throw new Error('twitch bench: the chat client did not connect');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    const total = Math.round((OFFERED_PER_SEC * DURATION_MS) / 1_000);
    const started = performance.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - started) * OFFERED_PER_SEC) / 1_000));
      if (due > sent) {
        const lines: string[] = [];
        const at = performance.now();
        for (; sent < due; sent += 1) {
          const { id, line } = fake.chatLine({
            channel: CHANNEL,
            user: `viewer${sent % 200}`,
            text: `message ${sent} with a little chat text in it Kappa`,
          });
          sentAt.set(id, at);
          lines.push(line);
        }
        fake.sendLines(CHANNEL, lines);
      }
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
    const sendMs = performance.now() - started;
    const drainBy = performance.now() + DRAIN_TIMEOUT_MS;
    while (latencies.length < total && performance.now() < drainBy) await new Promise((resolve) => setTimeout(resolve, 20));
    const elapsedMs = Math.max(sendMs, lastArrival - started);
    return {
      scenario: 'twitch-ingest',
      offeredPerSec: OFFERED_PER_SEC,
      durationMs: round(sendMs, 0),
      events: latencies.length,
      eventsPerSec: round((latencies.length * 1_000) / elapsedMs, 0),
      p50Ms: round(percentile(latencies, 50)),
      p99Ms: round(percentile(latencies, 99)),
      lost: total - latencies.length,
    };
  } finally {
    await host.stop().catch(() => undefined);
    await store.close().catch(() => undefined);
    await bus.close().catch(() => undefined);
    await fake.stop();
    if (previousMockPort === undefined) delete process.env.TWURPLE_MOCK_API_PORT;
    else process.env.TWURPLE_MOCK_API_PORT = previousMockPort;
  }
}

const isMain = (() => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (isMain) {
  benchTwitchIngest().then(
    (result) => {
      process.stdout.write(JSON.stringify(result) + '\n');
      process.exit(0);
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    },
  );
}
