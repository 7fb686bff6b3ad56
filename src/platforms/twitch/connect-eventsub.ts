/**
 * EventSub as the ingress-egress service runs it: from whatever Twitch tokens exist (the bot's, and the
 * broadcaster's when connected or seeded from secrets), subscribe every channel in TWITCH_CHANNELS with
 * the right token per type, keep stream state current with a Helix poll, and report all of it as the
 * `eventsub` health component.
 */
import { getTokenInfo, type AuthProvider } from '@twurple/auth';
import type { Envelope } from '../../core/index.js';
import type { Tracing } from '../../runtime/tracing.js';
import type { Store } from '../../store/index.js';
import { createTwitchAuthProvider, type TwitchAuthProvider } from './auth.js';
import { startEventSub, type EventSubHandle, type EventSubLogger, type EventSubSnapshot, type EventSubState } from './eventsub.js';
import { CONNECT_BROADCASTER_HINT, describeEventSubPlan, planEventSub, type EventSubPlan, type TwitchIdentity } from './eventsub-plan.js';
import { createHelixClient } from './helix.js';
import { channelName, twitchSourceId } from './normalize.js';
import { createStreamStatusPoller, type StreamStatusPoller } from './stream-status.js';
import { TwitchTokenId, safeTwitchErrorMessage } from './token-store.js';

/** A Twitch account with the token source that holds (and refreshes) its token. */
export interface HeldIdentity extends TwitchIdentity {
  /** Resolved on every use: chat shares the source and may rebuild its provider after a new token is stored. */
  provider(): Promise<AuthProvider>;
}

export interface ConnectEventSubOptions {
  clientId?: string;
  clientSecret?: string;
  /** The bot's token source (the one chat uses). */
  bot?: TwitchAuthProvider;
  /** Seeds `twitch:broadcaster` in the store, as the bot's secrets seed `twitch:bot`. */
  broadcasterSeed?: { accessToken?: string; refreshToken?: string };
  channels: readonly string[];
  store: Store;
  publish(envelope: Envelope, msgId?: string): Promise<void>;
  logger: EventSubLogger & { child?: unknown };
  /** Reports the `eventsub` health component. */
  health(ready: boolean, detail: string, configured: boolean): void;
  registerSecret(value: string | undefined): void;
  streamPollMs: number;
  /** How often a missing bot or broadcaster token is looked for in the store (the OAuth flow may add one). Default 30 000. */
  rescanMs?: number;
  /** The host's tracer: every Helix call (the channel lookup, the subscriptions, the stream poll) is then a span. */
  tracing?: Tracing;
}

export interface TwitchEventSubConnection {
  stop(): Promise<void>;
  snapshot(): Record<string, unknown>;
  /** Polls Helix for every channel's stream now. */
  refreshStreams(): Promise<void>;
}

