import { describe, expect, it } from 'vitest';
import { createInflightTracker } from '../../src/runtime/inflight.js';

const FINALS = ['internal.finalizer.v1', 'internal.deadletter.v1'];

describe('the in-flight tracker', () => {
  it('remembers the last topic and time each envelope was published to, and who published it', () => {
    const tracker = createInflightTracker({ finalTopics: FINALS });
    const now = Date.now();
    tracker.published('e1', 'c1', 'internal.ingress.v1', 'ingress-egress', now - 2_000);
    tracker.published('e1', 'c1', 'internal.llm-bot.v1', 'event-router', now - 1_000);
    expect(tracker.get('e1')).toEqual({ id: 'e1', correlationId: 'c1', topic: 'internal.llm-bot.v1', by: 'event-router', at: now - 1_000 });
    expect(tracker.size).toBe(1);
  });

  it('forgets an envelope once it is published to the finalizer or the dead-letter topic', () => {
    const tracker = createInflightTracker({ finalTopics: FINALS });
    tracker.published('e1', 'c1', 'internal.commands.v1', 'event-router');
    tracker.published('e2', 'c2', 'internal.commands.v1', 'event-router');
    tracker.published('e1', 'c1', 'internal.finalizer.v1', 'commands');
    tracker.published('e2', 'c2', 'internal.deadletter.v1', 'commands');
    expect(tracker.get('e1')).toBeUndefined();
    expect(tracker.get('e2')).toBeUndefined();
    expect(tracker.size).toBe(0);
  });

  it('keeps at most max entries, dropping the least recently published first', () => {
    const tracker = createInflightTracker({ finalTopics: FINALS, max: 3 });
    for (const id of ['a', 'b', 'c']) tracker.published(id, id, 'internal.router.v1', 'auth');
    // 'a' moves on: it is now the newest.
    tracker.published('a', 'a', 'internal.commands.v1', 'event-router');
    tracker.published('d', 'd', 'internal.router.v1', 'auth');
    expect(tracker.list().map((entry) => entry.id)).toEqual(['c', 'a', 'd']);
    expect(tracker.list(2).map((entry) => entry.id)).toEqual(['a', 'd']);
  });

  it('drops entries older than ttlMs as new ones arrive', () => {
    const now = Date.now();
    const tracker = createInflightTracker({ finalTopics: FINALS, ttlMs: 1_000 });
    tracker.published('old', 'old', 'internal.router.v1', 'auth', now - 5_000);
    expect(tracker.get('old')).toBeUndefined();
    tracker.published('new', 'new', 'internal.router.v1', 'auth', now);
    expect(tracker.list().map((entry) => entry.id)).toEqual(['new']);
  });
});
