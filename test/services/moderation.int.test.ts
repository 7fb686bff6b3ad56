/**
 * Moderation end to end: chat from the fake IRC server goes through ingress-egress, auth, the router, the
 * analyzer and the moderation step, which acts over Helix on the fake Twitch (real Twurple clients); the
 * fake records the exact Helix calls, the warning comes back as a PRIVMSG, and the moderation log is in
 * the store. Memory bus, PGlite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryBus } from '../../src/bus/index.js';
import { stepTopic } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import commands from '../../src/services/commands/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import ingressEgress from '../../src/services/ingress-egress/index.js';
import {
  createModerationRequest,
  createModerationService,
  currentGiveaway,
  listEntries,
  listLog,
  saveTimer,
  updateFilterSettings,
  type ModerationLogEntry,
} from '../../src/services/moderation/index.js';
import { DEFAULT_TWITCH_OAUTH_SCOPES } from '../../src/services/oauth-flow/index.js';
import persistence from '../../src/services/persistence/index.js';
import queryAnalyzer from '../../src/services/query-analyzer/index.js';
import type { EventRecord, Store } from '../../src/store/index.js';
import type { RecordedRequest } from '../fakes/twitch-api.js';
import { useStoreAndServices } from '../support/service-test.js';
import { BOT, OTHER, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';
import { waitFor } from '../support/wait.js';

const BOT_SCOPES = [
  'chat:read',
  'chat:edit',
  'moderator:manage:chat_messages',
  'moderator:manage:banned_users',
  'moderator:manage:shoutouts',
];
const MOD_TAGS = { badges: 'moderator/1', mod: '1' };
const SUB_TAGS = { badges: 'subscriber/6', subscriber: '1' };

let store: Store;
let world: TwitchWorld;
let bus: MemoryBus;
let host: Host;
/** The moderation service's clock (timers, escalation windows, permits), moved on by the timer test. */
let clockOffsetMs = 0;

beforeAll(async () => {
  world = await startTwitchWorld({ botScopes: BOT_SCOPES, channels: [STREAMER.login, OTHER.login] });
  // The bot moderates the streamer's channel, not the other one.
  world.api.addModerator(STREAMER.id, BOT.id);
  world.api.setStream(STREAMER.id, { title: 'Speedrun', gameName: 'Celeste' });
  world.api.setChannel(OTHER.id, { title: 'Cozy', gameName: 'Stardew Valley' });
});
afterAll(async () => {
  await world?.stop();
});
useStoreAndServices({
  seed: (opened) =>
    updateFilterSettings(opened, `twitch:${STREAMER.login}`, {
      blockedTerms: { terms: [{ pattern: 'scamcoin', ban: true }, { pattern: 'meanie' }] },
    }),
  host: () => ({
    services: [
      ingressEgress,
      authService,
      eventRouter,
      queryAnalyzer,
      createModerationService({ now: () => Date.now() + clockOffsetMs }),
      commands,
      persistence,
      finalizer,
    ],
    env: {
      ...world.env(),
      INSTANCE_ID: 'moderation-e2e',
      BOT_NAME: BOT.login,
      TWITCH_EVENTSUB_ENABLED: 'false',
      MODERATION_TIMER_TICK_MS: '100',
    },
    architecture: loadArchitecture(),
  }),
  started: async (running) => {
    ({ store, bus, host } = running);
    await world.irc.waitFor(() => world.irc.joinedClients(STREAMER.login) > 0 && world.irc.joinedClients(OTHER.login) > 0, 15_000);
  },
});

/** Chat from `user` in a channel; resolves with the message id once its final record is written. */
async function chat(
  user: string,
  text: string,
  options: { channel?: string; tags?: Record<string, string> } = {},
): Promise<{ id: string; record: EventRecord }> {
  const id = world.irc.sendChat({
    channel: options.channel ?? STREAMER.login,
    user,
    text,
    tags: { 'user-id': `u-${user}`, ...options.tags },
  });
  const record = await waitFor(
    async () => {
      const page = await store.listEvents({ type: 'external.chat.message.v1', limit: 200 });
      const match = page.items.find((item) => item.final?.message?.id === id);
      return match?.outcome ? match : undefined;
    },
    { timeoutMs: 20_000, message: `the final record of "${text}"` },
  );
  return { id, record };
}

