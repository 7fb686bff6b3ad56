import { describe, expect, it } from 'vitest';
import { ALL_EVENTSUB_KINDS } from '../../src/platforms/twitch/eventsub.js';
import { describeEventSubPlan, planEventSub, PUBLIC_EVENTSUB_KINDS } from '../../src/platforms/twitch/eventsub-plan.js';

const STREAMER = { id: '1001', login: 'streamer' };
const OTHER = { id: '1002', login: 'otherchan' };
const BOT = { userId: '500', login: 'bitbrat_bot', scopes: ['chat:read', 'chat:edit'] };
const MOD_BOT = { ...BOT, scopes: [...BOT.scopes, 'moderator:read:followers'] };
const BROADCASTER = {
  userId: STREAMER.id,
  login: STREAMER.login,
  scopes: ['channel:read:subscriptions', 'bits:read', 'moderator:read:followers'],
};

const kindsFor = (plan: ReturnType<typeof planEventSub>, channel: string, tokenUserId?: string) =>
  plan.targets
    .filter((target) => target.broadcaster.login === channel && (!tokenUserId || target.tokenUserId === tokenUserId))
    .map((target) => target.kind)
    .sort();

describe('choosing the token for each EventSub subscription type', () => {
  it('uses the broadcaster token for every type of the broadcaster’s channel', () => {
    const plan = planEventSub({ channels: [STREAMER], bot: MOD_BOT, broadcaster: BROADCASTER });
    expect(kindsFor(plan, 'streamer', STREAMER.id)).toEqual([...ALL_EVENTSUB_KINDS].sort());
    expect(plan.waiting).toEqual([]);
  });

  it('uses the bot token for stream.online, stream.offline, channel.update and channel.raid without the broadcaster', () => {
    const plan = planEventSub({ channels: [STREAMER], bot: BOT });
    expect(kindsFor(plan, 'streamer', BOT.userId)).toEqual([...PUBLIC_EVENTSUB_KINDS].sort());
  });

  it('leaves channel.follow waiting for a bot without moderator:read:followers', () => {
    const plan = planEventSub({ channels: [STREAMER], bot: BOT });
    expect(kindsFor(plan, 'streamer')).not.toContain('channel.follow');
    expect(plan.waiting).toEqual([
      {
        channel: 'streamer',
        kinds: [
          'channel.follow',
          'channel.subscribe',
          'channel.subscription.gift',
          'channel.subscription.message',
          'channel.cheer',
          'channel.channel_points_custom_reward_redemption.add',
        ],
      },
    ]);
  });

  it('subscribes channel.follow with the bot token when the bot may read followers as a moderator', () => {
    const plan = planEventSub({ channels: [STREAMER], bot: MOD_BOT });
    expect(kindsFor(plan, 'streamer', BOT.userId)).toContain('channel.follow');
    expect(plan.waiting[0]!.kinds).not.toContain('channel.follow');
  });

  it('lets the bot’s token serve every type when the bot account is the broadcaster', () => {
    const plan = planEventSub({ channels: [{ id: BOT.userId, login: BOT.login }], bot: BOT });
    expect(kindsFor(plan, BOT.login, BOT.userId)).toEqual([...ALL_EVENTSUB_KINDS].sort());
  });

  it('mixes tokens across channels: the broadcaster’s for its own channel, the bot’s elsewhere', () => {
    const plan = planEventSub({ channels: [STREAMER, OTHER], bot: BOT, broadcaster: BROADCASTER });
    expect(kindsFor(plan, 'streamer', STREAMER.id)).toHaveLength(ALL_EVENTSUB_KINDS.length);
    expect(kindsFor(plan, 'otherchan', BOT.userId)).toEqual([...PUBLIC_EVENTSUB_KINDS].sort());
  });

  it('keeps the bot’s subscriptions within max_total_cost 10, stream online/offline first, then updates, and says what is left out', () => {
    const channels = [STREAMER, OTHER, { id: '1003', login: 'third' }];
    const plan = planEventSub({ channels, bot: BOT });
    expect(plan.targets).toHaveLength(10);
    for (const channel of channels)
      expect(kindsFor(plan, channel.login)).toEqual(expect.arrayContaining(['stream.offline', 'stream.online']));
    expect(plan.overLimit.map((item) => `${item.kind} #${item.channel}`)).toEqual(['channel.raid #otherchan', 'channel.raid #third']);
    const described = describeEventSubPlan(plan);
    expect(described.ok).toBe(false);
    expect(described.detail).toMatch(/max_total_cost of 10; not subscribed: channel.raid #otherchan, channel.raid #third/);
  });

  it('names each type waiting for the broadcaster and how to connect it', () => {
    const described = describeEventSubPlan(planEventSub({ channels: [STREAMER], bot: BOT }));
    expect(described.ok).toBe(true);
    expect(described.detail).toContain(
      'waiting for the broadcaster connection on #streamer: channel.follow, channel.subscribe, channel.subscription.gift',
    );
    expect(described.detail).toContain('/oauth/twitch/start?identity=broadcaster');
    expect(described.detail).toContain('TWITCH_BROADCASTER_ACCESS_TOKEN');
  });

  it('reports a follow Twitch refused (the bot is no moderator there) as waiting, and a 429 as a limit error', () => {
    const plan = planEventSub({ channels: [STREAMER], bot: MOD_BOT });
    const described = describeEventSubPlan(plan, [
      {
        kind: 'channel.follow',
        channel: 'streamer',
        error: 'Twitch answered HTTP 403: subscription missing proper authorization',
        httpStatus: 403,
      },
      {
        kind: 'stream.online',
        channel: 'streamer',
        error: 'Twitch answered HTTP 429: number of websocket transports limit exceeded',
        httpStatus: 429,
      },
    ]);
    expect(described.ok).toBe(false);
    expect(described.detail).toContain('waiting for the broadcaster connection on #streamer: channel.follow, channel.subscribe');
    expect(described.detail).toContain(
      'EventSub limit: Twitch refused stream.online #streamer: Twitch answered HTTP 429: number of websocket transports limit exceeded',
    );
  });
});
