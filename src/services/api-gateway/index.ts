import { fileURLToPath } from 'node:url';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, type ServiceContext } from '../../runtime/service.js';
import type { SourceState } from '../../store/index.js';
import { createHealthReporter, parseHealthUrls, registerApi, registerDashboard, type GatewayConfig, type HealthReport } from './api.js';
import { createAuthenticator, ensureEmbeddedToken, parseTokenList, syncEndedSessions, type Authenticator } from './auth.js';
import { createLiveFeed, type LiveFeed } from './live.js';
import { registerOverlays, type Overlays } from './overlay.js';
import { WS_LIMITS, createChatGateway, type ChatGateway } from './ws.js';
import { UsageCapsSchema } from '../llm-bot/usage.js';
import { createStallWatch, type StallWatch } from './stalled.js';

export * from './auth.js';

export { slipTimeline, withPlaceholders, type HealthReport, type ServiceHealth, type TimelineStep } from './api.js';
export { WS_LIMITS, CloseCode } from './ws.js';

/** How often a gateway reads the sessions signed out through other gateways. */
const ENDED_SESSIONS_SYNC_MS = 60_000;

const ConfigSchema = z.object({
  /** Requests without a token are let in as viewers. A wrong token is still refused. */
  API_GATEWAY_ALLOW_ANONYMOUS: env.bool(false),
  /** Split deployments: `name=url` pairs whose /readyz the dashboard shows (e.g. `auth=http://auth:8080`). */
  API_GATEWAY_HEALTH_URLS: env.string(),
  /** How often the live feed reads the store (ms). */
  API_GATEWAY_LIVE_POLL_MS: env.int(1_000, { min: 100, max: 60_000 }),
  /** llm-bot's caps, read here to report them on /api/llm/usage. */
  ...UsageCapsSchema.shape,
  /** The commands service's prefix, read here too so the Commands page shows what chat really uses. */
  COMMAND_PREFIX: env.string().transform((value) => value ?? '!'),
  /** Read (not used) so the dashboard's Twitch card can name what is missing. */
  TWITCH_BOT_USERNAME: env.string(),
  TWITCH_CHANNELS: env.csv(),
});

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

interface GatewayState {
  authenticator?: Authenticator;
  embeddedToken?: { token: string; file: string; created: boolean };
  chat: ChatGateway;
  live: LiveFeed;
  consoleSource: () => SourceState;
  health?: () => Promise<HealthReport>;
  app?: FastifyInstance;
  streams: Set<{ end(): void }>;
  overlays?: Overlays;
  stalled?: StallWatch;
}

/**
 * The api-gateway: the chat WebSocket (`/ws/v1`, replies come back on the per-instance egress topic),
 * the HTTP API (`/api/*`) and the dashboard (`/`). State lives in each setup, so several hosts (tests,
 * or split and all-in-one side by side) never share sockets.
 */
export const service = defineService<GatewayConfig>({
  name: 'api-gateway',
  configSchema: ConfigSchema as unknown as z.ZodType<GatewayConfig>,
  needsStore: true,
  setup(ctx) {
    // Built on first use (routes, before start): the chat gateway runs a sweeper timer from creation.
    let gateway: GatewayState | undefined;
    const state = (): GatewayState => (gateway ??= createGatewayState(ctx));
    let endedSync: NodeJS.Timeout | undefined;
    return {
      consumers: {
        'internal.egress.{instanceId}.v1': {
          mode: 'stage',
          next: 'finalization',
          platforms: ['api'],
          async handle(envelope) {
            return continueWith(state().chat.deliver(envelope));
          },
        },
      },
      async routes(app) {
        const current = state();
        current.app = app;
        await loadTokens(ctx, current);
        // One registration per app: in the all-in-one process every service shares this fastify instance.
        if (!app.hasDecorator('websocketServer')) await app.register(websocket, { options: { maxPayload: WS_LIMITS.maxPayloadBytes } });
        const healthUrls = parseHealthUrls(ctx.config.API_GATEWAY_HEALTH_URLS);
        current.health = createHealthReporter(app, ctx.instanceId, healthUrls);
        current.stalled = createStallWatch({
          ctx,
          stalledAfterMs: ctx.platform.STALLED_AFTER_MS,
          urls: healthUrls,
          health: () => current.health!(),
        });
        await registerDashboard(app, PUBLIC_DIR);
        current.overlays = await registerOverlays(app, {
          store: () => ctx.store,
          authenticator: () => current.authenticator!,
          pollMs: ctx.config.API_GATEWAY_LIVE_POLL_MS,
          logger: ctx.logger,
          publicDir: PUBLIC_DIR,
        });
        await app.register(async (scope) => {
          await registerApi(scope, {
            ctx,
            root: app,
            authenticator: () => current.authenticator!,
            chat: current.chat,
            live: current.live,
            consoleSource: current.consoleSource,
            health: () => current.health!(),
            streams: current.streams,
            stalled: current.stalled!,
          });
        });
      },
      async start() {
        announce(ctx, state());
        state().stalled?.start();
        // Sessions signed out before a restart or through another gateway stay refused (see auth.ts).
        const authenticator = state().authenticator;
        if (authenticator) {
          const sync = () =>
            syncEndedSessions(ctx.store, authenticator).catch((error) =>
              ctx.logger.warn({ err: error }, 'api-gateway: could not read the signed-out sessions; trying again later'),
            );
          await sync();
          endedSync = setInterval(sync, ENDED_SESSIONS_SYNC_MS);
          endedSync.unref();
        }
      },
      async stop() {
        clearInterval(endedSync);
        if (!gateway) return;
        gateway.stalled?.stop();
        gateway.live.stop();
        gateway.overlays?.stop();
        for (const stream of [...gateway.streams]) stream.end();
        gateway.chat.close();
      },
    };
  },
});

