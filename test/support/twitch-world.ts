/**
 * A fake Twitch for whole-service tests: the API fake (OAuth, Helix, EventSub WebSocket) and the IRC fake,
 * with a bot account, channel owners and tokens the fakes accept, and the env ingress-egress reads.
 */
import { startFakeTwitch, useFakeTwitch, type FakeTwitch } from '../fakes/twitch-api.js';
import { startFakeTwitchIrc, type FakeTwitchIrc } from '../fakes/twitch-irc.js';

export const BOT = { id: '500', login: 'bitbrat_bot', displayName: 'BitBrat_Bot' };
export const STREAMER = { id: '1001', login: 'streamer', displayName: 'Streamer' };
export const OTHER = { id: '1002', login: 'otherchan', displayName: 'OtherChan' };
export const THIRD = { id: '1003', login: 'thirdchan', displayName: 'ThirdChan' };
export const BROADCASTER_SCOPES = [
  'moderator:read:followers',
  'channel:read:subscriptions',
  'bits:read',
  'channel:read:redemptions',
  'moderator:manage:shoutouts',
];

export interface TwitchWorld {
  api: FakeTwitch;
  irc: FakeTwitchIrc;
  bot: { accessToken: string; refreshToken: string };
  /** Env for ingress-egress: app credentials, bot tokens, channels, the IRC URL. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** A broadcaster token for STREAMER as TWITCH_BROADCASTER_* env. */
  broadcasterEnv(scopes?: string[]): Record<string, string>;
  stop(): Promise<void>;
}

/** Starts both fakes; `botScopes` are the scopes of the bot's token (default chat only). */
export async function startTwitchWorld(options: { botScopes?: string[]; channels?: string[] } = {}): Promise<TwitchWorld> {
  const api = await startFakeTwitch();
  const restore = useFakeTwitch(api);
  for (const user of [BOT, STREAMER, OTHER, THIRD]) api.addUser(user);
  const bot = api.issueToken(BOT.id, { scopes: options.botScopes ?? ['chat:read', 'chat:edit'] });
  const irc = await startFakeTwitchIrc({
    botLogin: BOT.login,
    botUserId: BOT.id,
    roomIds: { [STREAMER.login]: STREAMER.id, [OTHER.login]: OTHER.id, [THIRD.login]: THIRD.id, [BOT.login]: BOT.id },
  });
  return {
    api,
    irc,
    bot,
    env: (extra = {}) => ({
      TWITCH_CLIENT_ID: api.clientId,
      TWITCH_CLIENT_SECRET: api.clientSecret,
      TWITCH_BOT_USERNAME: BOT.login,
      TWITCH_CHANNELS: (options.channels ?? [STREAMER.login]).join(','),
      TWITCH_IRC_URL: irc.url,
      TWITCH_ACCESS_TOKEN: bot.accessToken,
      TWITCH_REFRESH_TOKEN: bot.refreshToken,
      IRC_RECONNECT_INITIAL_MS: '150',
      IRC_RECONNECT_MAX_MS: '600',
      SOURCE_HEARTBEAT_MS: '60000',
      ...extra,
    }),
    broadcasterEnv: (scopes = BROADCASTER_SCOPES) => {
      const token = api.issueToken(STREAMER.id, { scopes });
      return { TWITCH_BROADCASTER_ACCESS_TOKEN: token.accessToken, TWITCH_BROADCASTER_REFRESH_TOKEN: token.refreshToken };
    },
    async stop() {
      restore();
      await irc.stop();
      await api.stop();
    },
  };
}
