import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus } from '../../src/bus/index.js';
import type { Host } from '../../src/runtime/index.js';
import oauthFlow from '../../src/services/oauth-flow/index.js';
import { parseCallbackQuery } from '../../src/services/oauth-flow/callback-query.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startTestHost } from '../support/harness.js';

describe('the Twitch OAuth callback query', () => {
  it('takes each parameter once and refuses a repeated one', () => {
    expect(parseCallbackQuery({ code: 'c', state: 's', scope: 'x y' })).toEqual({ code: 'c', state: 's' });
    expect(() => parseCallbackQuery({ code: 'c', state: ['a', 'b'] })).toThrow(/the state parameter must be given once/);
    expect(() => parseCallbackQuery({ code: ['a', 'b'] })).toThrow(/the code parameter must be given once/);
    expect(parseCallbackQuery(undefined)).toEqual({});
  });

  describe('on the running service', () => {
    let store: Store;
    let host: Host;
    const lines: string[] = [];
    beforeAll(async () => {
      store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
      await store.init();
      host = await startTestHost({
        services: [oauthFlow],
        bus: createMemoryBus(),
        env: {
          TWITCH_CLIENT_ID: 'client',
          TWITCH_CLIENT_SECRET: 'secret',
          OAUTH_STATE_SECRET: 'state-secret',
          OAUTH_REDIRECT_URL: 'http://localhost:8080/oauth/twitch/callback',
          LOG_LEVEL: 'info',
        },
        extra: { store, logDestination: { write: (line: string) => void lines.push(line) } },
      });
    });
    afterAll(async () => {
      await host?.stop();
      await store?.close();
    });

    it('answers duplicate state parameters with 400 and a message, not an unlogged 500', async () => {
      const response = await host.app.inject({ method: 'GET', url: '/oauth/twitch/callback?code=abc&state=a.b&state=c.d' });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ error: 'BAD_REQUEST', message: 'the state parameter must be given once' });
      expect(lines.filter((line) => line.includes('"level":"error"') || line.includes('"level":50'))).toEqual([]);
    });
  });
});
