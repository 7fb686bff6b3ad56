/**
 * API tokens for the gateway (WebSocket, HTTP API, dashboard).
 *
 * `API_GATEWAY_TOKENS` is a comma list of `token` or `token:role` with role `viewer`, `moderator` or
 * `owner`; a bare token is an owner token (it is the operator's own). Viewers may read and chat;
 * moderators and owners may also change rules and commands and replay dead letters.
 *
 * The embedded default (`npm start`: no tokens configured and the PGlite store; container and cloud
 * deployments use PostgreSQL or Firestore and configure tokens) generates one owner token on first start and keeps it in `${DATA_DIR}/gateway-token` (mode 0600), where
 * `bitbrat send` finds it. `API_GATEWAY_ALLOW_ANONYMOUS=true` lets requests without a token in as
 * viewers (a wrong token is still refused).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { ensurePrivateDir } from '../../store/index.js';
import path from 'node:path';
import { BitBratError } from '../../core/index.js';
import { Role, isRole, roleRank } from '../auth/roles.js';
import { MAX_DOC_LIST, type Store } from '../../store/types.js';

export const ApiRole = { viewer: 'viewer', moderator: 'moderator', owner: 'owner' } as const;
export type ApiRole = (typeof ApiRole)[keyof typeof ApiRole];

const API_RANK: Record<ApiRole, number> = { viewer: 0, moderator: 1, owner: 2 };

/** Who is calling: never the token itself, only a label safe to log. */
export interface Principal {
  role: ApiRole;
  /** `token#1`, `embedded`, `anonymous`. */
  label: string;
  anonymous: boolean;
}

interface TokenEntry {
  digest: Buffer;
  role: ApiRole;
  label: string;
}

export type AuthResult = { ok: true; principal: Principal } | { ok: false; code: 'UNAUTHORIZED'; message: string };

export interface Authenticator {
  /** Checks a presented token (undefined when none was presented). */
  authenticate(token: string | undefined): AuthResult;
  /** How many tokens are accepted (0 with anonymous-only or nothing configured). */
  readonly tokenCount: number;
  readonly allowAnonymous: boolean;
  /** A session cookie value for a valid token (undefined for a wrong one); see SESSION. */
  issueSession(token: string, now?: number): string | undefined;
  /** Checks a session cookie value: its token must still be configured, it must be unexpired and not ended. */
  authenticateSession(value: string | undefined, now?: number): AuthResult;
  /**
   * Ends a session (sign-out): the value is refused from then on, even before it expires. Returns the ended
   * session's id and expiry (ms) to keep in the store, or undefined for a value that was no live session.
   */
  endSession(value: string): EndedSession | undefined;
  /** Takes sessions ended elsewhere (another process, before a restart) as ended here too. */
  restoreEnded(sessions: Iterable<EndedSession>): void;
}

/** A session ended before its expiry: its id and when it would have expired (ms since the epoch). */
export interface EndedSession {
  id: string;
  until: number;
}

/**
 * Dashboard sessions. The cookie is `<id>.<expires>.<tokenIndex>.<mac>`, the MAC keyed by a digest of the
 * token it was issued for, so a session survives a gateway restart (nothing to store) and dies with its
 * token when the token is removed from the configuration. Sign-out clears the cookie and remembers the
 * ended id until it would have expired, in memory and in the store (ENDED_SESSIONS), so a copied cookie
 * stays refused after a restart and by the other processes that read sessions (oauth-flow).
 */
/** Ended sessions remembered at once; beyond it the oldest is forgotten (its cookie was cleared at sign-out). */
const MAX_ENDED_SESSIONS = 10_000;

export const SESSION = {
  cookie: 'bitbrat_session',
  /** 30 days: a bookmark keeps working across browser restarts. */
  maxAgeSec: 30 * 24 * 3600,
} as const;

const digest = (token: string) => createHash('sha256').update(token, 'utf8').digest();

