import { describe, expect, it } from 'vitest';
import {
  FilterSettingsSchema,
  createFilterCheck,
  defaultFilterSettings,
  linkAllowed,
  mergeFilterSettings,
  messageFingerprint,
  sanctionFor,
  termProblems,
  type FilterInput,
} from '../../src/services/moderation/filters.js';

const check = (input: Partial<FilterInput> & { text: string }, settings = defaultFilterSettings()) =>
  createFilterCheck(settings)({ role: 'viewer', channel: 'streamer', ...input });

describe('moderation filters', () => {
  it('flags a viewer link to an unknown domain', () => {
    expect(check({ text: 'cheap followers at spam.example.com/buy' })).toMatchObject({ filter: 'links', detail: 'spam.example.com' });
  });

  it('allows Twitch clips and the channel’s own links by default', () => {
    expect(check({ text: 'look https://clips.twitch.tv/FunnyClip-abc' })).toBeUndefined();
    expect(check({ text: 'https://www.twitch.tv/otherstreamer/clip/FunnyClip-abc' })).toBeUndefined();
    expect(check({ text: 'follow twitch.tv/streamer please' })).toBeUndefined();
    expect(check({ text: 'follow twitch.tv/someoneelse please' })).toMatchObject({ filter: 'links' });
  });

  it('exempts subscribers, VIPs and moderators from the link filter but not from caps', () => {
    for (const role of ['subscriber', 'vip', 'moderator', 'broadcaster'])
      expect(check({ text: 'see spam.example.com', role })).toBeUndefined();
    expect(check({ text: 'THIS IS REALLY LOUD SHOUTING TEXT', role: 'subscriber' })).toMatchObject({ filter: 'caps' });
    expect(check({ text: 'THIS IS REALLY LOUD SHOUTING TEXT', role: 'moderator' })).toBeUndefined();
  });

  it('never filters the broadcaster, even with an exemption level above every role', () => {
    const settings = mergeFilterSettings(defaultFilterSettings(), { caps: { exempt: 'broadcaster' } });
    expect(check({ text: 'THIS IS REALLY LOUD SHOUTING TEXT', role: 'moderator' }, settings)).toMatchObject({ filter: 'caps' });
    expect(check({ text: 'THIS IS REALLY LOUD SHOUTING TEXT', role: 'broadcaster' }, settings)).toBeUndefined();
  });

  it('does not count emote names as shouting', () => {
    const text = 'KEKW KEKW KEKW KEKW LULW';
    const emotes = [
      { id: '1', name: 'KEKW', positions: [0, 5, 10, 15].map((start) => ({ start, end: start + 3 })) },
      { id: '2', name: 'LULW', positions: [{ start: 20, end: 23 }] },
    ];
    expect(check({ text, emotes })).toBeUndefined();
    expect(check({ text })).toMatchObject({ filter: 'caps' });
  });

  it('marks a link a permit covers instead of passing it silently', () => {
    expect(check({ text: 'my art: art.example.com', permitted: true })).toMatchObject({ filter: 'links', permitCovers: true });
  });

  it('flags symbols, emotes and length past their limits', () => {
    expect(check({ text: '$$$ %%% &&& *** ((( ))) !!!' })).toMatchObject({ filter: 'symbols' });
    expect(
      check({
        text: 'Kappa '.repeat(16),
        emotes: Array.from({ length: 16 }, (_, index) => ({ id: '25', positions: [{ start: index * 6, end: index * 6 + 4 }] })).flatMap(
          (e) => e.positions.map(() => e),
        ),
      }),
    ).toMatchObject({ filter: 'emotes' });
    expect(check({ text: 'a'.repeat(10) + ' word'.repeat(100) })).toMatchObject({ filter: 'length' });
    expect(check({ text: 'a normal sentence about the game, with a question?' })).toBeUndefined();
  });

  it('flags the same message repeated and a flood of messages from the history the service counted', () => {
    expect(check({ text: 'hello', sameMessageCount: 2 })).toBeUndefined();
    expect(check({ text: 'hello', sameMessageCount: 3 })).toMatchObject({ filter: 'repetition' });
    expect(check({ text: 'hello', recentMessageCount: 8 })).toBeUndefined();
    expect(check({ text: 'hello', recentMessageCount: 9 })).toMatchObject({ filter: 'flood' });
    expect(messageFingerprint('Hello   World!!')).toBe(messageFingerprint('hello world'));
  });

  it('matches blocked words, wildcards and regexes, with leetspeak folded', () => {
    const settings = mergeFilterSettings(defaultFilterSettings(), {
      blockedTerms: {
        terms: [
          { pattern: 'scam' },
          { pattern: 'free*coins', kind: 'wildcard' },
          { pattern: 'buy (cheap|real) viewers', kind: 'regex', ban: true },
        ],
      },
    });
    expect(check({ text: 'this is a SC4M', role: 'subscriber' }, settings)).toMatchObject({
      filter: 'blocked-terms',
      detail: 'scam',
      ban: false,
    });
    expect(check({ text: 'scampi for dinner' }, settings)).toBeUndefined();
    expect(check({ text: 'get freebitcoins now' }, settings)).toMatchObject({ detail: 'free*coins' });
    expect(check({ text: 'Buy cheap viewers here' }, settings)).toMatchObject({ filter: 'blocked-terms', ban: true });
  });

  it('refuses a regex RE2 cannot run in linear time and settings out of range', () => {
    const settings = FilterSettingsSchema.parse({ blockedTerms: { terms: [{ pattern: '(a+)+\\1', kind: 'regex' }] } });
    expect(termProblems(settings)[0]).toMatch(/blockedTerms\.terms\.0: not a valid RE2 regex/);
    expect(FilterSettingsSchema.safeParse({ caps: { ratio: 3 } }).success).toBe(false);
    expect(FilterSettingsSchema.safeParse({ links: { exempt: 'nobody' } }).success).toBe(false);
  });

  it('turns nothing on when the master switch is off', () => {
    expect(
      check({ text: 'spam.example.com SCAM SCAM SCAM SCAM' }, mergeFilterSettings(defaultFilterSettings(), { enabled: false })),
    ).toBeUndefined();
  });

  it('escalates: delete and warn, then a 10 s timeout, then 10 minutes; a ban term bans at once', () => {
    const settings = defaultFilterSettings();
    const violation = { filter: 'links' as const, reason: 'no links' };
    expect(sanctionFor(violation, 1, settings, 'alice')).toEqual({ kind: 'delete', warn: '@alice please don’t: no links (warning)' });
    expect(sanctionFor(violation, 2, settings, 'alice')).toEqual({ kind: 'timeout', seconds: 10 });
    expect(sanctionFor(violation, 3, settings, 'alice')).toEqual({ kind: 'timeout', seconds: 600 });
    expect(sanctionFor(violation, 7, settings, 'alice')).toEqual({ kind: 'timeout', seconds: 600 });
    expect(sanctionFor({ ...violation, ban: true }, 1, settings, 'alice')).toEqual({ kind: 'ban' });
  });

  it('matches allow-list entries by domain, subdomain and path prefix', () => {
    expect(linkAllowed('https://m.youtube.com/watch?v=1', 'm.youtube.com', ['youtube.com'], 'x')).toBe(true);
    expect(linkAllowed('https://notyoutube.com/', 'notyoutube.com', ['youtube.com'], 'x')).toBe(false);
    expect(linkAllowed('twitch.tv/streamer/videos', 'twitch.tv', ['twitch.tv/{channel}'], '#Streamer')).toBe(true);
  });
});
