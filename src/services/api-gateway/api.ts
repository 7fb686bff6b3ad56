/**
 * The gateway's HTTP API (same tokens as the WebSocket; the dashboard uses it too). Reads need any
 * token; writes (rules, commands, dead-letter replay) need a moderator or owner token. Input is
 * validated with zod: a bad request gets 400 with every problem listed, an unknown id 404.
 *
 *   GET  /api/me                         who the token is
 *   GET  /api/health                     readiness of every service (see healthReport)
 *   GET  /api/sources                    source documents (+ this gateway's console)
 *   GET  /api/events                     ?type&outcome&user&userId&channel&since&until&limit(≤200)&cursor
 *   GET  /api/events/:id                 the record with its slip timeline
 *   GET  /api/deadletters                ?limit&cursor&includeReplayed
 *   GET  /api/deadletters/:id
 *   POST /api/deadletters/:id/replay     {raw?} → {id, topic, envelopeId, replayedAt, replayCount}
 *   GET/POST /api/rules, GET/PUT/DELETE /api/rules/:id
 *   GET/POST /api/commands, GET/PUT/DELETE /api/commands/:name
 *   GET  /api/reactions, GET/PUT /api/reactions/:name   {enabled?, template?, shoutout?}
 *   GET  /api/streams, GET /api/streams/:channel          each Twitch channel's current stream state
 *   /api/moderation/…, /api/toolkit/…    filters, moderation log and undo, timers, counters, quotes,
 *                                        giveaways (moderation-api.ts)
 *   GET  /api/live                       server-sent events (live.ts)
 *   GET  /api/events/stalled, POST /api/events/:id/dead-letter|replay   stalled events (stalled.ts)
 *   GET  /api/llm/usage                  ?top — today's LLM spend, top users and the caps (llm-usage.ts)
 *   POST /api/session {token}, DELETE /api/session    the dashboard's HttpOnly session cookie (sign in / out)
 *   GET  /api/session                    {signedIn, role…}: whether the cookie is (still) good, never 401
 *   GET  /api/stats?hours                chat messages, events and reply latency per minute (charts)
 *   GET  /api/commands/help              command prefix, built-in commands, template variables
 *   POST /api/rules/restore-defaults     puts the shipped rules back (a deleted core rule returns)
 *   GET  /api/twitch                     which Twitch settings are missing, the accounts and their token health
 *   DELETE /api/twitch/accounts/:identity   disconnects the bot or broadcaster account (owner)
 *
 * Authentication: `Authorization: Bearer`, `?token=` (API clients), or the session cookie (the
 * dashboard, so no token travels in a URL or lives in page storage). A cookie-authenticated write must
 * carry `x-bitbrat-csrf: 1` and a cookie-authenticated WebSocket must come from this origin, so another
 * site cannot ride the cookie.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { BitBratError, isBitBratError, type Envelope } from '../../core/index.js';
import { replayDeadLetter } from '../../ops/dlq.js';
import type { ComponentHealth } from '../../runtime/health.js';
import { STATUS_BY_CODE } from '../../runtime/http.js';
import { knownSteps, loadArchitecture } from '../../runtime/manifest.js';
import type { ServiceContext } from '../../runtime/service.js';
import type { EventRecord, RuleRecord, SourceState } from '../../store/index.js';
import { BUILTIN_COMMANDS, manageCommand, normalizeName } from '../commands/manage.js';
import { TEMPLATE_VARIABLES } from '../commands/template.js';
import { DEFAULT_RULES_FILE, readRulesFile, ruleRecordOf } from '../event-router/load.js';
import { checkRule } from '../event-router/rules.js';
import { getReaction, listReactions, updateReaction } from '../reactions/manage.js';
import { ReactionUpdateSchema } from '../reactions/reactions.js';
import { streamStateOf } from './streams.js';
import { openSse } from './sse.js';
import {
  SESSION,
  saveEndedSession,
  hasApiRole,
  sessionCookie,
  tokenFromRequest,
  type ApiRole,
  type AuthResult,
  type Authenticator,
  type Principal,
} from './auth.js';
import { aggregateStats, STATS_LIMITS } from './stats.js';
import { twitchSetup } from './twitch-setup.js';
import { DEFAULT_TWITCH_OAUTH_SCOPES } from '../oauth-flow/settings.js';
import { noReplyReason, summarizeDeadLetter, summarizeEvent, type LiveFeed } from './live.js';
import { capKey, createConnectionCaps } from './caps.js';
import { registerLlmUsage } from './llm-usage.js';
import { registerStalledRoutes, type StalledEvent, type StallWatch } from './stalled.js';
import type { UsageCaps } from '../llm-bot/usage.js';
import { registerModerationApi } from './moderation-api.js';
import { WS_LIMITS, type ChatGateway } from './ws.js';

export interface GatewayConfig extends UsageCaps {
  API_GATEWAY_ALLOW_ANONYMOUS: boolean;
  /** The chat command prefix the commands service uses (shown on the Commands page). */
  COMMAND_PREFIX: string;
  /** Read only to tell the Twitch card which settings are missing. */
  TWITCH_BOT_USERNAME?: string;
  TWITCH_CHANNELS: string[];
  API_GATEWAY_HEALTH_URLS?: string;
  API_GATEWAY_LIVE_POLL_MS: number;
}

