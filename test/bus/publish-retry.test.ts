/**
 * Publish retries (PUBLISH_MAX_RETRIES): what happens when they run out, on a fake clock against a memory
 * bus that keeps refusing the topic because it already retains its limit.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BitBratError } from '../../src/core/index.js';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { retryFailedPublish } from '../../src/bus/retry.js';

const encoder = new TextEncoder();

/** A memory bus whose topic `full` refuses every publish (it already retains its one message). */
async function fullTopic(): Promise<{ bus: MessageBus; attempts: () => number }> {
  const bus = createMemoryBus({ maxRetainedPerTopic: 1 });
  await bus.connect();
  await bus.publish('full', encoder.encode('the one it keeps'));
  let attempts = 0;
  const publish = bus.publish.bind(bus);
  bus.publish = (topic, data, options) => {
    attempts += 1;
    return publish(topic, data, options);
  };
  return { bus, attempts: () => attempts };
}

/** What `promise` rejects with (undefined when it resolves). */
const rejectionOf = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

afterEach(() => {
  vi.useRealTimers();
});

describe('publish retries', () => {
  it('retries with doubling, capped delays and, when they run out, fails with PUBLISH_FAILED naming the attempts and the last cause', async () => {
    vi.useFakeTimers();
    const { bus, attempts } = await fullTopic();
    const first = await rejectionOf(bus.publish('full', encoder.encode('refused')));
    expect(first).toMatchObject({ code: 'PUBLISH_FAILED', retryable: true });
    const delays: number[] = [];
    const outcome = rejectionOf(
      retryFailedPublish(
        bus,
        'full',
        encoder.encode('refused'),
        undefined,
        { maxRetries: 4, baseDelayMs: 100, maxDelayMs: 500, onRetry: (_error, _attempt, delayMs) => delays.push(delayMs) },
        first,
      ),
    );
    await vi.runAllTimersAsync();
    const error = (await outcome) as BitBratError;

    expect(delays).toEqual([100, 200, 400, 500]);
    // The caller's attempt and four retries; no fifth retry.
    expect(attempts()).toBe(5);
    expect(error).toBeInstanceOf(BitBratError);
    expect(error).toMatchObject({ code: 'PUBLISH_FAILED', retryable: true });
    expect(error.message).toBe('publish to full failed after 5 attempts: topic full has no consumer and already retains 1 messages');
    expect((error as Error & { cause?: unknown }).cause).toMatchObject({ code: 'PUBLISH_FAILED' });
    await bus.close();
  });

  it('stops at once on an error that is not retryable', async () => {
    vi.useFakeTimers();
    const { bus, attempts } = await fullTopic();
    const fatal = new BitBratError('CONFIG_INVALID', 'no such topic', { retryable: false });
    const delays: number[] = [];
    const error = await rejectionOf(
      retryFailedPublish(
        bus,
        'full',
        encoder.encode('x'),
        undefined,
        { maxRetries: 5, onRetry: (_error, _attempt, delayMs) => delays.push(delayMs) },
        fatal,
      ),
    );
    expect(attempts()).toBe(0);
    expect(delays).toEqual([]);
    expect(error).toMatchObject({ code: 'PUBLISH_FAILED', message: 'publish to full failed after 1 attempt: no such topic' });
    await bus.close();
  });

  it('delivers the message when the topic takes it again before the retries run out', async () => {
    vi.useFakeTimers();
    const { bus, attempts } = await fullTopic();
    const received: string[] = [];
    const outcome = retryFailedPublish(
      bus,
      'full',
      encoder.encode('second'),
      undefined,
      { maxRetries: 3, baseDelayMs: 100 },
      new BitBratError('PUBLISH_FAILED', 'full', { retryable: true }),
    );
    // A consumer arrives during the first backoff and takes what the topic retained: room again.
    await bus.subscribe('full', 'reader', async (message) => {
      received.push(new TextDecoder().decode(message.data));
      await message.ack();
    });
    await vi.runAllTimersAsync();
    await expect(outcome).resolves.toBeUndefined();
    expect(attempts()).toBe(1);
    await vi.waitFor(() => expect(received).toEqual(['the one it keeps', 'second']));
    await bus.close();
  });
});
