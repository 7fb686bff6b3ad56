/**
 * Stalled events: received (an ingress record) and not finalized within STALLED_AFTER_MS. The store finds
 * them; where each one waits comes from the slip engines' in-flight records — this process's directly,
 * the other services' over their `/_debug/inflight` (the API_GATEWAY_HEALTH_URLS of a split deployment).
 * The services that consume that topic are named, and when one of them is unreachable or not ready the
 * report says so: that is the usual cause.
 *
 *   GET  /api/events/stalled               ?limit — the stalled events, oldest first
 *   POST /api/events/:id/dead-letter       moderator+: dead letter (code STALLED) and a failed final record
 *   POST /api/events/:id/replay            moderator+: a copy (new id, same correlation) back to ingress;
 *                                          the stalled one is finalized as failed, naming the copy
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { BitBratError, Topic, newId, type DeadLetter, type Envelope } from '../../core/index.js';
import type { InflightEntry } from '../../runtime/inflight.js';
import { loadArchitecture } from '../../runtime/manifest.js';
import type { ServiceContext } from '../../runtime/service.js';
import type { EventRecord } from '../../store/index.js';
import type { HealthReport, ServiceHealth } from './api.js';

/** Where a stalled event waits, and why when that is known. */
export interface StalledEvent {
  id: string;
  correlationId: string;
  type: string;
  channel?: string;
  userName?: string;
  text?: string;
  receivedAt: string;
  stalledForMs: number;
  /** The last hop the engines remember; absent when no process remembers it (restarted, or not asked). */
  at?: { step: string; topic: string; since: string; publishedBy: string; consumers: string[] };
  /** e.g. "llm-bot is unreachable"; absent when every consumer looks healthy. */
  cause?: string;
}

export interface StallWatchOptions {
  ctx: ServiceContext<{ API_GATEWAY_HEALTH_URLS?: string }>;
  stalledAfterMs: number;
  /** Service name → base URL (API_GATEWAY_HEALTH_URLS). */
  urls: Map<string, string>;
  health: () => Promise<HealthReport>;
}

export interface StallWatch {
  list(limit: number): Promise<StalledEvent[]>;
  /** The stalled view of one event, or undefined when it is finalized or not yet late. */
  describe(record: EventRecord): Promise<StalledEvent | undefined>;
  /** One check: the gauge, and a warning per newly stalled event. */
  check(): Promise<number>;
  start(): void;
  stop(): void;
}

/** The step a topic stands for: `internal.llm-bot.v1` → `llm-bot`; the fixed stages by their name. */
export function stepOfTopic(topic: string): string {
  const match = /^internal\.(.+)\.v1$/.exec(topic);
  if (!match) return topic;
  const name = match[1]!;
  if (name === 'ingress') return 'ingress (auth)';
  if (name === 'authenticated') return 'routing (event-router)';
  if (name.startsWith('egress')) return 'egress';
  return name;
}