export interface ApiDeps {
  ctx: ServiceContext<GatewayConfig>;
  /** The process's root app, for its /healthz and /readyz. */
  root: FastifyInstance;
  authenticator: () => Authenticator;
  chat: ChatGateway;
  live: LiveFeed;
  consoleSource: () => SourceState;
  health: () => Promise<HealthReport>;
  /** Open SSE responses, ended on stop. */
  streams: Set<{ end(): void }>;
  /** Stalled events (STALLED_AFTER_MS): list, describe, operator actions. */
  stalled: StallWatch;
}

// ------------------------------------------------------------------------------------------ health

export interface ServiceHealth {
  name: string;
  /** `unknown`: runs elsewhere and no URL was given (API_GATEWAY_HEALTH_URLS). */
  state: 'ready' | 'not_ready' | 'unreachable' | 'unknown';
  /** `local`: in this process; `remote`: asked over HTTP. */
  where: 'local' | 'remote' | 'elsewhere';
  components: Record<string, ComponentHealth>;
  detail?: string;
}

/** GET /api/session (and /api/me, POST /api/session): who the dashboard is signed in as. */
export interface SessionInfo {
  signedIn?: boolean;
  role: ApiRole;
  label: string;
  anonymous: boolean;
  instanceId: string;
}

/** GET /api/commands/help. */
export interface CommandHelp {
  prefix: string;
  builtins: Array<{ name: string; description: string }>;
  variables: Array<{ name: string; description: string }>;
}

/** GET /api/events/:id: the record with its slip timeline and, for chat without a reply, why. */
export type EventDetail = EventRecord & { timeline: TimelineStep[]; noReplyReason?: string; stalled?: StalledEvent };

export interface HealthReport {
  ready: boolean;
  instanceId: string;
  at: string;
  services: ServiceHealth[];
}

/** `auth=http://auth:8080,finalizer=http://finalizer:8080` → map. */
export function parseHealthUrls(value: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new BitBratError('CONFIG_INVALID', `API_GATEWAY_HEALTH_URLS: "${part}" is not name=url`);
    out.set(
      part.slice(0, eq).trim(),
      part
        .slice(eq + 1)
        .trim()
        .replace(/\/$/, ''),
    );
  }
  return out;
}

/**
 * Health of every service in architecture.yaml. Services in this process (all of them in the all-in-one
 * mode) are read from the process's own /readyz: their components (`<service>.<component>`) plus the
 * shared `bus` and `store`. Others are asked at `<url>/readyz` when API_GATEWAY_HEALTH_URLS names them
 * (cached 5 s, 1.5 s timeout), else reported `unknown`.
 */
export function createHealthReporter(root: FastifyInstance, instanceId: string, urls: Map<string, string>): () => Promise<HealthReport> {
  const remoteCache = new Map<string, { at: number; value: ServiceHealth }>();
  const remote = async (name: string, url: string): Promise<ServiceHealth> => {
    const cached = remoteCache.get(name);
    if (cached && Date.now() - cached.at < 5_000) return cached.value;
    let value: ServiceHealth;
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_500) });
      const body = (await response.json()) as { ready?: boolean; components?: Record<string, ComponentHealth> };
      value = { name, state: response.ok && body.ready ? 'ready' : 'not_ready', where: 'remote', components: body.components ?? {} };
    } catch (error) {
      value = { name, state: 'unreachable', where: 'remote', components: {}, detail: `${url}/readyz: ${(error as Error).message}` };
    }
    remoteCache.set(name, { at: Date.now(), value });
    return value;
  };
  return async () => {
    const [healthz, readyz] = await Promise.all([
      root.inject({ method: 'GET', url: '/healthz' }),
      root.inject({ method: 'GET', url: '/readyz' }),
    ]);
    const local: string[] = (healthz.json() as { services?: string[] }).services ?? [];
    const components = ((readyz.json() as { components?: Record<string, ComponentHealth> }).components ?? {}) as Record<
      string,
      ComponentHealth
    >;
    let names: string[];
    try {
      names = Object.keys(loadArchitecture().services);
    } catch {
      names = [];
    }
    for (const name of local) if (!names.includes(name)) names.push(name);
    const services = await Promise.all(
      names.map(async (name): Promise<ServiceHealth> => {
        if (local.includes(name)) {
          const own: Record<string, ComponentHealth> = {};
          for (const [key, value] of Object.entries(components)) {
            if (key.startsWith(`${name}.`) || !local.some((other) => key.startsWith(`${other}.`))) own[key] = value;
          }
          const ready = Object.values(own).every((component) => component.ready);
          return { name, state: ready ? 'ready' : 'not_ready', where: 'local', components: own };
        }
        const url = urls.get(name);
        if (url) return await remote(name, url);
        return {
          name,
          state: 'unknown',
          where: 'elsewhere',
          components: {},
          detail: 'not running in this process; list it in API_GATEWAY_HEALTH_URLS to see its health here',
        };
      }),
    );
    return {
      ready: services.every((service) => service.state === 'ready' || service.state === 'unknown'),
      instanceId,
      at: new Date().toISOString(),
      services,
    };
  };
}

