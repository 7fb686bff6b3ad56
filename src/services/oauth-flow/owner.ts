import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BitBratError } from '../../core/index.js';
import type { ServiceContext } from '../../runtime/service.js';
import {
  createAuthenticator,
  ensureEmbeddedToken,
  hasApiRole,
  parseTokenList,
  sessionCookie,
  tokenFromRequest,
  type Authenticator,
  type Principal,
} from '../api-gateway/auth.js';

/**
 * Which flow a browser binding belongs to: its cookie, seen only by that flow's pages (`path`), and the
 * platform's name in messages ("connecting a Twitch account needs …").
 */
export interface BrowserBinding {
  cookie: string;
  path: string;
  platform: string;
}

/** The Twitch flow's binding. */
export const TWITCH_BINDING: BrowserBinding = { cookie: 'bitbrat_oauth', path: '/oauth/twitch', platform: 'Twitch' };
/** The Kick flow's binding. */
export const KICK_BINDING: BrowserBinding = { cookie: 'bitbrat_kick_oauth', path: '/oauth/kick', platform: 'Kick' };
/** The cookies that bind a started flow to the browser that started it. */
export const SESSION_COOKIE = TWITCH_BINDING.cookie;
export const KICK_SESSION_COOKIE = KICK_BINDING.cookie;

/**
 * The gateway's token list, read by oauth-flow so it can run as its own service: `API_GATEWAY_TOKENS`, or
 * in the embedded topology (no list, PGlite) the gateway's token file, created here when oauth-flow is first.
 * Anonymous access is never allowed on the OAuth routes, whatever the gateway allows.
 */
export async function loadOwnerAuthenticator<C>(ctx: ServiceContext<C>): Promise<Authenticator> {
  const configured = parseTokenList(await ctx.secrets.get('API_GATEWAY_TOKENS'));
  for (const entry of configured) ctx.registerSecret(entry.token);
  const dataDir = ctx.platform.DATA_DIR ?? './data';
  if (configured.length === 0 && ctx.platform.STORE_DRIVER === 'pglite' && !dataDir.startsWith('memory://')) {
    const embedded = await ensureEmbeddedToken(dataDir);
    ctx.registerSecret(embedded.token);
    return createAuthenticator([{ token: embedded.token, role: 'owner', label: 'embedded' }], false);
  }
  if (configured.length === 0)
    ctx.logger.warn('oauth-flow: no API_GATEWAY_TOKENS configured: nobody can start an OAuth flow (Twitch, Kick) or read its status');
  return createAuthenticator(configured, false);
}

/**
 * The caller of an OAuth route: a gateway token as `Authorization: Bearer` or, for a browser following a
 * link (it cannot send a header), `?token=`. `minimum` `owner` for starting the flow.
 */
export function requirePrincipal(
  authenticator: Authenticator,
  request: FastifyRequest,
  minimum: 'viewer' | 'owner',
  flow: BrowserBinding = TWITCH_BINDING,
): Principal {
  // A token (header, or a link's `?token=`), else the dashboard's session cookie: a signed-in owner starts
  // the flow from a plain link, with no token in its URL.
  const presented = tokenFromRequest(request.headers, request.query);
  const session = presented === undefined ? sessionCookie(request.headers.cookie) : undefined;
  const result = session !== undefined ? authenticator.authenticateSession(session) : authenticator.authenticate(presented);
  if (!result.ok) throw new BitBratError('UNAUTHORIZED', result.message);
  if (!hasApiRole(result.principal, minimum))
    throw new BitBratError('FORBIDDEN', `connecting a ${flow.platform} account needs an ${minimum} token`);
  return result.principal;
}

const hash = (nonce: string) => createHash('sha256').update(nonce, 'utf8').digest('base64url');

/**
 * A fresh browser binding: the nonce goes into an HttpOnly, SameSite=Lax cookie (Lax: Twitch's redirect back
 * is a top-level GET, which carries it), its hash into the signed state. A callback whose state was started
 * in another browser finds no matching cookie.
 */
export function bindBrowser(request: FastifyRequest, reply: FastifyReply, maxAgeMs: number, flow: BrowserBinding = TWITCH_BINDING): string {
  const nonce = randomBytes(18).toString('base64url');
  const secure = request.protocol === 'https' ? '; Secure' : '';
  reply.header(
    'set-cookie',
    `${flow.cookie}=${nonce}; Path=${flow.path}; Max-Age=${Math.floor(maxAgeMs / 1000)}; HttpOnly; SameSite=Lax${secure}`,
  );
  return hash(nonce);
}

/** Whether the request carries the cookie whose hash the state holds. */
export function browserMatches(request: FastifyRequest, binding: string, flow: BrowserBinding = TWITCH_BINDING): boolean {
  const nonce = readCookie(request.headers.cookie, flow.cookie);
  if (!nonce) return false;
  const given = Buffer.from(hash(nonce));
  const expected = Buffer.from(binding);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Ends the binding once its callback has been used (or refused for good). */
export function clearBinding(reply: FastifyReply, flow: BrowserBinding = TWITCH_BINDING): void {
  reply.header('set-cookie', `${flow.cookie}=; Path=${flow.path}; Max-Age=0; HttpOnly; SameSite=Lax`);
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
