/**
 * The store contract: every driver runs this same suite against a real backend. Each test writes its
 * own ids (and channels/types for queries) so the tests can share one store.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, createStep, isBitBratError, wellFormedText, type DeadLetter, type Envelope } from '../../src/core/index.js';
import type { CommandRecord, EventRecord, OAuthToken, SourceState, Store } from '../../src/store/index.js';

export interface StoreFactory {
  create(): Promise<Store>;
  cleanup?(): Promise<void>;
}

const uid = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
const at = (base: string, plusMs: number) => new Date(Date.parse(base) + plusMs).toISOString();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function envelopeFor(id: string, channel: string, text: string): Envelope {
  const envelope = createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel, channelId: '42' },
    user: { id: 'u1', name: 'alice', displayName: 'Alice', profileImageUrl: '', role: 'viewer' },
    routingSlip: [createStep('router'), createStep('llm-bot')],
    extra: { message: { text }, channel },
  });
  return { ...envelope, id };
}

function ingressRecord(overrides: Partial<EventRecord> & { id: string }): EventRecord {
  const channel = overrides.channel ?? '#main';
  const text = overrides.text ?? 'hello';
  return {
    correlationId: overrides.id,
    type: 'external.chat.message.v1',
    platform: 'twitch',
    channel,
    userId: 'u1',
    userName: 'alice',
    text,
    receivedAt: '2030-01-01T00:00:00.000Z',
    ingress: { envelope: envelopeFor(overrides.id, channel, text), raw: { tags: { 'user-id': 'u1' }, emotes: [[0, 4]] } },
    ...overrides,
  };
}

function finalRecord(base: EventRecord, outcome: EventRecord['outcome'] = 'completed'): EventRecord {
  const envelope = base.ingress?.envelope ?? envelopeFor(base.id, base.channel ?? '#main', base.text ?? '');
  const final: Envelope = {
    ...envelope,
    routingSlip: envelope.routingSlip.map((step, index) => ({
      ...step,
      status: 'OK',
      attempt: 1,
      startedAt: at(base.receivedAt, index * 10),
      endedAt: at(base.receivedAt, index * 10 + 5),
    })),
    outcome,
  };
  const { ingress: _ingress, ...rest } = base;
  return {
    ...rest,
    outcome,
    finalizedAt: at(base.receivedAt, 250),
    final,
    replyDelivered: true,
    replyText: `reply to ${base.text}`,
    errors: outcome === 'failed' ? [{ code: 'HANDLER_FAILED', message: 'boom', step: 'llm-bot' }] : [],
    latencyMs: 250,
  };
}

function deadLetter(id: string, receivedAt: string): DeadLetter {
  return {
    kind: 'bitbrat.deadletter.v1',
    id,
    at: receivedAt,
    reason: { code: 'MAX_ATTEMPTS', message: 'gave up', details: { attempts: 3 } },
    topic: 'internal.llm-bot.v1',
    service: 'llm-bot',
    stepIndex: 1,
    replayTopic: 'internal.llm-bot.v1',
    raw: '{"not":"an envelope"}',
    rawEncoding: 'utf8',
  };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, `expected a ${code} error`).toBeDefined();
  expect(isBitBratError(error) ? error.code : error).toBe(code);
}

async function allPages<T>(
  fetch: (cursor?: string) => Promise<{ items: T[]; nextCursor?: string }>,
): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await fetch(cursor);
    items.push(...page.items);
    cursor = page.nextCursor;
    pages += 1;
    if (pages > 200) throw new Error('paging did not end');
  } while (cursor);
  return { items, pages };
}

export function describeStoreContract(name: string, factory: StoreFactory): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;

    beforeAll(async () => {
      store = await factory.create();
      await store.init();
    });

    afterAll(async () => {
      await store?.close();
      await factory.cleanup?.();
    });

    it('answers ping and tolerates a second init', async () => {
      await store.init();
      expect(await store.ping()).toBe(true);
    });

    describe('events', () => {
      it('keeps the first ingress when the same id is recorded again', async () => {
        const id = uid('ev');
        const first = ingressRecord({ id, text: 'first' });
        await store.recordIngress([first]);
        await store.recordIngress([{ ...ingressRecord({ id, text: 'second' }), userName: 'mallory' }]);
        const stored = await store.getEvent(id);
        expect(stored).toEqual(first);
        expect(stored?.outcome).toBeUndefined();
        expect(await store.getEvent(uid('missing'))).toBeUndefined();
      });

      it('finalizes once: a redelivered final returns no ids and changes nothing', async () => {
        const ingress = ingressRecord({ id: uid('ev') });
        await store.recordIngress([ingress]);
        const final = finalRecord(ingress, 'completed');
        expect(await store.recordFinal([final])).toEqual([ingress.id]);
        expect(await store.recordFinal([{ ...final, outcome: 'failed', replyText: 'changed' }])).toEqual([]);

        const stored = await store.getEvent(ingress.id);
        expect(stored).toEqual({ ...final, ingress: ingress.ingress });
        expect(stored?.final?.routingSlip.map((step) => step.status)).toEqual(['OK', 'OK']);

        const other = ingressRecord({ id: uid('ev') });
        expect(await store.recordFinal([final, finalRecord(other, 'handled'), finalRecord(other, 'failed')])).toEqual([other.id]);
        expect((await store.getEvent(other.id))?.outcome).toBe('handled');
      });

      it('creates the row when the final arrives before ingress, and ingress then fills in once', async () => {
        const ingress = ingressRecord({ id: uid('ev') });
        const final = finalRecord(ingress, 'failed');
        expect(await store.recordFinal([final])).toEqual([ingress.id]);
        const before = await store.getEvent(ingress.id);
        expect(before?.outcome).toBe('failed');
        expect(before?.ingress).toBeUndefined();
        expect(before?.errors).toEqual([{ code: 'HANDLER_FAILED', message: 'boom', step: 'llm-bot' }]);

        await store.recordIngress([ingress]);
        const after = await store.getEvent(ingress.id);
        expect(after?.ingress).toEqual(ingress.ingress);
        expect(after?.outcome).toBe('failed');
        expect(after?.final).toEqual(final.final);

        await store.recordIngress([ingressRecord({ id: ingress.id, text: 'late duplicate' })]);
        expect((await store.getEvent(ingress.id))?.ingress).toEqual(ingress.ingress);
        expect(await store.recordFinal([final])).toEqual([]);
      });

      it('lists events recorded on ingress and not finalized by a time, oldest first (stalled events)', async () => {
        const prefix = uid('stall');
        const record = (name: string, minute: number) =>
          ingressRecord({ id: `${prefix}-${name}`, receivedAt: `2001-03-03T00:${String(minute).padStart(2, '0')}:00.000Z` });
        const [a, b, c, late] = [record('a', 0), record('b', 1), record('c', 2), record('late', 10)];
        await store.recordIngress([c, a, b, late]);
        await store.recordFinal([finalRecord(b)]);
        // Finalized without an ingress record: never "stalled", there is nothing that waits.
        await store.recordFinal([finalRecord(record('final-only', 0))]);
        const mine = (records: EventRecord[]) => records.filter((entry) => entry.id.startsWith(prefix)).map((entry) => entry.id);
        expect(mine(await store.listUnfinalized({ before: '2001-03-03T00:05:00.000Z', limit: 1000 }))).toEqual([a.id, c.id]);
        const [first] = await store
          .listUnfinalized({ before: '2001-03-03T00:05:00.000Z', limit: 1000 })
          .then((records) => records.filter((entry) => entry.id === a.id));
        expect(first).toMatchObject({ id: a.id, ingress: a.ingress });
        expect(first!.finalizedAt).toBeUndefined();
        await store.recordFinal([finalRecord(a)]);
        expect(mine(await store.listUnfinalized({ before: '2001-03-03T00:59:00.000Z', limit: 1000 }))).toEqual([c.id, late.id]);
      });

      it('writes large batches, including duplicate ids inside one batch', async () => {
        const channel = uid('#batch');
        const records = Array.from({ length: 150 }, (_, index) =>
          ingressRecord({ id: uid('bulk'), channel, receivedAt: at('2031-01-01T00:00:00.000Z', index) }),
        );
        await store.recordIngress([...records, records[0]!]);
        const finals = records.map((record) => finalRecord(record));
        const first = await store.recordFinal([...finals.slice(0, 100), finals[0]!]);
        expect(first).toEqual(records.slice(0, 100).map((record) => record.id));
        const second = await store.recordFinal(finals);
        expect(second).toEqual(records.slice(100).map((record) => record.id));
        const listed = await allPages((cursor) => store.listEvents({ channel, limit: 100, cursor }));
        expect(listed.items).toHaveLength(150);
        expect(listed.items.every((item) => item.outcome === 'completed')).toBe(true);
      });

      it('filters by type, outcome, user, channel and time window, newest first', async () => {
        const channel = uid('#filters');
        const otherChannel = uid('#filters-other');
        const base = '2032-03-01T00:00:00.000Z';
        const records = Array.from({ length: 12 }, (_, index) =>
          ingressRecord({
            id: uid(`f${index}`),
            channel: index === 11 ? otherChannel : channel,
            type: index % 3 === 0 ? 'twitch.eventsub.v1' : 'external.chat.message.v1',
            userName: index % 2 === 0 ? 'alice' : 'bob',
            userId: index % 2 === 0 ? 'u-alice' : 'u-bob',
            receivedAt: at(base, index * 60_000),
          }),
        );
        await store.recordIngress(records);
        await store.recordFinal(records.filter((_, index) => index % 4 === 0).map((record) => finalRecord(record, 'handled')));
        const ids = (predicate: (record: EventRecord, index: number) => boolean) =>
          records
            .filter(predicate)
            .map((record) => record.id)
            .reverse();
        const list = async (query: Parameters<Store['listEvents']>[0]) =>
          (await store.listEvents({ limit: 100, ...query })).items.map((item) => item.id);

        expect(await list({ channel })).toEqual(ids((_, index) => index !== 11));
        expect(await list({ channel: otherChannel })).toEqual([records[11]!.id]);
        expect(await list({ channel, type: 'twitch.eventsub.v1' })).toEqual(ids((_, index) => index !== 11 && index % 3 === 0));
        expect(await list({ channel, outcome: 'handled' })).toEqual(ids((_, index) => index !== 11 && index % 4 === 0));
        expect(await list({ channel, userName: 'bob' })).toEqual(ids((_, index) => index !== 11 && index % 2 === 1));
        expect(await list({ channel, userId: 'u-alice' })).toEqual(ids((_, index) => index !== 11 && index % 2 === 0));
        // since and until are inclusive.
        expect(await list({ channel, since: at(base, 3 * 60_000), until: at(base, 6 * 60_000) })).toEqual(
          ids((_, index) => index >= 3 && index <= 6),
        );
        expect(await list({ channel, since: at(base, 9 * 60_000) })).toEqual(ids((_, index) => index >= 9 && index !== 11));
        expect(await list({ channel, until: at(base, 60_000), userName: 'alice' })).toEqual([records[0]!.id]);
        const typed = await store.listEvents({ channel, type: 'twitch.eventsub.v1', outcome: 'handled', limit: 100 });
        expect(typed.items.map((item) => item.id)).toEqual(ids((_, index) => index !== 11 && index % 12 === 0));
        expect(typed.nextCursor).toBeUndefined();
      });

      it('pages with a cursor without duplicates or omissions, even when timestamps tie', async () => {
        const channel = uid('#paging');
        const base = '2033-05-05T05:05:05.000Z';
        // Groups of three share one receivedAt, so the id breaks ties.
        const records = Array.from({ length: 25 }, (_, index) =>
          ingressRecord({ id: uid(`p${index}`), channel, receivedAt: at(base, Math.floor(index / 3) * 1000) }),
        );
        await store.recordIngress(records);
        const { items, pages } = await allPages((cursor) => store.listEvents({ channel, limit: 7, cursor }));
        expect(pages).toBe(4);
        const listed = items.map((item) => item.id);
        expect(new Set(listed).size).toBe(25);
        expect([...listed].sort()).toEqual(records.map((record) => record.id).sort());
        const times = items.map((item) => Date.parse(item.receivedAt));
        expect(times).toEqual([...times].sort((a, b) => b - a));

        const firstPage = await store.listEvents({ channel, limit: 25 });
        expect(firstPage.items.map((item) => item.id)).toEqual(listed);
        expect(firstPage.nextCursor).toBeUndefined();
        await expectCode(store.listEvents({ channel, cursor: 'not-a-cursor' }), 'BAD_REQUEST');
        await expectCode(store.listEvents({ channel, since: 'last tuesday-ish' }), 'BAD_REQUEST');
        await expectCode(store.pruneEvents('whenever'), 'BAD_REQUEST');
      });

      it('prunes events received before a time and reports how many', async () => {
        const channel = uid('#prune');
        const old = Array.from({ length: 5 }, (_, index) =>
          ingressRecord({ id: uid('old'), channel, receivedAt: at('1999-12-31T00:00:00.000Z', index * 1000) }),
        );
        const recent = ingressRecord({ id: uid('new'), channel, receivedAt: '2000-01-02T00:00:00.000Z' });
        await store.recordIngress([...old, recent]);
        await store.recordFinal([finalRecord(old[0]!)]);
        expect(await store.pruneEvents('2000-01-01T00:00:00.000Z')).toBe(5);
        expect(await store.getEvent(old[1]!.id)).toBeUndefined();
        expect((await store.listEvents({ channel })).items.map((item) => item.id)).toEqual([recent.id]);
        expect(await store.pruneEvents('2000-01-01T00:00:00.000Z')).toBe(0);
      });

      it('rejects a record that violates the schema with STORE_CONSTRAINT', async () => {
        const ingress = ingressRecord({ id: uid('bad') });
        const good = ingressRecord({ id: uid('good') });
        // The whole batch is refused, so the caller can retry record by record and lose only the bad one.
        await expectCode(
          store.recordFinal([finalRecord(good), { ...finalRecord(ingress), outcome: 'exploded' as never }]),
          'STORE_CONSTRAINT',
        );
        await expectCode(store.recordIngress([good, { ...ingress, type: undefined as never }]), 'STORE_CONSTRAINT');
        expect(await store.getEvent(ingress.id)).toBeUndefined();
        expect(await store.getEvent(good.id)).toBeUndefined();
      });
    });

    describe('dead letters', () => {
      it('inserts once, lists unreplayed newest first, and pages', async () => {
        const base = '2034-01-01T00:00:00.000Z';
        const ids = Array.from({ length: 9 }, (_, index) => ({ id: uid(`dl${index}`), receivedAt: at(base, index * 1000) }));
        for (const item of ids)
          expect(await store.insertDeadLetter({ ...item, deadLetter: deadLetter(item.id, item.receivedAt) })).toBe(true);
        expect(
          await store.insertDeadLetter({ ...ids[0]!, deadLetter: { ...deadLetter(ids[0]!.id, ids[0]!.receivedAt), raw: 'changed' } }),
        ).toBe(false);

        const stored = await store.getDeadLetter(ids[0]!.id);
        expect(stored).toEqual({ ...ids[0], deadLetter: deadLetter(ids[0]!.id, ids[0]!.receivedAt), replayCount: 0 });
        expect(await store.getDeadLetter(uid('missing'))).toBeUndefined();

        const ours = new Set(ids.map((item) => item.id));
        const { items, pages } = await allPages((cursor) => store.listDeadLetters({ limit: 4, cursor }));
        expect(pages).toBeGreaterThanOrEqual(3);
        const listed = items.map((item) => item.id);
        expect(new Set(listed).size).toBe(listed.length);
        expect(listed.filter((id) => ours.has(id))).toEqual(ids.map((item) => item.id).reverse());
      });

      it('marks replays without deleting and counts each one', async () => {
        const item = { id: uid('dl-replay'), receivedAt: '2034-02-01T00:00:00.000Z' };
        await store.insertDeadLetter({ ...item, deadLetter: deadLetter(item.id, item.receivedAt) });
        const first = await store.markDeadLetterReplayed(item.id, '2034-02-01T01:00:00.000Z');
        expect(first).toMatchObject({ id: item.id, replayCount: 1, replayedAt: '2034-02-01T01:00:00.000Z' });
        const second = await store.markDeadLetterReplayed(item.id, '2034-02-01T02:00:00.000Z');
        expect(second).toMatchObject({ replayCount: 2, replayedAt: '2034-02-01T02:00:00.000Z' });
        expect(await store.getDeadLetter(item.id)).toEqual(second);
        expect(await store.markDeadLetterReplayed(uid('missing'), '2034-02-01T00:00:00.000Z')).toBeUndefined();

        const unreplayed = await allPages((cursor) => store.listDeadLetters({ limit: 50, cursor }));
        expect(unreplayed.items.some((letter) => letter.id === item.id)).toBe(false);
        const everything = await allPages((cursor) => store.listDeadLetters({ limit: 50, cursor, includeReplayed: true }));
        expect(everything.items.find((letter) => letter.id === item.id)?.replayCount).toBe(2);
      });

      it('prunes dead letters received before a time', async () => {
        const old = [uid('dl-old'), uid('dl-old')];
        for (const [index, id] of old.entries())
          await store.insertDeadLetter({
            id,
            receivedAt: at('1999-06-01T00:00:00.000Z', index),
            deadLetter: deadLetter(id, '1999-06-01T00:00:00.000Z'),
          });
        const kept = uid('dl-kept');
        await store.insertDeadLetter({
          id: kept,
          receivedAt: '2000-06-01T00:00:00.000Z',
          deadLetter: deadLetter(kept, '2000-06-01T00:00:00.000Z'),
        });
        expect(await store.pruneDeadLetters('2000-01-01T00:00:00.000Z')).toBe(2);
        expect(await store.getDeadLetter(old[0]!)).toBeUndefined();
        expect(await store.getDeadLetter(kept)).toBeDefined();
      });
    });

    describe('sources', () => {
      it("deep-merges the seed-002 document: writers keep each other's fields, metrics merge key by key", async () => {
        const id = `twitch:${uid('chan')}`;
        const full: SourceState = {
          id,
          platform: 'twitch',
          displayName: 'bitbrat_bot',
          status: 'connected',
          streamStatus: 'offline',
          lastStatusUpdate: '2035-01-01T00:00:00.000Z',
          lastStreamUpdate: '2035-01-01T00:00:00.000Z',
          lastError: null,
          metrics: { messagesIn: 10, messagesOut: 4, errors: 0, reconnects: 1, lastHeartbeat: '2035-01-01T00:00:00.000Z' },
          authStatus: 'valid',
          viewerCount: null,
          permissions: { moderator: true, vip: false, broadcaster: false },
          latencyMs: 42,
          metadata: { game: 'Chess', tags: ['english', 'chill'] },
        };
        expect(await store.mergeSource(full)).toEqual(full);

        // Another writer: connection trouble. Only the fields it sends change.
        const afterError = await store.mergeSource({
          id,
          platform: 'twitch',
          status: 'error',
          lastError: { code: 'IRC_DISCONNECTED', message: 'socket closed', at: '2035-01-01T00:05:00.000Z' },
          metrics: { errors: 1, reconnects: 2 },
        });
        expect(afterError).toEqual({
          ...full,
          status: 'error',
          lastError: { code: 'IRC_DISCONNECTED', message: 'socket closed', at: '2035-01-01T00:05:00.000Z' },
          metrics: { ...full.metrics, errors: 1, reconnects: 2 },
        });

        // A third writer: the stream went live; metadata merges key by key; lastError null clears.
        const live = await store.mergeSource({
          id,
          platform: 'twitch',
          streamStatus: 'online',
          viewerCount: 17,
          lastError: null,
          permissions: { vip: true },
          metadata: { title: 'Endgames' },
          metrics: { lastHeartbeat: '2035-01-01T00:06:00.000Z' },
        });
        const expected: SourceState = {
          ...full,
          status: 'error',
          streamStatus: 'online',
          viewerCount: 17,
          lastError: null,
          permissions: { moderator: true, vip: true, broadcaster: false },
          metadata: { game: 'Chess', tags: ['english', 'chill'], title: 'Endgames' },
          metrics: { messagesIn: 10, messagesOut: 4, errors: 1, reconnects: 2, lastHeartbeat: '2035-01-01T00:06:00.000Z' },
        };
        expect(live).toEqual(expected);
        expect(await store.getSource(id)).toEqual(expected);
        expect((await store.listSources()).find((source) => source.id === id)).toEqual(expected);
        expect(await store.getSource(`twitch:${uid('none')}`)).toBeUndefined();
      });

      it('keeps the newer status and stream state when an older one arrives late, and still takes the rest of the patch', async () => {
        const id = `twitch:${uid('late')}`;
        const newer: SourceState = {
          id,
          platform: 'twitch',
          status: 'connected',
          lastStatusUpdate: '2035-02-01T10:00:05.000Z',
          lastError: null,
          metrics: { messagesIn: 20 },
          streamStatus: 'online',
          lastStreamUpdate: '2035-02-01T10:00:05.000Z',
          viewerCount: 30,
          metadata: { title: 'Live now' },
        };
        await store.mergeSource(newer);
        // The bus delivers an older status and an older offline after the direct write.
        const afterLate = await store.mergeSource({
          id,
          platform: 'twitch',
          displayName: 'Streamer',
          status: 'connecting',
          lastStatusUpdate: '2035-02-01T10:00:01.000Z',
          lastError: { message: 'was reconnecting' },
          metrics: { messagesIn: 3 },
        });
        expect(afterLate).toEqual({ ...newer, displayName: 'Streamer' });
        const afterOldStream = await store.mergeSource({
          id,
          platform: 'twitch',
          streamStatus: 'offline',
          lastStreamUpdate: '2035-02-01T09:59:00.000Z',
          viewerCount: null,
          metadata: { startedAt: null },
        });
        expect(afterOldStream).toEqual({ ...newer, displayName: 'Streamer' });
        // A newer one (and one without a timestamp) applies as before.
        const current = await store.mergeSource({
          id,
          platform: 'twitch',
          status: 'error',
          lastStatusUpdate: '2035-02-01T10:00:09.000Z',
          metrics: { errors: 1 },
        });
        expect(current).toMatchObject({
          status: 'error',
          lastStatusUpdate: '2035-02-01T10:00:09.000Z',
          metrics: { messagesIn: 20, errors: 1 },
        });
        expect((await store.mergeSource({ id, platform: 'twitch', status: 'disconnected' })).status).toBe('disconnected');
        expect(await store.getSource(id)).toMatchObject({ status: 'disconnected', streamStatus: 'online', viewerCount: 30 });
      });

      it('loses no field when writers merge concurrently', async () => {
        const id = `discord:${uid('guild')}`;
        await Promise.all(
          Array.from({ length: 10 }, (_, index) =>
            store.mergeSource({
              id,
              platform: 'discord',
              metrics: { [`k${index}`]: index } as never,
              metadata: { [`m${index}`]: `v${index}` },
            }),
          ),
        );
        const stored = await store.getSource(id);
        expect(stored?.metrics).toEqual(Object.fromEntries(Array.from({ length: 10 }, (_, index) => [`k${index}`, index])));
        expect(stored?.metadata).toEqual(Object.fromEntries(Array.from({ length: 10 }, (_, index) => [`m${index}`, `v${index}`])));
      });
    });

    describe('users', () => {
      it('touches: created once, counts messages, tracks first and last seen', async () => {
        const userId = uid('u');
        const first = await store.touchUser({
          platform: 'twitch',
          userId,
          login: 'Alice_Cat',
          displayName: 'Alice',
          at: '2036-01-01T10:00:00.000Z',
        });
        expect(first.created).toBe(true);
        expect(first.user).toEqual({
          id: `twitch:${userId}`,
          platform: 'twitch',
          userId,
          login: 'Alice_Cat',
          displayName: 'Alice',
          roles: [],
          firstSeen: '2036-01-01T10:00:00.000Z',
          lastSeen: '2036-01-01T10:00:00.000Z',
          messageCount: 1,
        });
        const second = await store.touchUser({ platform: 'twitch', userId, login: 'alice_cat', at: '2036-01-02T10:00:00.000Z' });
        expect(second.created).toBe(false);
        expect(second.user).toMatchObject({
          login: 'alice_cat',
          displayName: 'Alice',
          messageCount: 2,
          firstSeen: '2036-01-01T10:00:00.000Z',
          lastSeen: '2036-01-02T10:00:00.000Z',
        });
        // A late, out-of-order message moves neither bound inward.
        const late = await store.touchUser({ platform: 'twitch', userId, login: 'alice_cat', at: '2036-01-01T12:00:00.000Z' });
        expect(late.user).toMatchObject({ messageCount: 3, firstSeen: '2036-01-01T10:00:00.000Z', lastSeen: '2036-01-02T10:00:00.000Z' });
        expect(await store.getUser(`twitch:${userId}`)).toEqual(late.user);
        expect(await store.getUser(`twitch:${uid('nobody')}`)).toBeUndefined();
      });

      it('keeps roles set by moderators across touches and finds users by login', async () => {
        const userId = uid('u');
        const login = uid('Login').toLowerCase();
        await store.touchUser({ platform: 'twitch', userId, login, at: '2036-02-01T00:00:00.000Z' });
        const withRoles = await store.setUserRoles(`twitch:${userId}`, ['trusted', 'moderator', 'trusted']);
        expect(withRoles?.roles.sort()).toEqual(['moderator', 'trusted']);
        const touched = await store.touchUser({ platform: 'twitch', userId, login, at: '2036-02-01T00:01:00.000Z' });
        expect(touched.user.roles.sort()).toEqual(['moderator', 'trusted']);
        expect((await store.findUserByLogin('twitch', login.toUpperCase()))?.id).toBe(`twitch:${userId}`);
        expect(await store.findUserByLogin('discord', login)).toBeUndefined();
        expect(await store.findUserByLogin('twitch', uid('nobody'))).toBeUndefined();
        expect(await store.setUserRoles(`twitch:${uid('nobody')}`, ['banned'])).toBeUndefined();
      });

      it('counts every concurrent touch and reports exactly one creation', async () => {
        const userId = uid('u');
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, index) =>
            store.touchUser({ platform: 'twitch', userId, login: 'busy', at: at('2036-03-01T00:00:00.000Z', index * 1000) }),
          ),
        );
        expect(results.filter((result) => result.created)).toHaveLength(1);
        const stored = await store.getUser(`twitch:${userId}`);
        expect(stored).toMatchObject({ messageCount: 10, firstSeen: '2036-03-01T00:00:00.000Z', lastSeen: '2036-03-01T00:00:09.000Z' });
      });

      it('touches many in one call: answers in input order, running counts, created once per new user', async () => {
        const [fresh, known, single] = [uid('u'), uid('u'), uid('u')];
        await store.touchUser({ platform: 'twitch', userId: known, login: 'known', displayName: 'Known', at: '2036-04-01T12:00:00.000Z' });
        await store.setUserRoles(`twitch:${known}`, ['trusted']);
        const results = await store.touchUsers([
          { platform: 'twitch', userId: fresh, login: 'Fresh', displayName: 'Fresh', at: '2036-04-02T10:00:00.000Z' },
          { platform: 'twitch', userId: known, login: 'known2', at: '2036-04-01T11:00:00.000Z' },
          { platform: 'twitch', userId: fresh, login: 'fresh', at: '2036-04-02T09:00:00.000Z' },
          { platform: 'twitch', userId: single, login: 'single', at: '2036-04-02T00:00:00.000Z' },
          { platform: 'twitch', userId: known, login: 'known3', displayName: 'Known3', at: '2036-04-01T13:00:00.000Z' },
          { platform: 'twitch', userId: fresh, login: 'fresh', displayName: 'FRESH', at: '2036-04-02T11:00:00.000Z' },
        ]);
        expect(results.map((result) => [result.user.id, result.created, result.user.messageCount])).toEqual([
          [`twitch:${fresh}`, true, 1],
          [`twitch:${known}`, false, 2],
          [`twitch:${fresh}`, false, 2],
          [`twitch:${single}`, true, 1],
          [`twitch:${known}`, false, 3],
          [`twitch:${fresh}`, false, 3],
        ]);
        // Each answer is the record right after its own input: bounds widen in input order.
        expect(results[0]!.user).toEqual({
          id: `twitch:${fresh}`,
          platform: 'twitch',
          userId: fresh,
          login: 'Fresh',
          displayName: 'Fresh',
          roles: [],
          firstSeen: '2036-04-02T10:00:00.000Z',
          lastSeen: '2036-04-02T10:00:00.000Z',
          messageCount: 1,
        });
        expect(results[2]!.user).toMatchObject({
          login: 'fresh',
          displayName: 'Fresh',
          firstSeen: '2036-04-02T09:00:00.000Z',
          lastSeen: '2036-04-02T10:00:00.000Z',
        });
        expect(results[5]!.user).toMatchObject({
          login: 'fresh',
          displayName: 'FRESH',
          firstSeen: '2036-04-02T09:00:00.000Z',
          lastSeen: '2036-04-02T11:00:00.000Z',
        });
        expect(results[1]!.user).toMatchObject({
          login: 'known2',
          displayName: 'Known',
          roles: ['trusted'],
          firstSeen: '2036-04-01T11:00:00.000Z',
          lastSeen: '2036-04-01T12:00:00.000Z',
        });
        expect(results[4]!.user).toMatchObject({
          login: 'known3',
          displayName: 'Known3',
          roles: ['trusted'],
          firstSeen: '2036-04-01T11:00:00.000Z',
          lastSeen: '2036-04-01T13:00:00.000Z',
        });
        expect(results[3]!.user).toMatchObject({
          login: 'single',
          firstSeen: '2036-04-02T00:00:00.000Z',
          lastSeen: '2036-04-02T00:00:00.000Z',
          messageCount: 1,
        });
        expect(await store.getUser(`twitch:${fresh}`)).toEqual(results[5]!.user);
        expect(await store.getUser(`twitch:${known}`)).toEqual(results[4]!.user);
        expect(await store.getUser(`twitch:${single}`)).toEqual(results[3]!.user);
        expect(await store.touchUsers([])).toEqual([]);
      });

      it('touches many exactly as touching them one by one would', async () => {
        const times = [
          '2036-05-01T10:00:00.000Z',
          '2036-05-01T08:00:00.000Z',
          '2036-05-01T12:00:00.000Z',
          '2036-05-01T09:00:00.000Z',
          '2036-05-01T11:00:00.000Z',
        ];
        const script = Array.from({ length: 12 }, (_, index) => ({
          who: index % 3 === 2 ? 'b' : 'a',
          login: `login${index % 4}`,
          displayName: index % 4 === 1 ? `Name${index}` : undefined,
          at: times[index % times.length]!,
        }));
        const run = (ids: Record<string, string>) =>
          script.map(({ who, login, displayName, at: time }) => ({
            platform: 'twitch',
            userId: ids[who]!,
            login,
            at: time,
            ...(displayName ? { displayName } : {}),
          }));
        const batchIds = { a: uid('u'), b: uid('u') };
        const oneByOneIds = { a: uid('u'), b: uid('u') };
        // 'b' exists beforehand in both runs.
        for (const ids of [batchIds, oneByOneIds])
          await store.touchUser({
            platform: 'twitch',
            userId: ids.b,
            login: 'before',
            displayName: 'Before',
            at: '2036-05-01T09:30:00.000Z',
          });
        const batched = await store.touchUsers(run(batchIds));
        const oneByOne: Array<{ user: unknown; created: boolean }> = [];
        for (const input of run(oneByOneIds)) oneByOne.push(await store.touchUser(input));
        const anonymize = (ids: Record<string, string>) => (result: { user: { id: string; userId: string }; created: boolean }) => {
          const who = Object.keys(ids).find((key) => ids[key] === result.user.userId);
          return { ...result, user: { ...result.user, id: who, userId: who } };
        };
        expect(batched.map(anonymize(batchIds))).toEqual(
          oneByOne.map((result) => anonymize(oneByOneIds)(result as { user: { id: string; userId: string }; created: boolean })),
        );
      });

      it('counts every concurrent batch and reports exactly one creation', async () => {
        const userId = uid('u');
        const batches = await Promise.all(
          Array.from({ length: 4 }, (_, batch) =>
            store.touchUsers(
              Array.from({ length: 3 }, (_, index) => ({
                platform: 'twitch',
                userId,
                login: 'busy',
                at: at('2036-06-01T00:00:00.000Z', (batch * 3 + index) * 1000),
              })),
            ),
          ),
        );
        const results = batches.flat();
        expect(results.filter((result) => result.created)).toHaveLength(1);
        expect(results.map((result) => result.user.messageCount).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 12 }, (_, index) => index + 1),
        );
        expect(await store.getUser(`twitch:${userId}`)).toMatchObject({
          messageCount: 12,
          firstSeen: '2036-06-01T00:00:00.000Z',
          lastSeen: '2036-06-01T00:00:11.000Z',
        });
      });

      it('refuses a batch with a bad input as a whole, writing none of it', async () => {
        const [good, other] = [uid('u'), uid('u')];
        await expectCode(
          store.touchUsers([
            { platform: 'twitch', userId: good, login: 'good', at: '2036-07-01T00:00:00.000Z' },
            { platform: 'twitch', userId: other, login: 'other', at: 'not a time' },
          ]),
          'STORE_CONSTRAINT',
        );
        expect(await store.getUser(`twitch:${good}`)).toBeUndefined();
        expect(await store.getUser(`twitch:${other}`)).toBeUndefined();
      });
    });

    describe('rules', () => {
      it('creates, reads, updates, lists by priority and deletes; the version follows every change', async () => {
        const v0 = await store.rulesVersion();
        expect(await store.rulesVersion()).toBe(v0);
        const low = {
          id: uid('rule-low'),
          description: 'greetings',
          priority: 1,
          enabled: true,
          logic: { in: ['hello', ['hello', 'hi']] },
          action: { steps: ['llm-bot'] },
        };
        const high = {
          id: uid('rule-high'),
          priority: 100,
          enabled: false,
          logic: { '==': [{ var: 'message.command' }, 'ping'] },
          action: { steps: ['command'], annotate: { kind: 'intent' } },
        };
        const savedLow = await store.upsertRule(low);
        expect(savedLow).toEqual({ ...low, updatedAt: savedLow.updatedAt });
        expect(Number.isNaN(Date.parse(savedLow.updatedAt))).toBe(false);
        const v1 = await store.rulesVersion();
        expect(v1).not.toBe(v0);
        await store.upsertRule(high);
        const v2 = await store.rulesVersion();
        expect(v2).not.toBe(v1);

        const listed = (await store.listRules()).filter((rule) => rule.id === low.id || rule.id === high.id);
        expect(listed.map((rule) => rule.id)).toEqual([high.id, low.id]);
        expect(await store.getRule(high.id)).toEqual({ ...high, updatedAt: listed[0]!.updatedAt });

        const changed = await store.upsertRule({ ...low, priority: 500, enabled: false });
        expect(changed).toMatchObject({ priority: 500, enabled: false, logic: low.logic });
        const v3 = await store.rulesVersion();
        expect(v3).not.toBe(v2);

        expect(await store.deleteRule(low.id)).toBe(true);
        const v4 = await store.rulesVersion();
        expect(v4).not.toBe(v3);
        expect(await store.deleteRule(low.id)).toBe(false);
        expect(await store.rulesVersion()).toBe(v4);
        expect(await store.getRule(low.id)).toBeUndefined();
      });
    });

    describe('commands', () => {
      /** A command for anyone, without cooldowns, with what `changes` says instead. */
      const command = (name: string, changes: Partial<Omit<CommandRecord, 'name' | 'updatedAt'>> = {}) => ({
        name,
        response: 'HYPE',
        aliases: [] as string[],
        minRole: 'viewer',
        cooldownSec: 0,
        userCooldownSec: 0,
        enabled: true,
        ...changes,
      });

      it('creates, reads, updates (keeping uses), lists and deletes', async () => {
        const name = uid('lurk');
        const lurk = {
          response: 'Enjoy the lurk, {user}!',
          aliases: ['afk'],
          cooldownSec: 30,
          userCooldownSec: 60,
          createdBy: 'owner',
        };
        const saved = await store.upsertCommand(command(name.toUpperCase(), lurk));
        expect(saved).toEqual({ ...command(name, lurk), uses: 0, updatedAt: saved.updatedAt });
        expect(await store.getCommand(name)).toEqual(saved);
        expect(await store.incrementCommandUse(name)).toBe(1);
        const updated = await store.upsertCommand(command(name, { response: 'bye', minRole: 'moderator', enabled: false }));
        expect(updated).toMatchObject({ response: 'bye', minRole: 'moderator', enabled: false, uses: 1, createdBy: 'owner' });
        expect((await store.upsertCommand({ ...updated, uses: 7 })).uses).toBe(7);
        expect((await store.listCommands()).some((listed) => listed.name === name)).toBe(true);
        expect(await store.deleteCommand(name)).toBe(true);
        expect(await store.deleteCommand(name)).toBe(false);
        expect(await store.getCommand(name)).toBeUndefined();
        await expectCode(store.incrementCommandUse(name), 'NOT_FOUND');
      });

      it('counts 20 concurrent uses exactly', async () => {
        const name = uid('hype');
        await store.upsertCommand(command(name));
        const counts = await Promise.all(Array.from({ length: 20 }, () => store.incrementCommandUse(name)));
        expect([...counts].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, index) => index + 1));
        expect((await store.getCommand(name))?.uses).toBe(20);
      });
    });

    describe('oauth tokens', () => {
      const token = (id: string, accessToken: string): Omit<OAuthToken, 'version'> => ({
        id,
        accessToken,
        refreshToken: `refresh-${accessToken}`,
        scopes: ['chat:read', 'chat:edit'],
        expiresAt: '2037-01-01T04:00:00.000Z',
        obtainedAt: '2037-01-01T00:00:00.000Z',
        userId: '1234',
        login: 'bitbrat_bot',
      });

      it('puts with increasing versions and compare-and-sets', async () => {
        const id = `twitch:${uid('bot')}`;
        expect(await store.getToken(id)).toBeUndefined();
        const v1 = await store.putToken(token(id, 'access-1'));
        expect(v1).toEqual({ ...token(id, 'access-1'), version: 1 });
        expect(await store.getToken(id)).toEqual(v1);
        const v2 = await store.putToken(token(id, 'access-2'));
        expect(v2.version).toBe(2);

        const v3 = await store.updateTokenIf(2, { ...token(id, 'access-3'), refreshToken: undefined, expiresAt: null });
        expect(v3).toEqual({ ...token(id, 'access-3'), refreshToken: undefined, expiresAt: null, version: 3 });
        expect(await store.updateTokenIf(2, token(id, 'stale'))).toBeUndefined();
        expect(await store.getToken(id)).toEqual(v3);

        // Racing refreshers: exactly one wins.
        const racers = await Promise.all(Array.from({ length: 5 }, (_, index) => store.updateTokenIf(3, token(id, `race-${index}`))));
        const winners = racers.filter((result) => result !== undefined);
        expect(winners).toHaveLength(1);
        expect(await store.getToken(id)).toEqual(winners[0]);

        expect(await store.deleteToken(id)).toBe(true);
        expect(await store.deleteToken(id)).toBe(false);
        expect(await store.getToken(id)).toBeUndefined();
      });

      it('creates with expected version 0 only when absent', async () => {
        const id = `twitch:${uid('broadcaster')}`;
        expect((await store.updateTokenIf(0, token(id, 'first')))?.version).toBe(1);
        expect(await store.updateTokenIf(0, token(id, 'second'))).toBeUndefined();
        expect((await store.getToken(id))?.accessToken).toBe('first');
        expect(await store.updateTokenIf(5, token(`twitch:${uid('nobody')}`, 'x'))).toBeUndefined();
      });
    });

    describe('text a viewer can type but a database may refuse', () => {
      // NUL and lone surrogates: a driver keeps them or stores U+FFFD in their place, but never refuses the write.
      const hostile = 'hi\u0000there \uD800 and \uDC00 😀';
      const kept = (value: unknown) => expect([hostile, wellFormedText(hostile)]).toContain(value);

      it('records and finalizes an event whose text, user and envelope hold NUL and lone surrogates', async () => {
        const id = uid('ev-nul');
        const base = ingressRecord({ id, text: hostile, userName: hostile, channel: `#nul-${id}` });
        const envelope = { ...base.ingress!.envelope, message: { text: hostile }, payload: { text: hostile, [`key${hostile}`]: 1 } };
        const record: EventRecord = { ...base, ingress: { envelope, raw: { text: hostile } } };
        await store.recordIngress([record]);
        const final = finalRecord(record);
        await store.recordFinal([
          { ...final, replyText: hostile, errors: [{ code: 'HANDLER_FAILED', message: hostile, step: 'llm-bot' }] },
        ]);
        const stored = await store.getEvent(id);
        expect(stored?.outcome).toBe('completed');
        kept(stored?.text);
        kept(stored?.userName);
        kept(stored?.replyText);
        kept(stored?.errors?.[0]?.message);
        kept(stored?.ingress?.envelope.message?.text);
        kept(stored?.final?.message?.text);
        kept((stored?.ingress?.raw as { text?: unknown } | undefined)?.text);
      });

      it('saves rules, commands and sources whose strings hold NUL and lone surrogates', async () => {
        const rule = await store.upsertRule({
          id: uid('rule-nul'),
          description: hostile,
          priority: 0,
          enabled: true,
          logic: { '==': [{ var: 'text' }, hostile] },
          action: { outcome: 'handled' },
        });
        kept(rule.description);
        kept(((await store.getRule(rule.id))!.logic as { '==': [unknown, string] })['=='][1]);
        const command = await store.upsertCommand({
          name: uid('nul'),
          response: hostile,
          aliases: [],
          minRole: 'viewer',
          cooldownSec: 0,
          userCooldownSec: 0,
          enabled: true,
          createdBy: hostile,
        });
        kept((await store.getCommand(command.name))?.response);
        const source = await store.mergeSource({
          id: uid('discord:nul'),
          platform: 'discord',
          displayName: hostile,
          lastError: { code: 'X', message: hostile },
        });
        kept(source.displayName);
        kept((await store.getSource(source.id))?.lastError?.message);
      });
    });

    describe('documents', () => {
      it('writes, reads, replaces and deletes a document by collection and id', async () => {
        const collection = uid('docs');
        expect(await store.getDoc(collection, 'a')).toBeUndefined();
        const written = await store.putDoc(collection, 'a', { name: 'first', tags: ['x'], nested: { n: 1 } });
        expect(written).toMatchObject({ collection, id: 'a', data: { name: 'first', tags: ['x'], nested: { n: 1 } } });
        expect(Date.parse(written.updatedAt)).not.toBeNaN();
        await store.putDoc(collection, 'a', { name: 'second' });
        expect((await store.getDoc(collection, 'a'))?.data).toEqual({ name: 'second' });
        expect(await store.getDoc(uid('other'), 'a')).toBeUndefined();
        expect(await store.deleteDoc(collection, 'a')).toBe(true);
        expect(await store.deleteDoc(collection, 'a')).toBe(false);
        expect(await store.getDoc(collection, 'a')).toBeUndefined();
      });

      it('creates a document only once', async () => {
        const collection = uid('docs-create');
        expect((await store.createDoc(collection, 'entry', { by: 'alice' }))?.data).toEqual({ by: 'alice' });
        expect(await store.createDoc(collection, 'entry', { by: 'bob' })).toBeUndefined();
        expect((await store.getDoc(collection, 'entry'))?.data).toEqual({ by: 'alice' });
      });

      it('lists in id order, by prefix, newest first and up to a limit', async () => {
        const collection = uid('docs-list');
        for (const id of ['c:2030-01-02', 'c:2030-01-01', 'c:2030-01-03', 'd:2030-01-01', 'c%:x', 'c_:y'])
          await store.putDoc(collection, id, { id });
        expect((await store.listDocs(collection)).map((doc) => doc.id)).toEqual([
          'c%:x',
          'c:2030-01-01',
          'c:2030-01-02',
          'c:2030-01-03',
          'c_:y',
          'd:2030-01-01',
        ]);
        expect((await store.listDocs(collection, { prefix: 'c:' })).map((doc) => doc.id)).toEqual([
          'c:2030-01-01',
          'c:2030-01-02',
          'c:2030-01-03',
        ]);
        expect((await store.listDocs(collection, { prefix: 'c:', descending: true, limit: 2 })).map((doc) => doc.id)).toEqual([
          'c:2030-01-03',
          'c:2030-01-02',
        ]);
        // A prefix is literal text: % and _ are not wildcards.
        expect((await store.listDocs(collection, { prefix: 'c%' })).map((doc) => doc.id)).toEqual(['c%:x']);
      });

      it('lets exactly one of two racing deletes consume a document', async () => {
        const collection = uid('docs-race');
        await store.putDoc(collection, 'permit', { uses: 1 });
        const results = await Promise.all([
          store.deleteDoc(collection, 'permit'),
          store.deleteDoc(collection, 'permit'),
          store.deleteDoc(collection, 'permit'),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
      });

      it('refuses an empty collection or id with a bad request', async () => {
        await expect(store.putDoc('', 'a', {})).rejects.toSatisfy((error: unknown) => hasCode(error, 'BAD_REQUEST'));
        await expect(store.putDoc('docs', '', {})).rejects.toSatisfy((error: unknown) => hasCode(error, 'BAD_REQUEST'));
      });
    });

    describe('coordination', () => {
      it('claims a key once until its ttl passes', async () => {
        const key = uid('msg');
        expect(await store.claimKey('reply', key, 300)).toBe(true);
        expect(await store.claimKey('reply', key, 300)).toBe(false);
        expect(await store.claimKey('other-namespace', key, 300)).toBe(true);
        await sleep(450);
        expect(await store.claimKey('reply', key, 60_000)).toBe(true);
        expect(await store.claimKey('reply', key, 60_000)).toBe(false);
      });

      it('lets exactly one of many concurrent claimers win', async () => {
        const key = uid('race');
        const results = await Promise.all(Array.from({ length: 10 }, () => store.claimKey('race', key, 60_000)));
        expect(results.filter(Boolean)).toHaveLength(1);
      });

      it('keeps only the last turns of a conversation, oldest first', async () => {
        const channel = uid('conv');
        const turn = (index: number) => ({
          role: index % 2 === 0 ? ('user' as const) : ('assistant' as const),
          text: `turn ${index}`,
          ...(index % 2 === 0 ? { user: 'alice' } : {}),
          at: at('2038-01-01T00:00:00.000Z', index * 1000),
        });
        expect(await store.getConversation(channel)).toEqual([]);
        expect(await store.appendConversation(channel, [turn(0), turn(1), turn(2)], 5)).toEqual([turn(0), turn(1), turn(2)]);
        expect(await store.appendConversation(channel, [turn(3), turn(4), turn(5), turn(6)], 5)).toEqual([2, 3, 4, 5, 6].map(turn));
        expect(await store.getConversation(channel)).toEqual([2, 3, 4, 5, 6].map(turn));
        expect(await store.appendConversation(uid('conv'), [0, 1, 2, 3, 4, 5, 6, 7].map(turn), 3)).toEqual([5, 6, 7].map(turn));
      });

      it('loses no turn when appends race', async () => {
        const channel = uid('conv-race');
        await Promise.all(
          Array.from({ length: 10 }, (_, index) =>
            store.appendConversation(channel, [{ role: 'user', text: `m${index}`, at: '2038-02-01T00:00:00.000Z' }], 100),
          ),
        );
        expect((await store.getConversation(channel)).map((turn) => turn.text).sort()).toEqual(
          Array.from({ length: 10 }, (_, index) => `m${index}`).sort(),
        );
      });

      it('counts atomically and restarts a counter window after its ttl', async () => {
        const key = uid('budget');
        expect(await store.incrementCounter(key, 1)).toBe(1);
        expect(await store.incrementCounter(key, 5)).toBe(6);
        const results = await Promise.all(Array.from({ length: 20 }, () => store.incrementCounter(key, 1)));
        expect(Math.max(...results)).toBe(26);
        expect(new Set(results).size).toBe(20);

        const windowed = uid('window');
        expect(await store.incrementCounter(windowed, 100, 300)).toBe(100);
        expect(await store.incrementCounter(windowed, 50, 300)).toBe(150);
        await sleep(450);
        expect(await store.incrementCounter(windowed, 10, 300)).toBe(10);
      });

      it('lists the live counters under a prefix, highest first, up to a limit', async () => {
        const prefix = `${uid('usage')}:100%_x:`;
        await store.incrementCounter(`${prefix}alice`, 5);
        await store.incrementCounter(`${prefix}bob`, 12.5);
        await store.incrementCounter(`${prefix}carol`, 1);
        await store.incrementCounter(`${prefix}gone`, 99, 1);
        await store.incrementCounter(`${prefix.slice(0, -1)}-other:dave`, 50);
        await sleep(20);
        expect(await store.listCounters(prefix, 10)).toEqual([
          { key: `${prefix}bob`, value: 12.5 },
          { key: `${prefix}alice`, value: 5 },
          { key: `${prefix}carol`, value: 1 },
        ]);
        expect(await store.listCounters(prefix, 2)).toEqual([
          { key: `${prefix}bob`, value: 12.5 },
          { key: `${prefix}alice`, value: 5 },
        ]);
        expect(await store.listCounters(`${uid('nothing')}:`, 5)).toEqual([]);
      });
    });
  });
}

/** True when `error` is a BitBratError with `code` (for driver-specific tests). */
export function hasCode(error: unknown, code: string): boolean {
  return isBitBratError(error) && error.code === code;
}
