import { describe, expect, it } from 'vitest';
import { BitBratError, Topic, createEnvelope, createReply, createStep, type Envelope } from '../../src/core/index.js';
import {
  DeadlineError,
  FAILURE_ROUTES,
  SUCCESS_ROUTES,
  failureHop,
  failureOf,
  guardStep,
  nextHop,
  onFailure,
  onRawFailure,
  protectHistory,
  recordFailure,
  recordSuccess,
  stepTimeoutMs,
  type NextHopInput,
} from '../../src/runtime/slip-policy.js';
import { knownSteps, loadArchitecture } from '../../src/runtime/manifest.js';
import { testArchitecture } from '../support/harness.js';

const NOW = '2026-01-01T00:00:00.000Z';
const retry = { baseMs: 100, maxMs: 1_000, random: () => 1 };

function envelopeWith(slip: string[], options: { egress?: boolean; reply?: boolean; finalization?: boolean } = {}): Envelope {
  const envelope = createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'test', channel: 'c', channelId: '1', ...(options.egress ? { egressDestination: Topic.egress } : {}) },
    user: { id: 'u1', name: 'viewer', displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
    payload: { text: 'hi' },
    routingSlip: slip.map((id) => createStep(id)),
  });
  if (options.reply) envelope.candidates = [createReply('a', 'hello')];
  if (options.finalization === false) delete envelope.finalizationDestination;
  return envelope;
}

/** Where a finished envelope goes next: the topic, and the suffix of the message id that keeps a redelivery single. */
const HAND_ON = {
  egress: { topic: Topic.egress, key: 'egress' },
  finalization: { topic: Topic.finalizer, key: 'final' },
} as const;
/** The publish order that hands `envelope` on to egress or the finalizer with `outcome`. */
const handOn = (hop: keyof typeof HAND_ON, envelope: Envelope, outcome: string) => ({
  action: 'publish',
  hop,
  topic: HAND_ON[hop].topic,
  msgId: `${envelope.id}:${HAND_ON[hop].key}`,
  outcome,
});

/** The envelope after step `done` of its slip ran (marked OK), as the engine hands it to nextHop. */
function after(envelope: Envelope, done: number, kind: 'continue' | 'skip' | 'handled' = 'continue'): Envelope {
  recordSuccess(envelope, done, kind, NOW);
  return envelope;
}

const hop = (input: Partial<NextHopInput> & Pick<NextHopInput, 'mode' | 'envelope'>) =>
  nextHop({ topic: 'internal.a.v1', stepIndex: -1, result: { kind: 'continue' }, ...input });

describe('the slip policy table', () => {
  it('covers every consumer mode with an envelope for every successful result and every failure', () => {
    for (const mode of ['step', 'slip', 'stage', 'sink'] as const) {
      expect(Object.keys(SUCCESS_ROUTES[mode]).sort()).toEqual(['continue', 'handled', 'skip']);
      expect(['finalization', 'dead-letter']).toContain(FAILURE_ROUTES[mode]);
    }
  });
});

