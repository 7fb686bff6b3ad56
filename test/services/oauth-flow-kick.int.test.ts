/**
 * The Kick OAuth 2.1 flow (PKCE S256) in the oauth-flow service against the fake Kick: only an owner may
 * start it, the state is signed and bound to the starting browser and used once, and the code exchange
 * succeeds only with the verifier whose challenge went to Kick. Tokens land encrypted in the store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Host } from '../../src/runtime/index.js';
import oauthFlow from '../../src/services/oauth-flow/index.js';
import { KICK_SESSION_COOKIE } from '../../src/services/oauth-flow/kick.js';
import type { Store } from '../../src/store/index.js';
import { startFakeKick, type FakeKick } from '../fakes/kick.js';
import { openEmbeddedStore, useTestHosts } from '../support/service-test.js';

const OWNER = 'owner-token-0123456789';
const VIEWER = 'viewer-token-0123456789';
const REDIRECT = 'http://localhost:8080/oauth/kick/callback';

describe('oauth-flow: Kick authorization code flow with PKCE', () => {
  let fake: FakeKick;
  let store: Store;

  beforeAll(async () => {
    fake = await startFakeKick();
    fake.users.set(2002, { user_id: 2002, name: 'BratBot' });
    fake.users.set(1001, { user_id: 1001, name: 'Streamer' });
    store = await openEmbeddedStore({ tokenKey: 'd' });
  });
  afterAll(async () => {
    await store?.close();
    await fake?.stop();
  });
  const { start: host } = useTestHosts({
    services: [oauthFlow],
    store: () => store,
    env: () => ({
      KICK_CLIENT_ID: fake.clientId,
      KICK_CLIENT_SECRET: fake.clientSecret,
      KICK_AUTH_URL: fake.url,
      KICK_API_URL: fake.url,
      KICK_OAUTH_REDIRECT_URL: REDIRECT,
      OAUTH_STATE_SECRET: 'state-secret-for-kick-tests',
      API_GATEWAY_TOKENS: `${OWNER}:owner,${VIEWER}:viewer`,
      DATA_DIR: 'memory://',
    }),
  });

  /** Starts as the owner; returns Kick's authorize URL and the binding cookie. */
  async function start(running: Host, identity: 'bot' | 'broadcaster') {
    const response = await running.app.inject({
      method: 'GET',
      url: `/oauth/kick/start?identity=${identity}`,
      headers: { authorization: `Bearer ${OWNER}` },
    });
    expect(response.statusCode).toBe(302);
    const cookie = String(response.headers['set-cookie']).split(';')[0]!;
    return { authorize: new URL(String(response.headers.location)), cookie, response };
  }

  /** Follows the authorize URL at the fake (the user "logs in"), returning the callback query. */
  async function authorizeAtKick(authorize: URL): Promise<string> {
    const answer = await fetch(authorize, { redirect: 'manual' });
    expect(answer.status).toBe(302);
    const back = new URL(answer.headers.get('location')!);
    expect(back.origin + back.pathname).toBe(REDIRECT);
    return back.search;
  }

  it('refuses to start without a token (401) or with a viewer token (403)', async () => {
    const running = await host();
    const anonymous = await running.app.inject({ method: 'GET', url: '/oauth/kick/start?identity=bot' });
    expect(anonymous.statusCode).toBe(401);
    const viewer = await running.app.inject({
      method: 'GET',
      url: '/oauth/kick/start?identity=bot',
      headers: { authorization: `Bearer ${VIEWER}` },
    });
    expect(viewer.statusCode).toBe(403);
    expect(viewer.json()).toMatchObject({ error: 'FORBIDDEN' });
    expect(fake.requestsTo('/oauth/authorize')).toHaveLength(0);
  });

  it('sends the owner to Kick with an S256 challenge, a signed state and a browser-binding cookie', async () => {
    const running = await host();
    const { authorize, response } = await start(running, 'bot');
    expect(authorize.origin + authorize.pathname).toBe(`${fake.url}/oauth/authorize`);
    expect(authorize.searchParams.get('client_id')).toBe(fake.clientId);
    expect(authorize.searchParams.get('redirect_uri')).toBe(REDIRECT);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorize.searchParams.get('scope')).toBe('user:read channel:read chat:write events:subscribe');
    expect(authorize.searchParams.get('state')).toMatch(/^[\w-]+\.[\w-]+$/);
    expect(String(response.headers['set-cookie'])).toMatch(
      new RegExp(`^${KICK_SESSION_COOKIE}=[\\w-]+; Path=/oauth/kick; Max-Age=600; HttpOnly; SameSite=Lax`),
    );
    expect(response.headers['referrer-policy']).toBe('no-referrer');
  });

  it('connects the bot account: the code is exchanged with the matching verifier and the token stored as kick:bot', async () => {
    const running = await host();
    fake.loginAs(2002);
    const { authorize, cookie } = await start(running, 'bot');
    const search = await authorizeAtKick(authorize);
    const callback = await running.app.inject({ method: 'GET', url: `/oauth/kick/callback${search}`, headers: { cookie } });
    expect(callback.statusCode).toBe(200);
    expect(callback.body).toContain('The bot account BratBot is connected');
    const exchange = fake.requestsTo('/oauth/token').at(-1)!;
    const form = new URLSearchParams(exchange.body);
    expect(form.get('grant_type')).toBe('authorization_code');
    expect(form.get('code_verifier')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorize.toString()).not.toContain(form.get('code_verifier')!);
    const stored = await store.getToken('kick:bot');
    expect(stored).toMatchObject({
      userId: '2002',
      login: 'BratBot',
      scopes: ['user:read', 'channel:read', 'chat:write', 'events:subscribe'],
    });
    expect(fake.tokenValid(stored!.accessToken)).toBe(true);
    expect(callback.body).not.toContain(stored!.accessToken);

    const status = await running.app.inject({ method: 'GET', url: '/oauth/kick/status', headers: { authorization: `Bearer ${VIEWER}` } });
    expect(status.json()).toMatchObject({
      configured: true,
      bot: { connected: true, login: 'BratBot' },
      broadcaster: { connected: false },
    });
    expect(status.body).not.toContain(stored!.accessToken);

    // The same callback again: the state was used.
    const replay = await running.app.inject({ method: 'GET', url: `/oauth/kick/callback${search}`, headers: { cookie } });
    expect(replay.statusCode).toBe(400);
    expect(replay.body).toContain('already used');
  });

  it('refuses a callback from another browser and one with a forged state', async () => {
    const running = await host();
    fake.loginAs(1001);
    const { authorize } = await start(running, 'broadcaster');
    const search = await authorizeAtKick(authorize);
    const elsewhere = await running.app.inject({
      method: 'GET',
      url: `/oauth/kick/callback${search}`,
      headers: { cookie: `${KICK_SESSION_COOKIE}=someone-else` },
    });
    expect(elsewhere.statusCode).toBe(400);
    expect(elsewhere.body).toContain('another browser');
    const forged = await running.app.inject({ method: 'GET', url: '/oauth/kick/callback?code=abc&state=e30.AAAA' });
    expect(forged.statusCode).toBe(400);
    expect(forged.body).toContain('invalid signature');
    expect(await store.getToken('kick:broadcaster')).toBeUndefined();
  });

  it('says what to configure when the Kick app is not set up', async () => {
    const running = await host({ KICK_CLIENT_ID: '', KICK_CLIENT_SECRET: '' });
    const response = await running.app.inject({
      method: 'GET',
      url: '/oauth/kick/start?identity=bot',
      headers: { authorization: `Bearer ${OWNER}` },
    });
    expect(response.statusCode).toBe(503);
    expect(response.json().message).toMatch(/KICK_CLIENT_ID.*KICK_CLIENT_SECRET/);
  });
});
