import { describe, expect, it } from 'vitest';
import { createAnnotation, createEnvelope, messageText, withAnnotations, type Envelope } from '../../src/core/index.js';

function event(payload: Record<string, unknown>, message?: Envelope['message']): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'test', channel: 'chan', channelId: '1' },
    payload,
    ...(message ? { extra: { message } } : {}),
  });
}

describe('annotation and message-text helpers', () => {
  it('createAnnotation fills in a fresh id, the writing service and the time', () => {
    const first = createAnnotation(
      'auth',
      { kind: 'moderation', label: 'banned', value: true, payload: { action: 'ignore' } },
      '2026-01-01T00:00:00.000Z',
    );
    const second = createAnnotation('auth', { kind: 'moderation' });
    expect(first).toMatchObject({
      kind: 'moderation',
      source: 'auth',
      createdAt: '2026-01-01T00:00:00.000Z',
      label: 'banned',
      value: true,
      payload: { action: 'ignore' },
    });
    expect(first.id).not.toBe(second.id);
    expect(Number.isNaN(Date.parse(second.createdAt))).toBe(false);
  });

  it('withAnnotations appends to a copy and leaves the original envelope as it was', () => {
    const original = event({});
    original.annotations = [createAnnotation('a', { kind: 'first' })];
    const out = withAnnotations(original, createAnnotation('b', { kind: 'second' }), createAnnotation('b', { kind: 'third' }));
    expect(out.annotations!.map((annotation) => annotation.kind)).toEqual(['first', 'second', 'third']);
    expect(original.annotations.map((annotation) => annotation.kind)).toEqual(['first']);
  });

  it('messageText prefers message.text, falls back to a string payload.text, and is undefined otherwise', () => {
    expect(messageText(event({ text: 'from payload' }, { text: 'from message' }))).toBe('from message');
    expect(messageText(event({ text: 'from payload' }))).toBe('from payload');
    expect(messageText(event({ text: 42 }))).toBeUndefined();
    expect(messageText(event({}))).toBeUndefined();
  });
});
