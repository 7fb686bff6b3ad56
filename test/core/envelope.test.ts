import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createEnvelope,
  createStep,
  generatedSchemaFiles,
  newTraceId,
  traceparentFor,
  validateEnvelope,
  ErrorCode,
  ErrorDescriptions,
  replanSlip,
  backoffDelayMs,
  currentStepIndex,
  encodeRaw,
  decodeRaw,
} from '../../src/core/index.js';

const root = path.resolve(import.meta.dirname, '..', '..');
const fixture = (name: string) => JSON.parse(readFileSync(path.join(root, 'test', 'fixtures', name), 'utf8'));

describe('the envelope schema', () => {
  it('accepts the seed example envelope: a chat message with a three-step slip', () => {
    const result = validateEnvelope(fixture('seed-000-example-envelope.json'));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.envelope.routingSlip.map((step) => step.id)).toEqual(['service1', 'service2', 'service3']);
  });

  it('accepts the seed IRC envelope with an empty slip', () => {
    const result = validateEnvelope(fixture('seed-003-irc-envelope.json'));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.envelope.payload.badges).toEqual(['subscriber']);
  });

  it('rejects an envelope with a missing field and names every problem', () => {
    const broken = fixture('seed-000-example-envelope.json');
    delete broken.correlationId;
    broken.routingSlip[0].status = 'DONE';
    const result = validateEnvelope(broken);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error).toContain('correlationId');
      expect(result.error).toContain('routingSlip.0.status');
    }
  });

  it('rejects another envelope version', () => {
    expect(validateEnvelope({ ...fixture('seed-000-example-envelope.json'), v: '2' }).ok).toBe(false);
  });

  it('keeps unknown fields so newer producers do not lose data through older services', () => {
    const result = validateEnvelope({ ...fixture('seed-000-example-envelope.json'), futureField: { a: 1 } });
    expect(result.ok && (result.envelope as Record<string, unknown>).futureField).toEqual({ a: 1 });
  });

  it('accepts the InternalEventV2 fields', () => {
    const envelope = createEnvelope({
      type: 'twitch.eventsub.v1',
      source: { platform: 'twitch', channel: 'c', channelId: '1' },
      extra: {
        externalEvent: {
          id: 'm1',
          source: 'twitch.eventsub',
          kind: 'channel.follow',
          version: '2',
          createdAt: new Date().toISOString(),
          payload: { a: 1 },
        },
        annotations: [{ id: 'a', kind: 'intent', source: 'qa', createdAt: new Date().toISOString(), label: 'question' }],
        candidates: [{ id: 'c', kind: 'text', source: 'x', createdAt: new Date().toISOString(), text: 'hi' }],
        errors: [{ code: 'X', message: 'y', at: new Date().toISOString() }],
        qos: { maxResponseMs: 5000 },
      },
    });
    expect(validateEnvelope(envelope).ok).toBe(true);
  });
});

describe('the builders', () => {
  it('create distinct ids, a correlation id equal to the id for a new conversation, and W3C trace ids', () => {
    const a = createEnvelope({ type: 't', source: { platform: 'p', channel: 'c', channelId: '1' } });
    const b = createEnvelope({ type: 't', source: { platform: 'p', channel: 'c', channelId: '1' }, correlationId: a.correlationId });
    expect(a.id).not.toBe(b.id);
    expect(a.correlationId).toBe(a.id);
    expect(b.correlationId).toBe(a.id);
    expect(a.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(a.finalizationDestination).toBe('internal.finalizer.v1');
    expect(traceparentFor(newTraceId())).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(validateEnvelope(a).ok).toBe(true);
  });

  it('build steps that publish to internal.<id>.v1', () => {
    expect(createStep('llm-bot')).toMatchObject({ id: 'llm-bot', status: 'PENDING', destination: 'internal.llm-bot.v1', maxAttempts: 3 });
  });
});

describe('the slip helpers', () => {
  it('re-planning keeps finished steps as history and replaces the pending ones', () => {
    const envelope = createEnvelope({
      type: 't',
      source: { platform: 'p', channel: 'c', channelId: '1' },
      routingSlip: [createStep('a'), createStep('b')],
    });
    envelope.routingSlip[0]!.status = 'OK';
    const replanned = replanSlip(envelope, [createStep('c')]);
    expect(replanned.routingSlip.map((step) => step.id)).toEqual(['a', 'c']);
    expect(currentStepIndex(replanned)).toBe(1);
  });

  it('backoff grows exponentially, is capped, and is jittered within half the ceiling', () => {
    expect(backoffDelayMs(1, { baseMs: 100, random: () => 0 })).toBe(50);
    expect(backoffDelayMs(3, { baseMs: 100, random: () => 1 })).toBe(400);
    expect(backoffDelayMs(30, { baseMs: 100, maxMs: 1000, random: () => 1 })).toBe(1000);
  });

  it('raw bytes round-trip through a dead letter as text or base64', () => {
    const text = new TextEncoder().encode('{"a":1}');
    expect(encodeRaw(text)).toEqual({ raw: '{"a":1}', rawEncoding: 'utf8' });
    const binary = new Uint8Array([0xff, 0xfe, 0x00]);
    const encoded = encodeRaw(binary);
    expect(encoded.rawEncoding).toBe('base64');
    expect([...decodeRaw(encoded)]).toEqual([0xff, 0xfe, 0x00]);
  });
});

describe('the generated JSON Schema', () => {
  it('is up to date with the zod schema (run `npm run schemas` when this fails)', () => {
    for (const [file, content] of Object.entries(generatedSchemaFiles())) {
      expect(readFileSync(path.join(root, 'schemas', file), 'utf8'), `schemas/${file} is stale`).toBe(content);
    }
  });

  it('describes the required envelope fields', () => {
    const schema = JSON.parse(generatedSchemaFiles()['envelope.v1.json']!);
    expect(schema.required).toEqual(
      expect.arrayContaining(['v', 'id', 'correlationId', 'traceId', 'timestamp', 'type', 'source', 'user', 'routingSlip', 'payload']),
    );
  });
});

describe('the error code registry', () => {
  it('describes every code and nothing else', () => {
    expect(Object.keys(ErrorDescriptions).sort()).toEqual(Object.values(ErrorCode).sort());
    for (const [code, value] of Object.entries(ErrorCode)) expect(code).toBe(value);
  });
});
