import Fastify, { type FastifyInstance } from 'fastify';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { HealthRegistry } from './health.js';
import type { Logger } from './logger.js';
import type { RuntimeMetrics } from './metrics.js';
import { BitBratError } from '../core/index.js';

export interface HttpServerOptions {
  health: HealthRegistry;
  metrics: RuntimeMetrics;
  /** Names of the services in this process (shown on /healthz). */
  services: () => string[];
  /** /livez fails when the event loop has been blocked this long. Default 5 000 ms. */
  maxEventLoopDelayMs?: number;
  bodyLimit?: number;
  /** Where unexpected errors (every 500) are logged; their text never goes to the client. */
  logger?: Pick<Logger, 'error'>;
}

/** The HTTP status of each BitBratError code a client can act on (the runtime's server and the API use it). */
export const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  RATE_LIMITED: 429,
  NOT_CONFIGURED: 503,
  STORE_UNAVAILABLE: 503,
  BUS_UNAVAILABLE: 503,
  PUBLISH_FAILED: 503,
};

/**
 * One HTTP server per process: health endpoints aggregate every service in it; services add their own
 * routes before it listens. Errors thrown as BitBratError map to stable HTTP statuses.
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: options.bodyLimit ?? 1_048_576, trustProxy: true });
  const loop = monitorEventLoopDelay({ resolution: 50 });
  loop.enable();
  let lastTick = Date.now();
  const ticker = setInterval(() => (lastTick = Date.now()), 500);
  ticker.unref();
  app.addHook('onClose', async () => {
    loop.disable();
    clearInterval(ticker);
  });

  app.setErrorHandler((error: any, request, reply) => {
    if (error instanceof BitBratError) {
      const status = STATUS_BY_CODE[error.code as string];
      if (status !== undefined) return reply.status(status).send({ error: error.code, message: error.message });
    } else if (
      error?.validation ||
      error?.statusCode === 400 ||
      error?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ||
      error?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY'
    ) {
      return reply.status(400).send({ error: 'BAD_REQUEST', message: error.message });
    } else if (typeof error?.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode).send({ error: 'BAD_REQUEST', message: error.message });
    }
    // Unexpected: logged with the route pattern (the raw URL may carry a ?token=), answered without detail
    // because a driver's error text can describe the database.
    options.logger?.error({ err: error, method: request.method, route: request.routeOptions?.url ?? null }, 'http request failed');
    return reply.status(500).send({ error: 'INTERNAL', message: 'internal error' });
  });
  // PostgreSQL cannot store or compare U+0000, and no name, id or filter needs it: refuse it up front,
  // on every route, instead of letting a query fail deep in a store.
  app.addHook('preValidation', async (request, reply) => {
    const where = nulIn('path', request.params) ?? nulIn('query', request.query);
    if (where)
      return reply.status(400).send({ error: 'BAD_REQUEST', message: `invalid ${where}: must not contain the NUL character (U+0000)` });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: 'NOT_FOUND', message: `no route for ${request.method} ${request.url.split('?')[0]}` }),
  );

  app.get('/healthz', async () => ({ status: 'ok', services: options.services() }));
  app.get('/livez', async (_request, reply) => {
    const maxDelay = options.maxEventLoopDelayMs ?? 5_000;
    const stalledMs = Date.now() - lastTick;
    const p99Ms = loop.percentile(99) / 1e6;
    const live = stalledMs < maxDelay;
    return reply
      .status(live ? 200 : 503)
      .send({ status: live ? 'ok' : 'stalled', eventLoopDelayP99Ms: Math.round(p99Ms * 100) / 100, stalledMs });
  });
  app.get('/readyz', async (_request, reply) => {
    const ready = options.health.isReady();
    return reply.status(ready ? 200 : 503).send({ ready, components: options.health.snapshot() });
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.metrics.registry.contentType);
    return options.metrics.registry.metrics();
  });
  return app;
}

/** `query parameter x` when a string value (or one of an array's) holds U+0000. */
function nulIn(what: 'path' | 'query', values: unknown): string | undefined {
  if (!values || typeof values !== 'object') return undefined;
  for (const [name, value] of Object.entries(values)) {
    const strings = Array.isArray(value) ? value : [value];
    if (strings.some((item) => typeof item === 'string' && item.includes('\u0000'))) return `${what} parameter ${name}`;
  }
  return undefined;
}
