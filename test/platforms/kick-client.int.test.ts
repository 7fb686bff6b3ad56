/**
 * The Kick client, token store and subscription reconciling against the fake Kick (test/fakes/kick.ts)
 * over real HTTP on loopback, with an encrypted PGlite token store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KickApiError,
  KickTokenId,
  createKickClient,
  createKickTokens,
  createPkcePair,
  exchangeKickCode,
  kickAuthorizeUrl,
  reconcileKickSubscriptions,
  refreshKickToken,
  revokeKickToken,
} from '../../src/platforms/kick/index.js';
import { loadTracingConfig } from '../../src/runtime/tracing-config.js';
import { createTracing } from '../../src/runtime/tracing.js';
import type { Store } from '../../src/store/index.js';
import { startFakeKick, type FakeKick } from '../fakes/kick.js';
import { startFakeOtlpCollector } from '../fakes/otlp.js';
import { KICK_EVENTS, seedKickStreamer } from '../support/kick.js';
import { openEmbeddedStore } from '../support/service-test.js';

describe('the Kick client against the fake Kick', () => {
  let fake: FakeKick;
  let store: Store;

  beforeAll(async () => {
    fake = await startFakeKick();
    seedKickStreamer(fake, { is_live: true, start_time: '2025-01-01T00:00:00Z', viewer_count: 42 });
    fake.channels.set('friend', {
      broadcaster_user_id: 1003,
      slug: 'friend',
      stream_title: '',
      stream: { is_live: false, start_time: '0001-01-01T00:00:00Z', viewer_count: 0 },
    });
    store = await openEmbeddedStore({ tokenKey: 'b' });
  });
  afterAll(async () => {
    await store?.close();
    await fake?.stop();
  });

  const clientWith = (token: string) => createKickClient({ apiUrl: fake.url, accessToken: async () => token });

  it('reads the token user, channels by slug and the public key', async () => {
    const { accessToken } = fake.issueToken(2002);
    const client = clientWith(accessToken);
    expect(await client.getUsers()).toEqual([{ user_id: 2002, name: 'BratBot' }]);
    const channels = await client.getChannels(['streamer', 'friend', 'nobody']);
    expect(channels.map((channel) => [channel.slug, channel.broadcaster_user_id, channel.stream?.is_live])).toEqual([
      ['streamer', 1001, true],
      ['friend', 1003, false],
    ]);
    expect(await client.getPublicKey()).toBe(fake.publicKeyPem);
    expect(fake.requestsTo('/public/v1/public-key')[0]!.headers.authorization).toBeUndefined();
    expect(fake.requestsTo('/public/v1/users')[0]!.headers.authorization).toBe(`Bearer ${accessToken}`);
  });

  it('sends a chat message threaded with reply_to_message_id', async () => {
    const { accessToken } = fake.issueToken(2002);
    const sent = await clientWith(accessToken).sendChat({ broadcasterUserId: 1001, content: 'pong', replyToMessageId: 'km-1' });
    expect(sent.is_sent).toBe(true);
    expect(fake.chats.at(-1)).toMatchObject({
      broadcaster_user_id: 1001,
      content: 'pong',
      reply_to_message_id: 'km-1',
      type: 'user',
      senderUserId: 2002,
      message_id: sent.message_id,
    });
  });

  it("turns Kick's 429 into a KickApiError carrying Retry-After, and other failures into one with Kick's message", async () => {
    const { accessToken } = fake.issueToken(2002);
    fake.rateLimitNext(1, 3);
    const limited = await clientWith(accessToken)
      .sendChat({ broadcasterUserId: 1001, content: 'x' })
      .catch((error: unknown) => error);
    expect(limited).toBeInstanceOf(KickApiError);
    expect(limited).toMatchObject({ status: 429, retryAfterMs: 3_000 });
    const refused = await clientWith(accessToken)
      .sendChat({ broadcasterUserId: 1001, content: 'y'.repeat(501) })
      .catch((error: unknown) => error);
    expect(refused).toMatchObject({ status: 400, message: expect.stringContaining('500 characters') });
  });

  it('with a tracer, makes each call a client span named after its path with Kick’s status, and a refusal an error span', async () => {
    const collector = await startFakeOtlpCollector();
    const tracing = (await createTracing(loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '20' }), {
      service: 'kick-test',
      instanceId: 'kick-1',
    }))!;
    try {
      const { accessToken } = fake.issueToken(2002);
      const client = createKickClient({ apiUrl: fake.url, accessToken: async () => accessToken, tracing });
      await client.getUsers([1001]);
      await expect(client.sendChat({ broadcasterUserId: 1001, content: 'y'.repeat(501) })).rejects.toBeInstanceOf(KickApiError);
      await tracing.flush();
      const spans = await collector.waitFor((all) => all.length >= 2);
      const users = spans.find((span) => span.name === 'kick.api GET /public/v1/users')!;
      const url = new URL(fake.url);
      expect(users).toMatchObject({ kind: 3, parentSpanId: '', status: { code: 0 } });
      expect(users.attributes).toEqual({
        'http.request.method': 'GET',
        'server.address': url.hostname,
        'server.port': Number(url.port),
        'url.full': `${fake.url}/public/v1/users`,
        'http.response.status_code': 200,
        'bitbrat.platform': 'kick',
      });
      const chat = spans.find((span) => span.name === 'kick.api POST /public/v1/chat')!;
      expect(chat.status.code).toBe(2);
      expect(chat.attributes).toMatchObject({ 'error.type': '400', 'http.response.status_code': 400 });
      expect(chat.events.find((event) => event.name === 'exception')?.attributes).toMatchObject({
        'exception.type': 'KickApiError',
        'exception.message': expect.stringContaining('500 characters'),
      });
    } finally {
      await tracing.shutdown();
      await collector.close();
    }
  });

  it('exchanges a code only with the verifier of its challenge (PKCE S256), refreshes with rotation and revokes', async () => {
    fake.loginAs(1001);
    const pkce = createPkcePair();
    const redirectUri = 'http://localhost:9/oauth/kick/callback';
    /** Kick's authorize step for the logged-in user: the code it redirects back with. */
    const authorize = async () => {
      const response = await fetch(
        kickAuthorizeUrl({
          authUrl: fake.url,
          clientId: fake.clientId,
          redirectUri,
          scopes: ['user:read', 'events:subscribe'],
          state: 'st',
          challenge: pkce.challenge,
        }),
        { redirect: 'manual' },
      );
      expect(response.status).toBe(302);
      return new URL(response.headers.get('location')!).searchParams.get('code')!;
    };
    const exchange = (code: string, verifier: string) =>
      exchangeKickCode({ authUrl: fake.url, clientId: fake.clientId, clientSecret: fake.clientSecret, code, redirectUri, verifier });
    const wrong = await exchange(await authorize(), createPkcePair().verifier).catch((error: unknown) => error);
    expect(wrong).toMatchObject({ status: 400, message: expect.stringContaining('code_verifier') });

    const tokens = await exchange(await authorize(), pkce.verifier);
    expect(tokens).toMatchObject({ token_type: 'Bearer', scope: 'user:read events:subscribe', expires_in: 7200 });
    const refreshed = await refreshKickToken({
      authUrl: fake.url,
      clientId: fake.clientId,
      clientSecret: fake.clientSecret,
      refreshToken: tokens.refresh_token!,
    });
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    expect(fake.tokenValid(tokens.access_token)).toBe(false);
    await revokeKickToken({ authUrl: fake.url, token: refreshed.access_token, hint: 'access_token' });
    expect(fake.tokenValid(refreshed.access_token)).toBe(false);
  });

  it('refreshes an expired stored token once on a 401, stores the new pair with compare-and-set, and other callers reuse it', async () => {
    const issued = fake.issueToken(2002, 'chat:write user:read', 0);
    await store.putToken({
      id: KickTokenId.bot,
      accessToken: issued.accessToken,
      refreshToken: issued.refreshToken,
      scopes: ['chat:write', 'user:read'],
      expiresAt: null,
      obtainedAt: new Date().toISOString(),
      userId: '2002',
    });
    const tokens = createKickTokens({ store, clientId: fake.clientId, clientSecret: fake.clientSecret, authUrl: fake.url });
    const before = await store.getToken(KickTokenId.bot);
    const client = createKickClient({
      apiUrl: fake.url,
      accessToken: async () => (await tokens.accessToken(KickTokenId.bot))!,
      onUnauthorized: async (stale) => await tokens.refresh(KickTokenId.bot, stale),
    });
    const tokenCalls = () => fake.requestsTo('/oauth/token').length;
    const start = tokenCalls();
    const [a, b] = await Promise.all([client.getUsers(), client.getUsers()]);
    expect(a).toEqual([{ user_id: 2002, name: 'BratBot' }]);
    expect(b).toEqual(a);
    expect(tokenCalls() - start).toBe(1);
    const after = await store.getToken(KickTokenId.bot);
    expect(after!.version).toBe(before!.version + 1);
    expect(after!.accessToken).not.toBe(issued.accessToken);
    expect(after!.refreshToken).not.toBe(issued.refreshToken);
    expect(after).toMatchObject({ userId: '2002', scopes: ['chat:write', 'user:read'] });
    expect(fake.tokenValid(after!.accessToken)).toBe(true);
    // A second instance holding the old token finds the new one stored and does not refresh again.
    const other = createKickTokens({ store, clientId: fake.clientId, clientSecret: fake.clientSecret, authUrl: fake.url });
    expect(await other.refresh(KickTokenId.bot, issued.accessToken)).toBe(after!.accessToken);
    expect(tokenCalls() - start).toBe(1);
  });

  it('seeds kick:bot from the secrets once, and a token stored by the OAuth flow wins over the secret', async () => {
    await store.deleteToken(KickTokenId.bot);
    const seed = fake.issueToken(2002);
    const tokens = createKickTokens({ store, seed });
    await tokens.seed();
    expect((await store.getToken(KickTokenId.bot))!.accessToken).toBe(seed.accessToken);
    await tokens.seed();
    expect((await store.getToken(KickTokenId.bot))!.version).toBe(1);
    const fromFlow = fake.issueToken(2002);
    await store.putToken({
      id: KickTokenId.bot,
      accessToken: fromFlow.accessToken,
      scopes: ['chat:write'],
      obtainedAt: new Date().toISOString(),
    });
    await createKickTokens({ store, seed: fake.issueToken(2002) }).seed();
    expect((await store.getToken(KickTokenId.bot))!.accessToken).toBe(fromFlow.accessToken);
  });

  it('reconciles subscriptions: keeps the wanted ones, creates the missing, deletes duplicates and other channels, and is idempotent', async () => {
    const { accessToken } = fake.issueToken(1001);
    const client = clientWith(accessToken);
    await client.createSubscriptions(1001, [
      { name: 'chat.message.sent', version: 1 },
      { name: 'chat.message.sent', version: 1 },
    ]);
    await client.createSubscriptions(1003, [{ name: 'channel.followed', version: 1 }]);
    const first = await reconcileKickSubscriptions(client, [1001]);
    expect(first.kept).toHaveLength(1);
    expect(first.deleted).toHaveLength(2);
    expect(first.created.map((entry) => entry.event).sort()).toEqual(KICK_EVENTS.filter((event) => event !== 'chat.message.sent').sort());
    expect(first.active['1001']!.sort()).toEqual([...KICK_EVENTS].sort());
    expect(fake.subscriptions.map((sub) => `${sub.broadcaster_user_id}:${sub.event}`).sort()).toEqual(
      KICK_EVENTS.map((event) => `1001:${event}`).sort(),
    );
    expect(fake.requestsTo('/public/v1/events/subscriptions', 'POST').at(-1)!.body).toContain('"method":"webhook"');
    const second = await reconcileKickSubscriptions(client, [1001]);
    expect(second).toMatchObject({ created: [], deleted: [] });
    expect(second.kept).toHaveLength(KICK_EVENTS.length);
  });
});
