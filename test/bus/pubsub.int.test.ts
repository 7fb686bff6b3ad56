import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PubSub } from '@google-cloud/pubsub';
import type { BusMessage, MessageBus } from '../../src/bus/index.js';
import {
  createPubSubBus,
  PUBSUB_DEADLETTER_RETAINED_GROUP,
  PUBSUB_DEADLETTER_TOPIC,
  pubsubDeadLetterTopicId,
  pubsubResourceId,
  pubsubSubscriptionId,
  pubsubTopicId,
  type PubSubBusOptions,
} from '../../src/bus/pubsub.js';
import { pubsubEmulatorAvailable, startPubSubEmulator, type PubSubEmulatorHandle } from '../support/pubsub-emulator.js';
import { freePort } from '../support/ports.js';
import { requireServer, waitFor } from '../support/wait.js';
import { describeBusContract } from './bus-contract.js';

const PROJECT = 'bitbrat-test';
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const uniquePrefix = () => `p${Math.random().toString(36).slice(2, 10)}.`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let emulator: PubSubEmulatorHandle | undefined;

/** A plain client for inspecting the emulator; the universe domain keeps it from probing for a metadata server. */
const adminClient = () =>
  new PubSub({ projectId: PROJECT, apiEndpoint: emulator!.host, emulatorMode: true, universeDomain: 'googleapis.com' });

/** Runs `test` with a connected bus on a fresh prefix and an admin client on the emulator; closes both. */
async function withBusAndAdmin(
  test: (bus: MessageBus, admin: PubSub, prefix: string) => Promise<void>,
  options: Partial<PubSubBusOptions> = {},
) {
  const prefix = uniquePrefix();
  const bus = await createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix, ...options });
  const admin = adminClient();
  try {
    await bus.connect();
    await test(bus, admin, prefix);
  } finally {
    await bus.close();
    await admin.close();
  }
}

beforeAll(async () => {
  requireServer(
    'Pub/Sub emulator',
    pubsubEmulatorAvailable(),
    'install google-cloud-cli-pubsub-emulator and a java runtime, or set PUBSUB_EMULATOR_JAR',
  );
  emulator = await startPubSubEmulator();
});

afterAll(async () => {
  await emulator?.stop();
});

describeBusContract('pubsub', { create: async (prefix) => createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix }) });

describe('pubsub resource names', () => {
  it('keeps valid names unchanged and maps a group to `${topicId}--${group}`', () => {
    expect(pubsubTopicId('', 'internal.ingress.v1')).toBe('internal.ingress.v1');
    expect(pubsubTopicId('dev.', 'internal.ingress.v1')).toBe('dev.internal.ingress.v1');
    expect(pubsubSubscriptionId('', 'internal.ingress.v1', 'auth')).toBe('internal.ingress.v1--auth');
    expect(pubsubDeadLetterTopicId('dev.')).toBe('dev.internal.pubsub-deadletter');
  });

  it('percent-encodes characters Pub/Sub does not allow and makes the id start with a letter', () => {
    expect(pubsubResourceId('internal.egress.a b/c.v1')).toBe('internal.egress.a%20b%2Fc.v1');
    expect(pubsubResourceId('1abc')).toMatch(/^[A-Za-z]/);
    expect(pubsubResourceId('google.topic')).not.toMatch(/^goog/);
    expect(pubsubResourceId('a')).toHaveLength(3);
    // `%` itself is encoded, so two different names never share an id.
    expect(pubsubResourceId('a%20b')).not.toBe(pubsubResourceId('a b'));
    const long = pubsubResourceId(`t${'x'.repeat(400)}`);
    expect(long.length).toBeLessThanOrEqual(255);
    expect(long).not.toBe(pubsubResourceId(`t${'x'.repeat(401)}`));
    for (const id of [pubsubResourceId('ä.ö'), pubsubResourceId('{instanceId}')]) expect(id).toMatch(/^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$/);
  });
});

