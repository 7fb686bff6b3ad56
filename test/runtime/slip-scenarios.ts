import { afterEach, describe, expect, it } from 'vitest';
import type { MessageBus } from '../../src/bus/index.js';
import { createEnvelope, createReply, createStep, Topic, type Envelope } from '../../src/core/index.js';
import { BitBratError } from '../../src/core/index.js';
import { continueWith, defineService, failed, handled, skip, type Host, type ServiceDefinition } from '../../src/runtime/index.js';
import { collect, startTestHost } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

export interface BusFactory {
  /** A fresh bus (already connectable) per test. */
  create(): Promise<MessageBus>;
  cleanup?(): Promise<void>;
}

const encoder = new TextEncoder();

function chat(slip: string[], extra: Partial<Envelope> = {}): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'test', channel: 'chan', channelId: '1' },
    user: { id: 'u1', name: 'viewer', displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
    payload: { text: 'hi' },
    routingSlip: slip.map((id) => createStep(id)),
    extra,
  });
}

/** The routing-slip rules R1–R11, as scenarios every bus driver must pass. */
export function describeSlipScenarios(driver: string, factory: BusFactory) {
  describe(`routing-slip rules on the ${driver} bus`, () => {
    let bus: MessageBus;
    let hosts: Host[] = [];

    const start = async (services: ServiceDefinition[]) => {
      bus = await factory.create();
      await bus.connect();
      const observer = await collect(bus, [Topic.finalizer, Topic.deadletter, Topic.egress]);
      const host = await startTestHost({ services, bus });
      hosts.push(host);
      return { observer, host };
    };

    afterEach(async () => {
      for (const host of hosts) await host.stop();
      hosts = [];
      await bus?.close();
      await factory.cleanup?.();
    });

    const stepService = (id: string, handle: (envelope: Envelope, attempt: number) => Promise<any>) =>
      defineService({
        name: id,
        setup: () => ({
          consumers: { [`internal.${id}.v1`]: { mode: 'step', handle: (envelope, ctx) => handle(envelope, ctx.attempt), maxInFlight: 8 } },
        }),
      });

    it('R1/R2: when every step continues, the steps run in order, are timed and marked OK, and the envelope is finalized as completed', async () => {
      const order: string[] = [];
      const { observer } = await start(['a', 'b', 'c'].map((id) => stepService(id, async () => (order.push(id), continueWith()))));
      const envelope = chat(['a', 'b', 'c']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(order).toEqual(['a', 'b', 'c']);
      expect(final.outcome).toBe('completed');
      expect(final.routingSlip.map((step) => step.status)).toEqual(['OK', 'OK', 'OK']);
      for (const step of final.routingSlip) {
        expect(step.attempt).toBe(1);
        expect(Date.parse(step.endedAt!)).toBeGreaterThanOrEqual(Date.parse(step.startedAt!));
      }
    });

    it('R2: when the last step leaves a reply and there is an egress destination, the envelope goes to egress, not finalization', async () => {
      const { observer } = await start([
        stepService('a', async (envelope) => continueWith({ ...envelope, candidates: [createReply('a', 'hello back')] })),
      ]);
      const envelope = chat(['a'], { source: { platform: 'test', channel: 'c', channelId: '1', egressDestination: Topic.egress } });
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const out: Envelope = await observer.waitFor(Topic.egress, (value) => value.id === envelope.id);
      expect(out.candidates?.[0]?.text).toBe('hello back');
      expect(out.routingSlip[0]?.status).toBe('OK');
      expect(observer.envelopes(Topic.finalizer).filter((value) => value.id === envelope.id)).toHaveLength(0);
    });

    it('R2: when a step skips, it is marked SKIP and the slip continues', async () => {
      const { observer } = await start([stepService('a', async () => skip()), stepService('b', async () => continueWith())]);
      const envelope = chat(['a', 'b']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(final.routingSlip.map((step) => step.status)).toEqual(['SKIP', 'OK']);
    });

    it('R3: when a step handles the envelope, later steps do not run and it goes to egress when one is set', async () => {
      let bRan = false;
      const { observer } = await start([
        stepService('a', async (envelope) => handled({ ...envelope, candidates: [createReply('a', 'done')] })),
        stepService('b', async () => ((bRan = true), continueWith())),
      ]);
      const envelope = chat(['a', 'b'], { source: { platform: 'test', channel: 'c', channelId: '1', egressDestination: Topic.egress } });
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const out: Envelope = await observer.waitFor(Topic.egress, (value) => value.id === envelope.id);
      expect(out.outcome).toBe('handled');
      expect(out.routingSlip.map((step) => step.status)).toEqual(['OK', 'PENDING']);
      expect(bRan).toBe(false);
    });

    it('R3: when a step handles the envelope and there is no egress destination, it is finalized as handled', async () => {
      const { observer } = await start([stepService('a', async () => handled()), stepService('b', async () => continueWith())]);
      const envelope = chat(['a', 'b']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(final.outcome).toBe('handled');
    });

    it('R4: when a step fails with a retryable error, it is redelivered after a backoff and may then succeed', async () => {
      const attempts: number[] = [];
      const { observer } = await start([
        stepService('a', async (_envelope, attempt) => {
          attempts.push(attempt);
          return attempt < 3 ? failed('PROVIDER_ERROR', 'flaky', { retryable: true }) : continueWith();
        }),
      ]);
      const envelope = chat(['a']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(attempts).toEqual([1, 2, 3]);
      expect(final.outcome).toBe('completed');
      expect(final.routingSlip[0]).toMatchObject({ status: 'OK', attempt: 3 });
    });

    it('R4/R5: when a retryable failure runs out of attempts, the step is ERROR and the envelope is finalized as failed', async () => {
      const attempts: number[] = [];
      const { observer } = await start([
        stepService('a', async (_envelope, attempt) => (attempts.push(attempt), failed('PROVIDER_ERROR', 'down', { retryable: true }))),
        stepService('b', async () => continueWith()),
      ]);
      const envelope = chat(['a', 'b']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(attempts).toEqual([1, 2, 3]);
      expect(final.outcome).toBe('failed');
      expect(final.routingSlip[0]).toMatchObject({ status: 'ERROR', attempt: 3, error: { code: 'PROVIDER_ERROR', retryable: true } });
      expect(final.routingSlip[1]?.status).toBe('PENDING');
      expect(final.errors?.[0]).toMatchObject({ code: 'PROVIDER_ERROR', step: 'a', stepIndex: 0, service: 'a' });
    });

    it('R5: when a handler throws, the step is ERROR with the exception, the slip stops and the envelope is finalized as failed', async () => {
      let bRan = false;
      const { observer } = await start([
        stepService('a', async () => {
          throw new Error('kaboom');
        }),
        stepService('b', async () => ((bRan = true), continueWith())),
      ]);
      const envelope = chat(['a', 'b']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(final.routingSlip[0]).toMatchObject({ status: 'ERROR', attempt: 1, error: { code: 'HANDLER_EXCEPTION', message: 'kaboom' } });
      expect(final.outcome).toBe('failed');
      expect(bRan).toBe(false);
    });

    it('R5: a non-retryable failure is not retried', async () => {
      const attempts: number[] = [];
      const { observer } = await start([
        stepService('a', async (_e, attempt) => (attempts.push(attempt), failed('FORBIDDEN', 'no', { retryable: false }))),
      ]);
      const envelope = chat(['a']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(attempts).toEqual([1]);
      expect(final.routingSlip[0]?.error?.code).toBe('FORBIDDEN');
    });

    it('R6: when the envelope must be finalized but has no finalization destination, it goes to the DLQ with the reason', async () => {
      const { observer } = await start([stepService('a', async () => continueWith())]);
      const envelope = chat(['a']);
      delete envelope.finalizationDestination;
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const letter = await observer.waitFor(Topic.deadletter, (value) => value.envelopeId === envelope.id);
      expect(letter.reason.code).toBe('NO_FINALIZATION_DESTINATION');
      expect(letter.envelope.routingSlip[0].status).toBe('OK');
    });

    it('R7: invalid JSON and schema failures go to the DLQ with the raw payload and the reason, and the consumer keeps going', async () => {
      const { observer } = await start([stepService('a', async () => continueWith())]);
      await bus.publish('internal.a.v1', encoder.encode('{not json'));
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify({ v: '1', id: 'x' })));
      const good = chat(['a']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(good)));
      const decode = await observer.waitFor(Topic.deadletter, (value) => value.reason.code === 'DECODE_FAILED');
      expect(decode.raw).toBe('{not json');
      expect(decode.topic).toBe('internal.a.v1');
      const invalid = await observer.waitFor(Topic.deadletter, (value) => value.reason.code === 'ENVELOPE_INVALID');
      expect(invalid.reason.message).toContain('correlationId');
      expect(JSON.parse(invalid.raw)).toEqual({ v: '1', id: 'x' });
      await observer.waitFor(Topic.finalizer, (value) => value.id === good.id);
    });

    it('R7: an envelope that arrives on a step topic that is not its current step is dead-lettered, not processed', async () => {
      let ran = false;
      const { observer } = await start([stepService('a', async () => ((ran = true), continueWith()))]);
      const envelope = chat(['b', 'a']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const letter = await observer.waitFor(Topic.deadletter, (value) => value.envelopeId === envelope.id);
      expect(letter.reason.code).toBe('SLIP_MISMATCH');
      expect(ran).toBe(false);
    });

    it('R8: a redelivered duplicate arrives, is recognised and dropped, and yields no second egress message', async () => {
      let runs = 0;
      const { observer, host } = await start([
        stepService('a', async (envelope) => ((runs += 1), continueWith({ ...envelope, candidates: [createReply('a', 'once')] }))),
      ]);
      const envelope = chat(['a'], { source: { platform: 'test', channel: 'c', channelId: '1', egressDestination: Topic.egress } });
      const bytes = encoder.encode(JSON.stringify(envelope));
      const duplicatesDropped = async () => {
        const text = (await host.app.inject({ url: '/metrics' })).body;
        return Number(/^bitbrat_messages_duplicate_total\{[^}]*topic="internal\.a\.v1"[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
      };
      // The same message published twice without a dedup id: both reach the consumer.
      await bus.publish('internal.a.v1', bytes);
      await observer.waitFor(Topic.egress, (value) => value.id === envelope.id);
      expect(await duplicatesDropped()).toBe(0);
      await bus.publish('internal.a.v1', bytes);
      // Once the host has counted the second delivery as a duplicate it is settled: nothing more can come of it.
      await waitFor(async () => (await duplicatesDropped()) === 1, { message: 'the duplicate to be recognised and dropped' });
      expect(runs).toBe(1);
      expect(observer.envelopes(Topic.egress).filter((value) => value.id === envelope.id)).toHaveLength(1);
    });

    it('every delivery is a copy of its own: a retried step and a second consumer never see what a handler changed', async () => {
      const seenByB: string[] = [];
      let seenBySinkTwo = '';
      let release!: () => void;
      const aChanged = new Promise<void>((resolve) => (release = resolve));
      const sink = (name: string, handle: (envelope: Envelope) => Promise<void>) =>
        defineService({
          name,
          setup: () => ({
            consumers: { [Topic.finalizer]: { mode: 'sink', handle: async (envelope) => (await handle(envelope), handled()) } },
          }),
        });
      const { observer } = await start([
        stepService('a', async (envelope) => continueWith({ ...envelope, payload: { ...envelope.payload, text: 'from a' } })),
        stepService('b', async (envelope, attempt) => {
          seenByB.push(String(envelope.payload.text));
          // The first attempt changes its envelope in place, then fails: the retry must not see the change.
          envelope.payload.text = `changed by attempt ${attempt}`;
          envelope.annotations = [
            ...(envelope.annotations ?? []),
            { id: `x${attempt}`, kind: 'x', source: 'b', createdAt: new Date().toISOString() },
          ];
          return attempt === 1 ? failed('PROVIDER_ERROR', 'once', { retryable: true }) : continueWith();
        }),
        // Two other consumers of the final envelope: one changes its copy, the other reads after that.
        sink('sink-one', async (envelope) => {
          envelope.payload.text = 'changed by sink-one';
          release();
        }),
        sink('sink-two', async (envelope) => {
          await aChanged;
          seenBySinkTwo = String(envelope.payload.text);
        }),
      ]);
      const envelope = chat(['a', 'b']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(seenByB).toEqual(['from a', 'from a']);
      expect(final.payload.text).toBe('from a');
      expect(final.annotations).toBeUndefined();
      await waitFor(() => seenBySinkTwo !== '');
      expect(seenBySinkTwo).toBe('from a');
    });

    it('R9: a step that outlives its timeout fails with DEADLINE', async () => {
      const { observer } = await start([
        stepService('a', async () => new Promise((resolve) => setTimeout(() => resolve(continueWith()), 2_000))),
      ]);
      const envelope = chat(['a']);
      envelope.routingSlip[0]!.timeoutMs = 100;
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(final.routingSlip[0]).toMatchObject({ status: 'ERROR', error: { code: 'DEADLINE' } });
    });

    it('R9: the handler signal aborts at the deadline, whether it was read before or only after it', async () => {
      let abortedWith: unknown;
      let readLate: boolean | undefined;
      const { observer } = await start([
        defineService({
          name: 'a',
          setup: () => ({
            consumers: {
              'internal.a.v1': {
                mode: 'step',
                async handle(_envelope, ctx) {
                  const signal = ctx.signal;
                  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
                  abortedWith = signal.reason;
                  return continueWith();
                },
              },
            },
          }),
        }),
        defineService({
          name: 'b',
          setup: () => ({
            consumers: {
              'internal.b.v1': {
                mode: 'step',
                async handle(_envelope, ctx) {
                  await new Promise((resolve) => setTimeout(resolve, 400));
                  readLate = ctx.signal.aborted;
                  return continueWith();
                },
              },
            },
          }),
        }),
      ]);
      const early = chat(['a']);
      const late = chat(['b']);
      early.routingSlip[0]!.timeoutMs = 100;
      late.routingSlip[0]!.timeoutMs = 100;
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(early)));
      await bus.publish('internal.b.v1', encoder.encode(JSON.stringify(late)));
      for (const envelope of [early, late]) {
        const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
        expect(final.routingSlip[0]?.error?.code).toBe('DEADLINE');
      }
      await waitFor(() => abortedWith !== undefined && readLate !== undefined);
      expect(abortedWith).toBeInstanceOf(Error);
      expect((abortedWith as Error).message).toBe('the step did not finish within 100 ms');
      expect(readLate).toBe(true);
    });

    it('R9: an envelope whose reply deadline has passed fails the step with DEADLINE without running it', async () => {
      let ran = false;
      const { observer } = await start([stepService('a', async () => ((ran = true), continueWith()))]);
      const envelope = chat(['a'], { qos: { maxResponseMs: 50 } });
      envelope.timestamp = new Date(Date.now() - 1_000).toISOString();
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(final.routingSlip[0]?.error?.code).toBe('DEADLINE');
      expect(ran).toBe(false);
    });

    it('R10: a router that re-plans keeps the finished steps as history and the new steps run', async () => {
      const { observer } = await start([
        stepService('a', async () => continueWith()),
        stepService('router', async (envelope) => {
          const history = envelope.routingSlip.filter((step: any) => step.status !== 'PENDING');
          return continueWith({
            ...envelope,
            routingSlip: [...history, envelope.routingSlip.find((s: any) => s.id === 'router')!, createStep('c')],
          });
        }),
        stepService('c', async () => continueWith()),
      ]);
      const envelope = chat(['a', 'router']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(final.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['a:OK', 'router:OK', 'c:OK']);
    });

    it('R11: the traceparent and correlation id travel as headers', async () => {
      const { observer } = await start([stepService('a', async () => continueWith())]);
      const envelope = chat(['a']);
      await bus.publish('internal.a.v1', encoder.encode(JSON.stringify(envelope)));
      await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      const message = observer.on(Topic.finalizer).find((item) => item.value.id === envelope.id)!;
      expect(message.headers['x-correlation-id']).toBe(envelope.correlationId);
      expect(message.headers.traceparent).toMatch(new RegExp(`^00-${envelope.traceId}-[0-9a-f]{16}-01$`));
    });

    it('an envelope whose next step no service serves is dead-lettered with UNKNOWN_STEP, naming the step and the known ones, and nothing is left in flight', async () => {
      const BOGUS = 'internal.bogus-step.v1';
      // The router's shape (a slip consumer on `authenticated`) assigns a slip whose second step is unknown.
      const router = defineService({
        name: 'router',
        setup: () => ({
          consumers: {
            [Topic.authenticated]: {
              mode: 'slip',
              handle: async (envelope) => continueWith({ ...envelope, routingSlip: [createStep('a'), createStep('bogus-step')] }),
            },
          },
        }),
      });
      const { observer, host } = await start([router, stepService('a', async () => continueWith())]);
      const bogusReader = await collect(bus, [BOGUS]);
      const envelope = chat([]);
      await bus.publish(Topic.authenticated, encoder.encode(JSON.stringify(envelope)));
      const letter = await observer.waitFor(Topic.deadletter, (value) => value.envelopeId === envelope.id);
      expect(letter.reason.code).toBe('UNKNOWN_STEP');
      expect(letter.reason.message).toContain('"bogus-step"');
      expect(letter.reason.message).toMatch(/known steps: .*\ba\b/);
      expect(letter.reason.details.knownSteps).toEqual(expect.arrayContaining(['a', 'commands', 'router']));
      expect(letter.reason.details.knownSteps).not.toContain('bogus-step');
      expect(letter).toMatchObject({ service: 'a', topic: 'internal.a.v1', stepIndex: 1, replayTopic: BOGUS });
      expect(letter.envelope.routingSlip.map((step: { id: string; status: string }) => `${step.id}:${step.status}`)).toEqual([
        'a:OK',
        'bogus-step:PENDING',
      ]);
      // Nothing in flight: step a's message is settled once (acked, not redelivered), nothing went to the
      // unknown topic, and the envelope was not also finalized.
      const settled = async () =>
        (await host.metrics.handlerSeconds.get()).values.find(
          (value) => value.labels.topic === 'internal.a.v1' && value.metricName?.endsWith('_count'),
        )?.value ?? 0;
      let count = 0;
      await waitFor(async () => (count = await settled()) >= 1);
      const consumed = (await host.metrics.consumed.get()).values.filter((value) => value.labels.topic === 'internal.a.v1');
      expect(consumed.map((value) => value.value)).toEqual([1]);
      const published = (await host.metrics.published.get()).values.filter((value) => value.labels.topic === BOGUS);
      expect(published).toEqual([]);
      const deadLettered = (await host.metrics.deadLettered.get()).values.filter((value) => value.labels.code === 'UNKNOWN_STEP');
      expect(deadLettered.map((value) => value.value)).toEqual([1]);
      expect(bogusReader.on(BOGUS)).toEqual([]);
      expect(observer.envelopes(Topic.finalizer).filter((value) => value.id === envelope.id)).toEqual([]);
      expect(count).toBe(1);
    });

    it('a stage consumer hands every envelope on to its next topic, and a thrown retryable BitBratError is retried', async () => {
      let calls = 0;
      const stage = defineService({
        name: 'stage',
        setup: () => ({
          consumers: {
            'internal.stage-in.v1': {
              mode: 'stage',
              next: Topic.finalizer,
              handle: async (envelope) => {
                calls += 1;
                if (calls === 1) throw new BitBratError('PROVIDER_ERROR', 'transient', { retryable: true });
                return continueWith({ ...envelope, payload: { ...envelope.payload, staged: true } });
              },
            },
          },
        }),
      });
      const { observer } = await start([stage]);
      const envelope = chat([]);
      await bus.publish('internal.stage-in.v1', encoder.encode(JSON.stringify(envelope)));
      const out: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
      expect(out.payload.staged).toBe(true);
      expect(calls).toBe(2);
    });
  });
}
