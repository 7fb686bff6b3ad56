/**
 * Moderation over Helix: delete a chat message (`DELETE /moderation/chat`), time out or ban
 * (`POST /moderation/bans`, a timeout is a ban with a duration), lift either (`DELETE /moderation/bans`),
 * look a user's channel up (`GET /users`, `GET /channels`) and send a shoutout (the reactions service's
 * sender, with Twitch's limits claimed in the store).
 *
 * Actions are taken as the bot when it holds the scope (it must be a moderator of the channel), else as
 * the broadcaster of that channel. Twitch's refusals are values, never thrown: 401/403 (missing scope, not
 * a moderator) become `not-permitted`, 429 `rate-limited`; Twurple's rate limiter follows the
 * `Ratelimit-*` headers, so bursts wait for the bucket rather than being refused.
 */
import type { ApiClient } from '@twurple/api';
import type { Tracing } from '../../runtime/tracing.js';
import type { Store } from '../../store/index.js';
import { createStoredTokenSources } from './auth.js';
import { createIdentityAuthProvider, heldIdentities, type HeldIdentity } from './connect-eventsub.js';
import { createHelixClient } from './helix.js';
import { createShoutoutSender } from './shoutout.js';
import { TwitchTokenId, safeTwitchErrorMessage } from './token-store.js';

/** The scopes moderation needs, requested by the OAuth flow. */
export const MODERATION_SCOPES = { chatMessages: 'moderator:manage:chat_messages', bannedUsers: 'moderator:manage:banned_users' } as const;

export interface ChannelRef {
  id: string;
  login: string;
}

/** How an action ended. */
export interface ActionOutcome {
  status: 'done' | 'not-permitted' | 'failed' | 'rate-limited';
  error?: string;
}

export interface ChannelLookup {
  id: string;
  login: string;
  displayName: string;
  /** The game of the channel's current or last stream. */
  gameName?: string;
}

/** What the moderation service needs from Twitch. */
export interface ModerationGateway {
  deleteMessage(channel: ChannelRef, messageId: string): Promise<ActionOutcome>;
  timeout(channel: ChannelRef, user: ChannelRef, seconds: number, reason: string): Promise<ActionOutcome>;
  ban(channel: ChannelRef, user: ChannelRef, reason: string): Promise<ActionOutcome>;
  /** Lifts a ban or a timeout. */
  unban(channel: ChannelRef, user: ChannelRef): Promise<ActionOutcome>;
  lookupChannel(login: string): Promise<ChannelLookup | undefined>;
  shoutout(channel: ChannelRef, to: ChannelRef): Promise<ActionOutcome>;
}

export interface TwitchModerationOptions {
  clientId?: string;
  clientSecret?: string;
  store: Store;
  logger: { warn: (obj: unknown, msg?: string) => void };
  /** The host's tracer: each Helix call is then a span, a child of the message's span that asked for it. */
  tracing?: Tracing;
}

/** A Helix error as an outcome. */
export function outcomeOfError(error: unknown): ActionOutcome {
  const message = safeTwitchErrorMessage(error);
  const status = statusOf(error);
  if (status === 401 || status === 403) return { status: 'not-permitted', error: message };
  if (status === 429) return { status: 'rate-limited', error: message };
  return { status: 'failed', error: message };
}

/** The HTTP status of a Twurple HttpStatusCodeError (read by shape: @twurple/api-call is not a direct dependency). */
const statusOf = (error: unknown): number | undefined => {
  const code = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof code === 'number' ? code : undefined;
};

