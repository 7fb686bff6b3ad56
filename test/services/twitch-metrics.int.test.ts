/**
 * The Twitch connector's numbers in /metrics, read from a running ingress-egress (real Twurple client
 * against the fake Twitch chat server): messages received and sent, the connected gauge, reconnects,
 * replies by result including RATE_LIMITED, and the egress queue depth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReply, type Envelope } from '../../src/core/index.js';
import { loadArchitecture } from '../../src/runtime/index.js';
import service from '../../src/services/ingress-egress/index.js';
import { useFakeTwitch } from '../fakes/twitch-api.js';
import { startFakeTwitchIrc, type FakeTwitchIrc } from '../fakes/twitch-irc.js';
import { waitUntilReady } from '../support/harness.js';
import { useStoreAndServices, type StoreAndServices } from '../support/service-test.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'metrics-chat-token-0123456';
const CHANNEL = 'metricschan';

/** The value of one series in Prometheus text format, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => have[key] === value)) return Number(match[3]);
  }
  return undefined;
}

describe('Twitch metrics in /metrics', () => {
  let fake: FakeTwitchIrc;
  let restoreTwurple: (() => void) | undefined;
  let running: StoreAndServices;
  const scrape = async () => (await running.host.app.inject({ method: 'GET', url: '/metrics' })).body;

  beforeAll(async () => {
    fake = await startFakeTwitchIrc({ acceptTokens: [TOKEN] });
    restoreTwurple = useFakeTwitch(fake);
  });
  afterAll(async () => {
    await fake?.stop();
    restoreTwurple?.();
  });
  useStoreAndServices({
    host: () => ({
      services: [service],
      observe: ['internal.ingress.v1', 'internal.finalizer.v1'],
      architecture: loadArchitecture(),
      env: {
        INSTANCE_ID: 'metrics-1',
        TWITCH_BOT_USERNAME: 'bitbrat_bot',
        TWITCH_CHANNELS: CHANNEL,
        TWITCH_IRC_URL: fake.url,
        TWITCH_ACCESS_TOKEN: TOKEN,
        IRC_RECONNECT_INITIAL_MS: '100',
        IRC_RECONNECT_MAX_MS: '300',
        SOURCE_HEARTBEAT_MS: '200',
      },
    }),
    started: async (started) => {
      running = started;
      await waitUntilReady(running.host, { message: 'readyz after joining' });
    },
  });

  const chat = async (text: string) => {
    const id = fake.sendChat({ channel: CHANNEL, user: 'viewer', text });
    return (await running.observer.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
  };
  const reply = async (incoming: Envelope, text: string) => {
    await running.bus.publish(
      'internal.egress.v1',
      new TextEncoder().encode(JSON.stringify({ ...incoming, candidates: [createReply('commands', text)] })),
    );
    return (await running.observer.waitFor('internal.finalizer.v1', (value) => value.id === incoming.id)) as Envelope;
  };

  it('shows the connection as connected and counts received and sent chat messages per channel', async () => {
    expect(sample(await scrape(), 'bitbrat_connector_connected', { platform: 'twitch' })).toBe(1);
    const incoming = await chat('!hello');
    expect(sample(await scrape(), 'bitbrat_chat_messages_received_total', { platform: 'twitch', channel: CHANNEL })).toBe(1);
    const final = await reply(incoming, 'hello back');
    expect(final.delivery).toMatchObject({ delivered: true });
    const text = await scrape();
    expect(sample(text, 'bitbrat_chat_messages_sent_total', { platform: 'twitch', channel: CHANNEL })).toBe(1);
    expect(sample(text, 'bitbrat_egress_replies_total', { platform: 'twitch', result: 'delivered' })).toBe(1);
    expect(sample(text, 'bitbrat_egress_queue_depth', { platform: 'twitch', channel: CHANNEL })).toBe(0);
  });

  it('counts a reply Twitch refuses as RATE_LIMITED', async () => {
    const incoming = await chat('!spam');
    fake.setRateLimit({ max: 0, windowMs: 30_000 });
    try {
      const final = await reply(incoming, 'refused');
      expect(final.delivery).toMatchObject({ delivered: false, reason: 'RATE_LIMITED' });
    } finally {
      fake.setRateLimit(undefined);
    }
    const text = await scrape();
    expect(sample(text, 'bitbrat_egress_rate_limited_total', { platform: 'twitch', channel: CHANNEL })).toBe(1);
    expect(sample(text, 'bitbrat_egress_replies_total', { platform: 'twitch', result: 'RATE_LIMITED' })).toBe(1);
  });

  it('counts a reconnect after the connection drops, and the gauge follows the connection', async () => {
    fake.dropConnections();
    await waitFor(async () => sample(await scrape(), 'bitbrat_connector_reconnects_total', { platform: 'twitch' }) === 1, {
      timeoutMs: 15_000,
      message: 'one reconnect counted',
    });
    await waitFor(async () => sample(await scrape(), 'bitbrat_connector_connected', { platform: 'twitch' }) === 1, {
      timeoutMs: 15_000,
      message: 'connected again',
    });
  });
});