/** Parses `API_GATEWAY_TOKENS`; a malformed entry is a configuration error naming its position. */
export function parseTokenList(list: string | undefined): Array<{ token: string; role: ApiRole }> {
  if (!list || list.trim() === '') return [];
  const out: Array<{ token: string; role: ApiRole }> = [];
  const problems: string[] = [];
  list
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .forEach((entry, index) => {
      const colon = entry.lastIndexOf(':');
      const maybeRole =
        colon > 0
          ? entry
              .slice(colon + 1)
              .trim()
              .toLowerCase()
          : '';
      const isKnownRole = (Object.values(ApiRole) as string[]).includes(maybeRole);
      const token = isKnownRole ? entry.slice(0, colon).trim() : entry;
      const role = isKnownRole ? (maybeRole as ApiRole) : ApiRole.owner;
      if (colon > 0 && !isKnownRole && /^[a-z]+$/i.test(entry.slice(colon + 1))) {
        problems.push(`entry ${index + 1}: unknown role "${entry.slice(colon + 1)}" (use viewer, moderator or owner)`);
        return;
      }
      if (token.length < 8) {
        problems.push(`entry ${index + 1}: a token must be at least 8 characters`);
        return;
      }
      out.push({ token, role });
    });
  if (problems.length > 0) throw new BitBratError('CONFIG_INVALID', `API_GATEWAY_TOKENS is invalid: ${problems.join('; ')}`);
  return out;
}

export function createAuthenticator(
  tokens: Array<{ token: string; role: ApiRole; label?: string }>,
  allowAnonymous: boolean,
): Authenticator {
  const entries: TokenEntry[] = tokens.map((entry, index) => ({
    digest: digest(entry.token),
    role: entry.role,
    label: entry.label ?? `token#${index + 1}`,
  }));
  const ended = new Map<string, number>();
  const mac = (entry: TokenEntry, body: string) =>
    createHmac('sha256', Buffer.concat([Buffer.from('bitbrat-session\0'), entry.digest]))
      .update(body)
      .digest('base64url');
  const refuse = (message: string): AuthResult => ({ ok: false, code: 'UNAUTHORIZED', message });
  const find = (token: string): number => {
    const presented = digest(token);
    let index = -1;
    entries.forEach((entry, at) => {
      if (timingSafeEqual(entry.digest, presented) && index < 0) index = at;
    });
    return index;
  };
  return {
    tokenCount: entries.length,
    allowAnonymous,
    issueSession(token, now = Date.now()) {
      const index = find(token);
      if (index < 0) return undefined;
      const body = `${randomBytes(16).toString('base64url')}.${Math.floor(now / 1000) + SESSION.maxAgeSec}.${index}`;
      return `${body}.${mac(entries[index]!, body)}`;
    },
    authenticateSession(value, now = Date.now()) {
      const parts = (value ?? '').split('.');
      if (parts.length !== 4) return refuse('no valid session; sign in again');
      const [id, expires, index, signature] = parts as [string, string, string, string];
      const entry = entries[Number(index)];
      if (!entry || !/^\d+$/.test(index)) return refuse('the session is not valid; sign in again');
      const expected = Buffer.from(mac(entry, `${id}.${expires}.${index}`));
      const given = Buffer.from(signature);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) return refuse('the session is not valid; sign in again');
      if (Number(expires) * 1000 <= now) return refuse('the session has expired; sign in again');
      if (ended.has(id)) return refuse('the session was ended; sign in again');
      return { ok: true, principal: { role: entry.role, label: entry.label, anonymous: false } };
    },
    endSession(value) {
      // Only a genuine, live session is remembered, so forged cookies cannot grow the list.
      if (!this.authenticateSession(value).ok) return undefined;
      const [id, expires] = value.split('.') as [string, string];
      const session = { id, until: Number(expires) * 1000 };
      this.restoreEnded([session]);
      return session;
    },
    restoreEnded(sessions) {
      const now = Date.now();
      for (const [key, until] of ended) if (until <= now) ended.delete(key);
      for (const session of sessions) {
        if (session.until <= now || ended.has(session.id)) continue;
        if (ended.size >= MAX_ENDED_SESSIONS) ended.delete(ended.keys().next().value!);
        ended.set(session.id, session.until);
      }
    },
    authenticate(token) {
      if (token === undefined || token === '') {
        if (allowAnonymous) return { ok: true, principal: { role: ApiRole.viewer, label: 'anonymous', anonymous: true } };
        return {
          ok: false,
          code: 'UNAUTHORIZED',
          message: 'a token is required (Authorization: Bearer <token>, ?token=, or an auth frame)',
        };
      }
      const presented = digest(token);
      // Compare against every entry so the time taken does not depend on which one matched.
      let match: TokenEntry | undefined;
      for (const entry of entries) if (timingSafeEqual(entry.digest, presented) && !match) match = entry;
      if (!match) return { ok: false, code: 'UNAUTHORIZED', message: 'the token is not valid' };
      return { ok: true, principal: { role: match.role, label: match.label, anonymous: false } };
    },
  };
}

