import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createEnvelope, createReply, type Envelope } from '../../src/core/index.js';
import {
  DISCORD_MESSAGE_MAX_LENGTH,
  deliverDiscordReply,
  discordChannelLabel,
  hasModRole,
  neutralizeMassMentions,
  normalizeDiscordMessage,
  renderAnnouncement,
  replyBodies,
  splitDiscordMessage,
  streamFacts,
  streamKey,
  type DiscordChatMessage,
  type DiscordMessageBody,
} from '../../src/platforms/discord/index.js';
import { badgeRole } from '../../src/services/auth/resolve.js';
import { GO_LIVE_RULE } from '../../src/services/discord/announce.js';
import { DEFAULT_RULES_FILE } from '../../src/services/event-router/load.js';
import { compileRules, evaluationData, matchRule, RulesFileSchema } from '../../src/services/event-router/rules.js';

const message = (overrides: Partial<DiscordChatMessage> = {}): DiscordChatMessage => ({
  id: '1',
  channelId: '10',
  channelName: 'general',
  guildId: '100',
  guildName: 'BitBrat HQ',
  guildOwnerId: '999',
  author: { id: '5', username: 'general', globalName: 'General Kenobi' },
  content: '!ping',
  roles: [],
  canManageMessages: false,
  ...overrides,
});

describe('discord message splitting', () => {
  it('keeps a message of exactly 2,000 characters whole and splits one more', () => {
    expect(splitDiscordMessage('a'.repeat(DISCORD_MESSAGE_MAX_LENGTH))).toHaveLength(1);
    expect(splitDiscordMessage('a'.repeat(DISCORD_MESSAGE_MAX_LENGTH + 1)).map((part) => part.length)).toEqual([2000, 1]);
  });

  it('prefers a line break, then a space, as the cut and keeps line breaks inside parts', () => {
    const text = `${'x'.repeat(1500)}\n${'y'.repeat(800)}`;
    expect(splitDiscordMessage(text)).toEqual(['x'.repeat(1500), 'y'.repeat(800)]);
    const words = `line one\nline two ${'w '.repeat(1200)}`.trim();
    const parts = splitDiscordMessage(words);
    expect(parts[0]!.startsWith('line one\nline two')).toBe(true);
    expect(parts.every((part) => part.length <= 2000 && !part.endsWith(' '))).toBe(true);
  });

  it('never cuts inside a surrogate pair', () => {
    const parts = splitDiscordMessage('a' + '😀'.repeat(1500));
    expect(parts.join('')).toBe('a' + '😀'.repeat(1500));
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(2000);
    expect(parts[0]!.endsWith('😀')).toBe(true);
  });
});

describe('discord mentions', () => {
  it('neutralizes @everyone and @here whatever their case, and leaves e-mail addresses and user mentions alone', () => {
    expect(neutralizeMassMentions('@everyone @HERE hi a@b.c <@123>')).toBe('@\u200beveryone @\u200bHERE hi a@b.c <@123>');
  });

  it('builds replies that ping only users, reply to the message with the first part and carry a nonce Discord enforces', () => {
    const bodies = replyBodies(`@here ${'z'.repeat(2500)}`, { replyTo: '77', key: 'env:cand' });
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).toMatchObject({
      allowed_mentions: { parse: ['users'], replied_user: true },
      message_reference: { message_id: '77', fail_if_not_exists: false },
      enforce_nonce: true,
    });
    expect(bodies[1]!.message_reference).toBeUndefined();
    expect(bodies[0]!.nonce).not.toBe(bodies[1]!.nonce);
    expect(bodies[0]!.nonce!.length).toBeLessThanOrEqual(25);
    expect(replyBodies('again', { key: 'env:cand' })[0]!.nonce).toBe(bodies[0]!.nonce);
  });
});

describe('discord normalization', () => {
  it('makes a chat envelope with platform discord, a channel no username can equal, and the message to reply to', () => {
    const envelope = normalizeDiscordMessage(message({ replyToMessageId: '0' }), { egressDestination: 'internal.egress.abc.v1' });
    expect(envelope.type).toBe('external.chat.message.v1');
    expect(envelope.source).toMatchObject({
      platform: 'discord',
      channel: 'BitBrat HQ #general',
      channelId: '10',
      egressDestination: 'internal.egress.abc.v1',
    });
    expect(envelope.user).toMatchObject({ id: '5', name: 'general', displayName: 'General Kenobi' });
    expect(envelope.message).toEqual({ id: '1', text: '!ping', replyToMessageId: '0' });
    expect(envelope.qos?.maxResponseMs).toBe(30_000);
    // A user named like the channel is not taken for its owner.
    expect(badgeRole(envelope)).toBe('viewer');
    expect(discordChannelLabel('a', 'b')).toBe('a #b');
  });

  it('gives the guild owner the broadcaster role and moderators the moderator role', () => {
    expect(badgeRole(normalizeDiscordMessage(message({ author: { id: '999', username: 'owner' } })))).toBe('broadcaster');
    expect(badgeRole(normalizeDiscordMessage(message({ canManageMessages: true })))).toBe('moderator');
    expect(badgeRole(normalizeDiscordMessage(message({ roles: [{ id: '42', name: 'Mods' }] }), { modRoles: ['mods'] }))).toBe('moderator');
  });

  it('matches moderator roles by id or case-insensitive name, and nothing when none are configured', () => {
    const roles = [{ id: '42', name: 'Stream Mods' }];
    expect(hasModRole(roles, ['42'])).toBe(true);
    expect(hasModRole(roles, [' stream mods '])).toBe(true);
    expect(hasModRole(roles, ['helpers', '43'])).toBe(false);
    expect(hasModRole(roles, [])).toBe(false);
  });
});

