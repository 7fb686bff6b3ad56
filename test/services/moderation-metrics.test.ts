import { beforeAll, describe, expect, it } from 'vitest';
import { createStep, Topic, type Envelope } from '../../src/core/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { chatEnvelope } from '../support/envelopes.js';
import { startOnMemoryBus, type MemoryBusHost } from '../support/harness.js';
import { releaseAfterAll } from '../support/service-test.js';

const TOPIC = 'internal.query-analyzer.v1';

const chat = (text: string): Envelope =>
  chatEnvelope({
    text,
    source: { platform: 'twitch', channel: 'modchan', channelId: 'modchan-id' },
    user: { id: 'u-1', name: 'someone' },
    routingSlip: [createStep('query-analyzer')],
  });

describe('moderation actions in /metrics', () => {
  let running: MemoryBusHost;

  beforeAll(async () => {
    running = await startOnMemoryBus({
      services: [createQueryAnalyzer()],
      observe: [Topic.finalizer, 'internal.router.v1'],
      env: { ANALYZER_BLOCKLIST: 'buy followers' },
    });
  });
  releaseAfterAll(() => [running?.host, running?.bus]);

  const analyse = async (envelope: Envelope) => {
    await running.bus.publish(TOPIC, new TextEncoder().encode(JSON.stringify(envelope)));
    await running.observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
  };
  const suppressed = async () =>
    (await running.host.metrics.platform.moderationActions.get()).values.find((value) => value.labels.action === 'suppressed')?.value ?? 0;

  it('counts a suppressed spam message per platform and reason, and nothing for a clean one', async () => {
    await analyse(chat('nice run today'));
    expect(await suppressed()).toBe(0);
    await analyse(chat('BUY FOLLOWERS NOW at cheap-viewers.xyz'));
    const values = (await running.host.metrics.platform.moderationActions.get()).values;
    expect(values).toEqual([expect.objectContaining({ labels: { platform: 'twitch', action: 'suppressed', reason: 'spam' }, value: 1 })]);
  });
});
