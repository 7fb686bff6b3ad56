/**
 * One refresh per token however many callers ask, against the fake Twitch (real Twurple), which rotates
 * refresh tokens and retires the replaced access token as Twitch may: a second refresh with the same
 * refresh token gets 400, after which Twurple refuses the user until a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '@twurple/api';
import { createRefreshingAuthProvider } from '../../src/platforms/twitch/refreshing-provider.js';
import { BOT, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';

let world: TwitchWorld;

beforeAll(async () => {
  world = await startTwitchWorld();
});
afterAll(async () => {
  await world?.stop();
});

const refreshes = () => world.api.requests.filter((request) => request.path === '/auth/token').length;

async function providerForNewBotToken(reuseMs?: number) {
  const provider = await createRefreshingAuthProvider(
    { clientId: world.api.clientId, clientSecret: world.api.clientSecret },
    reuseMs === undefined ? {} : { reuseMs },
  );
  const issued = world.api.issueToken(BOT.id, { scopes: ['chat:read', 'chat:edit'] });
  provider.addUser(BOT.id, { ...issued, scope: ['chat:read', 'chat:edit'], expiresIn: 14_400, obtainmentTimestamp: Date.now() }, ['chat']);
  return { provider, issued };
}

describe('the refreshing auth provider', () => {
  it('refreshes once for callers asking at the same time, and every one of them gets the new token', async () => {
    const { provider, issued } = await providerForNewBotToken();
    const before = refreshes();
    const tokens = await Promise.all([
      provider.refreshAccessTokenForUser(BOT.id),
      provider.refreshAccessTokenForUser(BOT.id),
      provider.refreshAccessTokenForIntent('chat'),
      provider.refreshAccessTokenForUser(BOT.id),
    ]);
    expect(refreshes() - before).toBe(1);
    expect(new Set(tokens.map((token) => token.accessToken)).size).toBe(1);
    expect(tokens[0]!.accessToken).not.toBe(issued.accessToken);
    expect(tokens[0]!.refreshToken).not.toBe(issued.refreshToken);
    const validate = await fetch(`${world.api.url}/auth/validate`, { headers: { authorization: `OAuth ${tokens[0]!.accessToken}` } });
    expect(validate.status).toBe(200);
  });

  it('answers requests that got 401 for the replaced token with one refresh, and they all succeed', async () => {
    const { provider, issued } = await providerForNewBotToken();
    // As when chat refreshed the token while these requests were on their way.
    world.api.invalidateAccessToken(issued.accessToken);
    const api = new ApiClient({ authProvider: provider });
    const before = refreshes();
    const users = await Promise.all(Array.from({ length: 6 }, () => api.asUser(BOT.id, (ctx) => ctx.users.getUserById(STREAMER.id))));
    expect(users.map((user) => user?.name)).toEqual(Array(6).fill(STREAMER.login));
    expect(refreshes() - before).toBe(1);
  });

  it('refreshes again once the last refresh is older than the reuse window', async () => {
    const { provider } = await providerForNewBotToken(50);
    const before = refreshes();
    const first = await provider.refreshAccessTokenForUser(BOT.id);
    expect((await provider.refreshAccessTokenForUser(BOT.id)).accessToken).toBe(first.accessToken);
    expect(refreshes() - before).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    const second = await provider.refreshAccessTokenForUser(BOT.id);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(refreshes() - before).toBe(2);
  });

  it('refreshes a token given to it after the last refresh instead of answering with the older one', async () => {
    const { provider } = await providerForNewBotToken();
    const first = await provider.refreshAccessTokenForUser(BOT.id);
    const replacement = world.api.issueToken(BOT.id, { scopes: ['chat:read'] });
    provider.addUser(BOT.id, { ...replacement, scope: ['chat:read'], expiresIn: 14_400, obtainmentTimestamp: Date.now() });
    const before = refreshes();
    const next = await provider.refreshAccessTokenForUser(BOT.id);
    expect(refreshes() - before).toBe(1);
    expect(next.accessToken).not.toBe(first.accessToken);
    expect(next.scope).toEqual(['chat:read']);
  });
});
