import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Host } from '../../src/runtime/index.js';
import oauthFlow, { DEFAULT_TWITCH_OAUTH_SCOPES, signState, verifyState } from '../../src/services/oauth-flow/index.js';
import { loadTwitchAuth, persistTokenWithCas } from '../../src/platforms/twitch/token-store.js';
import type { OAuthToken, Store } from '../../src/store/index.js';
import { startFakeTwitch, useFakeTwitch, type FakeTwitch } from '../fakes/twitch-api.js';
import { openEmbeddedStore, useTestHosts } from '../support/service-test.js';
import { createAuthenticator, parseTokenList, SESSION } from '../../src/services/api-gateway/auth.js';

const STATE_SECRET = 'state-secret-for-tests';
const REDIRECT = 'http://localhost:8080/oauth/twitch/callback';
const STREAMER = { id: '1001', login: 'streamer', displayName: 'Streamer' };
const BOT = { id: '1002', login: 'brat_bot', displayName: 'Brat_Bot' };
const SCOPES = DEFAULT_TWITCH_OAUTH_SCOPES.split(' ');
const OWNER_TOKEN = 'owner-token-for-oauth';
const VIEWER_TOKEN = 'viewer-token-for-oauth';
const OWNER = { authorization: `Bearer ${OWNER_TOKEN}` };

/** The cookie a response sets, as a browser would send it back. */
const cookieOf = (response: { headers: Record<string, unknown> }) => String(response.headers['set-cookie']).split(';')[0]!;