const helix = (method: string, path: string) =>
  world.api.requests.filter((request) => request.method === method && request.path === `/mock${path}`);
const privmsgContaining = (channel: string, text: string) =>
  world.irc.waitFor(() => world.irc.messagesTo(channel).find((message) => message.text.includes(text)), 15_000);
const logOf = async (login: string): Promise<ModerationLogEntry[]> => (await listLog(store, { user: login, limit: 50 })).reverse();

describe('moderation over Helix', () => {
  it('asks Twitch for the moderation scopes', () => {
    expect(DEFAULT_TWITCH_OAUTH_SCOPES.split(' ')).toEqual(
      expect.arrayContaining(['moderator:manage:chat_messages', 'moderator:manage:banned_users']),
    );
  });

  it("escalates a viewer's links: delete and warn, then a 10 s timeout, then 10 minutes", async () => {
    const first = await chat('spammer', 'cheap followers at spam.example.com');
    const deleted = helix('DELETE', '/moderation/chat').find((request) => request.query.message_id === first.id)!;
    expect(deleted).toMatchObject<Partial<RecordedRequest>>({
      query: { broadcaster_id: STREAMER.id, moderator_id: BOT.id, message_id: first.id },
      status: 204,
    });
    await privmsgContaining(STREAMER.login, '@Spammer please don’t: no links without a moderator’s !permit (warning)');
    expect(first.record.final!.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual([
      'query-analyzer:OK',
      'moderation:OK',
      'router:PENDING',
    ]);

    await chat('spammer', 'again: spam.example.com/x');
    await chat('spammer', 'and www.spam.example.com');
    const bans = helix('POST', '/moderation/bans').filter(
      (request) => (request.body as { data: { user_id: string } }).data.user_id === 'u-spammer',
    );
    expect(bans.map((request) => [request.query, (request.body as { data: { duration: number } }).data.duration, request.status])).toEqual([
      [{ broadcaster_id: STREAMER.id, moderator_id: BOT.id }, 10, 200],
      [{ broadcaster_id: STREAMER.id, moderator_id: BOT.id }, 600, 200],
    ]);
    expect(world.api.bans.get(`${STREAMER.id}:u-spammer`)?.endsAt).toBeGreaterThan(Date.now() + 500_000);
    const log = await logOf('spammer');
    expect(log.map((entry) => [entry.action, entry.status, entry.filter, entry.offence, entry.by])).toEqual([
      ['delete', 'done', 'links', 1, 'bot'],
      ['timeout', 'done', 'links', 2, 'bot'],
      ['timeout', 'done', 'links', 3, 'bot'],
    ]);
    expect(log[1]).toMatchObject({
      durationSec: 10,
      undo: 'untimeout',
      detail: 'spam.example.com',
      messageText: 'again: spam.example.com/x',
    });
    // Each action taken is counted for the dashboards: bitbrat_moderation_actions_total{platform,action,reason}.
    const counted = (await host.metrics.platform.moderationActions.get()).values.filter((value) => value.labels.reason === 'links');
    expect(Object.fromEntries(counted.map((value) => [`${value.labels.platform}/${value.labels.action}`, value.value]))).toMatchObject({
      'twitch/delete': 1,
      'twitch/timeout': 2,
    });
  });

  it('leaves subscribers’ links, Twitch clips and moderators alone', async () => {
    const before = world.api.requests.length;
    await chat('subfan', 'my speedrun: youtube.com/watch?v=1', { tags: SUB_TAGS });
    await chat('viewer1', 'look https://clips.twitch.tv/FunnyClip');
    await chat('modmia', 'ALL CAPS FROM A MODERATOR IS FINE HERE', { tags: MOD_TAGS });
    expect(world.api.requests.slice(before).filter((request) => request.path.startsWith('/mock/moderation'))).toEqual([]);
    expect(await logOf('subfan')).toEqual([]);
  });

  it('lets a viewer post one link within 60 s after a moderator’s !permit', async () => {
    await chat('modmia', '!permit @linker', { tags: MOD_TAGS });
    await privmsgContaining(STREAMER.login, '@linker you may post one link in the next 60 seconds.');
    const allowed = await chat('linker', 'my art: art.example.com');
    expect(helix('DELETE', '/moderation/chat').some((request) => request.query.message_id === allowed.id)).toBe(false);
    expect(
      allowed.record.final!.annotations?.some(
        (annotation) => annotation.kind === 'moderation-result' && annotation.label === 'permit-used',
      ),
    ).toBe(true);
    const second = await chat('linker', 'and art.example.com/more');
    expect(helix('DELETE', '/moderation/chat').some((request) => request.query.message_id === second.id)).toBe(true);
    // A viewer cannot permit anyone.
    await chat('viewer2', '!permit @friend');
    expect(world.irc.messagesTo(STREAMER.login).some((message) => message.text.includes('@friend you may post'))).toBe(false);
  });

  it('bans at once for a blocked term configured to ban, and deletes for one that is not', async () => {
    await chat('shill', 'buy SCAMCOIN today');
    const ban = helix('POST', '/moderation/bans').find(
      (request) => (request.body as { data: { user_id: string } }).data.user_id === 'u-shill',
    )!;
    expect((ban.body as { data: Record<string, unknown> }).data).toEqual({
      user_id: 'u-shill',
      reason: 'blocked-terms: that term is not allowed here (scamcoin)',
    });
    expect(world.api.bans.get(`${STREAMER.id}:u-shill`)?.endsAt).toBeNull();
    const rude = await chat('rude', 'you m3anie');
    expect(helix('DELETE', '/moderation/chat').some((request) => request.query.message_id === rude.id)).toBe(true);
  });

  it('undoes a timeout from the log: DELETE /moderation/bans, and the log says who undid it', async () => {
    await chat('hothead', 'first http://bad.example.com');
    await chat('hothead', 'second http://bad.example.com');
    const timeout = (await logOf('hothead')).find((entry) => entry.action === 'timeout')!;
    expect(world.api.bans.has(`${STREAMER.id}:u-hothead`)).toBe(true);
    const request = createModerationRequest(
      { action: 'undo', logId: timeout.id, reason: 'misfire' },
      {
        platform: 'twitch',
        channel: `#${STREAMER.login}`,
        channelId: STREAMER.id,
        by: { id: 'm1', login: 'modmia', role: 'moderator' },
        via: 'test',
      },
    );
    await bus.publish(stepTopic('moderation'), new TextEncoder().encode(JSON.stringify(request)));
    await world.api.waitFor(
      () => helix('DELETE', '/moderation/bans').find((call) => call.query.user_id === 'u-hothead'),
      15_000,
      'the unban',
    );
    expect(helix('DELETE', '/moderation/bans').find((call) => call.query.user_id === 'u-hothead')).toMatchObject({
      query: { broadcaster_id: STREAMER.id, moderator_id: BOT.id, user_id: 'u-hothead' },
      status: 204,
    });
    expect(world.api.bans.has(`${STREAMER.id}:u-hothead`)).toBe(false);
    const undone = await waitFor(async () => (await logOf('hothead')).find((entry) => entry.id === timeout.id && entry.undone), {
      timeoutMs: 10_000,
      message: 'the undone mark',
    });
    expect(undone.undone).toMatchObject({ by: 'modmia', status: 'done' });
    expect((await logOf('hothead')).at(-1)).toMatchObject({ action: 'untimeout', status: 'done', by: 'modmia' });
  });

  it('records an action as not permitted where the bot is not a moderator, and the source says so', async () => {
    const message = await chat('spammer2', 'visit spam.example.com', { channel: OTHER.login });
    const refused = helix('DELETE', '/moderation/chat').find((request) => request.query.message_id === message.id)!;
    expect(refused).toMatchObject({ query: { broadcaster_id: OTHER.id, moderator_id: BOT.id }, status: 403 });
    const [entry] = await logOf('spammer2');
    expect(entry).toMatchObject({ action: 'delete', status: 'not-permitted', channel: `twitch:${OTHER.login}` });
    expect(entry!.error).toMatch(/not a moderator of #otherchan/);
    const source = await store.getSource(`twitch:${OTHER.login}`);
    expect(source?.metadata?.moderation).toMatchObject({ permitted: false, reason: expect.stringMatching(/not a moderator/) });
  });

  it('shouts out a channel on !so: the last game in chat and a Helix shoutout', async () => {
    await chat('modmia', `!so @${OTHER.login}`, { tags: MOD_TAGS });
    await privmsgContaining(
      STREAMER.login,
      `Go check out ${OTHER.displayName} at https://twitch.tv/${OTHER.login} ! They were last playing Stardew Valley.`,
    );
    expect(helix('POST', '/chat/shoutouts').at(-1)).toMatchObject({
      query: { from_broadcaster_id: STREAMER.id, to_broadcaster_id: OTHER.id, moderator_id: BOT.id },
      status: 204,
    });
    expect(world.api.shoutouts).toHaveLength(1);
    // Twitch allows one shoutout every 2 minutes: the next !so is only the chat message.
    await chat('modmia', `!so ${OTHER.login}`, { tags: MOD_TAGS });
    expect(world.api.shoutouts).toHaveLength(1);
    const shoutouts = (await listLog(store, { user: OTHER.login })).filter((entry) => entry.action === 'shoutout');
    expect(shoutouts.map((entry) => entry.status).sort()).toEqual(['done', 'rate-limited']);
  });

  it('posts a timer in chat while live once its interval has passed and enough chat came', async () => {
    await store.mergeSource({ id: `twitch:${STREAMER.login}`, platform: 'twitch', streamStatus: 'online' });
    await saveTimer(store, `twitch:${STREAMER.login}`, {
      name: 'socials',
      message: 'Follow {channel} everywhere!',
      intervalMin: 5,
      minLines: 2,
    });
    // Past the service's few-second cache, so it sees the new timer and counts chat lines for it.
    clockOffsetMs += 5_000;
    await chat('chatty', 'hello there');
    await chat('chatty', 'how is everyone');
    expect(world.irc.messagesTo(STREAMER.login).some((message) => message.text === 'Follow streamer everywhere!')).toBe(false);
    clockOffsetMs += 6 * 60_000;
    const posted = await privmsgContaining(STREAMER.login, 'Follow streamer everywhere!');
    expect(posted.text).toBe('Follow streamer everywhere!');
    const record = await waitFor(
      async () => (await store.listEvents({ type: 'system.timer.v1', limit: 5 })).items.find((item) => item.outcome),
      { timeoutMs: 10_000, message: 'the timer message record' },
    );
    expect(record.replyDelivered).toBe(true);
  });

  it('keeps to Helix’s rate limit: a burst of actions waits for the bucket instead of failing', async () => {
    world.api.limitHelix({ points: 2, windowMs: 1_000 });
    try {
      const ids = await Promise.all(
        ['burst1', 'burst2', 'burst3', 'burst4', 'burst5'].map(async (user) => (await chat(user, `spam at burst.example.com/${user}`)).id),
      );
      const deletes = helix('DELETE', '/moderation/chat').filter((request) => ids.includes(request.query.message_id ?? ''));
      const done = deletes.filter((request) => request.status === 204);
      expect(new Set(done.map((request) => request.query.message_id))).toEqual(new Set(ids));
      // Five deletions at two a second cannot all go in one window: they waited for the bucket to refill.
      const times = done.map((request) => request.at).sort((a, b) => a - b);
      expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(1_000);
      for (const user of ['burst1', 'burst2', 'burst3', 'burst4', 'burst5'])
        expect((await logOf(user)).map((entry) => entry.status)).toEqual(['done']);
    } finally {
      world.api.limitHelix(undefined);
    }
  });

  it('runs a giveaway in chat: entries by keyword, subscriber luck, a winner announced', async () => {
    // The commands service keeps real time; put the moderation service's clock back beside it.
    clockOffsetMs = 0;
    await chat('modmia', '!giveaway start !join 2m luck=3', { tags: MOD_TAGS });
    await privmsgContaining(STREAMER.login, 'Giveaway! Type !join in the next 2 min to enter (subscribers get 3x luck).');
    await chat('fan1', '!join');
    await chat('subfan2', '!join', { tags: SUB_TAGS });
    await chat('fan1', '!join');
    await chat('fan3', 'i want to !join');
    const giveaway = (await currentGiveaway(store, `twitch:${STREAMER.login}`))!;
    expect((await listEntries(store, giveaway)).map((entry) => [entry.login, entry.weight]).sort()).toEqual([
      ['fan1', 1],
      ['subfan2', 3],
    ]);
    await chat('modmia', '!giveaway draw', { tags: MOD_TAGS });
    const announced = await privmsgContaining(STREAMER.login, 'The winner is @');
    expect(announced.text).toMatch(/^The winner is @(fan1|subfan2)! \(2 entries\)$/);
  });
});
