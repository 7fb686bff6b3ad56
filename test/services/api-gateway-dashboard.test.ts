import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { EventRecord, EventQuery, Page } from '../../src/store/index.js';
import { createAuthenticator } from '../../src/services/api-gateway/auth.js';
import { plainIssue } from '../../src/services/api-gateway/api.js';
import { aggregateStats } from '../../src/services/api-gateway/stats.js';
import { twitchSetup } from '../../src/services/api-gateway/twitch-setup.js';

const TOKEN = 'owner-token-123';

describe('dashboard sessions', () => {
  const auth = createAuthenticator(
    [
      { token: 'viewer-token-1', role: 'viewer' },
      { token: TOKEN, role: 'owner' },
    ],
    false,
  );

  it('issues a session for a valid token that authenticates as that token, and none for a wrong token', () => {
    const session = auth.issueSession(TOKEN)!;
    expect(session).not.toContain(TOKEN);
    expect(auth.authenticateSession(session)).toMatchObject({ ok: true, principal: { role: 'owner', label: 'token#2' } });
    expect(auth.issueSession('wrong-token-xyz')).toBeUndefined();
  });

  it('survives a restart (a new authenticator with the same tokens) but not a removed token', () => {
    const session = auth.issueSession(TOKEN)!;
    expect(
      createAuthenticator(
        [
          { token: 'viewer-token-1', role: 'viewer' },
          { token: TOKEN, role: 'owner' },
        ],
        false,
      ).authenticateSession(session).ok,
    ).toBe(true);
    expect(
      createAuthenticator(
        [
          { token: 'viewer-token-1', role: 'viewer' },
          { token: 'another-token-9', role: 'owner' },
        ],
        false,
      ).authenticateSession(session).ok,
    ).toBe(false);
  });

  it('refuses a tampered, expired or ended session', () => {
    const now = Date.now();
    const session = auth.issueSession(TOKEN, now)!;
    const [id, expires, , mac] = session.split('.');
    // Claiming the viewer entry's index with the owner's MAC fails.
    expect(auth.authenticateSession(`${id}.${expires}.0.${mac}`).ok).toBe(false);
    expect(auth.authenticateSession(`${id}.${Number(expires) + 1}.1.${mac}`).ok).toBe(false);
    expect(auth.authenticateSession(session, now + 31 * 86_400_000)).toMatchObject({
      ok: false,
      message: expect.stringContaining('expired'),
    });
    auth.endSession(session);
    expect(auth.authenticateSession(session)).toMatchObject({ ok: false, message: expect.stringContaining('ended') });
    expect(auth.authenticateSession('garbage').ok).toBe(false);
    // Ending a forged cookie that names a live session's id does not end that session.
    const live = auth.issueSession(TOKEN)!;
    const [liveId, liveExpires] = live.split('.');
    auth.endSession(`${liveId}.${liveExpires}.1.forged`);
    expect(auth.authenticateSession(live).ok).toBe(true);
  });
});

describe('plain-word validation messages', () => {
  const schema = z
    .object({ response: z.string().min(1).max(5), cooldownSec: z.number().int().min(0), aliases: z.array(z.string()).max(1) })
    .strict();
  const problems = (value: unknown) => schema.safeParse(value).error!.issues.map(plainIssue);

  it('says what is wrong with each field instead of zod wording', () => {
    expect(problems({ response: '', cooldownSec: -1, aliases: ['a', 'b'] })).toEqual([
      'response must not be empty',
      'cooldownSec must be at least 0',
      'aliases may have at most 1 items',
    ]);
    expect(problems({ response: 'too long', cooldownSec: 1.5, aliases: [] })).toEqual([
      'response must be at most 5 characters',
      'cooldownSec must be a whole number',
    ]);
    expect(problems({ cooldownSec: 'x', aliases: [], colour: 'red' })).toEqual([
      'response is required',
      'cooldownSec must be a number',
      'unknown field colour',
    ]);
  });
});