/**
 * The dashboard session cookie's value from a Cookie header. Other services holding the same token list
 * (oauth-flow) can check it with `authenticator.authenticateSession`, so a signed-in owner starts the
 * OAuth flow from a plain link with no token in its URL.
 */
export function sessionCookie(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION.cookie) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim()) || undefined;
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Whether `principal` has at least `minimum`. */
export function hasApiRole(principal: Principal, minimum: ApiRole): boolean {
  return API_RANK[principal.role] >= API_RANK[minimum];
}

/** The highest chat role a token may claim in the console: viewers up to vip, moderators up to moderator, owners up to broadcaster. */
export const CHAT_ROLE_CAP: Record<ApiRole, Role> = { viewer: Role.vip, moderator: Role.moderator, owner: Role.broadcaster };

/** Roles a console user may ask for (never `system`; `banned` is a stored role, not a claim). */
export const CLAIMABLE_ROLES: readonly Role[] = [Role.viewer, Role.subscriber, Role.vip, Role.trusted, Role.moderator, Role.broadcaster];

/** The chat role actually used: the requested one, lowered to the token's cap. */
export function effectiveChatRole(requested: string | undefined, principal: Principal): Role {
  const wanted: Role = requested && isRole(requested) ? requested : Role.viewer;
  const cap = CHAT_ROLE_CAP[principal.role];
  return roleRank(wanted) > roleRank(cap) ? cap : wanted;
}

/** The token presented with an HTTP request: `Authorization: Bearer …`, else `?token=`. */
export function tokenFromRequest(headers: Record<string, string | string[] | undefined>, query: unknown): string | undefined {
  const header = headers.authorization;
  const value = Array.isArray(header) ? header[0] : header;
  if (value) {
    const match = /^Bearer\s+(.+)$/i.exec(value.trim());
    if (match) return match[1]!.trim();
  }
  const fromQuery = query && typeof query === 'object' ? (query as Record<string, unknown>).token : undefined;
  return typeof fromQuery === 'string' && fromQuery !== '' ? fromQuery : undefined;
}

export const TOKEN_FILE = 'gateway-token';

/**
 * A fresh random token of 32 base64url characters that starts with a letter or digit: one starting with
 * `-` is read as an option by command lines (`bitbrat send --token -x…` failed on one).
 */
export function newToken(): string {
  for (;;) {
    const token = randomBytes(24).toString('base64url');
    if (/^[A-Za-z0-9]/.test(token)) return token;
  }
}

/** Reads `${dataDir}/gateway-token`, creating it (0600) with a fresh random token when missing. */
export async function ensureEmbeddedToken(dataDir: string): Promise<{ token: string; file: string; created: boolean }> {
  const file = path.resolve(dataDir, TOKEN_FILE);
  const existing = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (existing.length >= 8) return { token: existing, file, created: false };
  await ensurePrivateDir(path.dirname(file));
  const token = newToken();
  try {
    await writeFile(file, token + '\n', { mode: 0o600, flag: existing ? 'w' : 'wx' });
  } catch (error) {
    // Another instance created it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return { token: (await readFile(file, 'utf8')).trim(), file, created: false };
    throw error;
  }
  await chmod(file, 0o600);
  return { token, file, created: true };
}

/** The store collection of ended sessions: id = the session id, `until` = when the cookie would have expired. */
export const ENDED_SESSIONS = 'ended-sessions';

/** Remembers a signed-out session in the store until it would have expired. */
export async function saveEndedSession(store: Pick<Store, 'putDoc'>, session: EndedSession): Promise<void> {
  await store.putDoc(ENDED_SESSIONS, session.id, { until: session.until });
}

/**
 * Loads the sessions ended anywhere (this process before a restart, another gateway, the dashboard while
 * oauth-flow runs apart) into `authenticator`, and deletes the records of those past their expiry.
 * Returns how many are in force.
 */
export async function syncEndedSessions(
  store: Pick<Store, 'listDocs' | 'deleteDoc'>,
  authenticator: Authenticator,
  now = Date.now(),
): Promise<number> {
  const docs = await store.listDocs<{ until: number }>(ENDED_SESSIONS, { limit: MAX_DOC_LIST });
  const live = docs.filter((doc) => typeof doc.data.until === 'number' && doc.data.until > now);
  await Promise.all(docs.filter((doc) => !live.includes(doc)).map((doc) => store.deleteDoc(ENDED_SESSIONS, doc.id)));
  authenticator.restoreEnded(live.map((doc) => ({ id: doc.id, until: doc.data.until })));
  return live.length;
}
