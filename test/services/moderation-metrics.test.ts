import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { createEnvelope, createStep, Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { collect, startTestHost } from '../support/harness.js';

const TOPIC = 'internal.query-analyzer.v1';

function chat(text: string): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'modchan', channelId: 'modchan-id' },
    user: { id: 'u-1', name: 'someone', displayName: 'someone', profileImageUrl: '', role: 'viewer' },
    payload: { text },
    routingSlip: [createStep('query-analyzer')],
    extra: { message: { text } },
  });
}

describe('moderation actions in /metrics', () => {
  let bus: MemoryBus;
  let host: Host;
  let observer: Awaited<ReturnType<typeof collect>>;

  beforeAll(async () => {
    bus = createMemoryBus();
    await bus.connect();
    observer = await collect(bus, [Topic.finalizer, 'internal.router.v1']);
    host = await startTestHost({ services: [createQueryAnalyzer()], bus, env: { ANALYZER_BLOCKLIST: 'buy followers' } });
  });
  afterAll(async () => {
    await host?.stop();
    await bus?.close();
  });

  const analyse = async (envelope: Envelope) => {
    await bus.publish(TOPIC, new TextEncoder().encode(JSON.stringify(envelope)));
    await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
  };
  const suppressed = async () =>
    (await host.metrics.platform.moderationActions.get()).values.find((value) => value.labels.action === 'suppressed')?.value ?? 0;

  it('counts a suppressed spam message per platform and reason, and nothing for a clean one', async () => {
    await analyse(chat('nice run today'));
    expect(await suppressed()).toBe(0);
    await analyse(chat('BUY FOLLOWERS NOW at cheap-viewers.xyz'));
    const values = (await host.metrics.platform.moderationActions.get()).values;
    expect(values).toEqual([expect.objectContaining({ labels: { platform: 'twitch', action: 'suppressed', reason: 'spam' }, value: 1 })]);
  });
});