// -------------------------------------------------------------------------------------- validation

/** Years every store can compare against (PostgreSQL's timestamptz stops at 294276, Date at 275760). */
const MIN_TIME = Date.parse('0001-01-01T00:00:00Z');
const MAX_TIME = Date.parse('9999-12-31T23:59:59.999Z');
const isoDate = z
  .string()
  .refine((value) => !Number.isNaN(Date.parse(value)), 'must be an ISO-8601 date/time')
  .refine((value) => {
    const time = Date.parse(value);
    return Number.isNaN(time) || (time >= MIN_TIME && time <= MAX_TIME);
  }, 'must be between the years 0001 and 9999')
  .transform((value) => new Date(value).toISOString());
const limit = (max: number, fallback: number) =>
  z.coerce
    .number({ error: 'must be a number' })
    .int('must be an integer')
    .min(1, 'must be at least 1')
    .max(max, `must be at most ${max}`)
    .default(fallback);
const boolFlag = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
const token = z.string().optional();

const EventsQuerySchema = z
  .object({
    type: z.string().min(1).max(200).optional(),
    outcome: z.enum(['completed', 'handled', 'failed', 'unrouted']).optional(),
    user: z.string().min(1).max(100).optional(),
    userId: z.string().min(1).max(200).optional(),
    channel: z.string().min(1).max(200).optional(),
    since: isoDate.optional(),
    until: isoDate.optional(),
    limit: limit(200, 50),
    cursor: z.string().min(1).max(500).optional(),
    token,
  })
  .strict()
  .refine((query) => !query.since || !query.until || query.since <= query.until, {
    message: 'since must not be after until',
    path: ['since'],
  });

const DeadLettersQuerySchema = z
  .object({ limit: limit(200, 50), cursor: z.string().min(1).max(500).optional(), includeReplayed: boolFlag.optional(), token })
  .strict();
const ReplayBodySchema = z.object({ raw: z.string().min(1).max(1_000_000).optional() }).strict();
const IdParams = z.object({ id: z.string().min(1).max(200) });
const NameParams = z.object({ name: z.string().min(1).max(64) });

const CommandFields = {
  response: z.string().min(1).max(500),
  aliases: z.array(z.string().min(1).max(40)).max(20),
  minRole: z.string().min(1).max(40),
  cooldownSec: z.number().int().min(0).max(86_400),
  userCooldownSec: z.number().int().min(0).max(86_400),
  enabled: z.boolean(),
};
const CommandCreateSchema = z
  .object({ name: z.string().min(1).max(64), ...CommandFields })
  .partial({ aliases: true, minRole: true, cooldownSec: true, userCooldownSec: true, enabled: true })
  .strict();
const CommandUpdateSchema = z
  .object({ name: z.string().min(1).max(64), ...CommandFields })
  .partial()
  .strict();
const RuleUpdateSchema = z.object({ id: z.string().min(1).max(200).optional() }).loose();
const SessionBodySchema = z.object({ token: z.string().min(1).max(512) }).strict();
const StatsQuerySchema = z
  .object({
    hours: z.coerce
      .number({ error: 'must be a number' })
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(STATS_LIMITS.maxHours, `must be at most ${STATS_LIMITS.maxHours}`)
      .default(3),
    token,
  })
  .strict();

/** What each built-in command does, for the Commands page. */
const BUILTIN_HELP: Record<(typeof BUILTIN_COMMANDS)[number], string> = {
  help: 'lists the commands the viewer may use',
  commands: 'the same list as help',
  ping: 'answers pong (is the bot alive?)',
  uptime: 'how long the stream has been live',
  addcom: 'moderators add a command from chat: addcom <name> <response>',
  editcom: 'moderators change a command from chat: editcom <name> <response>',
  delcom: 'moderators remove a command from chat: delcom <name>',
  scene: 'moderators switch the OBS scene: scene <scene name>',
  quote: 'a random quote, quote <number>, or (moderators) quote add <text> with the game and date',
  giveaway: 'enter the running giveaway; moderators start, draw and cancel it',
};

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** No Origin (same-origin GETs, curl) or an Origin naming this host. */
function sameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (!origin) return true;
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}

/** HttpOnly, SameSite=Strict, Secure behind https; Max-Age 0 clears it. */
function cookieHeader(value: string, maxAgeSec: number, request: FastifyRequest): string {
  const secure = request.protocol === 'https' ? '; Secure' : '';
  return `${SESSION.cookie}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}${secure}`;
}