describe('step mode', () => {
  it('continue publishes to the next PENDING step, keyed by envelope, step and topic', () => {
    const envelope = after(envelopeWith(['a', 'b']), 0);
    expect(hop({ mode: 'step', envelope, stepIndex: 0 })).toEqual({
      action: 'publish',
      hop: 'step',
      topic: 'internal.b.v1',
      msgId: `${envelope.id}:0:internal.a.v1`,
    });
  });

  it('skip marks the step SKIP and moves on like continue', () => {
    const envelope = after(envelopeWith(['a', 'b']), 0, 'skip');
    expect(envelope.routingSlip[0]).toMatchObject({ status: 'SKIP', endedAt: NOW, error: null });
    expect(hop({ mode: 'step', envelope, stepIndex: 0, result: { kind: 'skip' } })).toMatchObject({
      action: 'publish',
      hop: 'step',
      topic: 'internal.b.v1',
    });
  });

  it('continue on the last step with a reply and an egress destination goes to egress as completed', () => {
    const envelope = after(envelopeWith(['a'], { egress: true, reply: true }), 0);
    expect(hop({ mode: 'step', envelope, stepIndex: 0 })).toEqual(handOn('egress', envelope, 'completed'));
  });

  it('continue on the last step without a reply is finalized as completed even when there is an egress destination', () => {
    const envelope = after(envelopeWith(['a'], { egress: true }), 0);
    expect(hop({ mode: 'step', envelope, stepIndex: 0 })).toEqual(handOn('finalization', envelope, 'completed'));
  });

  it('skip on the last step without a reply goes to egress when the sender waits to hear the ending (qos.reportEnding)', () => {
    const envelope = after({ ...envelopeWith(['a'], { egress: true }), qos: { reportEnding: true } }, 0, 'skip');
    expect(hop({ mode: 'step', envelope, stepIndex: 0, result: { kind: 'skip' } })).toEqual(handOn('egress', envelope, 'completed'));
    // Without an egress destination there is nobody to tell: finalized as before.
    const nowhere = after({ ...envelopeWith(['a']), qos: { reportEnding: true } }, 0, 'skip');
    expect(hop({ mode: 'step', envelope: nowhere, stepIndex: 0, result: { kind: 'skip' } })).toMatchObject({
      action: 'publish',
      hop: 'finalization',
    });
  });

  it('a recorded failure goes to egress as failed when the sender waits to hear the ending, but never from the egress stage itself', () => {
    const envelope = { ...envelopeWith(['a'], { egress: true }), qos: { reportEnding: true } };
    expect(failureHop('step', envelope, 0, 'internal.a.v1', 'X', 'x')).toEqual(handOn('egress', envelope, 'failed'));
    expect(failureHop('stage', envelope, -1, Topic.egress, 'X', 'x')).toMatchObject({ action: 'publish', hop: 'finalization' });
    expect(failureHop('step', envelopeWith(['a'], { egress: true }), 0, 'internal.a.v1', 'X', 'x')).toMatchObject({
      action: 'publish',
      hop: 'finalization',
    });
  });

  it('continue on the last step keeps an outcome an earlier step already set', () => {
    const envelope = after(envelopeWith(['a']), 0);
    envelope.outcome = 'unrouted';
    expect(hop({ mode: 'step', envelope, stepIndex: 0 })).toMatchObject({ hop: 'finalization', outcome: 'unrouted' });
  });

  it('handled goes to egress when there is an egress destination, and later steps stay PENDING', () => {
    const envelope = after(envelopeWith(['a', 'b'], { egress: true }), 0, 'handled');
    expect(hop({ mode: 'step', envelope, stepIndex: 0, result: { kind: 'handled' } })).toMatchObject({
      action: 'publish',
      hop: 'egress',
      topic: Topic.egress,
      outcome: 'handled',
    });
    expect(envelope.routingSlip[1]?.status).toBe('PENDING');
  });

  it('handled without an egress destination is finalized with the outcome the handler chose', () => {
    const envelope = after(envelopeWith(['a', 'b']), 0, 'handled');
    expect(hop({ mode: 'step', envelope, stepIndex: 0, result: { kind: 'handled', outcome: 'unrouted' } })).toMatchObject({
      hop: 'finalization',
      outcome: 'unrouted',
    });
  });

  it('an envelope with nowhere to be finalized is dead-lettered with NO_FINALIZATION_DESTINATION (R6)', () => {
    const envelope = after(envelopeWith(['a'], { finalization: false }), 0);
    expect(hop({ mode: 'step', envelope, stepIndex: 0 })).toEqual({
      action: 'dead-letter',
      code: 'NO_FINALIZATION_DESTINATION',
      reason: 'the envelope had to be finalized but has no finalizationDestination',
      stepIndex: 0,
      replayTopic: Topic.finalizer,
      outcome: 'completed',
    });
  });

  it('a next step that no service serves is dead-lettered with UNKNOWN_STEP naming the step and the known ones', () => {
    const envelope = after(envelopeWith(['a', 'bogus']), 0);
    const served = new Set(['internal.a.v1', 'internal.b.v1']);
    expect(hop({ mode: 'step', envelope, stepIndex: 0, isServedStep: (topic) => served.has(topic), knownSteps: ['a', 'b'] })).toEqual({
      action: 'dead-letter',
      code: 'UNKNOWN_STEP',
      reason: 'no service serves step 1 "bogus" (topic internal.bogus.v1); known steps: a, b',
      stepIndex: 1,
      replayTopic: 'internal.bogus.v1',
      details: { step: 'bogus', destination: 'internal.bogus.v1', knownSteps: ['a', 'b'] },
    });
  });

  it('a next step without a destination is dead-lettered as ENVELOPE_INVALID', () => {
    const envelope = after(envelopeWith(['a', 'b']), 0);
    delete envelope.routingSlip[1]!.destination;
    expect(hop({ mode: 'step', envelope, stepIndex: 0 })).toMatchObject({ action: 'dead-letter', code: 'ENVELOPE_INVALID', stepIndex: 1 });
  });

  it('runs only the envelope current step: another step topic is a SLIP_MISMATCH dead letter (R7)', () => {
    expect(guardStep(envelopeWith(['a', 'b']), 'internal.a.v1')).toEqual({ stepIndex: 0 });
    expect(guardStep(envelopeWith(['b', 'a']), 'internal.a.v1')).toEqual({
      action: 'dead-letter',
      code: 'SLIP_MISMATCH',
      reason: 'current step 0 (b) is for internal.b.v1, not internal.a.v1',
      stepIndex: 0,
    });
    const finished = after(envelopeWith(['a']), 0);
    expect(guardStep(finished, 'internal.a.v1')).toMatchObject({ code: 'SLIP_MISMATCH', reason: 'the slip has no PENDING step' });
  });
});