describe('chart series', () => {
  const now = Date.parse('2026-12-06T12:00:30Z');
  const at = (minutesAgo: number) => new Date(now - minutesAgo * 60_000).toISOString();
  const records: EventRecord[] = [
    { id: 'a', correlationId: 'a', type: 'external.chat.message.v1', receivedAt: at(0), replyText: 'pong', latencyMs: 100 },
    { id: 'b', correlationId: 'b', type: 'external.chat.message.v1', receivedAt: at(0), replyText: 'hi', latencyMs: 300 },
    { id: 'c', correlationId: 'c', type: 'external.chat.message.v1', receivedAt: at(0), replyText: 'yo', latencyMs: 200 },
    { id: 'd', correlationId: 'd', type: 'system.source.status', receivedAt: at(2) },
    { id: 'e', correlationId: 'e', type: 'external.chat.message.v1', receivedAt: at(2) },
  ];
  /** Pages of two, newest first, like the stores. */
  const store = {
    async listEvents(query: EventQuery): Promise<Page<EventRecord>> {
      const items = records.filter((record) => !query.since || record.receivedAt >= query.since);
      const start = query.cursor ? Number(query.cursor) : 0;
      const page = items.slice(start, start + 2);
      return { items: page, ...(start + 2 < items.length ? { nextCursor: String(start + 2) } : {}) };
    },
  };

  it('counts chat and all events per minute and takes the median reply latency, reading every page', async () => {
    const series = await aggregateStats(store, { hours: 1, now });
    expect(series.bucketMs).toBe(60_000);
    expect(series.buckets).toHaveLength(60);
    expect(series.buckets.at(-1)).toEqual({ at: '2026-12-06T12:00:00.000Z', chat: 3, events: 3, replies: 3, latencyMs: 200 });
    expect(series.buckets.at(-3)).toEqual({ at: '2026-12-06T11:58:00.000Z', chat: 1, events: 2, replies: 0 });
    expect(series.totals).toEqual({ chat: 4, events: 5, replies: 3 });
    expect(series.truncated).toBe(false);
  });

  it('uses five-minute buckets beyond three hours', async () => {
    const series = await aggregateStats(store, { hours: 6, now });
    expect(series.bucketMs).toBe(300_000);
    expect(series.buckets).toHaveLength(72);
    expect(series.buckets.at(-1)).toMatchObject({ at: '2026-12-06T12:00:00.000Z', chat: 3, events: 3 });
    expect(series.buckets.at(-2)).toMatchObject({ at: '2026-12-06T11:55:00.000Z', chat: 1, events: 2 });
  });
});

describe('Twitch setup facts', () => {
  const now = Date.parse('2026-12-06T12:00:00Z');
  const base = {
    clientId: true,
    clientSecret: true,
    botUsername: 'bitbrat_bot',
    channels: ['bitbrat'],
    botTokenSecret: false,
    tokens: {},
    wantedScopes: ['chat:read', 'chat:edit', 'bits:read'],
    now,
  };
  const token = (overrides: Record<string, unknown> = {}) => ({
    id: 'twitch:bot',
    accessToken: 'a',
    refreshToken: 'r',
    scopes: ['chat:read', 'chat:edit'],
    expiresAt: '2026-12-06T16:00:00Z',
    obtainedAt: '2026-12-06T11:00:00Z',
    login: 'bitbrat_bot',
    version: 1,
    ...overrides,
  });

  it('names every missing setting and says to set them first', () => {
    const setup = twitchSetup({ ...base, clientId: false, clientSecret: false, botUsername: undefined, channels: [] });
    expect(setup.missing.map((setting) => setting.name)).toEqual([
      'TWITCH_CLIENT_ID',
      'TWITCH_CLIENT_SECRET',
      'TWITCH_BOT_USERNAME',
      'TWITCH_CHANNELS',
    ]);
    expect(setup.appConfigured).toBe(false);
    expect(setup.nextStep).toBe('Set TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET, TWITCH_BOT_USERNAME, TWITCH_CHANNELS and restart.');
  });

  it('walks the owner through the bot, then the broadcaster, then says it is set up', () => {
    expect(twitchSetup(base).nextStep).toBe('Connect the bot account.');
    expect(twitchSetup({ ...base, tokens: { bot: token() } }).nextStep).toBe(
      'Connect the broadcaster account for follows, subs, cheers, raids and redemptions.',
    );
    const done = twitchSetup({
      ...base,
      tokens: { bot: token(), broadcaster: token({ id: 'twitch:broadcaster', scopes: ['chat:read', 'chat:edit', 'bits:read'] }) },
    });
    expect(done.nextStep).toBe('Twitch is set up.');
    expect(done.accounts.map((entry) => [entry.identity, entry.health, entry.missingScopes])).toEqual([
      ['bot', 'ok', ['bits:read']],
      ['broadcaster', 'ok', []],
    ]);
  });

  it('tells expiring and expired tokens apart, and whether they refresh themselves', () => {
    const health = (overrides: Record<string, unknown>) => twitchSetup({ ...base, tokens: { bot: token(overrides) } }).accounts[0]!;
    expect(health({ expiresAt: '2026-12-06T12:30:00Z' })).toMatchObject({
      health: 'expiring',
      detail: 'expires within the hour; it is refreshed on use',
    });
    expect(health({ expiresAt: '2026-12-06T11:00:00Z' })).toMatchObject({
      health: 'expired',
      detail: 'expired; it is refreshed on next use',
    });
    expect(health({ expiresAt: '2026-12-06T11:00:00Z', refreshToken: undefined })).toMatchObject({
      health: 'expired',
      detail: 'expired and cannot be refreshed: connect the account again',
    });
    expect(twitchSetup({ ...base, tokens: { bot: token({ expiresAt: '2026-12-06T11:00:00Z', refreshToken: undefined }) } }).nextStep).toBe(
      'Connect the bot account again: its token expired.',
    );
  });

  it('counts a bot token given as a secret as connected', () => {
    expect(twitchSetup({ ...base, botTokenSecret: true }).accounts[0]).toMatchObject({ connected: true, health: 'ok' });
  });
});