/** The services of architecture.yaml that consume `topic` (per-instance topics match their pattern). */
export function consumersOf(topic: string): string[] {
  let services: Record<string, { consumes: string[] }>;
  try {
    services = loadArchitecture().services;
  } catch {
    return [];
  }
  const matches = (pattern: string) =>
    pattern.includes('{instanceId}')
      ? new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace('{instanceId}', '[^.]+')}$`).test(topic)
      : pattern === topic;
  return Object.entries(services)
    .filter(([, manifest]) => manifest.consumes.some(matches))
    .map(([name]) => name);
}

/** Why an event waiting on `consumers` may be stuck, from the health report. */
export function causeFrom(consumers: string[], health: ServiceHealth[] | undefined): string | undefined {
  if (consumers.length === 0) return 'no service consumes this topic';
  if (!health) return undefined;
  const states = consumers
    .map((name) => health.find((entry) => entry.name === name))
    .filter((entry): entry is ServiceHealth => Boolean(entry));
  const down = states.filter((entry) => entry.state === 'unreachable' || entry.state === 'not_ready');
  if (down.length > 0 && down.length === states.length)
    return down.map((entry) => `${entry.name} is ${entry.state === 'unreachable' ? 'unreachable' : 'not ready'}`).join('; ');
  const unknown = states.filter((entry) => entry.state === 'unknown');
  if (unknown.length > 0 && unknown.length === states.length)
    return `${unknown.map((entry) => entry.name).join(', ')} runs elsewhere and its health is not known (set API_GATEWAY_HEALTH_URLS)`;
  return undefined;
}

/** Creates the watch (not started). */
export function createStallWatch(options: StallWatchOptions): StallWatch {
  const { ctx } = options;
  const warned = new Set<string>();
  let timer: NodeJS.Timeout | undefined;

  /** What every other service's engines remember (one request each, in parallel, bounded in time). */
  const remoteInflight = async (): Promise<Map<string, InflightEntry>> => {
    const out = new Map<string, InflightEntry>();
    await Promise.all(
      [...options.urls.values()].map(async (url) => {
        try {
          const response = await fetch(`${url}/_debug/inflight`, { signal: AbortSignal.timeout(1_500) });
          if (!response.ok) return;
          const body = (await response.json()) as { items?: InflightEntry[] };
          for (const entry of body.items ?? []) {
            const known = out.get(entry.id);
            if (!known || known.at < entry.at) out.set(entry.id, entry);
          }
        } catch {
          // That service's health shows it as unreachable; the cause says so.
        }
      }),
    );
    return out;
  };

  const list = async (limit: number): Promise<StalledEvent[]> => {
    const now = Date.now();
    const records = await ctx.store.listUnfinalized({ before: new Date(now - options.stalledAfterMs).toISOString(), limit });
    if (records.length === 0) return [];
    const [remote, health] = await Promise.all([
      options.urls.size > 0 ? remoteInflight() : Promise.resolve(new Map<string, InflightEntry>()),
      options.health().catch(() => undefined),
    ]);
    return records.map((record) => describe(record, ctx.inflight?.get(record.id) ?? remote.get(record.id), health?.services, now));
  };

  /** One check: the gauge, and a warning per newly stalled event. */
  const check = async (): Promise<number> => {
    const stalled = await ctx.store.listUnfinalized({ before: new Date(Date.now() - options.stalledAfterMs).toISOString(), limit: 1_000 });
    ctx.metrics.eventsStalled.set(stalled.length);
    const fresh = stalled.filter((record) => !warned.has(record.id));
    if (fresh.length > 0) {
      const described = await list(Math.min(1_000, stalled.length));
      for (const event of described.filter((entry) => !warned.has(entry.id))) {
        ctx.logger.warn(
          {
            eventId: event.id,
            correlationId: event.correlationId,
            step: event.at?.step,
            cause: event.cause,
            stalledForMs: event.stalledForMs,
          },
          `event stalled${event.at ? ` at ${event.at.step}` : ''}${event.cause ? `: ${event.cause}` : ''}`,
        );
      }
    }
    warned.clear();
    for (const record of stalled) warned.add(record.id);
    return stalled.length;
  };

  return {
    list,
    async describe(record) {
      const now = Date.now();
      if (record.finalizedAt || !record.ingress || now - Date.parse(record.receivedAt) < options.stalledAfterMs) return undefined;
      const local = ctx.inflight?.get(record.id);
      const [remote, health] = await Promise.all([
        !local && options.urls.size > 0 ? remoteInflight() : Promise.resolve(new Map<string, InflightEntry>()),
        options.health().catch(() => undefined),
      ]);
      return describe(record, local ?? remote.get(record.id), health?.services, now);
    },
    check,
    start() {
      const every = Math.min(60_000, Math.max(1_000, Math.floor(options.stalledAfterMs / 4)));
      timer = setInterval(() => {
        check().catch((error: unknown) => ctx.logger.warn({ err: error }, 'stalled-events check failed'));
      }, every);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}

function describe(record: EventRecord, entry: InflightEntry | undefined, health: ServiceHealth[] | undefined, now: number): StalledEvent {
  const consumers = entry ? consumersOf(entry.topic) : [];
  const cause = entry ? causeFrom(consumers, health) : undefined;
  return {
    id: record.id,
    correlationId: record.correlationId,
    type: record.type,
    ...(record.channel ? { channel: record.channel } : {}),
    ...(record.userName ? { userName: record.userName } : {}),
    ...(record.text !== undefined ? { text: record.text } : {}),
    receivedAt: record.receivedAt,
    stalledForMs: now - Date.parse(record.receivedAt),
    ...(entry
      ? {
          at: {
            step: stepOfTopic(entry.topic),
            topic: entry.topic,
            since: new Date(entry.at).toISOString(),
            publishedBy: entry.by,
            consumers,
          },
        }
      : {}),
    ...(cause ? { cause } : {}),
  };
}

const IdParams = z.object({ id: z.string().min(1).max(200) });
const ActionBody = z
  .object({ reason: z.string().max(500).optional() })
  .strict()
  .optional();

/** Registers the stalled-events routes in the API scope (after its auth hook). */
export function registerStalledRoutes(
  scope: FastifyInstance,
  deps: {
    ctx: ServiceContext<{ API_GATEWAY_HEALTH_URLS?: string }>;
    watch: StallWatch;
    requireModerator(request: FastifyRequest): { label: string };
  },
): void {
  const { ctx, watch } = deps;

  scope.get('/api/events/stalled', async (request) => {
    const parsed = z
      .object({ limit: z.coerce.number().int().min(1).max(1000).default(100) })
      .strict()
      .safeParse(request.query);
    if (!parsed.success)
      throw new BitBratError(
        'BAD_REQUEST',
        `invalid query: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || 'query'}: ${issue.message}`).join('; ')}`,
      );
    return { items: await watch.list(parsed.data.limit), stalledAfterMs: ctx.platform.STALLED_AFTER_MS };
  });

  /** The stalled event (404 unknown; `conflict` when it is finalized after all). */
  const stalledEnvelope = async (
    request: FastifyRequest,
  ): Promise<{ record: EventRecord; envelope: Envelope; reason?: string } | { conflict: string }> => {
    const params = IdParams.safeParse(request.params);
    if (!params.success) throw new BitBratError('BAD_REQUEST', 'the event id is missing or too long');
    const body = ActionBody.safeParse(request.body ?? undefined);
    if (!body.success)
      throw new BitBratError(
        'BAD_REQUEST',
        `invalid body: ${body.error.issues.map((issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`).join('; ')}`,
      );
    const record = await ctx.store.getEvent(params.data.id);
    if (!record) throw new BitBratError('NOT_FOUND', `no event ${params.data.id}`);
    if (record.finalizedAt)
      return {
        conflict: `event ${record.id} is finalized (${record.outcome ?? 'done'}); only an event that never finished can be dead-lettered or replayed`,
      };
    const envelope = record.ingress?.envelope;
    if (!envelope) throw new BitBratError('NOT_FOUND', `event ${record.id} has no ingress envelope to act on`);
    return { record, envelope, ...(body.data?.reason ? { reason: body.data.reason } : {}) };
  };

  /** Finalizes the stalled envelope as failed with STALLED, so it stops showing as in flight. */
  const finalizeAsStalled = async (envelope: Envelope, message: string) => {
    const final: Envelope = {
      ...envelope,
      outcome: 'failed',
      errors: [...(envelope.errors ?? []), { code: 'STALLED', message, service: ctx.name, at: new Date().toISOString(), retryable: false }],
    };
    if (!final.finalizationDestination) final.finalizationDestination = Topic.finalizer;
    await ctx.publish(Topic.finalizer, final, { msgId: `${envelope.id}:final` });
  };

  scope.post('/api/events/:id/dead-letter', async (request, reply) => {
    const principal = deps.requireModerator(request);
    const found = await stalledEnvelope(request);
    if ('conflict' in found) return reply.status(409).send({ error: 'CONFLICT', message: found.conflict });
    const { record, envelope, reason } = found;
    const where = ctx.inflight?.get(record.id)?.topic ?? Topic.ingress;
    const message = `dead-lettered by ${principal.label} after stalling${reason ? `: ${reason}` : ''}`;
    const raw = JSON.stringify(envelope);
    const letter: DeadLetter = {
      kind: 'bitbrat.deadletter.v1',
      id: `stalled-${createHash('sha256').update(`${envelope.id}:stalled`).digest('hex').slice(0, 24)}`,
      at: new Date().toISOString(),
      reason: { code: 'STALLED', message },
      topic: where,
      service: ctx.name,
      replayTopic: Topic.ingress,
      raw,
      rawEncoding: 'utf8',
      envelope,
      envelopeId: envelope.id,
      correlationId: envelope.correlationId,
    };
    await ctx.bus.publish(Topic.deadletter, new TextEncoder().encode(JSON.stringify(letter)), {
      msgId: letter.id,
      headers: { 'x-publisher': ctx.name, 'x-deadletter-code': 'STALLED' },
    });
    await finalizeAsStalled(envelope, message);
    ctx.logger.warn({ eventId: record.id, by: principal.label }, 'stalled event dead-lettered by an operator');
    return { id: record.id, deadLetterId: letter.id };
  });

  scope.post('/api/events/:id/replay', async (request, reply) => {
    const principal = deps.requireModerator(request);
    const found = await stalledEnvelope(request);
    if ('conflict' in found) return reply.status(409).send({ error: 'CONFLICT', message: found.conflict });
    const { record, envelope, reason } = found;
    // A new id: the bus and every consumer deduplicate on the old one (R8), so the same id would be dropped.
    const copy: Envelope = {
      ...envelope,
      id: newId(),
      timestamp: new Date().toISOString(),
      routingSlip: [],
      errors: [],
      annotations: [...(envelope.annotations ?? [])],
    };
    delete copy.outcome;
    await ctx.publish(Topic.ingress, copy, { msgId: `${copy.id}:replay` });
    await finalizeAsStalled(envelope, `replayed by ${principal.label} as ${copy.id} after stalling${reason ? `: ${reason}` : ''}`);
    ctx.logger.warn({ eventId: record.id, replayId: copy.id, by: principal.label }, 'stalled event replayed by an operator');
    return { id: record.id, replayId: copy.id, correlationId: copy.correlationId };
  });
}