describe('slip mode (a consumer that is not a step, like the router on authenticated)', () => {
  it('continue routes by the slip the handler assigned, to its first PENDING step', () => {
    const envelope = envelopeWith(['query-analyzer', 'router']);
    expect(hop({ mode: 'slip', envelope, topic: Topic.authenticated })).toEqual({
      action: 'publish',
      hop: 'step',
      topic: 'internal.query-analyzer.v1',
      msgId: `${envelope.id}:-1:${Topic.authenticated}`,
    });
  });

  it('continue with an empty slip is finalized, since there is no step of its own to mark', () => {
    const envelope = envelopeWith([]);
    expect(hop({ mode: 'slip', envelope, topic: Topic.authenticated })).toMatchObject({ hop: 'finalization', outcome: 'completed' });
  });

  it('continue into a slip whose first step no service serves is dead-lettered with UNKNOWN_STEP', () => {
    const envelope = envelopeWith(['bogus-step']);
    expect(hop({ mode: 'slip', envelope, topic: Topic.authenticated, isServedStep: () => false, knownSteps: [] })).toMatchObject({
      action: 'dead-letter',
      code: 'UNKNOWN_STEP',
      stepIndex: 0,
      reason: 'no service serves step 0 "bogus-step" (topic internal.bogus-step.v1); known steps: none',
    });
  });

  it('handled goes to egress like a step would', () => {
    const envelope = envelopeWith([], { egress: true });
    expect(hop({ mode: 'slip', envelope, result: { kind: 'handled' } })).toMatchObject({ hop: 'egress', outcome: 'handled' });
  });
});

