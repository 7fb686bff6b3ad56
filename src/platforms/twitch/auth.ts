/**
 * Twitch user tokens for chat. The OAuth flow service stores the bot's token as `twitch:bot`; a token in
 * the secrets (TWITCH_ACCESS_TOKEN / TWITCH_REFRESH_TOKEN) is the fallback for a quick local setup.
 * With a client secret and a refresh token the provider refreshes by itself and writes every refreshed
 * token back to the store so other processes (and the next start) see it.
 */
import { createHash } from 'node:crypto';
import { createRefreshingAuthProvider } from './refreshing-provider.js';
import { persistTokenWithCas } from './token-store.js';
// Twurple is loaded when a token is built, so a platform without Twitch configured never loads it.
import type { AccessToken, AuthProvider } from '@twurple/auth';
import type { OAuthToken, Store } from '../../store/index.js';

/** Store id of the bot account's token. */
export const BOT_TOKEN_ID = 'twitch:bot';

export type TwitchAuthSourceKind = 'store' | 'secrets';

export interface TwitchAuthOptions {
  clientId?: string;
  clientSecret?: string;
  /** From the secrets; used when the store has no token. */
  accessToken?: string;
  refreshToken?: string;
  /** Where the OAuth flow keeps tokens; refreshed tokens are written back here. */
  store?: Pick<Store, 'getToken' | 'updateTokenIf'>;
  /** Default `twitch:bot`. */
  tokenId?: string;
  /** Called with every token value seen, so logs can scrub it. */
  registerSecret?: (value: string) => void;
  /** A refresh failed (the token is probably revoked). */
  onRefreshFailure?: (error: Error) => void;
  logger?: { warn: (...args: any[]) => void; info: (...args: any[]) => void };
}

/** What the chat client needs. Never holds more than the provider itself keeps. */
export interface TwitchChatAuth {
  provider: AuthProvider;
  source: TwitchAuthSourceKind;
  refreshable: boolean;
  login?: string;
  userId?: string;
}

export interface TwitchAuthProvider {
  /** Whether any token is configured (store or secrets), without contacting Twitch. */
  hasToken(): Promise<boolean>;
  /** Login of the stored token, when the OAuth flow recorded one. */
  storedLogin(): Promise<string | undefined>;
  /**
   * The provider to connect with. Re-reads the store each time so a token written by the OAuth flow after
   * start-up is used on the next (re)connect; returns undefined when no token is configured.
   */
  resolve(): Promise<TwitchChatAuth | undefined>;
}

interface TokenMaterial {
  source: TwitchAuthSourceKind;
  accessToken: string;
  refreshToken?: string;
  scopes: string[];
  expiresAt?: string | null;
  obtainedAt?: string;
  userId?: string;
  login?: string;
  version?: number;
}

function toAccessToken(material: TokenMaterial): AccessToken {
  const obtainedAt = material.obtainedAt ? Date.parse(material.obtainedAt) : Date.now();
  const expiresAt = material.expiresAt ? Date.parse(material.expiresAt) : undefined;
  return {
    accessToken: material.accessToken,
    refreshToken: material.refreshToken ?? null,
    scope: material.scopes,
    expiresIn: expiresAt !== undefined && !Number.isNaN(expiresAt) ? Math.max(0, Math.floor((expiresAt - obtainedAt) / 1000)) : null,
    obtainmentTimestamp: Number.isNaN(obtainedAt) ? Date.now() : obtainedAt,
  };
}

/**
 * An error message safe for logs, health details and `/_debug`: Twurple's HTTP errors quote the request
 * URL, whose query string carries client_secret and refresh_token on token refreshes.
 */
export function safeAuthErrorMessage(error: unknown): string {
  const candidate = error as { statusCode?: unknown; message?: unknown } | undefined;
  if (candidate && typeof candidate.statusCode === 'number') return `Twitch answered HTTP ${candidate.statusCode}`;
  const message = typeof candidate?.message === 'string' ? candidate.message : String(error);
  return message.split('\n')[0]!.replace(/(https?:\/\/[^\s?]+)\?\S*/g, '$1?…');
}

/** One token source per stored token id (bot, broadcaster), in that order, logging refresh problems only. */
export function createStoredTokenSources(
  options: Pick<TwitchAuthOptions, 'clientId' | 'clientSecret' | 'store'> & {
    logger: Pick<NonNullable<TwitchAuthOptions['logger']>, 'warn'>;
  },
  tokenIds: readonly string[],
): TwitchAuthProvider[] {
  return tokenIds.map((tokenId) =>
    createTwitchAuthProvider({
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      store: options.store,
      tokenId,
      logger: { warn: options.logger.warn, info: () => undefined },
    }),
  );
}