describe('the pubsub bus on the emulator', () => {
  it('creates the topic, a subscription per group with ack deadline, dead-letter and retry policies, and the dead-letter topic', () =>
    withBusAndAdmin(async (bus, admin, prefix) => {
      await bus.subscribe('internal.shape.v1', 'shape-group', async (message) => message.ack(), { ackWaitMs: 42_000 });
      const [topics] = await admin.getTopics();
      const topicNames = topics.map((topic) => topic.name.split('/').pop());
      expect(topicNames).toContain(`${prefix}internal.shape.v1`);
      expect(topicNames).toContain(`${prefix}${PUBSUB_DEADLETTER_TOPIC}`);
      const [metadata] = await admin.subscription(`${prefix}internal.shape.v1--shape-group`).getMetadata();
      expect(metadata.topic).toBe(`projects/${PROJECT}/topics/${prefix}internal.shape.v1`);
      expect(metadata.ackDeadlineSeconds).toBe(42);
      expect(metadata.deadLetterPolicy?.deadLetterTopic).toBe(`projects/${PROJECT}/topics/${prefix}${PUBSUB_DEADLETTER_TOPIC}`);
      expect(metadata.deadLetterPolicy?.maxDeliveryAttempts).toBe(20);
      expect(Number(metadata.retryPolicy?.minimumBackoff?.seconds)).toBe(1);
      expect(Number(metadata.retryPolicy?.maximumBackoff?.seconds)).toBe(60);
      // Dead-lettered messages are kept by a subscription on the dead-letter topic.
      const [retained] = await admin
        .subscription(pubsubSubscriptionId(prefix, PUBSUB_DEADLETTER_TOPIC, PUBSUB_DEADLETTER_RETAINED_GROUP))
        .exists();
      expect(retained).toBe(true);
    }));

  it('clamps a short ackWaitMs to Pub/Sub’s 10 s minimum ack deadline', () =>
    withBusAndAdmin(async (bus, admin, prefix) => {
      await bus.subscribe('internal.short.v1', 'g', async (message) => message.ack(), { ackWaitMs: 500 });
      const [metadata] = await admin.subscription(`${prefix}internal.short.v1--g`).getMetadata();
      expect(metadata.ackDeadlineSeconds).toBe(10);
    }));

  it('gives a per-instance group an expiration when idle, at least Pub/Sub’s one-day minimum, and other groups none', () =>
    withBusAndAdmin(async (bus, admin, prefix) => {
      await bus.subscribe('internal.egress.abc.v1', 'gateway-abc', async (message) => message.ack(), { expireAfterIdleMs: 60 * 60 * 1000 });
      await bus.subscribe('internal.egress.abc.v1', 'gateway-long', async (message) => message.ack(), {
        expireAfterIdleMs: 3 * 24 * 60 * 60 * 1000,
      });
      await bus.subscribe('internal.egress.abc.v1', 'shared', async (message) => message.ack());
      const [short] = await admin.subscription(`${prefix}internal.egress.abc.v1--gateway-abc`).getMetadata();
      const [long] = await admin.subscription(`${prefix}internal.egress.abc.v1--gateway-long`).getMetadata();
      const [shared] = await admin.subscription(`${prefix}internal.egress.abc.v1--shared`).getMetadata();
      expect(Number(short.expirationPolicy?.ttl?.seconds)).toBe(86_400);
      expect(Number(long.expirationPolicy?.ttl?.seconds)).toBe(3 * 86_400);
      expect(shared.expirationPolicy?.ttl ?? null).toBeNull();
    }));

  it('extends the lease of a slow handler, so it is not redelivered while it still works', async () => {
    const bus = await createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix: uniquePrefix() });
    try {
      await bus.connect();
      const deliveries: number[] = [];
      let finishedAt = 0;
      await bus.subscribe(
        'internal.slow.v1',
        'g',
        async (message) => {
          deliveries.push(Date.now());
          if (deliveries.length > 1) return message.ack();
          // 14 s without calling working(): longer than the 10 s ack deadline of the subscription.
          await sleep(14_000);
          finishedAt = Date.now();
          await message.ack();
        },
        { ackWaitMs: 1_000 },
      );
      await bus.publish('internal.slow.v1', encoder.encode('slow'));
      await waitFor(() => finishedAt > 0, { timeoutMs: 25_000, message: 'the slow handler to finish' });
      await sleep(1_500);
      expect(deliveries).toHaveLength(1);
    } finally {
      await bus.close();
    }
  }, 40_000);

  it('drops a second Pub/Sub message with an already-seen msgId in a group even when another process published it', async () => {
    const prefix = uniquePrefix();
    const consumerBus = await createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix });
    const otherProcess = await createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix });
    try {
      await consumerBus.connect();
      await otherProcess.connect();
      const got: Array<{ body: string; msgId?: string }> = [];
      await consumerBus.subscribe('internal.dedup.v1', 'g', async (message: BusMessage) => {
        got.push({ body: decoder.decode(message.data), msgId: message.msgId });
        await message.ack();
      });
      await consumerBus.publish('internal.dedup.v1', encoder.encode('from-a'), { msgId: 'same-id' });
      // The other bus has its own publisher-side window, so only the consumer side can catch this.
      await otherProcess.publish('internal.dedup.v1', encoder.encode('from-b'), { msgId: 'same-id' });
      await otherProcess.publish('internal.dedup.v1', encoder.encode('distinct'), { msgId: 'other-id' });
      await waitFor(() => got.length >= 2, { message: 'two messages' });
      await sleep(800);
      expect(got.map((item) => item.body).sort()).toEqual(['distinct', 'from-a']);
    } finally {
      await consumerBus.close();
      await otherProcess.close();
    }
  });

  it('counts deliveries with Pub/Sub’s deliveryAttempt across processes', async () => {
    const prefix = uniquePrefix();
    const first = await createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix });
    const second = await createPubSubBus({ projectId: PROJECT, emulatorHost: emulator!.host, prefix });
    try {
      await first.connect();
      await second.connect();
      const counts: number[] = [];
      const sub = await first.subscribe('internal.count.v1', 'g', async (message) => {
        counts.push(message.deliveryCount);
        await message.nak(0);
      });
      await first.publish('internal.count.v1', encoder.encode('again'));
      await waitFor(() => counts.length >= 2, { timeoutMs: 15_000, message: 'two deliveries in the first process' });
      await sub.drain();
      // A different process (its own in-memory state) still sees the server's count.
      const later: number[] = [];
      await second.subscribe('internal.count.v1', 'g', async (message) => {
        later.push(message.deliveryCount);
        await message.ack();
      });
      await waitFor(() => later.length >= 1, { timeoutMs: 15_000, message: 'the delivery in the second process' });
      expect(later[0]).toBeGreaterThan(Math.max(...counts) - 1);
      expect(later[0]).toBeGreaterThanOrEqual(3);
    } finally {
      await first.close();
      await second.close();
    }
  });

  it(
    'dead-letters a message refused maxDeliveryAttempts times: it arrives intact on the retained dead-letter subscription',
    () =>
      withBusAndAdmin(
        async (bus, admin, prefix) => {
          const counts: number[] = [];
          await bus.subscribe('internal.poison.v1', 'g', async (message) => {
            counts.push(message.deliveryCount);
            await message.nak(0);
          });
          await bus.publish('internal.poison.v1', encoder.encode('poison'), { msgId: 'poison-1' });
          const retained = admin.subscription(pubsubSubscriptionId(prefix, PUBSUB_DEADLETTER_TOPIC, PUBSUB_DEADLETTER_RETAINED_GROUP));
          const letters: Array<{ data: string; attributes: Record<string, string>; deliveryCount: number }> = [];
          retained.on('message', (message) => {
            letters.push({ data: decoder.decode(message.data), attributes: { ...message.attributes }, deliveryCount: counts.length });
            message.ack();
          });
          try {
            await waitFor(() => letters.length >= 1, {
              timeoutMs: 60_000,
              intervalMs: 100,
              message: 'the message on the dead-letter subscription',
            });
          } finally {
            await retained.close();
          }
          expect(letters[0]!.data).toBe('poison');
          // Moved once the group had refused it maxDeliveryAttempts times, not before.
          expect(letters[0]!.deliveryCount).toBeGreaterThanOrEqual(5);
          expect(counts.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
        },
        { deadLetter: { maxDeliveryAttempts: 5 }, retryPolicy: false },
      ),
    90_000,
  );

  it('rejects a publish to a topic that does not exist (autoCreate off) with PUBLISH_FAILED and frees the msgId for a retry', () =>
    withBusAndAdmin(
      async (bus, admin, prefix) => {
        const error = await bus.publish('internal.missing.v1', encoder.encode('x'), { msgId: 'retry-me' }).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(error).toMatchObject({ name: 'BitBratError', code: 'PUBLISH_FAILED', retryable: true });
        expect((error as Error).message).toContain(`${prefix}internal.missing.v1`);
        // Once the topic exists (IaC), the same msgId goes through: a failed publish does not count for dedup.
        const [topic] = await admin.createTopic(`${prefix}internal.missing.v1`);
        const [subscription] = await topic.createSubscription(`${prefix}internal.missing.v1--g`);
        const got: string[] = [];
        await bus.subscribe('internal.missing.v1', 'g', async (message) => {
          got.push(decoder.decode(message.data));
          await message.ack();
        });
        await bus.publish('internal.missing.v1', encoder.encode('second try'), { msgId: 'retry-me' });
        await waitFor(() => got.length === 1, { message: 'the retried publish' });
        expect(got).toEqual(['second try']);
        expect(subscription.name).toContain('--g');
      },
      { autoCreate: false, deadLetter: false },
    ));

  it('fails to connect with a retryable BUS_UNAVAILABLE when nothing listens at the emulator address', async () => {
    const port = await freePort();
    const bus = await createPubSubBus({
      projectId: PROJECT,
      emulatorHost: `127.0.0.1:${port}`,
      prefix: uniquePrefix(),
      adminTimeoutMs: 1_500,
    });
    await expect(bus.connect()).rejects.toMatchObject({ name: 'BitBratError', code: 'BUS_UNAVAILABLE', retryable: true });
    expect(bus.isConnected()).toBe(false);
    await bus.close();
  });
});