describe('stage mode (a fixed pipeline stage with a next)', () => {
  it('continue hands the envelope to the stage next topic, whatever its slip says, without deciding the outcome', () => {
    const envelope = envelopeWith(['a']);
    expect(hop({ mode: 'stage', next: Topic.authenticated, envelope, topic: Topic.ingress })).toEqual({
      action: 'publish',
      hop: 'stage-next',
      topic: Topic.authenticated,
      msgId: `${envelope.id}:-1:${Topic.ingress}`,
    });
  });

  it('skip hands the envelope on like continue', () => {
    const envelope = envelopeWith([]);
    expect(hop({ mode: 'stage', next: Topic.authenticated, envelope, result: { kind: 'skip' } })).toMatchObject({
      hop: 'stage-next',
      topic: Topic.authenticated,
    });
  });

  it('continue with next finalization finalizes as completed (the egress stage after delivering)', () => {
    const envelope = envelopeWith([], { egress: true, reply: true });
    expect(hop({ mode: 'stage', next: 'finalization', envelope, topic: Topic.egress })).toMatchObject({
      hop: 'finalization',
      outcome: 'completed',
    });
  });

  it('handled on a stage goes to egress when there is an egress destination', () => {
    const envelope = envelopeWith([], { egress: true });
    expect(hop({ mode: 'stage', next: Topic.authenticated, envelope, result: { kind: 'handled' } })).toMatchObject({
      hop: 'egress',
      outcome: 'handled',
    });
  });

  it('handled on the egress stage itself is finalized, never sent back to egress', () => {
    const envelope = envelopeWith([], { egress: true });
    expect(hop({ mode: 'stage', next: 'finalization', envelope, topic: Topic.egress, result: { kind: 'handled' } })).toMatchObject({
      hop: 'finalization',
      outcome: 'handled',
    });
  });

  it('a stage without a next topic is a configuration error', () => {
    expect(() => hop({ mode: 'stage', envelope: envelopeWith([]) })).toThrow(BitBratError);
  });
});

describe('sink mode (the end of the line, like the finalizer)', () => {
  it('continueWith() in a sink only acks: nothing is published, even with PENDING steps or a reply', () => {
    const envelope = envelopeWith(['b'], { egress: true, reply: true });
    expect(hop({ mode: 'sink', envelope })).toEqual({ action: 'ack' });
  });

  it('skip and handled in a sink only ack too', () => {
    expect(hop({ mode: 'sink', envelope: envelopeWith([]), result: { kind: 'skip' } })).toEqual({ action: 'ack' });
    expect(hop({ mode: 'sink', envelope: envelopeWith([], { egress: true }), result: { kind: 'handled' } })).toEqual({ action: 'ack' });
  });

  it('a failure that is not retried goes to the DLQ with the handler code, replayable onto the sink topic', () => {
    const envelope = envelopeWith([]);
    expect(failureHop('sink', envelope, -1, Topic.finalizer, 'STORE_CONSTRAINT', 'bad row')).toEqual({
      action: 'dead-letter',
      code: 'STORE_CONSTRAINT',
      reason: 'bad row',
      replayTopic: Topic.finalizer,
    });
  });
});

