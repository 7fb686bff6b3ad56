import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryBus } from '../../src/bus/index.js';
import type { Host } from '../../src/runtime/index.js';
import apiGateway, { createAuthenticator, ENDED_SESSIONS, SESSION, syncEndedSessions } from '../../src/services/api-gateway/index.js';
import oauthFlow from '../../src/services/oauth-flow/index.js';
import type { Store } from '../../src/store/index.js';
import { startTestHost } from '../support/harness.js';
import { useEmbeddedStore } from '../support/service-test.js';

const OWNER_TOKEN = 'owner-token-for-sessions';
const ENV = {
  API_GATEWAY_TOKENS: `${OWNER_TOKEN}:owner`,
  TWITCH_CLIENT_ID: 'client-id',
  TWITCH_CLIENT_SECRET: 'client-secret',
  OAUTH_STATE_SECRET: 'state-secret-for-sessions',
  OAUTH_REDIRECT_URL: 'http://localhost:8080/oauth/twitch/callback',
};

describe('signing out of the dashboard is kept in the store', () => {
  let store: Store;
  const hosts: Host[] = [];
  const start = async (services: Parameters<typeof startTestHost>[0]['services']) => {
    const host = await startTestHost({ services, bus: createMemoryBus(), env: ENV, extra: { store } });
    hosts.push(host);
    return host;
  };
  const signIn = async (host: Host): Promise<string> => {
    const response = await host.app.inject({ method: 'POST', url: '/api/session', payload: { token: OWNER_TOKEN } });
    expect(response.statusCode).toBe(200);
    return String(response.headers['set-cookie']).split(';')[0]!;
  };
  const signedIn = async (host: Host, cookie: string) =>
    (await host.app.inject({ method: 'GET', url: '/api/session', headers: { cookie } })).json().signedIn as boolean;
  const startOAuth = async (host: Host, cookie: string) =>
    (await host.app.inject({ method: 'GET', url: '/oauth/twitch/start?identity=bot', headers: { cookie } })).statusCode;

  useEmbeddedStore((opened) => (store = opened));
  afterEach(async () => {
    for (const host of hosts.splice(0)) await host.stop();
  });

  it('refuses a signed-out cookie after a gateway restart and in an oauth-flow running apart, and keeps other sessions', async () => {
    const gateway = await start([apiGateway, oauthFlow]);
    const apart = await start([oauthFlow]);
    const leaving = await signIn(gateway);
    const staying = await signIn(gateway);
    expect(await signedIn(gateway, leaving)).toBe(true);
    expect(await startOAuth(apart, leaving)).toBe(302);

    const out = await gateway.app.inject({ method: 'DELETE', url: '/api/session', headers: { cookie: leaving, 'x-bitbrat-csrf': '1' } });
    expect(out.statusCode).toBe(204);
    expect(String(out.headers['set-cookie'])).toContain('Max-Age=0');
    expect(await signedIn(gateway, leaving)).toBe(false);
    // The other process never saw the sign-out; it reads it from the store.
    expect(await startOAuth(apart, leaving)).toBe(401);
    expect(await startOAuth(apart, staying)).toBe(302);
    const [record] = (await store.listDocs<{ until: number }>(ENDED_SESSIONS)).filter((doc) => leaving.includes(doc.id));
    expect(record!.data.until).toBeGreaterThan(Date.now() + (SESSION.maxAgeSec - 60) * 1000);

    for (const host of hosts.splice(0)) await host.stop();
    const restarted = await start([apiGateway]);
    expect(await signedIn(restarted, leaving)).toBe(false);
    expect(await signedIn(restarted, staying)).toBe(true);
  });

  it('forgets (and deletes) ended sessions once they would have expired anyway', async () => {
    const now = Date.now();
    await store.putDoc(ENDED_SESSIONS, 'long-gone', { until: now - 1 });
    await store.putDoc(ENDED_SESSIONS, 'still-ended', { until: now + 60_000 });
    const authenticator = createAuthenticator([{ token: OWNER_TOKEN, role: 'owner' }], false);
    expect(await syncEndedSessions(store, authenticator, now)).toBeGreaterThanOrEqual(1);
    expect(await store.getDoc(ENDED_SESSIONS, 'long-gone')).toBeUndefined();
    expect(await store.getDoc(ENDED_SESSIONS, 'still-ended')).toBeDefined();
  });
});