describe('discord egress decisions', () => {
  const reply = (text: string, platform = 'discord'): Envelope =>
    createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform, channel: 'x', channelId: '10' },
      extra: { message: { id: '1', text: 'q' }, candidates: [createReply('test', text)], qos: { maxResponseMs: 30_000 } },
    });
  const transport = (sent: DiscordMessageBody[], fail?: Error) => ({
    isConfigured: () => true,
    post: async (_channel: string, body: DiscordMessageBody) => {
      if (fail) throw fail;
      sent.push(body);
      return { id: String(sent.length) };
    },
  });

  it('records a reply to another platform as unsupported and sends nothing', async () => {
    const sent: DiscordMessageBody[] = [];
    const outcome = await deliverDiscordReply(reply('hi', 'twitch'), transport(sent));
    expect(outcome.envelope.delivery).toMatchObject({ delivered: false, reason: 'UNSUPPORTED_PLATFORM' });
    expect(sent).toEqual([]);
  });

  it('fails as NOT_CONFIGURED without a connection, and as PROVIDER_ERROR when Discord refuses', async () => {
    expect((await deliverDiscordReply(reply('hi'), undefined)).failure?.code).toBe('NOT_CONFIGURED');
    const refused = await deliverDiscordReply(
      reply('hi'),
      transport([], Object.assign(new Error('Missing Access'), { status: 403, code: 50001 })),
    );
    expect(refused.failure).toMatchObject({ code: 'PROVIDER_ERROR', message: expect.stringMatching(/403.*50001.*Missing Access/) });
    expect(refused.envelope.delivery).toMatchObject({ delivered: false, reason: 'SEND_FAILED' });
  });

  it('delivers every part and records their ids', async () => {
    const sent: DiscordMessageBody[] = [];
    const outcome = await deliverDiscordReply(reply('y'.repeat(4100)), transport(sent));
    expect(sent.map((body) => body.content.length)).toEqual([2000, 2000, 100]);
    expect(outcome.envelope.delivery).toMatchObject({ delivered: true, destination: 'discord:10', platformMessageIds: ['1', '2', '3'] });
  });
});

describe('go-live announcement text', () => {
  const online = (payload: Record<string, unknown>) =>
    createEnvelope({ type: 'system.stream.online', source: { platform: 'twitch', channel: 'streamer', channelId: '1000' }, payload });

  it('fills the template with title, game and link, with mass mentions neutralized', () => {
    const facts = streamFacts(online({ channel: 'Streamer', title: 'Hi @everyone', game: 'Celeste' }));
    expect(facts).toEqual({ channel: 'Streamer', title: 'Hi @everyone', game: 'Celeste', link: 'https://twitch.tv/streamer' });
    expect(renderAnnouncement('{channel}: {title} / {game} {link} {unknown}', facts)).toBe(
      'Streamer: Hi @\u200beveryone / Celeste https://twitch.tv/streamer {unknown}',
    );
    expect(streamFacts(online({}))).toMatchObject({ channel: 'streamer', title: 'no title yet', game: 'something' });
  });

  it('keys a stream by its id, else its start time, so two events of one stream share the key', () => {
    expect(streamKey(online({ channelId: '1000', streamId: 's1' }))).toBe(
      streamKey(online({ channelId: '1000', streamId: 's1', title: 'other' })),
    );
    expect(streamKey(online({ channelId: '1000', streamId: 's1' }))).not.toBe(streamKey(online({ channelId: '1000', streamId: 's2' })));
    expect(streamKey(online({ channelId: '1000', startedAt: '2026-01-01T00:00:00Z' }))).toBe('1000:2026-01-01T00:00:00Z');
  });
});

describe('the discord go-live rule', () => {
  const defaults = RulesFileSchema.parse(JSON.parse(readFileSync(DEFAULT_RULES_FILE, 'utf8'))).rules;
  const set = compileRules([...defaults, GO_LIVE_RULE]);
  const route = (type: string) =>
    matchRule(
      set,
      evaluationData(
        createEnvelope({
          type,
          source: { platform: 'twitch', channel: 'streamer', channelId: '1' },
          payload: { text: 'hello' },
          extra: { message: { text: 'hello' } },
        }),
        'ingress',
        'bitbrat',
      ),
    );

  it('is a valid rule that sends stream online and offline through the discord step, ahead of the default system rule', () => {
    expect(set.rejected).toEqual([]);
    expect(route('system.stream.online')?.rule.id).toBe('discord-go-live');
    expect(route('system.stream.offline')?.action.slip).toEqual([{ id: 'discord', maxAttempts: 10 }]);
    expect(route('system.source.status')?.rule.id).toBe('system-events-recorded');
    expect(route('external.chat.message.v1')?.rule.id).toBe('chat-enrichment');
  });
});