/** One zod issue in plain words: "response must not be empty", not "Too small: expected string to have >=1 characters". */
export function plainIssue(issue: z.core.$ZodIssue): string {
  const field = issue.path.length ? issue.path.join('.') : 'the request';
  // A message set in the schema (e.g. 'must be an ISO-8601 date/time') is already plain.
  const custom = issue.message && !/^(Too (small|big)|Invalid|Unrecognized|Expected)/.test(issue.message);
  if (custom) return `${field}: ${issue.message}`;
  switch (issue.code) {
    case 'too_small':
      if (issue.origin === 'string')
        return Number(issue.minimum) <= 1 ? `${field} must not be empty` : `${field} must be at least ${issue.minimum} characters`;
      if (issue.origin === 'array') return `${field} needs at least ${issue.minimum} item${Number(issue.minimum) === 1 ? '' : 's'}`;
      return `${field} must be at least ${issue.minimum}`;
    case 'too_big':
      if (issue.origin === 'string') return `${field} must be at most ${issue.maximum} characters`;
      if (issue.origin === 'array') return `${field} may have at most ${issue.maximum} items`;
      return `${field} must be at most ${issue.maximum}`;
    case 'invalid_type':
      // zod 4 leaves `input` out of issues; its message still says what was received.
      return /received undefined$/.test(issue.message)
        ? `${field} is required`
        : `${field} must be ${issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`}`;
    case 'unrecognized_keys':
      return `${issue.path.length ? `${field} has ` : ''}unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.join(', ')}`;
    case 'invalid_value':
      return `${field} must be one of ${issue.values.map(String).join(', ')}`;
    default:
      return `${field}: ${issue.message}`;
  }
}

const issuesOf = (error: z.ZodError) => error.issues.map(plainIssue);

/** Parses or throws BAD_REQUEST listing every problem. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = issuesOf(parsed.error);
  throw new BitBratError('BAD_REQUEST', `invalid ${what}: ${problems.join('; ')}`, { details: { problems } });
}

/** BitBratError codes → HTTP statuses: the same table as the runtime's server. */
const STATUS = STATUS_BY_CODE;

/** Known steps for checking a saved rule; without a readable architecture.yaml, slips are not checked. */
function stepsServed(): string[] | undefined {
  try {
    return knownSteps(loadArchitecture());
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------- timeline

export interface TimelineStep {
  index: number;
  id: string;
  status: string;
  attempt: number;
  maxAttempts?: number;
  destination?: string;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  error?: { code: string; message?: string; retryable?: boolean } | null;
  notes?: string;
}

/** Each slip step with its timing, from the finalized envelope (or the ingress one while in flight). */
export function slipTimeline(record: EventRecord): TimelineStep[] {
  const envelope: Envelope | undefined = record.final ?? record.ingress?.envelope;
  return (envelope?.routingSlip ?? []).map((step, index) => {
    const started = step.startedAt ? Date.parse(step.startedAt) : Number.NaN;
    const ended = step.endedAt ? Date.parse(step.endedAt) : Number.NaN;
    return {
      index,
      id: step.id,
      status: step.status,
      attempt: step.attempt ?? 0,
      ...(step.maxAttempts !== undefined ? { maxAttempts: step.maxAttempts } : {}),
      ...(step.destination ? { destination: step.destination } : {}),
      ...(step.startedAt ? { startedAt: step.startedAt } : {}),
      ...(step.endedAt ? { endedAt: step.endedAt } : {}),
      ...(Number.isFinite(started) && Number.isFinite(ended) ? { durationMs: Math.max(0, ended - started) } : {}),
      ...(step.error !== undefined ? { error: step.error } : {}),
      ...(step.notes ? { notes: step.notes } : {}),
    };
  });
}

// ------------------------------------------------------------------------------------------ routes

const principals = new WeakMap<FastifyRequest, Principal>();

/** The caller of a request that passed the auth hook. */
export function principalOf(request: FastifyRequest): Principal {
  const principal = principals.get(request);
  if (!principal) throw new BitBratError('UNAUTHORIZED', 'not authenticated');
  return principal;
}

function requireRole(request: FastifyRequest, minimum: ApiRole): Principal {
  const principal = principalOf(request);
  if (!hasApiRole(principal, minimum))
    throw new BitBratError('FORBIDDEN', `this needs a ${minimum} or owner token; yours is a ${principal.role} token`);
  return principal;
}

/** Registers the auth hook, error handler and every /api and /ws route inside an encapsulated scope. */
export async function registerApi(scope: FastifyInstance, deps: ApiDeps): Promise<void> {
  const { ctx } = deps;

  scope.setErrorHandler((error: any, request, reply) => {
    if (isBitBratError(error) && STATUS[error.code] !== undefined) {
      const problems = error.details?.problems;
      return reply
        .status(STATUS[error.code]!)
        .send({ error: error.code, message: error.message, ...(Array.isArray(problems) ? { problems } : {}) });
    }
    if (!isBitBratError(error) && typeof error?.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode === 413 ? 413 : 400).send({ error: 'BAD_REQUEST', message: error.message });
    }
    // Anything else is our fault: logged in full, answered without the text (a store error quotes the database).
    ctx.logger.error({ err: error, method: request.method, route: request.routeOptions?.url ?? null }, 'api request failed');
    return reply.status(500).send({ error: 'INTERNAL', message: 'internal error' });
  });

  // API answers are per caller and may carry tokens' effects: never cached, never sniffed as another type.
  scope.addHook('onSend', async (_request, reply, payload) => {
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    return payload;
  });

  scope.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // Signing in is how a cookie is obtained; its route checks the token itself.
    // Asking whether one is signed in must not fail (a 401 is a console error on every fresh visit).
    if (request.routeOptions.url === '/api/session' && (request.method === 'POST' || request.method === 'GET')) return;
    // A token in the URL lands in histories and logs: it is accepted only where a browser cannot send a
    // header (a link, an EventSource, a WebSocket: all GET). Changes need the header or the session cookie.
    const inUrl = typeof (request.query as Record<string, unknown> | undefined)?.token === 'string';
    if (inUrl && !SAFE_METHODS.has(request.method)) {
      return reply.status(400).send({
        error: 'BAD_REQUEST',
        message: 'a token in the URL is accepted for GET requests only; send it in the Authorization: Bearer header',
      });
    }
    const presented = tokenFromRequest(request.headers, request.query);
    const isSocket = request.routeOptions.url === '/ws/v1';
    const cookie = presented === undefined ? sessionCookie(request.headers.cookie) : undefined;
    let result: AuthResult;
    if (presented === undefined && cookie !== undefined) {
      result = deps.authenticator().authenticateSession(cookie);
      if (result.ok && !sameOrigin(request)) {
        return reply
          .status(403)
          .send({ error: 'FORBIDDEN', message: 'a session cookie is only accepted from the dashboard itself (Origin does not match)' });
      }
      if (result.ok && !isSocket && !SAFE_METHODS.has(request.method) && request.headers['x-bitbrat-csrf'] !== '1') {
        return reply
          .status(403)
          .send({ error: 'FORBIDDEN', message: 'a change made with the session cookie needs the x-bitbrat-csrf: 1 header' });
      }
      // A stale cookie on a socket falls back to the auth frame, like no credentials at all.
      if (!result.ok && isSocket) return;
    } else {
      // A WebSocket without a token may still authenticate with its first frame.
      if (isSocket && presented === undefined) return;
      result = deps.authenticator().authenticate(presented);
    }
    if (!result.ok) {
      reply.header('www-authenticate', 'Bearer realm="bitbrat"');
      return reply.status(401).send({ error: 'UNAUTHORIZED', message: result.message });
    }
    principals.set(request, result.principal);
  });

  scope.get('/ws/v1', { websocket: true }, (socket, request) => {
    deps.chat.accept(socket, principals.get(request), request.ip);
  });

  scope.post('/api/session', async (request, reply) => {
    const body = validate(SessionBodySchema, request.body ?? {}, 'sign-in');
    const value = deps.authenticator().issueSession(body.token);
    if (!value) return reply.status(401).send({ error: 'UNAUTHORIZED', message: 'the token is not valid' });
    const principal = deps.authenticator().authenticateSession(value);
    reply.header('set-cookie', cookieHeader(value, SESSION.maxAgeSec, request));
    return principal.ok
      ? { role: principal.principal.role, label: principal.principal.label, anonymous: false, instanceId: ctx.instanceId }
      : undefined;
  });

  scope.get('/api/session', async (request) => {
    const cookie = sessionCookie(request.headers.cookie);
    const result = cookie ? deps.authenticator().authenticateSession(cookie) : deps.authenticator().authenticate(undefined);
    if (!result.ok) return { signedIn: false };
    const principal = result.principal;
    return { signedIn: true, role: principal.role, label: principal.label, anonymous: principal.anonymous, instanceId: ctx.instanceId };
  });

  scope.delete('/api/session', async (request, reply) => {
    const cookie = sessionCookie(request.headers.cookie);
    const ended = cookie ? deps.authenticator().endSession(cookie) : undefined;
    // Kept in the store too, so the cookie stays refused after a restart and in other processes; the
    // browser's cookie is cleared and this process refuses it even when the store cannot be written.
    if (ended)
      await saveEndedSession(ctx.store, ended).catch((error) =>
        ctx.logger.warn({ err: error }, 'api-gateway: the sign-out is not stored; a copy of the cookie works again after a restart'),
      );
    reply.header('set-cookie', cookieHeader('', 0, request));
    return reply.status(204).send();
  });

  scope.get('/api/me', async (request) => {
    const principal = principalOf(request);
    return { role: principal.role, label: principal.label, anonymous: principal.anonymous, instanceId: ctx.instanceId };
  });

  scope.get('/api/health', async () => await deps.health());
  registerLlmUsage(scope, ctx);
  registerStalledRoutes(scope, { ctx, watch: deps.stalled, requireModerator: (request) => requireRole(request, 'moderator') });

  scope.get('/api/twitch', async () => {
    const [clientId, clientSecret, accessToken, bot, broadcaster] = await Promise.all([
      ctx.secrets.get('TWITCH_CLIENT_ID'),
      ctx.secrets.get('TWITCH_CLIENT_SECRET'),
      ctx.secrets.get('TWITCH_ACCESS_TOKEN'),
      ctx.store.getToken('twitch:bot'),
      ctx.store.getToken('twitch:broadcaster'),
    ]);
    return twitchSetup({
      clientId: Boolean(clientId),
      clientSecret: Boolean(clientSecret),
      botUsername: ctx.config.TWITCH_BOT_USERNAME,
      channels: ctx.config.TWITCH_CHANNELS,
      botTokenSecret: Boolean(accessToken),
      tokens: { bot, broadcaster },
      wantedScopes: DEFAULT_TWITCH_OAUTH_SCOPES.split(' '),
    });
  });

  scope.delete('/api/twitch/accounts/:identity', async (request, reply) => {
    const principal = requireRole(request, 'owner');
    const { identity } = validate(
      z.object({ identity: z.enum(['bot', 'broadcaster'], { error: 'identity must be bot or broadcaster' }) }),
      request.params,
      'path',
    );
    if (!(await ctx.store.deleteToken(`twitch:${identity}`)))
      throw new BitBratError('NOT_FOUND', `the ${identity} account is not connected`);
    ctx.logger.info({ identity, by: principal.label }, 'twitch account disconnected');
    return reply.status(204).send();
  });

  scope.get('/api/stats', async (request) => {
    const query = validate(StatsQuerySchema, request.query, 'query');
    return await aggregateStats(ctx.store, { hours: query.hours });
  });

  scope.get('/api/sources', async () => {
    const stored = await ctx.store.listSources();
    return { items: withPlaceholders([...stored, deps.consoleSource()]) };
  });

  scope.get('/api/events', async (request) => {
    const query = validate(EventsQuerySchema, request.query, 'query');
    const page = await ctx.store.listEvents({
      ...(query.type ? { type: query.type } : {}),
      ...(query.outcome ? { outcome: query.outcome } : {}),
      ...(query.user ? { userName: query.user.toLowerCase() } : {}),
      ...(query.userId ? { userId: query.userId } : {}),
      ...(query.channel ? { channel: query.channel } : {}),
      ...(query.since ? { since: query.since } : {}),
      ...(query.until ? { until: query.until } : {}),
      ...(query.cursor ? { cursor: query.cursor } : {}),
      limit: query.limit,
    });
    return { items: page.items.map(summarizeEvent), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
  });

  scope.get('/api/events/:id', async (request) => {
    const { id } = validate(IdParams, request.params, 'path');
    const record = await ctx.store.getEvent(id);
    if (!record) throw new BitBratError('NOT_FOUND', `no event with id ${id}`);
    const stalled = await deps.stalled.describe(record);
    const reason = record.final ? noReplyReason(record.final) : undefined;
    const detail: EventDetail = {
      ...record,
      timeline: slipTimeline(record),
      ...(reason ? { noReplyReason: reason } : {}),
      ...(stalled ? { stalled } : {}),
    };
    return detail;
  });

  scope.get('/api/deadletters', async (request) => {
    const query = validate(DeadLettersQuerySchema, request.query, 'query');
    const page = await ctx.store.listDeadLetters({
      limit: query.limit,
      ...(query.cursor ? { cursor: query.cursor } : {}),
      includeReplayed: query.includeReplayed ?? false,
    });
    return {
      items: page.items,
      summaries: page.items.map(summarizeDeadLetter),
      ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}),
    };
  });

  scope.get('/api/deadletters/:id', async (request) => {
    const { id } = validate(IdParams, request.params, 'path');
    const record = await ctx.store.getDeadLetter(id);
    if (!record) throw new BitBratError('NOT_FOUND', `no dead letter with id ${id}`);
    return record;
  });

  scope.post('/api/deadletters/:id/replay', async (request) => {
    const principal = requireRole(request, 'moderator');
    const { id } = validate(IdParams, request.params, 'path');
    const body = validate(ReplayBodySchema, request.body ?? {}, 'body');
    const result = await replayDeadLetter(
      ctx.store,
      // Back through ctx.publish for the retries and trace headers every publish gets.
      async (topic, data, msgId) => await ctx.publish(topic, JSON.parse(new TextDecoder().decode(data)) as Envelope, { msgId }),
      id,
      body.raw !== undefined ? { raw: body.raw } : {},
    );
    ctx.logger.info({ deadLetterId: id, topic: result.topic, envelopeId: result.envelopeId, by: principal.label }, 'dead letter replayed');
    return {
      id,
      topic: result.topic,
      envelopeId: result.envelopeId,
      replayedAt: result.record.replayedAt,
      replayCount: result.record.replayCount,
    };
  });

  // rules ------------------------------------------------------------------------------------------

  const toRecord = (input: unknown, what: string): Omit<RuleRecord, 'updatedAt'> => {
    const checked = checkRule(input, stepsServed());
    if (!checked.ok)
      throw new BitBratError('BAD_REQUEST', `invalid ${what}: ${checked.problems.join('; ')}`, { details: { problems: checked.problems } });
    return ruleRecordOf(checked.rule);
  };

  scope.get('/api/rules', async () => ({
    items: await ctx.store.listRules(),
    defaults: (await readRulesFile(DEFAULT_RULES_FILE)).rules.map((rule) => rule.id),
  }));

  scope.post('/api/rules/restore-defaults', async (request) => {
    const principal = requireRole(request, 'moderator');
    const { rules } = await readRulesFile(DEFAULT_RULES_FILE, { knownSteps: stepsServed() });
    const existing = new Set((await ctx.store.listRules()).map((rule) => rule.id));
    const restored: string[] = [];
    const reset: string[] = [];
    for (const rule of rules) {
      (existing.has(rule.id) ? reset : restored).push(rule.id);
      await ctx.store.upsertRule(toRecord(rule, 'shipped rule'));
    }
    ctx.logger.info({ restored, reset, by: principal.label }, 'default rules restored');
    return { restored, reset };
  });

  scope.get('/api/rules/:id', async (request) => {
    const { id } = validate(IdParams, request.params, 'path');
    const rule = await ctx.store.getRule(id);
    if (!rule) throw new BitBratError('NOT_FOUND', `no rule with id ${id}`);
    return rule;
  });

  scope.post('/api/rules', async (request, reply) => {
    requireRole(request, 'moderator');
    const record = toRecord(request.body, 'rule');
    if (await ctx.store.getRule(record.id))
      return reply
        .status(409)
        .send({ error: 'CONFLICT', message: `rule ${record.id} already exists; use PUT /api/rules/${record.id} to change it` });
    return reply.status(201).send(await ctx.store.upsertRule(record));
  });

  scope.put('/api/rules/:id', async (request) => {
    requireRole(request, 'moderator');
    const { id } = validate(IdParams, request.params, 'path');
    const body = validate(RuleUpdateSchema, request.body, 'rule');
    if (body.id !== undefined && body.id !== id)
      throw new BitBratError(
        'BAD_REQUEST',
        `invalid rule: id "${body.id}" in the body does not match "${id}" in the path (renaming is not supported)`,
      );
    const record = toRecord({ ...body, id }, 'rule');
    if (!(await ctx.store.getRule(id))) throw new BitBratError('NOT_FOUND', `no rule with id ${id}`);
    return await ctx.store.upsertRule(record);
  });

  scope.delete('/api/rules/:id', async (request, reply) => {
    requireRole(request, 'moderator');
    const { id } = validate(IdParams, request.params, 'path');
    if (!(await ctx.store.deleteRule(id))) throw new BitBratError('NOT_FOUND', `no rule with id ${id}`);
    return reply.status(204).send();
  });

  // commands ---------------------------------------------------------------------------------------

  const commandName = (raw: string) => {
    const name = normalizeName(raw);
    if (!name) throw new BitBratError('BAD_REQUEST', `invalid path: "${raw}" is not a valid command name`);
    return name;
  };

  scope.get('/api/commands', async () => ({ items: await ctx.store.listCommands() }));

  scope.get(
    '/api/commands/help',
    async (): Promise<CommandHelp> => ({
      prefix: ctx.config.COMMAND_PREFIX,
      builtins: BUILTIN_COMMANDS.map((name) => ({ name, description: BUILTIN_HELP[name] })),
      variables: Object.entries(TEMPLATE_VARIABLES).map(([name, description]) => ({ name, description })),
    }),
  );

  scope.get('/api/commands/:name', async (request) => {
    const name = commandName(validate(NameParams, request.params, 'path').name);
    const command = await ctx.store.getCommand(name);
    if (!command) throw new BitBratError('NOT_FOUND', `no command !${name}`);
    return command;
  });

  scope.post('/api/commands', async (request, reply) => {
    const principal = requireRole(request, 'moderator');
    const body = validate(CommandCreateSchema, request.body, 'command');
    const result = await manageCommand(ctx.store, 'add', { ...body, createdBy: `api:${principal.label}` });
    if (!result.ok) throw new BitBratError(result.code, result.message);
    return reply.status(201).send(result.command);
  });

  scope.put('/api/commands/:name', async (request) => {
    requireRole(request, 'moderator');
    const name = commandName(validate(NameParams, request.params, 'path').name);
    const body = validate(CommandUpdateSchema, request.body, 'command');
    if (body.name !== undefined && normalizeName(body.name) !== name)
      throw new BitBratError(
        'BAD_REQUEST',
        `invalid command: name "${body.name}" in the body does not match "${name}" in the path (renaming is not supported)`,
      );
    if (!(await ctx.store.getCommand(name))) throw new BitBratError('NOT_FOUND', `no command !${name}`);
    const result = await manageCommand(ctx.store, 'edit', { ...body, name });
    if (!result.ok) throw new BitBratError(result.code, result.message);
    return result.command;
  });

  scope.delete('/api/commands/:name', async (request, reply) => {
    requireRole(request, 'moderator');
    const name = commandName(validate(NameParams, request.params, 'path').name);
    if (!(await ctx.store.deleteCommand(name))) throw new BitBratError('NOT_FOUND', `no command !${name}`);
    return reply.status(204).send();
  });

  // reactions and streams -------------------------------------------------------------------------

  scope.get('/api/reactions', async () => ({ items: await listReactions(ctx.store) }));

  scope.get('/api/reactions/:name', async (request) => await getReaction(ctx.store, validate(NameParams, request.params, 'path').name));

  scope.put('/api/reactions/:name', async (request) => {
    requireRole(request, 'moderator');
    const { name } = validate(NameParams, request.params, 'path');
    return await updateReaction(ctx.store, name, validate(ReactionUpdateSchema, request.body ?? {}, 'reaction'));
  });

  scope.get('/api/streams', async () => ({ items: (await ctx.store.listSources()).flatMap((source) => streamStateOf(source) ?? []) }));

  scope.get('/api/streams/:channel', async (request) => {
    const { channel } = validate(z.object({ channel: z.string().min(1).max(64) }), request.params, 'path');
    const login = channel.replace(/^#/, '').toLowerCase();
    const state = streamStateOf(await ctx.store.getSource(`twitch:${login}`));
    if (!state) throw new BitBratError('NOT_FOUND', `no Twitch channel #${login} is known; channels come from TWITCH_CHANNELS`);
    return state;
  });
  registerModerationApi(scope, { ctx, principalOf });

  // live -------------------------------------------------------------------------------------------

  /** Live-update streams are capped like chat sockets: each holds a timer, a subscription and a buffer. */
  const liveCaps = createConnectionCaps({ max: WS_LIMITS.maxConnections, perKey: WS_LIMITS.maxPerToken, what: 'live-update streams' });

  scope.get('/api/live', async (request, reply) => {
    const slot = liveCaps.acquire(capKey(principalOf(request), request.ip));
    if (!slot.ok) return reply.status(429).send({ error: 'RATE_LIMITED', message: slot.reason });
    let unsubscribe: (() => void) | undefined;
    const stream = openSse(reply, {
      // A viewer that stops reading is dropped rather than buffered without bound; the page reconnects.
      maxBuffered: 1024 * 1024,
      overflow: 'end',
      onEnd() {
        unsubscribe?.();
        slot.release();
        deps.streams.delete(stream);
      },
    });
    const write = stream.send;
    deps.streams.add(stream);
    write('hello', { instanceId: ctx.instanceId, pollMs: ctx.config.API_GATEWAY_LIVE_POLL_MS });
    unsubscribe = await deps.live.subscribe((message) => write(message.type, message.data));
    if (stream.closed) return unsubscribe();
    write('sources', withPlaceholders(deps.live.sources()));
    write('health', await deps.health().catch(() => undefined));
  });
}