/** The gateway over Helix with the stored bot and broadcaster tokens. */
export function createTwitchModeration(options: TwitchModerationOptions): ModerationGateway {
  const sources = createStoredTokenSources(options, [TwitchTokenId.bot, TwitchTokenId.broadcaster]);
  const shoutouts = createShoutoutSender({
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    store: options.store,
    logger: options.logger,
    tracing: options.tracing,
  });

  // Tokens are read on every call: one the OAuth flow stores after start-up counts at once.
  const connect = async (): Promise<{ api: ApiClient; identities: HeldIdentity[] } | ActionOutcome> => {
    if (!options.clientId || !options.clientSecret)
      return { status: 'not-permitted', error: 'twitch is not configured (TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET)' };
    const clientId = options.clientId;
    const identities = await heldIdentities(sources, clientId);
    if (identities.length === 0)
      return { status: 'not-permitted', error: 'no Twitch token is connected (connect the bot through the OAuth flow)' };
    return {
      api: createHelixClient({ authProvider: createIdentityAuthProvider(clientId, identities), tracing: options.tracing }),
      identities,
    };
  };

  /** Runs `fn` as the bot (or else the channel's broadcaster) holding `scope`. */
  const asModerator = async (
    channel: ChannelRef,
    scope: string,
    fn: (api: ApiClient, moderatorId: string) => Promise<unknown>,
  ): Promise<ActionOutcome> => {
    const connected = await connect();
    if ('status' in connected) return connected;
    const { api, identities } = connected;
    const bot = identities.find((identity) => identity.login !== channel.login && identity.scopes.includes(scope));
    const owner = identities.find((identity) => identity.userId === channel.id && identity.scopes.includes(scope));
    const actor = bot ?? owner;
    if (!actor)
      return { status: 'not-permitted', error: `no connected token has the ${scope} scope; reconnect the bot through the OAuth flow` };
    try {
      await fn(api, actor.userId);
      return { status: 'done' };
    } catch (error) {
      const outcome = outcomeOfError(error);
      if (statusOf(error) === 403) {
        return { status: 'not-permitted', error: `${actor.login} is not a moderator of #${channel.login}` };
      }
      return outcome;
    }
  };

  return {
    deleteMessage: (channel, messageId) =>
      asModerator(channel, MODERATION_SCOPES.chatMessages, (api, moderatorId) =>
        api.asUser(moderatorId, (ctx) => ctx.moderation.deleteChatMessages(channel.id, messageId)),
      ),
    timeout: (channel, user, seconds, reason) =>
      asModerator(channel, MODERATION_SCOPES.bannedUsers, (api, moderatorId) =>
        api.asUser(moderatorId, (ctx) =>
          ctx.moderation.banUser(channel.id, { user: user.id, duration: seconds, reason: reason.slice(0, 500) }),
        ),
      ),
    ban: (channel, user, reason) =>
      asModerator(channel, MODERATION_SCOPES.bannedUsers, (api, moderatorId) =>
        api.asUser(moderatorId, (ctx) => ctx.moderation.banUser(channel.id, { user: user.id, reason: reason.slice(0, 500) })),
      ),
    unban: (channel, user) =>
      asModerator(channel, MODERATION_SCOPES.bannedUsers, (api, moderatorId) =>
        api.asUser(moderatorId, (ctx) => ctx.moderation.unbanUser(channel.id, user.id)),
      ),
    async lookupChannel(login) {
      const connected = await connect();
      if ('status' in connected) return undefined;
      try {
        const user = await connected.api.users.getUserByName(login);
        if (!user) return undefined;
        const channel = await connected.api.channels.getChannelInfoById(user.id);
        return {
          id: user.id,
          login: user.name,
          displayName: user.displayName,
          ...(channel?.gameName ? { gameName: channel.gameName } : {}),
        };
      } catch (error) {
        options.logger.warn({ login, error: safeTwitchErrorMessage(error) }, 'twitch user lookup failed');
        return undefined;
      }
    },
    async shoutout(channel, to) {
      const result = await shoutouts.shoutout(channel, to);
      if (result.sent) return { status: 'done' };
      // The sender claims Twitch's cooldowns before calling; its refusals name the limit.
      return {
        status: /every 2 minutes|within the last 60 minutes/.test(result.reason)
          ? 'rate-limited'
          : /token|moderator|configured/.test(result.reason)
            ? 'not-permitted'
            : 'failed',
        error: result.reason,
      };
    },
  };
}
