/**
 * Envelope validation throughput: `validateEnvelope` (the fast check, zod only when it defers) against
 * zod's own `safeParse`, on envelopes as the bus delivers them (freshly JSON-parsed): a chat message
 * with a six-step slip part-way through, a fully populated envelope, and the IRC seed fixture.
 * Not a timed test; `npm run bench` prints the JSON.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createEnvelope, createReply, createStep, EnvelopeSchema, validateEnvelope } from '../src/core/index.js';
import { round } from './stats.js';

const now = () => new Date().toISOString();

function chatEnvelope(): unknown {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'bench', channel: 'bench', channelId: '1', egressDestination: 'internal.egress.v1' },
    user: { id: 'u1', name: 'viewer1', displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
    payload: { text: 'message number 1 with a little text in it' },
    routingSlip: Array.from({ length: 6 }, (_, i) =>
      createStep(
        `bench-s${i + 1}`,
        i < 3 ? { status: 'OK', attempt: 1, startedAt: now(), endedAt: now(), attributes: { traceparent: 'x' } } : {},
      ),
    ),
    extra: { message: { id: 'm1', text: 'message number 1 with a little text in it' } },
  });
}

function fullEnvelope(): unknown {
  return createEnvelope({
    type: 'twitch.eventsub.v1',
    source: { platform: 'twitch', channel: 'c', channelId: '1' },
    routingSlip: [createStep('auth', { status: 'OK', startedAt: now(), endedAt: now(), error: null }), createStep('router')],
    extra: {
      message: { id: 'm', text: '!so friend', command: 'so', args: ['friend'] },
      externalEvent: { id: 'e1', source: 'eventsub', kind: 'channel.follow', version: '2', createdAt: now(), payload: { user: 'x' } },
      annotations: [{ id: 'a', kind: 'intent', source: 'query-analyzer', createdAt: now(), label: 'command', value: 0.9, score: 0.9 }],
      candidates: [createReply('command-processor', 'shout-out to friend!')],
      errors: [{ code: 'X', message: 'y', at: now(), step: 's', stepIndex: 1 }],
      qos: { maxResponseMs: 5000 },
      delivery: { delivered: true, at: now(), platformMessageIds: ['1'] },
    },
  });
}

const fixture = (name: string) =>
  JSON.parse(readFileSync(path.join(import.meta.dirname, '..', 'test', 'fixtures', name), 'utf8')) as unknown;

/** Runs the benchmark and returns one JSON-able line per envelope shape. */
export async function benchEnvelopeCheck(options: { iterations?: number } = {}): Promise<Array<Record<string, unknown>>> {
  const iterations = options.iterations ?? 100_000;
  const shapes: Array<[string, unknown]> = [
    ['chat-6-steps', chatEnvelope()],
    ['every-field', fullEnvelope()],
    ['seed-irc', fixture('seed-003-irc-envelope.json')],
  ];
  const lines: Array<Record<string, unknown>> = [];
  for (const [shape, envelope] of shapes) {
    // As consumed from the bus: each message is a fresh object graph from JSON.parse.
    const text = JSON.stringify(envelope);
    const inputs = Array.from({ length: 1_000 }, () => JSON.parse(text) as unknown);
    const measure = (check: (input: unknown) => boolean) => {
      for (let i = 0; i < 20_000; i += 1) if (!check(inputs[i % inputs.length])) throw new Error(`${shape} did not validate`); // warm-up
      const started = performance.now();
      for (let i = 0; i < iterations; i += 1) if (!check(inputs[i % inputs.length])) throw new Error(`${shape} did not validate`);
      const elapsedMs = performance.now() - started;
      return { perSec: round((iterations / elapsedMs) * 1000, 0), nsPerCheck: round((elapsedMs * 1e6) / iterations, 0) };
    };
    const fast = measure((input) => validateEnvelope(input).ok);
    const zod = measure((input) => EnvelopeSchema.safeParse(input).success);
    lines.push({
      scenario: 'envelope-check',
      shape,
      bytes: text.length,
      iterations,
      validatePerSec: fast.perSec,
      validateNs: fast.nsPerCheck,
      zodPerSec: zod.perSec,
      zodNs: zod.nsPerCheck,
      speedupOverZod: round(fast.perSec / zod.perSec),
      node: process.version,
    });
  }
  return lines;
}
