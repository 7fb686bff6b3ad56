import { afterEach, describe, expect, it } from 'vitest';
import { BitBratError } from '../../src/core/index.js';
import { createHealthRegistry } from '../../src/runtime/health.js';
import { createHttpServer, STATUS_BY_CODE } from '../../src/runtime/http.js';
import { createRuntimeMetrics } from '../../src/runtime/metrics.js';

function server() {
  const logged: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const logger = { error: (fields: Record<string, unknown>, message: string) => logged.push({ fields, message }) };
  const app = createHttpServer({
    health: createHealthRegistry(),
    metrics: createRuntimeMetrics({ defaultMetrics: false }),
    services: () => [],
    logger: logger as never,
  });
  apps.push(app);
  return { app, logged };
}
const apps: Array<ReturnType<typeof createHttpServer>> = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

describe('the HTTP server', () => {
  it('logs every unexpected error and answers 500 without its text', async () => {
    const { app, logged } = server();
    app.get('/boom', async () => {
      throw new TypeError('state.split is not a function');
    });
    app.get('/store', async () => {
      throw new BitBratError('STORE_CONSTRAINT', 'record rejected by the store: invalid byte sequence for encoding "UTF8": 0x00');
    });
    for (const url of ['/boom?token=secret', '/store']) {
      const response = await app.inject({ method: 'GET', url });
      expect(response.statusCode).toBe(500);
      expect(response.json()).toEqual({ error: 'INTERNAL', message: 'internal error' });
    }
    expect(logged.map((entry) => [entry.message, entry.fields.route, (entry.fields.err as Error).message])).toEqual([
      ['http request failed', '/boom', 'state.split is not a function'],
      ['http request failed', '/store', 'record rejected by the store: invalid byte sequence for encoding "UTF8": 0x00'],
    ]);
    // The route pattern is logged, not the URL with its query (which may carry a token).
    expect(JSON.stringify(logged.map((entry) => entry.fields.route))).not.toContain('secret');
  });

  it('keeps mapping known errors to their 4xx and 503 statuses without logging them', async () => {
    const { app, logged } = server();
    app.get('/missing', async () => {
      throw new BitBratError('NOT_FOUND', 'no such thing');
    });
    app.get('/down', async () => {
      throw new BitBratError('STORE_UNAVAILABLE', 'store unavailable');
    });
    expect((await app.inject({ method: 'GET', url: '/missing' })).json()).toEqual({ error: 'NOT_FOUND', message: 'no such thing' });
    expect((await app.inject({ method: 'GET', url: '/down' })).statusCode).toBe(503);
    expect(logged).toEqual([]);
  });

  it('answers a publish the bus refused with 503, as the API does, without logging it', async () => {
    const { app, logged } = server();
    app.post('/send', async () => {
      throw new BitBratError('PUBLISH_FAILED', 'the bus did not take the message');
    });
    const response = await app.inject({ method: 'POST', url: '/send' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({ error: 'PUBLISH_FAILED', message: 'the bus did not take the message' });
    expect(STATUS_BY_CODE.PUBLISH_FAILED).toBe(503);
    expect(logged).toEqual([]);
  });

  it('refuses a NUL character in a path or query value with 400 before any handler runs', async () => {
    const { app } = server();
    let calls = 0;
    app.get('/things/:id', async () => {
      calls += 1;
      return { ok: true };
    });
    const path = await app.inject({ method: 'GET', url: '/things/a%00b' });
    expect(path.statusCode).toBe(400);
    expect(path.json()).toEqual({
      error: 'BAD_REQUEST',
      message: 'invalid path parameter id: must not contain the NUL character (U+0000)',
    });
    const query = await app.inject({ method: 'GET', url: '/things/ok?filter=x&filter=%00' });
    expect(query.statusCode).toBe(400);
    expect(query.json().message).toBe('invalid query parameter filter: must not contain the NUL character (U+0000)');
    expect(calls).toBe(0);
    expect((await app.inject({ method: 'GET', url: '/things/ok?filter=%C3%A9' })).statusCode).toBe(200);
  });
});
