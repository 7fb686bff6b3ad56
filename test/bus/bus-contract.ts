import { afterEach, describe, expect, it } from 'vitest';
import type { BusMessage, BusStatusEvent, MessageBus, Subscription } from '../../src/bus/index.js';
import { BitBratError } from '../../src/core/index.js';
import { waitFor } from '../support/wait.js';

export interface BusContractFactory {
  /** A fresh, not yet connected bus using `prefix` (unique per test). */
  create(prefix: string): Promise<MessageBus>;
  cleanup?(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TOPIC = 'internal.contract.v1';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const uniquePrefix = () => `t${Math.random().toString(36).slice(2, 10)}.`;
const text = (message: BusMessage) => decoder.decode(message.data);

interface Received {
  body: string;
  deliveryCount: number;
  at: number;
  message: BusMessage;
}

/** The message-bus contract (src/bus/types.ts), run against every driver. */
export function describeBusContract(driver: string, factory: BusContractFactory) {
  describe(`the ${driver} bus contract`, () => {
    let buses: MessageBus[] = [];

    const open = async (prefix = uniquePrefix()) => {
      const bus = await factory.create(prefix);
      await bus.connect();
      buses.push(bus);
      return bus;
    };

    /** Subscribes with a handler and records every delivery. */
    const record = async (
      bus: MessageBus,
      group: string,
      handle: (message: BusMessage, received: Received[]) => Promise<void>,
      options?: { maxInFlight?: number; ackWaitMs?: number },
      topic = TOPIC,
    ) => {
      const received: Received[] = [];
      const subscription = await bus.subscribe(
        topic,
        group,
        async (message) => {
          received.push({ body: text(message), deliveryCount: message.deliveryCount, at: Date.now(), message });
          await handle(message, received);
        },
        options,
      );
      return { received, subscription };
    };

    const ackAll = async (message: BusMessage) => {
      await message.ack();
    };

    afterEach(async () => {
      for (const bus of buses) await bus.close().catch(() => undefined);
      buses = [];
      await factory.cleanup?.();
    });

    it('delivers a published message with its data, lower-case headers and msgId to a subscriber', async () => {
      const bus = await open();
      const { received } = await record(bus, 'g1', ackAll);
      const headers = { 'x-correlation-id': 'corr-1', traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' };
      await bus.publish(TOPIC, encoder.encode('hello'), { headers, msgId: 'id-1' });
      await waitFor(() => received.length === 1, { message: 'the message' });
      const { message } = received[0]!;
      expect(message.topic).toBe(TOPIC);
      expect(text(message)).toBe('hello');
      expect(message.headers).toEqual(headers);
      expect(message.msgId).toBe('id-1');
      expect(message.deliveryCount).toBe(1);
    });

    it('delivers a message without headers or msgId with empty headers and no msgId', async () => {
      const bus = await open();
      const { received } = await record(bus, 'g1', ackAll);
      await bus.publish(TOPIC, encoder.encode('bare'));
      await waitFor(() => received.length === 1, { message: 'the message' });
      expect(received[0]!.message.headers).toEqual({});
      expect(received[0]!.message.msgId).toBeUndefined();
    });

    it('fans every message out to every group on the topic', async () => {
      const bus = await open();
      const a = await record(bus, 'group-a', ackAll);
      const b = await record(bus, 'group-b', ackAll);
      for (let i = 0; i < 5; i += 1) await bus.publish(TOPIC, encoder.encode(`m${i}`));
      await waitFor(() => a.received.length === 5 && b.received.length === 5, { message: 'five messages in each group' });
      await sleep(200);
      expect(a.received.map((item) => item.body).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
      expect(b.received.map((item) => item.body).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    });

    it('keeps topics apart: a subscriber only gets its own topic', async () => {
      const bus = await open();
      const one = await record(bus, 'g', ackAll, undefined, 'internal.one.v1');
      const two = await record(bus, 'g', ackAll, undefined, 'internal.two.v1');
      await bus.publish('internal.one.v1', encoder.encode('for-one'));
      await bus.publish('internal.two.v1', encoder.encode('for-two'));
      await waitFor(() => one.received.length === 1 && two.received.length === 1, { message: 'one message per topic' });
      await sleep(200);
      expect(one.received.map((item) => item.body)).toEqual(['for-one']);
      expect(two.received.map((item) => item.body)).toEqual(['for-two']);
    });

    it('shares the load inside a group: two subscribers each get some, and every message is handled exactly once', async () => {
      const bus = await open();
      const slowAck = async (message: BusMessage) => {
        await sleep(10);
        await message.ack();
      };
      const first = await record(bus, 'workers', slowAck, { maxInFlight: 2 });
      const second = await record(bus, 'workers', slowAck, { maxInFlight: 2 });
      const total = 40;
      for (let i = 0; i < total; i += 1) await bus.publish(TOPIC, encoder.encode(`job-${i}`));
      await waitFor(() => first.received.length + second.received.length >= total, { timeoutMs: 20_000, message: 'all jobs' });
      await sleep(300);
      const all = [...first.received, ...second.received].map((item) => item.body);
      expect(all).toHaveLength(total);
      expect(new Set(all).size).toBe(total);
      expect(first.received.length).toBeGreaterThan(0);
      expect(second.received.length).toBeGreaterThan(0);
    });

    it('does not redeliver an acked message, and later settle calls are ignored', async () => {
      const bus = await open();
      const { received } = await record(
        bus,
        'g',
        async (message) => {
          await message.ack();
          await message.nak(0);
          await message.term();
        },
        { ackWaitMs: 500 },
      );
      await bus.publish(TOPIC, encoder.encode('once'));
      await waitFor(() => received.length === 1, { message: 'the message' });
      await sleep(1_300);
      expect(received).toHaveLength(1);
    });

    it('redelivers a nak(delay) message no sooner than the delay, with deliveryCount 2', async () => {
      const bus = await open();
      const delayMs = 400;
      let nakAt = 0;
      const { received } = await record(bus, 'g', async (message) => {
        if (message.deliveryCount === 1) {
          nakAt = Date.now();
          await message.nak(delayMs);
        } else {
          await message.ack();
        }
      });
      await bus.publish(TOPIC, encoder.encode('later'));
      await waitFor(() => received.length === 2, { message: 'the redelivery' });
      expect(received[1]!.deliveryCount).toBe(2);
      expect(received[1]!.body).toBe('later');
      // Timers may fire a millisecond early; anything near zero would mean the delay was ignored.
      expect(received[1]!.at - nakAt).toBeGreaterThanOrEqual(delayMs - 5);
      await sleep(300);
      expect(received).toHaveLength(2);
    });

    it('redelivers a message that was never settled once ackWaitMs has passed', async () => {
      const bus = await open();
      const ackWaitMs = 600;
      const { received } = await record(
        bus,
        'g',
        async (message) => {
          if (message.deliveryCount > 1) await message.ack();
        },
        { ackWaitMs },
      );
      await bus.publish(TOPIC, encoder.encode('forgotten'));
      await waitFor(() => received.length === 2, { timeoutMs: 10_000, message: 'the redelivery after the ack deadline' });
      expect(received[1]!.deliveryCount).toBe(2);
      expect(received[1]!.at - received[0]!.at).toBeGreaterThanOrEqual(ackWaitMs - 50);
    });

    it('never redelivers a terminated message', async () => {
      const bus = await open();
      const { received } = await record(bus, 'g', async (message) => message.term('poison pill'), { ackWaitMs: 500 });
      await bus.publish(TOPIC, encoder.encode('poison'));
      await waitFor(() => received.length === 1, { message: 'the message' });
      await sleep(1_300);
      expect(received).toHaveLength(1);
    });

    it('drops a second publish with the same msgId inside the dedup window', async () => {
      const bus = await open();
      const { received } = await record(bus, 'g', ackAll);
      await bus.publish(TOPIC, encoder.encode('first'), { msgId: 'dup-1' });
      await bus.publish(TOPIC, encoder.encode('second'), { msgId: 'dup-1' });
      await bus.publish(TOPIC, encoder.encode('other'), { msgId: 'dup-2' });
      await waitFor(() => received.length >= 2, { message: 'two distinct messages' });
      await sleep(400);
      expect(received.map((item) => item.body).sort()).toEqual(['first', 'other']);
    });

    it('never runs more than maxInFlight handlers of a subscription at once', async () => {
      const bus = await open();
      let running = 0;
      let peak = 0;
      const { received } = await record(
        bus,
        'g',
        async (message) => {
          running += 1;
          peak = Math.max(peak, running);
          await sleep(40);
          running -= 1;
          await message.ack();
        },
        { maxInFlight: 2 },
      );
      for (let i = 0; i < 12; i += 1) await bus.publish(TOPIC, encoder.encode(`n${i}`));
      await waitFor(() => received.length === 12 && running === 0, { timeoutMs: 15_000, message: 'all twelve handled' });
      expect(peak).toBe(2);
      expect(new Set(received.map((item) => item.body)).size).toBe(12);
    });

    it('working() pushes the ack deadline out so a long handler is not redelivered', async () => {
      const bus = await open();
      const ackWaitMs = 600;
      const { received } = await record(
        bus,
        'g',
        async (message) => {
          for (let i = 0; i < 6; i += 1) {
            await sleep(250);
            await message.working();
          }
          await message.ack();
        },
        { ackWaitMs },
      );
      await bus.publish(TOPIC, encoder.encode('long'));
      await waitFor(() => received.length >= 1, { message: 'the message' });
      // The handler runs 1.5 s, 2.5 times the ack wait; then wait past another deadline.
      await sleep(1_500 + ackWaitMs + 300);
      expect(received).toHaveLength(1);
    });

    it('drain() waits for the in-flight handler and then takes no more messages', async () => {
      const bus = await open();
      let finished = false;
      let started = false;
      const { received, subscription } = await record(bus, 'g', async (message) => {
        started = true;
        await sleep(400);
        finished = true;
        await message.ack();
      });
      await bus.publish(TOPIC, encoder.encode('slow'));
      await waitFor(() => started, { message: 'the handler to start' });
      await subscription.drain();
      expect(finished).toBe(true);
      await bus.publish(TOPIC, encoder.encode('after-drain'));
      await sleep(300);
      expect(received.map((item) => item.body)).toEqual(['slow']);
    });

    it('hands a message the drained subscriber never took to the next subscriber of the group', async () => {
      const bus = await open();
      const first: Subscription = await bus.subscribe(TOPIC, 'g', async (message) => message.ack(), { ackWaitMs: 1_000 });
      await first.drain();
      await bus.publish(TOPIC, encoder.encode('for-the-next'));
      const { received } = await record(bus, 'g', ackAll, { ackWaitMs: 1_000 });
      await waitFor(() => received.length === 1, { timeoutMs: 10_000, message: 'the message at the new subscriber' });
      expect(received[0]!.body).toBe('for-the-next');
    });

    it('redelivers a message whose handler threw', async () => {
      const bus = await open();
      const { received } = await record(bus, 'g', async (message) => {
        if (message.deliveryCount === 1) throw new Error('handler blew up');
        await message.ack();
      });
      await bus.publish(TOPIC, encoder.encode('retry-me'));
      await waitFor(() => received.length === 2, { message: 'the redelivery after the throw' });
      expect(received[1]!.deliveryCount).toBe(2);
      expect(received[1]!.body).toBe('retry-me');
    });

    it('reports connected after connect(), and closed after close(); publishing then rejects with a BitBratError', async () => {
      const bus = await factory.create(uniquePrefix());
      buses.push(bus);
      const events: BusStatusEvent[] = [];
      bus.onStatus((event) => events.push(event));
      await bus.connect();
      expect(bus.isConnected()).toBe(true);
      await bus.publish(TOPIC, encoder.encode('before-close'));
      await bus.close();
      expect(bus.isConnected()).toBe(false);
      expect(events.map((event) => event.status)).toContain('connected');
      expect(events.at(-1)?.status).toBe('closed');
      const error = await bus.publish(TOPIC, encoder.encode('after-close')).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(BitBratError);
      expect(['BUS_UNAVAILABLE', 'PUBLISH_FAILED']).toContain((error as BitBratError).code);
    });
  });
}