/** A card telling the streamer how to connect Twitch when no Twitch source exists yet. */
export function withPlaceholders(sources: SourceState[]): SourceState[] {
  const out = [...sources].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (!out.some((source) => source.platform === 'twitch')) {
    out.push({
      id: 'twitch',
      platform: 'twitch',
      displayName: 'Twitch',
      status: 'not_configured',
      streamStatus: 'unknown',
      metadata: {
        placeholder: true,
        howToConnect:
          'Set TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET, TWITCH_BOT_USERNAME and TWITCH_CHANNELS, restart, then authorize the bot at /oauth/twitch/start?identity=bot (and the broadcaster at ?identity=broadcaster for EventSub).',
      },
    });
  }
  return out;
}

// ------------------------------------------------------------------------------------------ static

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/assets/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/assets/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
  // Browsers ask for /favicon.ico whatever the page links; an SVG answers it in every current browser.
  '/favicon.ico': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** Serves the dashboard (plain HTML/CSS/ES module files read once at start; no build step). */
export async function registerDashboard(app: FastifyInstance, publicDir: string): Promise<void> {
  for (const [route, asset] of Object.entries(ASSETS)) {
    const body = await readFile(path.join(publicDir, asset.file));
    app.get(route, async (_request, reply) => reply.headers({ ...SECURITY_HEADERS, 'content-type': asset.type }).send(body));
  }
}