/** Creates the bot's token source for chat (store first, then secrets). */
export function createTwitchAuthProvider(options: TwitchAuthOptions): TwitchAuthProvider {
  const tokenId = options.tokenId ?? BOT_TOKEN_ID;
  let current: { key: string; auth: TwitchChatAuth } | undefined;
  let resolving: Promise<unknown> = Promise.resolve();

  const readStored = async (): Promise<OAuthToken | undefined> => (options.store ? await options.store.getToken(tokenId) : undefined);

  const material = async (): Promise<TokenMaterial | undefined> => {
    const stored = await readStored();
    const seedMark = options.accessToken
      ? `seed:${createHash('sha256').update(options.accessToken).digest('hex').slice(0, 16)}`
      : undefined;
    // A token seeded from a secret that has since changed is replaced by the new secret; a token the
    // OAuth flow stored or a refresh produced (no seed mark) is newer than any secret and wins.
    const staleSeed =
      stored?.scopes.some((scope) => scope.startsWith('seed:')) && seedMark !== undefined && !stored.scopes.includes(seedMark);
    if (stored?.accessToken && !staleSeed)
      return { source: 'store', ...stored, scopes: stored.scopes.filter((scope) => !scope.startsWith('seed:')) };
    if (!options.accessToken) return undefined;
    if (options.store) {
      // Quick start: the secrets seed the store (compare-and-set), so from then on the store is the
      // single source of truth and refreshed tokens are never overwritten by the stale secret.
      const seeded = await options.store.updateTokenIf(stored?.version ?? 0, {
        id: tokenId,
        accessToken: options.accessToken,
        ...(options.refreshToken ? { refreshToken: options.refreshToken } : {}),
        scopes: [seedMark!],
        obtainedAt: new Date().toISOString(),
      });
      const token = seeded ?? (await readStored());
      if (token?.accessToken) return { source: 'store', ...token, scopes: token.scopes.filter((scope) => !scope.startsWith('seed:')) };
    }
    return { source: 'secrets', accessToken: options.accessToken, refreshToken: options.refreshToken, scopes: [] };
  };

  const build = async (token: TokenMaterial): Promise<TwitchChatAuth> => {
    options.registerSecret?.(token.accessToken);
    if (token.refreshToken) options.registerSecret?.(token.refreshToken);
    const canRefresh = Boolean(options.clientId && options.clientSecret && token.refreshToken);
    const { StaticAuthProvider } = await import('@twurple/auth');
    if (!canRefresh) {
      // Without a secret and a refresh token there is nothing to refresh with; Twurple validates the token.
      const provider = new StaticAuthProvider(
        options.clientId ?? '',
        token.accessToken,
        token.scopes.length > 0 ? token.scopes : undefined,
      );
      return { provider, source: token.source, refreshable: false, login: token.login, userId: token.userId };
    }
    // Chat and EventSub share this provider: one refresh at a time, or the second spends a rotated refresh token.
    const provider = await createRefreshingAuthProvider({ clientId: options.clientId!, clientSecret: options.clientSecret! });
    const login = token.login;
    provider.onRefresh((userId, refreshed) => {
      options.registerSecret?.(refreshed.accessToken);
      if (refreshed.refreshToken) options.registerSecret?.(refreshed.refreshToken);
      if (!options.store) return;
      const obtainedAt = new Date(refreshed.obtainmentTimestamp).toISOString();
      const expiresAt =
        refreshed.expiresIn === null ? null : new Date(refreshed.obtainmentTimestamp + refreshed.expiresIn * 1000).toISOString();
      // Compare-and-set: one writer wins per version, so two refreshers of one identity never lose a pair.
      void persistTokenWithCas(options.store, {
        id: tokenId,
        accessToken: refreshed.accessToken,
        refreshToken: refreshed.refreshToken ?? undefined,
        scopes: refreshed.scope,
        expiresAt,
        obtainedAt,
        userId,
        login,
      })
        .then((saved) => {
          if (!saved) throw new Error('the stored token kept changing; refreshed token not saved');
          // Our own write must not look like a new token from the OAuth flow.
          if (current) current.key = `store:${saved.version}`;
        })
        .catch((error: unknown) => options.logger?.warn({ err: error, tokenId }, 'could not persist the refreshed twitch token'));
    });
    provider.onRefreshFailure((_userId, error) => options.onRefreshFailure?.(error));
    const initial = toAccessToken(token);
    let userId = token.userId;
    if (userId) provider.addUser(userId, initial, ['chat']);
    else userId = await provider.addUserForToken(initial, ['chat']);
    return { provider, source: token.source, refreshable: true, login, userId };
  };

  return {
    async hasToken() {
      return (await material()) !== undefined;
    },
    async storedLogin() {
      return (await readStored())?.login;
    },
    resolve() {
      // One at a time: two concurrent callers (chat and EventSub) must share one provider, or the first
      // refresh rotates the refresh token out from under the other.
      const next = resolving.then(resolveNow);
      resolving = next.catch(() => undefined);
      return next;
    },
  };

  async function resolveNow(): Promise<TwitchChatAuth | undefined> {
    const token = await material();
    if (!token) {
      current = undefined;
      return undefined;
    }
    const key = token.source === 'store' ? `store:${token.version ?? 0}` : 'secrets';
    if (current && current.key === key) return current.auth;
    const auth = await build(token);
    current = { key, auth };
    return auth;
  }
}
