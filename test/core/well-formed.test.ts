import { describe, expect, it } from 'vitest';
import { validateEnvelope, wellFormedDeep, wellFormedText } from '../../src/core/index.js';
import { chatEnvelope } from '../support/envelopes.js';

describe('well-formed text', () => {
  it('replaces NUL and lone surrogates with U+FFFD and keeps surrogate pairs', () => {
    expect(wellFormedText('a\u0000b')).toBe('a\uFFFDb');
    expect(wellFormedText('x\uD800y')).toBe('x\uFFFDy');
    expect(wellFormedText('\uDC00 tail')).toBe('\uFFFD tail');
    expect(wellFormedText('end \uD83D')).toBe('end \uFFFD');
    expect(wellFormedText('pair 😀 ok')).toBe('pair 😀 ok');
    expect(wellFormedText('\uDE00\uD83D')).toBe('\uFFFD\uFFFD');
  });

  it('repairs strings and keys inside objects and arrays, and returns untouched values as they are', () => {
    const clean = { a: ['x', 1, { b: 'y' }], c: null };
    expect(wellFormedDeep(clean)).toBe(clean);
    expect(wellFormedDeep({ 'k\u0000': ['ok', { deep: 'v\uD800' }], n: 2 })).toEqual({ 'k\uFFFD': ['ok', { deep: 'v\uFFFD' }], n: 2 });
  });

  it('makes every string of a built envelope well-formed, so a console or platform message can be recorded', () => {
    const envelope = chatEnvelope({
      text: 'hi\u0000there \uDC00',
      source: { platform: 'api', channel: 'con\u0000sole', channelId: 'console' },
      user: { id: 'u', name: 'eve\uD800', displayName: 'Eve' },
      messageId: 'm1',
    });
    expect(envelope.payload.text).toBe('hi\uFFFDthere \uFFFD');
    expect(envelope.message?.text).toBe('hi\uFFFDthere \uFFFD');
    expect(envelope.user.name).toBe('eve\uFFFD');
    expect(envelope.source.channel).toBe('con\uFFFDsole');
    expect(JSON.stringify(envelope)).not.toMatch(/\\u0000|\\ud[89a-f]/i);
    expect(validateEnvelope(envelope).ok).toBe(true);
  });
});
