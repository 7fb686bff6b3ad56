import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Topic, type Envelope } from '../../src/core/index.js';
import { createIngressBuffer, createServiceIngress, INGRESS_RETRY_MAX_MS } from '../../src/runtime/ingress-buffer.js';
import { createRuntimeMetrics } from '../../src/runtime/metrics.js';
import { chatEnvelope } from '../support/envelopes.js';

const chat = (text: string): Envelope =>
  chatEnvelope({
    text,
    source: { platform: 'twitch', channel: 'chan', channelId: 'chan-id' },
    user: { id: 'u1', name: 'viewer' },
    messageId: `m-${text}`,
  });

const textOf = (envelope: Envelope) => (envelope.payload as { text: string }).text;
const quietLogger = () => ({ info: vi.fn(), warn: vi.fn(), error: vi.fn() });

/** A bus that refuses while `down` and records what it took, in order. */
function flakyBus() {
  const taken: Array<{ text: string; msgId: string | undefined }> = [];
  const bus = {
    down: false,
    attempts: 0,
    taken,
    publish: async (envelope: Envelope, msgId: string | undefined) => {
      bus.attempts += 1;
      if (bus.down) throw new Error('PUBLISH_FAILED: bus unavailable');
      taken.push({ text: textOf(envelope), msgId });
    },
  };
  return bus;
}

/**
 * A buffer of `max` messages in front of a bus that is down; each message it loses is recorded in `lost`
 * as `entry` makes it from the envelope and the reason.
 */
function bufferWhileDown<T>(max: number, entry: (envelope: Envelope, reason: string) => T) {
  const bus = flakyBus();
  const lost: T[] = [];
  const buffer = createIngressBuffer({
    publish: bus.publish,
    max,
    logger: quietLogger(),
    onLost: (envelope, reason) => lost.push(entry(envelope, reason)),
  });
  bus.down = true;
  return { bus, lost, buffer };
}

describe('the ingress buffer', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('holds messages the bus refuses and publishes them again, in order, when the bus is back', async () => {
    const bus = flakyBus();
    const logger = quietLogger();
    const buffer = createIngressBuffer({ publish: bus.publish, max: 100, logger });
    bus.down = true;
    for (const text of ['one', 'two', 'three']) buffer.push(chat(text), `id-${text}`);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(bus.taken).toEqual([]);
    expect(bus.attempts).toBeGreaterThan(3);
    expect(buffer.snapshot()).toMatchObject({ pending: 3, lost: 0, blocked: true });
    expect(logger.error).toHaveBeenCalledTimes(1);

    buffer.push(chat('four'), 'id-four');
    bus.down = false;
    await vi.advanceTimersByTimeAsync(INGRESS_RETRY_MAX_MS);
    await buffer.drained();
    expect(bus.taken).toEqual(['one', 'two', 'three', 'four'].map((text) => ({ text, msgId: `id-${text}` })));
    expect(buffer.snapshot()).toMatchObject({ pending: 0, lost: 0, published: 4, blocked: false, oldestWaitingMs: null });
    expect(logger.info).toHaveBeenCalledWith({ pending: 3 }, expect.stringMatching(/takes messages again/));
  });

  it('counts every message over the bound as lost, naming the reason, and keeps the ones it holds', async () => {
    const { bus, lost, buffer } = bufferWhileDown(2, (envelope, reason) => ({ text: textOf(envelope), reason }));
    for (const text of ['a', 'b', 'c', 'd']) buffer.push(chat(text));
    expect(lost).toEqual([
      { text: 'c', reason: 'buffer_full' },
      { text: 'd', reason: 'buffer_full' },
    ]);
    expect(buffer.snapshot()).toMatchObject({ pending: 2, lost: 2 });
    bus.down = false;
    await vi.advanceTimersByTimeAsync(INGRESS_RETRY_MAX_MS);
    await buffer.drained();
    expect(bus.taken.map((entry) => entry.text)).toEqual(['a', 'b']);
  });

  it('holds room for a sender that retries, refuses it without a loss when the room is not there, and gives unused room back', async () => {
    const { bus, lost, buffer } = bufferWhileDown(3, (envelope) => textOf(envelope));
    buffer.push(chat('a'));
    const held = buffer.reserve(2);
    expect(held).toBeDefined();
    // The held room is taken: a plain push is over the bound and another reservation is refused, not counted.
    buffer.push(chat('over'));
    expect(lost).toEqual(['over']);
    expect(buffer.reserve(1)).toBeUndefined();
    held!.push(chat('b'), 'id-b');
    held!.release();
    expect(buffer.reserve(2)).toBeUndefined();
    const rest = buffer.reserve(1);
    expect(rest).toBeDefined();
    rest!.push(chat('c'));
    expect(buffer.snapshot()).toMatchObject({ pending: 3, lost: 1 });
    bus.down = false;
    await vi.advanceTimersByTimeAsync(INGRESS_RETRY_MAX_MS);
    await buffer.drained();
    expect(bus.taken).toEqual([
      { text: 'a', msgId: undefined },
      { text: 'b', msgId: 'id-b' },
      { text: 'c', msgId: undefined },
    ]);
  });

  it('on close, flushes what it can within the bound and counts the rest as lost', async () => {
    const { lost, buffer } = bufferWhileDown(10, (envelope, reason) => `${textOf(envelope)}:${reason}`);
    buffer.push(chat('x'));
    buffer.push(chat('y'));
    const closing = buffer.close(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    await closing;
    expect(lost).toEqual(['x:shutdown', 'y:shutdown']);
    buffer.push(chat('late'));
    expect(lost).toEqual(['x:shutdown', 'y:shutdown', 'late:shutdown']);
    expect(buffer.snapshot()).toMatchObject({ pending: 0, lost: 3 });
  });

  it('for a service, publishes to ingress with the message id, sized by INGRESS_BUFFER_MAX, losses on bitbrat_ingress_lost_total', async () => {
    const metrics = createRuntimeMetrics({ defaultMetrics: false });
    const published: Array<{ topic: string; msgId?: string }> = [];
    let down = true;
    const ctx = {
      name: 'ingress-egress',
      platform: { INGRESS_BUFFER_MAX: 1 } as never,
      logger: quietLogger() as never,
      metrics,
      publish: async (topic: string, _envelope: Envelope, options?: { msgId?: string }) => {
        if (down) throw new Error('bus down');
        published.push({ topic, ...(options?.msgId ? { msgId: options.msgId } : {}) });
      },
    };
    const buffer = createServiceIngress(ctx, 'twitch');
    buffer.push(chat('kept'), 'twitch:m-kept');
    buffer.push(chat('over'), 'twitch:m-over');
    const text = await metrics.registry.metrics();
    expect(text).toContain('bitbrat_ingress_lost_total{service="ingress-egress",platform="twitch",reason="buffer_full"} 1');
    down = false;
    await vi.advanceTimersByTimeAsync(INGRESS_RETRY_MAX_MS);
    await buffer.drained();
    expect(published).toEqual([{ topic: Topic.ingress, msgId: 'twitch:m-kept' }]);
  });
});