describe('failures (R4/R5)', () => {
  it('a retryable failure with attempts left is redelivered after a capped exponential backoff', () => {
    expect(onFailure({ mode: 'step', retryable: true, attempt: 1, maxAttempts: 3, retry })).toEqual({ action: 'retry', delayMs: 100 });
    expect(onFailure({ mode: 'step', retryable: true, attempt: 2, maxAttempts: 3, retry })).toEqual({ action: 'retry', delayMs: 200 });
    expect(onFailure({ mode: 'stage', retryable: true, attempt: 9, maxAttempts: 10, retry })).toEqual({ action: 'retry', delayMs: 1_000 });
  });

  it('a retryable failure on its last attempt is recorded as exhausted and finalized', () => {
    expect(onFailure({ mode: 'step', retryable: true, attempt: 3, maxAttempts: 3, retry })).toEqual({
      action: 'record',
      then: 'finalization',
      exhausted: true,
    });
  });

  it('a non-retryable failure is recorded at once, in every mode', () => {
    expect(onFailure({ mode: 'step', retryable: false, attempt: 1, maxAttempts: 3, retry })).toEqual({
      action: 'record',
      then: 'finalization',
      exhausted: false,
    });
    expect(onFailure({ mode: 'slip', attempt: 1, maxAttempts: 3, retry })).toMatchObject({ then: 'finalization' });
    expect(onFailure({ mode: 'stage', attempt: 1, maxAttempts: 3, retry })).toMatchObject({ then: 'finalization' });
    expect(onFailure({ mode: 'sink', attempt: 1, maxAttempts: 3, retry })).toMatchObject({ then: 'dead-letter' });
  });

  it('a recorded failure marks the step ERROR, appends the error and marks the envelope failed', () => {
    const envelope = envelopeWith(['a', 'b']);
    const message = recordFailure(envelope, {
      failure: { kind: 'failed', code: 'PROVIDER_ERROR', message: 'down', retryable: true, details: { status: 503 } },
      exhausted: true,
      attempt: 3,
      service: 'svc',
      stepIndex: 0,
      now: NOW,
    });
    expect(message).toBe('down (gave up after 3 attempts)');
    expect(envelope.routingSlip[0]).toMatchObject({
      status: 'ERROR',
      endedAt: NOW,
      error: { code: 'PROVIDER_ERROR', message, retryable: true },
    });
    expect(envelope.routingSlip[1]?.status).toBe('PENDING');
    expect(envelope.errors).toEqual([
      { code: 'PROVIDER_ERROR', message, service: 'svc', at: NOW, retryable: true, step: 'a', stepIndex: 0, details: { status: 503 } },
    ]);
    expect(envelope.outcome).toBe('failed');
    expect(envelope.delivery).toBeUndefined();
  });

  /** Records a first, not retried failure of `service` that ran outside any step (a stage or a sink). */
  const failOutsideStep = (
    envelope: Envelope,
    service: string,
    failure: { code: string; message: string },
    extra: { deliveryTopic?: string } = {},
  ) =>
    recordFailure(envelope, {
      failure: { kind: 'failed', ...failure },
      exhausted: false,
      attempt: 1,
      service,
      stepIndex: -1,
      now: NOW,
      ...extra,
    });

  it('a failure outside a step is recorded on the envelope without a step', () => {
    const envelope = envelopeWith([]);
    failOutsideStep(envelope, 'svc', { code: 'FORBIDDEN', message: 'no' });
    expect(envelope.errors).toEqual([{ code: 'FORBIDDEN', message: 'no', service: 'svc', at: NOW, retryable: false }]);
  });

  it('the egress stage records an undelivered reply with the failure code', () => {
    const envelope = envelopeWith([]);
    failOutsideStep(envelope, 'egress', { code: 'DEADLINE', message: 'late' }, { deliveryTopic: Topic.egress });
    expect(envelope.delivery).toEqual({ delivered: false, at: NOW, destination: Topic.egress, reason: 'DEADLINE' });
  });

  it('a recorded failure is finalized, or dead-lettered when there is no finalization destination', () => {
    const envelope = envelopeWith(['a']);
    expect(failureHop('step', envelope, 0, 'internal.a.v1', 'X', 'x')).toMatchObject({ action: 'publish', hop: 'finalization' });
    expect(failureHop('step', envelopeWith(['a'], { finalization: false }), 0, 'internal.a.v1', 'X', 'x')).toMatchObject({
      action: 'dead-letter',
      code: 'NO_FINALIZATION_DESTINATION',
    });
  });

  it('a handler exception becomes HANDLER_EXCEPTION, a BitBratError keeps its code, and a deadline becomes DEADLINE', () => {
    expect(failureOf(new Error('kaboom'))).toEqual({ kind: 'failed', code: 'HANDLER_EXCEPTION', message: 'kaboom', retryable: false });
    expect(failureOf(new BitBratError('PROVIDER_ERROR', 'flaky', { retryable: true }))).toMatchObject({
      kind: 'failed',
      code: 'PROVIDER_ERROR',
      retryable: true,
    });
    expect(failureOf(new DeadlineError('too slow'))).toEqual({ kind: 'failed', code: 'DEADLINE', message: 'too slow', retryable: false });
  });

  it('a dependency being down is not the message failure: the engine holds it', () => {
    for (const code of ['STORE_UNAVAILABLE', 'BUS_UNAVAILABLE', 'PUBLISH_FAILED'] as const)
      expect(failureOf(new BitBratError(code, 'down')).kind).toBe('hold');
  });

  it('a raw consumer retries a retryable failure while deliveries are left, then terminates the message', () => {
    expect(onRawFailure({ retryable: true, deliveryCount: 1, retry })).toEqual({ action: 'retry', delayMs: 100 });
    expect(onRawFailure({ retryable: true, deliveryCount: 3, retry })).toEqual({ action: 'terminate' });
    expect(onRawFailure({ retryable: false, deliveryCount: 1, retry })).toEqual({ action: 'terminate' });
  });
});