describe('oauth-flow service (Twitch authorization code flow against the fake)', () => {
  let fake: FakeTwitch;
  let restoreEnv: () => void;
  let dataDir: string;
  let store: Store;

  beforeAll(async () => {
    fake = await startFakeTwitch();
    restoreEnv = useFakeTwitch(fake);
    fake.addUser(STREAMER);
    fake.addUser(BOT);
    dataDir = await mkdtemp(join(tmpdir(), 'bitbrat-oauth-'));
    store = await openEmbeddedStore({ dataDir, tokenKey: 'a' });
  });
  afterAll(async () => {
    await store?.close();
    restoreEnv?.();
    await fake?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });
  const hosts = useTestHosts({
    services: [oauthFlow],
    store: () => store,
    env: () => ({
      TWITCH_CLIENT_ID: fake.clientId,
      TWITCH_CLIENT_SECRET: fake.clientSecret,
      OAUTH_STATE_SECRET: STATE_SECRET,
      OAUTH_REDIRECT_URL: REDIRECT,
      API_GATEWAY_TOKENS: `${OWNER_TOKEN}:owner,${VIEWER_TOKEN}:viewer`,
    }),
  });
  const host = hosts.start;

  async function startFlow(app: Host['app'], identity: string, param: 'identity' | 'role' = 'identity') {
    return (await startFlowInBrowser(app, identity, param)).location;
  }

  /** Starts as the owner; `cookie` is what the starting browser holds afterwards. */
  async function startFlowInBrowser(app: Host['app'], identity: string, param: 'identity' | 'role' = 'identity') {
    const response = await app.inject({ method: 'GET', url: `/oauth/twitch/start?${param}=${identity}`, headers: OWNER });
    expect(response.statusCode).toBe(302);
    return { location: new URL(String(response.headers.location)), cookie: cookieOf(response) };
  }

  describe('when the operator starts the flow', () => {
    let app: Host['app'];
    beforeEach(async () => {
      app = (await host()).app;
    });

    it('redirects to Twitch with client id, redirect URI, code response type, the scopes and a signed state', async () => {
      const location = await startFlow(app, 'broadcaster');
      expect(`${location.origin}${location.pathname}`).toBe('https://id.twitch.tv/oauth2/authorize');
      expect(location.searchParams.get('client_id')).toBe(fake.clientId);
      expect(location.searchParams.get('redirect_uri')).toBe(REDIRECT);
      expect(location.searchParams.get('response_type')).toBe('code');
      expect(location.searchParams.get('scope')!.split(' ')).toEqual(SCOPES);
      const state = verifyState(STATE_SECRET, location.searchParams.get('state')!);
      expect(state).toMatchObject({ ok: true, role: 'broadcaster' });
      expect(verifyState('another-secret', location.searchParams.get('state')!).ok).toBe(false);
    });

    it('lets the dashboard’s signed-in owner start with the session cookie alone, and refuses a viewer’s session', async () => {
      // The cookie is signed with the same token list the gateway and oauth-flow both read.
      const sessions = createAuthenticator(parseTokenList(`${OWNER_TOKEN}:owner,${VIEWER_TOKEN}:viewer`), false);
      const owner = await app.inject({
        method: 'GET',
        url: '/oauth/twitch/start?identity=bot',
        headers: { cookie: `${SESSION.cookie}=${sessions.issueSession(OWNER_TOKEN)}` },
      });
      expect(owner.statusCode).toBe(302);
      expect(new URL(String(owner.headers.location)).searchParams.get('state')).toBeTruthy();
      const viewer = await app.inject({
        method: 'GET',
        url: '/oauth/twitch/start?identity=bot',
        headers: { cookie: `${SESSION.cookie}=${sessions.issueSession(VIEWER_TOKEN)}` },
      });
      expect(viewer.statusCode).toBe(403);
      const forged = await app.inject({
        method: 'GET',
        url: '/oauth/twitch/start?identity=bot',
        headers: { cookie: `${SESSION.cookie}=not-a-session` },
      });
      expect(forged.statusCode).toBe(401);
    });

    it('answers 400 to an unknown role', async () => {
      const response = await app.inject({ method: 'GET', url: '/oauth/twitch/start?role=admin', headers: OWNER });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ error: 'BAD_REQUEST' });
    });

    it('takes the account from ?identity=broadcaster (the documented parameter)', async () => {
      const location = await startFlow(app, 'broadcaster', 'identity');
      expect(verifyState(STATE_SECRET, location.searchParams.get('state')!)).toMatchObject({ ok: true, role: 'broadcaster' });
      expect(location.searchParams.get('force_verify')).toBe('true');
    });

    it('accepts ?identity=bot, ?role= as an alias, and defaults to the bot', async () => {
      const stateRole = (location: URL) => (verifyState(STATE_SECRET, location.searchParams.get('state')!) as { role?: string }).role;
      expect(stateRole(await startFlow(app, 'bot', 'identity'))).toBe('bot');
      expect(stateRole(await startFlow(app, 'broadcaster', 'role'))).toBe('broadcaster');
      const bare = await app.inject({ method: 'GET', url: '/oauth/twitch/start', headers: OWNER });
      expect(bare.statusCode).toBe(302);
      expect(stateRole(new URL(String(bare.headers.location)))).toBe('bot');
      const agreeing = await app.inject({
        method: 'GET',
        url: '/oauth/twitch/start?identity=broadcaster&role=broadcaster',
        headers: OWNER,
      });
      expect(stateRole(new URL(String(agreeing.headers.location)))).toBe('broadcaster');
    });

    it('answers 400 to an unknown identity, a repeated one, or identity and role that disagree', async () => {
      for (const query of ['identity=admin', 'identity=', 'identity=bot&identity=broadcaster', 'identity=bot&role=broadcaster']) {
        const response = await app.inject({ method: 'GET', url: `/oauth/twitch/start?${query}`, headers: OWNER });
        expect(response.statusCode, query).toBe(400);
        expect(response.json(), query).toMatchObject({ error: 'BAD_REQUEST' });
        expect(response.headers.location, query).toBeUndefined();
      }
    });
  });

  it('answers 503 with how to configure when the client id and secret are missing', async () => {
    const { app } = await host({ TWITCH_CLIENT_ID: '', TWITCH_CLIENT_SECRET: '', OAUTH_REDIRECT_URL: '' });
    const response = await app.inject({ method: 'GET', url: '/oauth/twitch/start?role=bot', headers: OWNER });
    expect(response.statusCode).toBe(503);
    expect(response.json().message).toMatch(/TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET/);
    expect(response.json().message).toContain('/oauth/twitch/callback');
    expect((await app.inject({ method: 'GET', url: '/oauth/twitch/status', headers: OWNER })).json()).toMatchObject({ configured: false });
  });

  it('exchanges the code on callback, stores the token encrypted and shows the login on /status without token values', async () => {
    const started = await host();
    const { app } = started;
    const { location, cookie } = await startFlowInBrowser(app, 'broadcaster');
    const code = fake.createAuthorizationCode(STREAMER.id, { scopes: SCOPES, redirectUri: REDIRECT });
    const callback = await app.inject({
      method: 'GET',
      url: `/oauth/twitch/callback?code=${code}&scope=x&state=${encodeURIComponent(location.searchParams.get('state')!)}`,
      headers: { cookie },
    });
    expect(callback.statusCode).toBe(200);
    expect(callback.headers['content-type']).toMatch(/text\/html/);
    expect(callback.body).toContain('streamer');

    const exchange = fake.requests.find(
      (request) => request.path === '/auth/token' && request.query.grant_type === 'authorization_code' && request.query.code === code,
    )!;
    expect(exchange.query).toMatchObject({ code, redirect_uri: REDIRECT, client_id: fake.clientId });

    const token = (await store.getToken('twitch:broadcaster'))!;
    expect(token).toMatchObject({ id: 'twitch:broadcaster', userId: STREAMER.id, login: STREAMER.login, scopes: SCOPES });
    expect(Date.parse(token.expiresAt!)).toBeGreaterThan(Date.now());
    expect(token.refreshToken).toBeTruthy();
    // The stored token is the real one: Twitch (the fake) accepts it.
    const validate = await fetch(`${fake.url}/auth/validate`, { headers: { authorization: `OAuth ${token.accessToken}` } });
    expect(await validate.json()).toMatchObject({ user_id: STREAMER.id, login: STREAMER.login });
    expect(callback.body).not.toContain(token.accessToken);
    expect(callback.body).not.toContain(token.refreshToken!);

    const status = await app.inject({ method: 'GET', url: '/oauth/twitch/status', headers: OWNER });
    expect(status.json()).toMatchObject({
      configured: true,
      broadcaster: { connected: true, login: 'streamer', userId: STREAMER.id, scopes: SCOPES, expired: false },
      // The bot account is whatever the other tests left; connecting the broadcaster did not touch it.
      bot: { connected: (await store.getToken('twitch:bot')) !== undefined },
    });
    expect(status.body).not.toContain(token.accessToken);
    expect(status.body).not.toContain(token.refreshToken!);

    // The same link cannot be used twice.
    const replay = await app.inject({
      method: 'GET',
      url: `/oauth/twitch/callback?code=${code}&state=${encodeURIComponent(location.searchParams.get('state')!)}`,
      headers: { cookie },
    });
    expect(replay.statusCode).toBe(400);
    expect(replay.body).toMatch(/already used/);

    // At rest the row holds ciphertext only: read it with PGlite directly.
    await hosts.stop(started);
    await store.close();
    const raw = await PGlite.create(join(dataDir, 'pglite'));
    const { rows } = await raw.query<{ access_token: string; refresh_token: string }>(
      "SELECT access_token, refresh_token FROM oauth_tokens WHERE id = 'twitch:broadcaster'",
    );
    await raw.close();
    expect(rows[0]!.access_token.startsWith('enc:v1:')).toBe(true);
    expect(rows[0]!.access_token).not.toContain(token.accessToken);
    expect(rows[0]!.refresh_token).not.toContain(token.refreshToken!);
    store = await openEmbeddedStore({ dataDir, tokenKey: 'a' });
    expect((await store.getToken('twitch:broadcaster'))!.accessToken).toBe(token.accessToken);
  });

  it('answers 400 with a message to a forged, tampered or expired state', async () => {
    const { app } = await host();
    const callback = (state: string) =>
      app.inject({ method: 'GET', url: `/oauth/twitch/callback?code=abc&state=${encodeURIComponent(state)}` });
    const forged = await callback(signState('not-the-secret', 'bot', 'binding'));
    expect(forged.statusCode).toBe(400);
    expect(forged.body).toMatch(/invalid signature/);
    const valid = signState(STATE_SECRET, 'bot', 'binding');
    const tampered = await callback(
      `${Buffer.from(JSON.stringify({ r: 'broadcaster', e: Date.now() + 60_000, n: 'x', b: 'binding' })).toString('base64url')}.${valid.split('.')[1]}`,
    );
    expect(tampered.statusCode).toBe(400);
    const expired = await callback(signState(STATE_SECRET, 'bot', 'binding', Date.now() - 11 * 60_000));
    expect(expired.statusCode).toBe(400);
    expect(expired.body).toMatch(/expired/);
    expect((await callback('garbage')).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/oauth/twitch/callback?code=abc' })).statusCode).toBe(400);
    // None of these reached Twitch.
    expect(fake.requests.filter((request) => request.query.code === 'abc')).toHaveLength(0);
  });

  it('shows a 502 page without secrets when Twitch rejects the code', async () => {
    const { app } = await host();
    // Whatever an earlier test stored stays as it was.
    const before = await store.getToken('twitch:bot');
    const { location, cookie } = await startFlowInBrowser(app, 'bot');
    const response = await app.inject({
      method: 'GET',
      url: `/oauth/twitch/callback?code=unknown-code&state=${encodeURIComponent(location.searchParams.get('state')!)}`,
      headers: { cookie },
    });
    expect(response.statusCode).toBe(502);
    expect(response.body).toMatch(/HTTP 400: Invalid authorization code/);
    expect(response.body).not.toContain(fake.clientSecret);
    expect(response.body).not.toContain('unknown-code');
    expect(await store.getToken('twitch:bot')).toEqual(before);
  });

  describe('who may connect an account', () => {
    it('refuses a stranger without a token, a wrong token and a viewer token; no state or cookie is handed out', async () => {
      const { app } = await host();
      const attempts = [
        { headers: {}, status: 401 },
        { headers: { authorization: 'Bearer not-a-gateway-token' }, status: 401 },
        { headers: { authorization: `Bearer ${VIEWER_TOKEN}` }, status: 403 },
      ];
      for (const attempt of attempts) {
        const response = await app.inject({ method: 'GET', url: '/oauth/twitch/start?identity=broadcaster', headers: attempt.headers });
        expect(response.statusCode, JSON.stringify(attempt.headers)).toBe(attempt.status);
        expect(response.headers.location).toBeUndefined();
        expect(response.headers['set-cookie']).toBeUndefined();
      }
    });

    it('lets an owner start from a browser link with ?token= and sets an HttpOnly, SameSite=Lax cookie for the OAuth paths', async () => {
      const { app } = await host();
      const response = await app.inject({ method: 'GET', url: `/oauth/twitch/start?identity=bot&token=${OWNER_TOKEN}` });
      expect(response.statusCode).toBe(302);
      expect(response.headers['referrer-policy']).toBe('no-referrer');
      const setCookie = String(response.headers['set-cookie']);
      expect(setCookie).toMatch(/^bitbrat_oauth=[\w-]{20,};/);
      expect(setCookie).toContain('HttpOnly');
      expect(setCookie).toContain('SameSite=Lax');
      expect(setCookie).toContain('Path=/oauth/twitch');
    });

    it('refuses a callback whose state was started in another browser, and one with no cookie, without reaching Twitch', async () => {
      const { app } = await host();
      const owner = await startFlowInBrowser(app, 'broadcaster');
      const other = await startFlowInBrowser(app, 'broadcaster');
      const code = fake.createAuthorizationCode(STREAMER.id, { scopes: SCOPES, redirectUri: REDIRECT });
      const url = `/oauth/twitch/callback?code=${code}&state=${encodeURIComponent(owner.location.searchParams.get('state')!)}`;
      const exchangesBefore = fake.requests.filter((request) => request.query.code === code).length;

      const elsewhere = await app.inject({ method: 'GET', url, headers: { cookie: other.cookie } });
      expect(elsewhere.statusCode).toBe(400);
      expect(elsewhere.body).toMatch(/another browser/);
      const noCookie = await app.inject({ method: 'GET', url });
      expect(noCookie.statusCode).toBe(400);
      expect(fake.requests.filter((request) => request.query.code === code)).toHaveLength(exchangesBefore);

      // The starting browser can still finish it: the refusals did not use the link up.
      const own = await app.inject({ method: 'GET', url, headers: { cookie: `theme=dark; ${owner.cookie}` } });
      expect(own.statusCode).toBe(200);
      expect(String(own.headers['set-cookie'])).toMatch(/^bitbrat_oauth=;.*Max-Age=0/);
    });

    it('needs a token for /oauth/twitch/status', async () => {
      const { app } = await host();
      const anonymous = await app.inject({ method: 'GET', url: '/oauth/twitch/status' });
      expect(anonymous.statusCode).toBe(401);
      expect(anonymous.body).not.toMatch(/login|scopes/);
      expect(
        (await app.inject({ method: 'GET', url: '/oauth/twitch/status', headers: { authorization: 'Bearer wrong-token-123' } })).statusCode,
      ).toBe(401);
      const viewer = await app.inject({ method: 'GET', url: '/oauth/twitch/status', headers: { authorization: `Bearer ${VIEWER_TOKEN}` } });
      expect(viewer.statusCode).toBe(200);
      expect(viewer.json()).toMatchObject({ configured: true });
    });

    it('in the embedded topology accepts the gateway token file as the owner token', async () => {
      const embeddedDir = await mkdtemp(join(tmpdir(), 'bitbrat-oauth-embedded-'));
      try {
        const { app } = await host({ API_GATEWAY_TOKENS: '', STORE_DRIVER: 'pglite', DATA_DIR: embeddedDir });
        expect((await app.inject({ method: 'GET', url: '/oauth/twitch/start?identity=bot' })).statusCode).toBe(401);
        const token = (await readFile(join(embeddedDir, 'gateway-token'), 'utf8')).trim();
        const response = await app.inject({
          method: 'GET',
          url: '/oauth/twitch/start?identity=bot',
          headers: { authorization: `Bearer ${token}` },
        });
        expect(response.statusCode).toBe(302);
      } finally {
        await rm(embeddedDir, { recursive: true, force: true });
      }
    });

    it('serves its pages with a CSP that allows nothing, nosniff and no referrer', async () => {
      const { app } = await host();
      const response = await app.inject({ method: 'GET', url: '/oauth/twitch/callback?code=abc&state=garbage' });
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-security-policy']).toBe(
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      );
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['referrer-policy']).toBe('no-referrer');
    });
  });

  describe('RefreshingAuthProvider from the store', () => {
    async function storeExpiredBotToken() {
      const issued = fake.issueToken(BOT.id, { scopes: ['chat:read', 'chat:edit'] });
      fake.invalidateAccessToken(issued.accessToken);
      return await store.putToken({
        id: 'twitch:bot',
        accessToken: issued.accessToken,
        refreshToken: issued.refreshToken,
        scopes: ['chat:read', 'chat:edit'],
        expiresAt: new Date(Date.now() - 60_000).toISOString(),
        obtainedAt: new Date(Date.now() - 4 * 3_600_000).toISOString(),
        userId: BOT.id,
        login: BOT.login,
      });
    }

    it('refreshes an expired token against Twitch and persists the new one with compare-and-set', async () => {
      const before = await storeExpiredBotToken();
      const auth = await loadTwitchAuth({
        store,
        clientId: fake.clientId,
        clientSecret: fake.clientSecret,
        ids: ['twitch:bot', 'twitch:nobody'],
      });
      expect(auth.users).toEqual({ 'twitch:bot': { userId: BOT.id, login: BOT.login } });
      const fresh = await auth.authProvider.getAccessTokenForIntent('chat');
      expect(fresh!.accessToken).not.toBe(before.accessToken);
      await auth.flush();

      const after = (await store.getToken('twitch:bot'))!;
      expect(after.version).toBe(before.version + 1);
      expect(after.accessToken).toBe(fresh!.accessToken);
      expect(after.refreshToken).toBe(fresh!.refreshToken);
      expect(after.refreshToken).not.toBe(before.refreshToken);
      expect(after).toMatchObject({ userId: BOT.id, login: BOT.login, scopes: ['chat:read', 'chat:edit'] });
      expect(Date.parse(after.expiresAt!)).toBeGreaterThan(Date.now());
      const validate = await fetch(`${fake.url}/auth/validate`, { headers: { authorization: `OAuth ${after.accessToken}` } });
      expect(validate.status).toBe(200);
    });

    it('re-reads and retries when another writer updated the token in between', async () => {
      const before = await storeExpiredBotToken();
      const attempts: Array<number | undefined> = [];
      let interfered = false;
      // Someone else writes right after our first read: our first compare-and-set must lose.
      const racing: Store = Object.create(store, {
        getToken: {
          value: async (id: string) => {
            const current = await store.getToken(id);
            if (!interfered && id === 'twitch:bot') {
              interfered = true;
              await store.putToken({ ...current!, login: 'renamed_elsewhere' });
            }
            return current;
          },
        },
        updateTokenIf: {
          value: async (expected: number, token: Omit<OAuthToken, 'version'>) => {
            const written = await store.updateTokenIf(expected, token);
            attempts.push(written?.version);
            return written;
          },
        },
      });
      const written = await persistTokenWithCas(racing, { ...before, accessToken: 'at-new', refreshToken: 'rt-new', login: undefined });
      expect(attempts).toEqual([undefined, before.version + 2]);
      expect(written).toMatchObject({
        accessToken: 'at-new',
        refreshToken: 'rt-new',
        version: before.version + 2,
        login: 'renamed_elsewhere',
      });
      expect((await store.getToken('twitch:bot'))!.accessToken).toBe('at-new');
    });

    it('does not persist anything when Twitch rejects the refresh token', async () => {
      const before = await storeExpiredBotToken();
      fake.invalidateRefreshToken(before.refreshToken!);
      const auth = await loadTwitchAuth({ store, clientId: fake.clientId, clientSecret: fake.clientSecret, ids: ['twitch:bot'] });
      await expect(auth.authProvider.getAccessTokenForIntent('chat')).rejects.toThrow();
      await auth.flush();
      expect((await store.getToken('twitch:bot'))!.version).toBe(before.version);
    });
  });
});