/** The chat gateway, live feed and console source of one api-gateway instance. */
function createGatewayState(ctx: ServiceContext<GatewayConfig>): GatewayState {
  // The chat gateway and live feed ask for the tokens and health reporter, which routes() sets later.
  let state: GatewayState | undefined;
  const chat = createChatGateway({
    instanceId: ctx.instanceId,
    authenticator: () => {
      if (!state?.authenticator) throw new Error('api-gateway: tokens not loaded yet');
      return state.authenticator;
    },
    publish: (topic, envelope) => ctx.publish(topic, envelope),
    logger: ctx.logger,
  });
  const consoleSource = (): SourceState => {
    const stats = chat.stats();
    return {
      id: `api:${ctx.instanceId}`,
      platform: 'api',
      displayName: `Chat console (gateway ${ctx.instanceId})`,
      status: 'connected',
      streamStatus: 'unknown',
      metrics: { messagesIn: stats.messagesIn, messagesOut: stats.messagesOut, errors: stats.errors },
      metadata: { clients: stats.clients, ...(stats.lastMessageAt ? { lastMessageAt: stats.lastMessageAt } : {}) },
    };
  };
  const live = createLiveFeed({
    store: () => ctx.store,
    extraSources: () => [consoleSource()],
    health: () => state?.health?.() ?? Promise.resolve(undefined),
    pollMs: ctx.config.API_GATEWAY_LIVE_POLL_MS,
    logger: ctx.logger,
  });
  state = { chat, live, consoleSource, streams: new Set() };
  return state;
}

async function loadTokens(ctx: ServiceContext<GatewayConfig>, state: GatewayState): Promise<void> {
  const configured = parseTokenList(await ctx.secrets.get('API_GATEWAY_TOKENS'));
  for (const entry of configured) ctx.registerSecret(entry.token);
  const dataDir = ctx.platform.DATA_DIR ?? './data';
  const embedded = configured.length === 0 && ctx.platform.STORE_DRIVER === 'pglite' && !dataDir.startsWith('memory://');
  if (embedded) {
    state.embeddedToken = await ensureEmbeddedToken(dataDir);
    ctx.registerSecret(state.embeddedToken.token);
    state.authenticator = createAuthenticator(
      [{ token: state.embeddedToken.token, role: 'owner', label: 'embedded' }],
      ctx.config.API_GATEWAY_ALLOW_ANONYMOUS,
    );
    return;
  }
  state.authenticator = createAuthenticator(configured, ctx.config.API_GATEWAY_ALLOW_ANONYMOUS);
  if (configured.length === 0 && !ctx.config.API_GATEWAY_ALLOW_ANONYMOUS) {
    ctx.logger.warn('no API_GATEWAY_TOKENS configured and API_GATEWAY_ALLOW_ANONYMOUS is off: the API and dashboard refuse every request');
  }
}

/** Tells the person at the console where the dashboard is (and, embedded, its token). */
function announce(ctx: ServiceContext<GatewayConfig>, state: GatewayState): void {
  const address = state.app?.server.address();
  const port = typeof address === 'object' && address ? address.port : ctx.platform.PORT;
  const host = ctx.platform.HOST === '0.0.0.0' || ctx.platform.HOST === '::' ? '127.0.0.1' : ctx.platform.HOST;
  if (state.embeddedToken) {
    ctx.logger.info(
      { tokenFile: state.embeddedToken.file, created: state.embeddedToken.created },
      'api-gateway: using the embedded owner token (bitbrat send reads it from the token file)',
    );
    // Printed, not logged: the logger scrubs the token, and this line is for the person at the console.
    process.stderr.write(
      `\nDashboard: http://${host}:${port}/#token=${state.embeddedToken.token}\n  (token kept in ${state.embeddedToken.file}; bitbrat send '!ping' uses it)\n\n`,
    );
  } else {
    ctx.logger.info(
      { url: `http://${host}:${port}/`, tokens: state.authenticator?.tokenCount ?? 0, anonymous: ctx.config.API_GATEWAY_ALLOW_ANONYMOUS },
      'api-gateway: dashboard and API ready',
    );
  }
}

export default service;