describe('history and deadlines (R9/R10)', () => {
  it('a handler that drops or rewrites the step it ran gets the runtime step back', () => {
    const envelope = envelopeWith(['router']);
    const step = { ...envelope.routingSlip[0]!, status: 'OK' as const, attempt: 1 };
    const replanned = { ...envelope, routingSlip: [createStep('c')] };
    protectHistory(replanned, step, 0);
    expect(replanned.routingSlip.map((s) => `${s.id}:${s.status}`)).toEqual(['router:OK', 'c:PENDING']);
    const rewritten = { ...envelope, routingSlip: [{ ...step, status: 'PENDING' as const, attempt: 9 }] };
    protectHistory(rewritten, step, 0);
    expect(rewritten.routingSlip[0]).toMatchObject({ status: 'OK', attempt: 1 });
  });

  it('the step budget is its timeout bounded by the reply deadline, which a sink ignores', () => {
    expect(stepTimeoutMs('step', undefined, undefined, 0)).toBeUndefined();
    expect(stepTimeoutMs('step', 500, undefined, 0)).toBe(500);
    expect(stepTimeoutMs('step', 500, 200, 0)).toBe(200);
    expect(stepTimeoutMs('step', undefined, 200, 250)).toBe(-50);
    expect(stepTimeoutMs('sink', 500, 200, 0)).toBe(500);
  });
});

describe('known steps', () => {
  it('come from the consumed step topics of architecture.yaml, without fixed stages or per-instance topics', () => {
    const architecture = loadArchitecture();
    const expected = Object.values(architecture.services)
      .flatMap((service) => service.consumes)
      .map((topic) => /^internal\.(.+)\.v1$/.exec(topic)?.[1])
      .filter(
        (step): step is string =>
          !!step && !['ingress', 'authenticated', 'egress', 'finalizer', 'deadletter'].includes(step) && !step.includes('{'),
      );
    expect(knownSteps()).toEqual([...new Set(expected)].sort());
    expect(knownSteps()).toEqual(expect.arrayContaining(['commands', 'llm-bot', 'query-analyzer', 'router']));
    expect(knownSteps()).not.toContain('ingress');
  });

  it('of several architectures are the steps of all of them', () => {
    const extra = testArchitecture([{ name: 'x', consumes: ['internal.a.v1', Topic.ingress, 'internal.egress.{instanceId}.v1'] }]);
    expect(knownSteps(extra)).toEqual(['a']);
    expect(knownSteps(extra, testArchitecture([{ name: 'y', consumes: ['internal.b.v1'] }]))).toEqual(['a', 'b']);
  });
});
