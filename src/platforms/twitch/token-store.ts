/**
 * Twitch user tokens kept in the store (`oauth_tokens`, encrypted at rest) and handed to Twurple as a
 * RefreshingAuthProvider. Refreshed tokens are written back with compare-and-set so two instances that
 * refresh at once never silently lose a write.
 */
// Twurple is loaded when tokens are loaded, so a platform without Twitch configured never loads it.
import type { AccessToken, RefreshingAuthProvider } from '@twurple/auth';
import type { OAuthToken, Store } from '../../store/index.js';
import { createRefreshingAuthProvider } from './refreshing-provider.js';

/** Store ids of the two Twitch identities. */
export const TwitchTokenId = { bot: 'twitch:bot', broadcaster: 'twitch:broadcaster' } as const;
export type TwitchTokenId = (typeof TwitchTokenId)[keyof typeof TwitchTokenId];

/** Intents each identity gets in the provider by default (`chat` is the intent Twurple's ChatClient asks for). */
export const DEFAULT_TOKEN_INTENTS: Readonly<Record<string, readonly string[]>> = {
  'twitch:bot': ['bot', 'chat'],
  'twitch:broadcaster': ['broadcaster'],
};

/** Compare-and-set attempts before a refreshed token is reported as not persisted. */
export const DEFAULT_CAS_ATTEMPTS = 5;

type LogFn = (obj: unknown, msg?: string) => void;

export interface LoadAuthProviderOptions {
  store: Pick<Store, 'getToken' | 'updateTokenIf'>;
  clientId: string;
  clientSecret: string;
  /** Store ids to load, e.g. `['twitch:bot', 'twitch:broadcaster']`. Missing ones are skipped (and logged). */
  ids: readonly string[];
  /** Intents per id; default DEFAULT_TOKEN_INTENTS, or the part after `twitch:` for other ids. */
  intents?: Readonly<Record<string, readonly string[]>>;
  /** Default DEFAULT_CAS_ATTEMPTS. */
  casAttempts?: number;
  logger?: { info: LogFn; warn: LogFn; error: LogFn };
  /** Called after a refreshed token was persisted (or failed to be). */
  onPersisted?(result: { id: string; ok: boolean; version?: number; error?: Error }): void;
}

export interface LoadedTwitchAuth {
  authProvider: RefreshingAuthProvider;
  /** Store id → Twitch user of the tokens that were loaded. */
  users: Record<string, { userId: string; login?: string }>;
  /** Resolves when every refresh seen so far has been written to the store. */
  flush(): Promise<void>;
}

/**
 * A log- and page-safe description of a Twitch API error. Twurple's HttpStatusCodeError message embeds
 * the request URL, whose query string carries client_secret, refresh_token and code: never show it.
 */
export function safeTwitchErrorMessage(error: unknown): string {
  const candidate = error as { statusCode?: unknown; body?: unknown; name?: unknown; message?: unknown } | undefined;
  if (candidate && typeof candidate.statusCode === 'number') {
    let detail = '';
    if (typeof candidate.body === 'string') {
      try {
        const parsed = JSON.parse(candidate.body) as { message?: unknown };
        detail = typeof parsed.message === 'string' ? parsed.message : '';
      } catch {
        detail = '';
      }
    }
    return `Twitch answered HTTP ${candidate.statusCode}${detail ? `: ${detail}` : ''}`;
  }
  const message = typeof candidate?.message === 'string' ? candidate.message : String(error);
  // Unknown errors may still quote a URL; drop query strings to be safe.
  return message.replace(/\?[^\s]*(client_secret|refresh_token|code|token)=[^\s]*/gi, '?…').split('\n')[0]!;
}

/** Converts a stored token to Twurple's AccessToken. */
export function toAccessToken(token: OAuthToken): AccessToken {
  const obtained = Date.parse(token.obtainedAt);
  const expires = token.expiresAt ? Date.parse(token.expiresAt) : NaN;
  return {
    accessToken: token.accessToken,
    refreshToken: token.refreshToken ?? null,
    scope: token.scopes,
    obtainmentTimestamp: Number.isNaN(obtained) ? 0 : obtained,
    expiresIn: Number.isNaN(expires) || Number.isNaN(obtained) ? null : Math.max(0, Math.floor((expires - obtained) / 1000)),
  };
}

/** Converts Twurple's AccessToken to the store shape for `id`, keeping the identity fields. */
export function fromAccessToken(
  id: string,
  token: AccessToken,
  identity: { userId?: string; login?: string },
): Omit<OAuthToken, 'version'> {
  const obtainedAt = new Date(token.obtainmentTimestamp || Date.now());
  return {
    id,
    accessToken: token.accessToken,
    ...(token.refreshToken ? { refreshToken: token.refreshToken } : {}),
    scopes: [...(token.scope ?? [])],
    expiresAt: token.expiresIn == null ? null : new Date(obtainedAt.getTime() + token.expiresIn * 1000).toISOString(),
    obtainedAt: obtainedAt.toISOString(),
    ...(identity.userId ? { userId: identity.userId } : {}),
    ...(identity.login ? { login: identity.login } : {}),
  };
}

