import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';
import { createMemoryBus } from '../../src/bus/index.js';
import { describeBusContract } from './bus-contract.js';

describeBusContract('memory', { create: async (prefix) => createMemoryBus({ prefix }) });

describe('the memory bus with publishJson', () => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  it('hands every group the published value itself, with its JSON text as data, on every delivery', async () => {
    const bus = createMemoryBus();
    await bus.connect();
    const value = { id: 'e1', text: 'hi', list: [1, 2] };
    const seen: Array<{ group: string; json: unknown; text: string; count: number }> = [];
    for (const group of ['one', 'two']) {
      await bus.subscribe('t', group, async (message) => {
        seen.push({ group, json: message.json, text: decoder.decode(message.data), count: message.deliveryCount });
        // Group one gives its first delivery back once: the redelivery carries the same value.
        if (group === 'one' && message.deliveryCount === 1) await message.nak(0);
        else await message.ack();
      });
    }
    await bus.publishJson!('t', value, { msgId: 'm1', headers: { 'x-a': '1' } });
    await waitFor(() => seen.length === 3);
    for (const delivery of seen) {
      expect(delivery.json).toBe(value);
      expect(delivery.text).toBe(JSON.stringify(value));
    }
    expect(seen.filter((delivery) => delivery.group === 'one').map((delivery) => delivery.count)).toEqual([1, 2]);
    await bus.close();
  });

  it('drops a second publishJson with the same msgId, keeps values for a topic nobody consumes yet, and has no json for bytes', async () => {
    const bus = createMemoryBus();
    await bus.connect();
    await bus.publishJson!('t', { n: 1 }, { msgId: 'same' });
    await bus.publishJson!('t', { n: 2 }, { msgId: 'same' });
    await bus.publish('t', encoder.encode('{"n":3}'));
    const seen: Array<{ json: unknown; text: string }> = [];
    await bus.subscribe('t', 'late', async (message) => {
      seen.push({ json: message.json, text: decoder.decode(message.data) });
      await message.ack();
    });
    await waitFor(() => seen.length === 2);
    expect(seen).toEqual([
      { json: { n: 1 }, text: '{"n":1}' },
      { json: undefined, text: '{"n":3}' },
    ]);
    await bus.close();
  });

  it('rejects publishJson while disconnected, like publish', async () => {
    const bus = createMemoryBus();
    await expect(bus.publishJson!('t', { n: 1 })).rejects.toMatchObject({ code: 'BUS_UNAVAILABLE' });
  });

  it('gives a consumer text that does not parse, with the reason, for a value that has no JSON form', async () => {
    const bus = createMemoryBus();
    await bus.connect();
    let text = '';
    await bus.subscribe('t', 'g', async (message) => {
      text = decoder.decode(message.data);
      await message.ack();
    });
    await bus.publishJson!('t', { big: 1n });
    await waitFor(() => text !== '');
    expect(text).toMatch(/^unserializable value: .*BigInt/);
    await bus.close();
  });
});

describe('the memory bus retaining for a topic nobody consumes yet', () => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  it('refuses a publish past the retention limit with a retryable PUBLISH_FAILED, and its retry with the same msgId is not taken for a duplicate', async () => {
    const bus = createMemoryBus({ maxRetainedPerTopic: 1 });
    await bus.connect();
    await bus.publish('t', encoder.encode('first'), { msgId: 'a' });
    await expect(bus.publish('t', encoder.encode('second'), { msgId: 'b' })).rejects.toMatchObject({
      code: 'PUBLISH_FAILED',
      retryable: true,
    });
    const seen: string[] = [];
    await bus.subscribe('t', 'late', async (message) => {
      seen.push(decoder.decode(message.data));
      await message.ack();
    });
    // Retried once a consumer exists (as the runtime's publish retry does): delivered, not dropped.
    await bus.publish('t', encoder.encode('second'), { msgId: 'b' });
    await waitFor(() => seen.length === 2);
    expect(seen).toEqual(['first', 'second']);
    // The accepted ids still count inside the window.
    await bus.publish('t', encoder.encode('second again'), { msgId: 'b' });
    await bus.publish('t', encoder.encode('third'), { msgId: 'c' });
    await waitFor(() => seen.length === 3);
    expect(seen).toEqual(['first', 'second', 'third']);
    await bus.close();
  });
});

describe('the memory bus status listeners', () => {
  it('tells every listener, even after one throws, and stops telling one that unsubscribed', async () => {
    const warnings: unknown[] = [];
    const bus = createMemoryBus({
      logger: { info: () => undefined, error: () => undefined, warn: (...args: unknown[]) => warnings.push(args) },
    });
    const seen: string[] = [];
    bus.onStatus(() => {
      throw new Error('listener bug');
    });
    const stop = bus.onStatus((event) => seen.push(event.status));
    await bus.connect();
    bus.setConnected(false);
    stop();
    bus.setConnected(true);
    expect(seen).toEqual(['connected', 'disconnected']);
    // The throwing listener was reported each time it ran, not swallowed.
    expect(warnings).toHaveLength(3);
    expect(JSON.stringify(warnings[0])).toContain('bus status listener threw');
    await bus.close();
  });
});
