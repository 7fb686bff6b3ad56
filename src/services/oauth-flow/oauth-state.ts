import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BitBratError } from '../../core/index.js';

/** How long a /start link stays valid. */
export const STATE_TTL_MS = 10 * 60_000;
export const OAuthRole = { bot: 'bot', broadcaster: 'broadcaster' } as const;
export type OAuthRole = (typeof OAuthRole)[keyof typeof OAuthRole];
const ROLES: readonly OAuthRole[] = Object.values(OAuthRole);

/** The outcome of checking a callback's `state`: the role it was started for, or why it is refused. */
export type StateCheck = { ok: true; role: OAuthRole; nonce: string; binding: string } | { ok: false; reason: string };

/**
 * `base64url(json).base64url(hmac)`: the role, an expiry and the hash of the starting browser's cookie
 * nonce (`binding`), signed so a callback cannot be forged nor finished in another browser. A `purpose`
 * (Kick's flow) is signed in too, so a state of another flow is refused where that purpose is required.
 */
export function signStateWithNonce(
  secret: string,
  role: OAuthRole,
  binding: string,
  now = Date.now(),
  ttlMs = STATE_TTL_MS,
  purpose?: string,
): { state: string; nonce: string } {
  const nonce = randomBytes(12).toString('base64url');
  const fields = { ...(purpose ? { p: purpose } : {}), r: role, e: now + ttlMs, n: nonce, b: binding };
  const body = Buffer.from(JSON.stringify(fields)).toString('base64url');
  return { state: `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`, nonce };
}

/** The Twitch flow's state (signStateWithNonce without a purpose). */
export function signState(secret: string, role: OAuthRole, binding: string, now = Date.now(), ttlMs = STATE_TTL_MS): string {
  return signStateWithNonce(secret, role, binding, now, ttlMs).state;
}

/** Checks a `state` made by signStateWithNonce: signature, purpose (when one is required), shape and expiry. */
export function verifyState(secret: string, state: string | undefined, now = Date.now(), purpose?: string): StateCheck {
  if (!state) return { ok: false, reason: 'the state parameter is missing' };
  const [body, signature, extra] = state.split('.');
  if (!body || !signature || extra !== undefined) return { ok: false, reason: 'the state parameter is malformed' };
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return { ok: false, reason: 'the state parameter has an invalid signature' };
  let parsed: { p?: unknown; r?: unknown; e?: unknown; n?: unknown; b?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    return { ok: false, reason: 'the state parameter is malformed' };
  }
  if (
    (purpose !== undefined && parsed.p !== purpose) ||
    !ROLES.includes(parsed.r as OAuthRole) ||
    typeof parsed.e !== 'number' ||
    typeof parsed.n !== 'string' ||
    typeof parsed.b !== 'string'
  )
    return { ok: false, reason: 'the state parameter is malformed' };
  if (parsed.e < now) return { ok: false, reason: 'the authorization link expired; start again' };
  return { ok: true, role: parsed.r as OAuthRole, nonce: parsed.n, binding: parsed.b };
}

/**
 * Which account `/oauth/twitch/start` authorizes: `?identity=bot|broadcaster` (default `bot`); `?role=` is
 * accepted as an alias. Both given must agree.
 */
export function startIdentity(query: Record<string, unknown>): OAuthRole {
  const pick = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new BitBratError('BAD_REQUEST', `${name} must be given once`);
    return value.trim().toLowerCase();
  };
  const identity = pick('identity');
  const alias = pick('role');
  if (identity !== undefined && alias !== undefined && identity !== alias) {
    throw new BitBratError('BAD_REQUEST', `identity=${identity} and role=${alias} disagree; use identity only`);
  }
  const wanted = identity ?? alias ?? OAuthRole.bot;
  if (!ROLES.includes(wanted as OAuthRole)) throw new BitBratError('BAD_REQUEST', `identity must be one of ${ROLES.join(', ')}`);
  return wanted as OAuthRole;
}
