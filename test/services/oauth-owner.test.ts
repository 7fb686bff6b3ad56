/** The one owner check and browser binding both OAuth flows (Twitch, Kick) use. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { createAuthenticator } from '../../src/services/api-gateway/auth.js';
import {
  KICK_BINDING,
  KICK_SESSION_COOKIE,
  SESSION_COOKIE,
  TWITCH_BINDING,
  bindBrowser,
  browserMatches,
  clearBinding,
  requirePrincipal,
} from '../../src/services/oauth-flow/owner.js';

/** A reply that records the headers set on it. */
function recordingReply() {
  const headers: Record<string, string> = {};
  const reply = { header: (name: string, value: string) => ((headers[name] = value), reply) };
  return { reply: reply as unknown as FastifyReply, headers };
}

const request = (headers: Record<string, string> = {}, query: Record<string, string> = {}) =>
  ({ protocol: 'http', headers, query }) as unknown as FastifyRequest;

describe('the OAuth owner check and browser binding', () => {
  it('binds a Kick flow with its own cookie on /oauth/kick, which only the Kick check matches', () => {
    const { reply, headers } = recordingReply();
    const binding = bindBrowser(request(), reply, 600_000, KICK_BINDING);
    expect(headers['set-cookie']).toMatch(
      new RegExp(`^${KICK_SESSION_COOKIE}=[\\w-]+; Path=/oauth/kick; Max-Age=600; HttpOnly; SameSite=Lax$`),
    );
    const cookie = headers['set-cookie']!.split(';')[0]!;
    expect(browserMatches(request({ cookie }), binding, KICK_BINDING)).toBe(true);
    // The same nonce under the Twitch cookie name is another flow's: not a match.
    expect(browserMatches(request({ cookie: cookie.replace(KICK_SESSION_COOKIE, SESSION_COOKIE) }), binding, KICK_BINDING)).toBe(false);
    expect(browserMatches(request({ cookie }), binding, TWITCH_BINDING)).toBe(false);
  });

  it('clears only the cookie of the flow it is given', () => {
    const kick = recordingReply();
    clearBinding(kick.reply, KICK_BINDING);
    expect(kick.headers['set-cookie']).toBe(`${KICK_SESSION_COOKIE}=; Path=/oauth/kick; Max-Age=0; HttpOnly; SameSite=Lax`);
    const twitch = recordingReply();
    clearBinding(twitch.reply);
    expect(twitch.headers['set-cookie']).toBe(`${SESSION_COOKIE}=; Path=/oauth/twitch; Max-Age=0; HttpOnly; SameSite=Lax`);
  });

  it("refuses a viewer token naming the flow's platform, and takes an owner token", () => {
    const authenticator = createAuthenticator(
      [
        { token: 'viewer-token-0123456789', role: 'viewer', label: 'v' },
        { token: 'owner-token-0123456789', role: 'owner', label: 'o' },
      ],
      false,
    );
    expect(() =>
      requirePrincipal(authenticator, request({ authorization: 'Bearer viewer-token-0123456789' }), 'owner', KICK_BINDING),
    ).toThrow('connecting a Kick account needs an owner token');
    expect(() => requirePrincipal(authenticator, request({}), 'owner', KICK_BINDING)).toThrow(
      expect.objectContaining({ code: 'UNAUTHORIZED' }),
    );
    expect(requirePrincipal(authenticator, request({}, { token: 'owner-token-0123456789' }), 'owner', KICK_BINDING)).toMatchObject({
      role: 'owner',
    });
  });
});