describe('the pubsub bus across an emulator outage', () => {
  let own: PubSubEmulatorHandle | undefined;

  afterAll(async () => {
    await own?.stop();
  });

  it('reports disconnected while the emulator is gone, connected once it answers again, and recreates what the new emulator lacks', async () => {
    own = await startPubSubEmulator();
    const bus = await createPubSubBus({
      projectId: PROJECT,
      emulatorHost: own.host,
      prefix: uniquePrefix(),
      adminTimeoutMs: 3_000,
      publishTimeoutMs: 3_000,
    });
    try {
      const events: string[] = [];
      bus.onStatus((event) => events.push(event.status));
      await bus.connect();
      const got: string[] = [];
      await bus.subscribe('internal.outage.v1', 'survivor', async (message) => {
        got.push(decoder.decode(message.data));
        await message.ack();
      });
      await bus.publish('internal.outage.v1', encoder.encode('before'));
      await waitFor(() => got.includes('before'), { message: 'the message before the outage' });

      await own.stop();
      await waitFor(() => !bus.isConnected(), { timeoutMs: 30_000, intervalMs: 50, message: 'isConnected() to go false' });
      await own.restart();
      await waitFor(() => bus.isConnected(), { timeoutMs: 30_000, message: 'isConnected() to come back' });
      expect(events).toContain('disconnected');
      expect(events.lastIndexOf('connected')).toBeGreaterThan(events.indexOf('disconnected'));

      // The restarted emulator has no topics or subscriptions: the driver recreates both. Until the
      // subscription is back, Pub/Sub drops what is published, so keep publishing until one arrives.
      let attempt = 0;
      await waitFor(
        async () => {
          attempt += 1;
          await bus.publish('internal.outage.v1', encoder.encode('after'), { msgId: `after-${attempt}` }).catch(() => undefined);
          await sleep(500);
          return got.includes('after');
        },
        { timeoutMs: 60_000, intervalMs: 500, message: 'a message published after the outage to arrive' },
      );
    } finally {
      await bus.close();
    }
  }, 120_000);
});