/** The account behind a token source, with the scopes Twitch says the token has; undefined when there is no usable token. */
export async function identify(source: TwitchAuthProvider, clientId: string): Promise<HeldIdentity | undefined> {
  let info: Awaited<ReturnType<typeof getTokenInfo>> | undefined;
  // Chat may refresh the shared token between reading and validating it; read it again then.
  for (let attempt = 1; !info; attempt += 1) {
    const auth = await source.resolve();
    if (!auth) return undefined;
    const token = auth.userId ? await auth.provider.getAccessTokenForUser(auth.userId) : await auth.provider.getAnyAccessToken();
    if (!token) return undefined;
    try {
      info = await getTokenInfo(token.accessToken, clientId);
    } catch (error) {
      if (attempt >= 3) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
  if (!info.userId || !info.userName) return undefined;
  const userName = info.userName;
  const provider = async (): Promise<AuthProvider> => {
    const current = await source.resolve();
    if (!current) throw new Error(`the token of ${userName} was removed`);
    return current.provider;
  };
  return { userId: info.userId, login: info.userName, scopes: info.scopes, provider };
}

/** The identities `sources` hold now, in their order; a source without a token, or whose token does not validate, is left out. */
export async function heldIdentities(sources: readonly TwitchAuthProvider[], clientId: string): Promise<HeldIdentity[]> {
  const identities = await Promise.all(sources.map((source) => identify(source, clientId).catch(() => undefined)));
  return identities.filter((identity): identity is HeldIdentity => identity !== undefined);
}

/**
 * One AuthProvider over several accounts: a request made as a user gets that user's token from the
 * provider holding it. Scopes are Twitch's to check (it answers 403), so none are checked here.
 */
export function createIdentityAuthProvider(clientId: string, identities: readonly HeldIdentity[]): AuthProvider {
  const byUser = new Map(identities.map((identity) => [identity.userId, identity]));
  const find = (user: string | number | { id: string }) => byUser.get(typeof user === 'object' ? user.id : String(user));
  return {
    clientId,
    getCurrentScopesForUser: (user) => [...(find(user)?.scopes ?? [])],
    async getAccessTokenForUser(user) {
      const identity = find(user);
      if (!identity) return null;
      const token = await (await identity.provider()).getAccessTokenForUser(identity.userId);
      return token ? { ...token, userId: identity.userId } : null;
    },
    async getAnyAccessToken(user) {
      const identity = (user ? find(user) : undefined) ?? identities[0];
      if (!identity) throw new Error('no Twitch user token is connected');
      const token = await (await identity.provider()).getAccessTokenForUser(identity.userId);
      if (!token) throw new Error(`the token of ${identity.login} is not available`);
      return { ...token, userId: identity.userId };
    },
    async refreshAccessTokenForUser(user) {
      const identity = find(user);
      const provider = identity ? await identity.provider() : undefined;
      if (!identity || !provider?.refreshAccessTokenForUser) throw new Error('this token cannot be refreshed');
      const token = await provider.refreshAccessTokenForUser(identity.userId);
      return { ...token, userId: identity.userId };
    },
  };
}

/**
 * Connects EventSub and the stream poll; never throws (problems become the `eventsub` health detail).
 * When the OAuth flow stores a token that was missing (the broadcaster, typically), it connects again
 * with the new plan, so connecting the broadcaster needs no restart.
 */
export async function connectTwitchEventSub(options: ConnectEventSubOptions): Promise<TwitchEventSubConnection | undefined> {
  let active: TwitchEventSubConnection | undefined;
  let stopped = false;
  let restarting: Promise<void> | undefined;
  const restart = () => {
    restarting ??= (async () => {
      options.logger.info({}, 'reconnecting eventsub (a new Twitch token was stored, or the last attempt failed)');
      const previous = active;
      active = undefined;
      await previous?.stop();
      if (!stopped) active = await connectOnce(options, restart);
    })().finally(() => (restarting = undefined));
  };
  active = await connectOnce(options, restart);
  if (!active) return undefined;
  return {
    async stop() {
      stopped = true;
      await restarting;
      await active?.stop();
    },
    snapshot: () => active?.snapshot() ?? { status: 'reconnecting' },
    refreshStreams: async () => await active?.refreshStreams(),
  };
}

async function connectOnce(options: ConnectEventSubOptions, onNewToken: () => void): Promise<TwitchEventSubConnection | undefined> {
  const { logger } = options;
  const notConfigured = (why: string) => {
    options.health(true, `twitch eventsub is not configured: ${why}`, false);
    return undefined;
  };
  if (!options.clientId || !options.clientSecret) return notConfigured('set the TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET secrets');
  if (options.channels.length === 0) return notConfigured('set TWITCH_CHANNELS');
  const clientId = options.clientId;
  let stopWatching: () => void = () => undefined;
  try {
    const broadcasterAuth = createTwitchAuthProvider({
      clientId,
      clientSecret: options.clientSecret,
      accessToken: options.broadcasterSeed?.accessToken,
      refreshToken: options.broadcasterSeed?.refreshToken,
      store: options.store,
      tokenId: TwitchTokenId.broadcaster,
      registerSecret: options.registerSecret,
      onRefreshFailure: (error) => logger.warn({ error: safeTwitchErrorMessage(error) }, 'twitch broadcaster token refresh failed'),
      logger,
    });
    const held = async (source: TwitchAuthProvider | undefined, role: string) => {
      try {
        return source ? await identify(source, clientId) : undefined;
      } catch (error) {
        logger.warn({ role, error: safeTwitchErrorMessage(error) }, 'twitch token for eventsub is not usable');
        return undefined;
      }
    };
    const versionOf = async (id: string) => (await options.store.getToken(id).catch(() => undefined))?.version ?? 0;
    const [bot, broadcaster] = await Promise.all([held(options.bot, 'bot'), held(broadcasterAuth, 'broadcaster')]);
    // Watch the store for the identities missing now; a changed token version means someone connected one.
    const missing = [...(bot ? [] : [TwitchTokenId.bot]), ...(broadcaster ? [] : [TwitchTokenId.broadcaster])];
    const seen = new Map(await Promise.all(missing.map(async (id) => [id, await versionOf(id)] as const)));
    let watchStopped = false;
    const watcher = missing.length
      ? setInterval(() => {
          void (async () => {
            for (const [id, version] of seen) {
              if (!watchStopped && (await versionOf(id)) !== version) {
                watchStopped = true;
                clearInterval(watcher);
                onNewToken();
                return;
              }
            }
          })();
        }, options.rescanMs ?? 30_000)
      : undefined;
    watcher?.unref();
    stopWatching = () => {
      watchStopped = true;
      if (watcher) clearInterval(watcher);
    };
    const identities = [broadcaster, bot].filter((identity): identity is HeldIdentity => identity !== undefined);
    if (identities.length === 0) {
      notConfigured(
        `connect the bot account at /oauth/twitch/start?identity=bot (or set TWITCH_ACCESS_TOKEN), or ${CONNECT_BROADCASTER_HINT}`,
      );
      return { stop: async () => stopWatching(), snapshot: () => ({ status: 'not_configured' }), refreshStreams: async () => undefined };
    }

    const apiClient = createHelixClient({ authProvider: createIdentityAuthProvider(clientId, identities), tracing: options.tracing });
    const logins = options.channels.map((channel) => channelName(channel));
    const users = await apiClient.users.getUsersByNames(logins);
    const channels = users.map((user) => ({ id: user.id, login: user.name }));
    const unknown = logins.filter((login) => !channels.some((channel) => channel.login === login));

    const plan: EventSubPlan = planEventSub({ channels, bot, broadcaster });
    let latest: EventSubState | undefined;
    const report = () => {
      const described = describeEventSubPlan(plan, latest?.refused ?? []);
      const unknownText = unknown.length ? `unknown Twitch channels: ${unknown.join(', ')}` : '';
      const status = latest?.status ?? 'connecting';
      const summary = `twitch eventsub ${status}: ${latest?.active ?? 0}/${plan.targets.length} subscriptions active on ${channels.map((channel) => `#${channel.login}`).join(', ') || 'no channel'}`;
      const detail = [summary, latest?.detail, described.detail, unknownText].filter(Boolean).join('; ');
      options.health(described.ok && unknown.length === 0 && (status === 'connected' || plan.targets.length === 0), detail, true);
    };

    const poller: StreamStatusPoller = createStreamStatusPoller({
      apiClient,
      channels,
      store: options.store,
      publish: options.publish,
      pollMs: options.streamPollMs,
      logger,
    });
    let handle: EventSubHandle | undefined;
    if (plan.targets.length > 0) {
      handle = await startEventSub({
        apiClient,
        targets: plan.targets,
        store: options.store,
        publish: async (envelope, msgId) => {
          // The poll must not report again what EventSub just did.
          if (envelope.type === 'system.stream.online' || envelope.type === 'system.stream.offline')
            poller.noteEvent(envelope.source.channelId ?? '', envelope.type === 'system.stream.online');
          if (envelope.externalEvent?.kind === 'channel.update') {
            // A new title or game shows at once, live or not, instead of at the next poll.
            const update = envelope.payload as { title?: string | null; categoryName?: string | null; categoryId?: string | null };
            await options.store
              .mergeSource({
                id: twitchSourceId(envelope.source.channel),
                platform: 'twitch',
                metadata: {
                  title: update.title ?? null,
                  game: update.categoryName ?? null,
                  gameName: update.categoryName ?? null,
                  gameId: update.categoryId ?? null,
                },
              })
              .catch((error: unknown) =>
                logger.warn({ err: error, channel: envelope.source.channel }, 'could not write the channel update'),
              );
          }
          await options.publish(envelope, msgId);
        },
        logger,
        onState: (state) => {
          latest = state;
          report();
        },
      });
    }
    report();
    return {
      async stop() {
        stopWatching();
        await poller.stop();
        await handle?.stop();
      },
      snapshot() {
        const eventsub: EventSubSnapshot | undefined = handle?.snapshot();
        return {
          ...(eventsub ?? { status: 'not_subscribed' }),
          identities: identities.map((identity) => ({
            role: identity === broadcaster ? 'broadcaster' : 'bot',
            userId: identity.userId,
            login: identity.login,
            scopes: [...identity.scopes],
          })),
          plan: { waiting: plan.waiting, overLimit: plan.overLimit },
          ...(unknown.length ? { unknownChannels: unknown } : {}),
          streams: poller.snapshot(),
        };
      },
      refreshStreams: () => poller.refresh(),
    };
  } catch (error) {
    stopWatching();
    const message = safeTwitchErrorMessage(error);
    const retryMs = options.rescanMs ?? 30_000;
    logger.error({ error: message, retryMs }, 'twitch eventsub could not start; trying again');
    options.health(false, `twitch eventsub could not start: ${message}; trying again every ${Math.round(retryMs / 1000)} s`, true);
    // Twitch or the network may be back soon; a failed start must not leave EventSub off until a restart.
    const retry = setTimeout(onNewToken, retryMs);
    retry.unref();
    return {
      stop: async () => clearTimeout(retry),
      snapshot: () => ({ status: 'error', error: message }),
      refreshStreams: async () => undefined,
    };
  }
}