/**
 * Writes `token` over whatever version is stored now: reads, compare-and-sets, and on a conflict
 * (someone else wrote in between) reads again and retries. The identity fields of the stored row are
 * kept when the new token has none.
 */
export async function persistTokenWithCas(
  store: Pick<Store, 'getToken' | 'updateTokenIf'>,
  token: Omit<OAuthToken, 'version'>,
  attempts = DEFAULT_CAS_ATTEMPTS,
): Promise<OAuthToken | undefined> {
  for (let attempt = 0; attempt < attempts; attempt += 1) {
    const current = await store.getToken(token.id);
    const merged = { ...token, userId: token.userId ?? current?.userId, login: token.login ?? current?.login };
    if (merged.userId === undefined) delete merged.userId;
    if (merged.login === undefined) delete merged.login;
    const written = await store.updateTokenIf(current?.version ?? 0, merged);
    if (written) return written;
  }
  return undefined;
}

/**
 * A RefreshingAuthProvider holding the stored tokens for `ids` (with intents, e.g. `chat` for the bot);
 * every refresh Twurple performs is persisted back with compare-and-set. Also which Twitch user each
 * stored id belongs to, and a `flush()` that waits for refreshed tokens to be written. Tokens stored
 * without a user id are validated once to learn it.
 */
export async function loadTwitchAuth(options: LoadAuthProviderOptions): Promise<LoadedTwitchAuth> {
  const { getTokenInfo } = await import('@twurple/auth');
  const authProvider = await createRefreshingAuthProvider({ clientId: options.clientId, clientSecret: options.clientSecret });
  const users: LoadedTwitchAuth['users'] = {};
  /** Twitch user id → store ids holding that user's token (bot and broadcaster may be one account). */
  const idsByUser = new Map<string, string[]>();
  let pending: Promise<unknown> = Promise.resolve();

  for (const id of options.ids) {
    const stored = await options.store.getToken(id);
    if (!stored) {
      options.logger?.warn({ tokenId: id }, 'no stored Twitch token; authorize it at /oauth/twitch/start');
      continue;
    }
    let userId = stored.userId;
    let login = stored.login;
    if (!userId) {
      const info = await getTokenInfo(stored.accessToken, options.clientId);
      userId = info.userId ?? undefined;
      login = info.userName ?? login;
      if (!userId) {
        options.logger?.warn({ tokenId: id }, 'stored Twitch token is an app token; skipped');
        continue;
      }
    }
    const intents = options.intents?.[id] ?? DEFAULT_TOKEN_INTENTS[id] ?? [id.replace(/^twitch:/, '')];
    if (stored.refreshToken) {
      authProvider.addUser(userId, toAccessToken(stored), [...intents]);
    } else {
      options.logger?.warn({ tokenId: id }, 'stored Twitch token has no refresh token; it cannot be refreshed');
      continue;
    }
    users[id] = { userId, ...(login ? { login } : {}) };
    idsByUser.set(userId, [...(idsByUser.get(userId) ?? []), id]);
  }

  authProvider.onRefresh((userId, token) => {
    for (const id of idsByUser.get(userId) ?? []) {
      const identity = users[id]!;
      const record = fromAccessToken(id, token, identity);
      // One write at a time, in refresh order, so an older refresh never lands after a newer one.
      pending = pending.then(() =>
        persistTokenWithCas(options.store, record, options.casAttempts).then(
          (written) => {
            if (written) {
              options.logger?.info({ tokenId: id, version: written.version }, 'refreshed Twitch token stored');
              options.onPersisted?.({ id, ok: true, version: written.version });
            } else {
              const error = new Error(`refreshed token for ${id} not stored: compare-and-set kept conflicting`);
              options.logger?.error({ tokenId: id }, error.message);
              options.onPersisted?.({ id, ok: false, error });
            }
          },
          (error: Error) => {
            options.logger?.error({ tokenId: id, error: error.message }, 'storing refreshed Twitch token failed');
            options.onPersisted?.({ id, ok: false, error });
          },
        ),
      );
    }
  });
  authProvider.onRefreshFailure((userId, error) => {
    options.logger?.error(
      { userId, error: safeTwitchErrorMessage(error) },
      'Twitch token refresh failed; re-authorize at /oauth/twitch/start',
    );
  });

  return {
    authProvider,
    users,
    async flush() {
      let seen: Promise<unknown>;
      do {
        seen = pending;
        await seen;
      } while (seen !== pending);
    },
  };
}
