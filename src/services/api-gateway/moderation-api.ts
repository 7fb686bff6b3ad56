/**
 * HTTP API of moderation and the streamer toolkit (reads need any token; changes a moderator or owner
 * token). `:channel` is a channel login (`streamer`, Twitch assumed) or `platform:login`. Every answer is
 * JSON; a list is `{ items: [...] }`; bad input is a 400 naming every problem, an unknown item a 404.
 *
 *   GET    /api/moderation/:channel/filters            the channel's filter settings (defaults until changed)
 *   PUT    /api/moderation/:channel/filters            partial settings, merged one level deep → settings
 *   DELETE /api/moderation/:channel/filters            back to the defaults → settings
 *   GET    /api/moderation/log                         ?channel&user&limit(≤500) newest first
 *   GET    /api/moderation/log/:id
 *   POST   /api/moderation/log/:id/undo                → 202 {requested, logId, envelopeId, correlationId}
 *   POST   /api/moderation/:channel/actions            {action: timeout|ban|delete|shoutout, …} → 202 (as undo)
 *   GET    /api/toolkit/:channel/timers                PUT/DELETE /api/toolkit/:channel/timers/:name
 *   GET    /api/toolkit/:channel/counters              PUT/DELETE /api/toolkit/:channel/counters/:name  {response?, value?}
 *   GET    /api/toolkit/:channel/quotes                POST {text, game?}; GET/DELETE …/quotes/:number
 *   GET    /api/toolkit/:channel/giveaways             POST {keyword, durationSec?, subscriberLuck?}
 *   GET    /api/toolkit/:channel/giveaways/current     the latest with its entries
 *   POST   /api/toolkit/:channel/giveaways/draw        → {giveaway, winner?, entries}
 *   POST   /api/toolkit/:channel/giveaways/cancel
 *
 * Actions and undo travel as an envelope to the moderation step (which holds the Twitch connection), so
 * they are performed there, logged and recorded; the 202 names the envelope to follow in /api/events.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { BitBratError, stepTopic } from '../../core/index.js';
import type { ServiceContext } from '../../runtime/service.js';
import { MODERATION_STEP, ModerationRequestSchema, channelOfKey, createModerationRequest } from '../moderation/requests.js';
import {
  QuoteInputSchema,
  addQuote,
  cancelGiveaway,
  currentGiveaway,
  deleteQuote,
  drawGiveaway,
  getFilterSettings,
  getLogEntry,
  getQuote,
  getUndoableLogEntry,
  listEntries,
  listGiveaways,
  listLog,
  listQuotes,
  NAMED_RECORDS,
  parseChannelKey,
  resetFilterSettings,
  startGiveaway,
  updateFilterSettings,
} from '../moderation/records.js';
import { hasApiRole, type Principal } from './auth.js';
import { validate, type GatewayConfig } from './api.js';

export interface ModerationApiDeps {
  ctx: ServiceContext<GatewayConfig>;
  principalOf(request: FastifyRequest): Principal;
}

const ChannelParams = z.object({ channel: z.string().min(1).max(80) });
const ChannelNameParams = ChannelParams.extend({ name: z.string().min(1).max(32) });
const QuoteParams = ChannelParams.extend({ number: z.coerce.number().int().min(1).max(1e9) });
const LogQuery = z
  .object({
    channel: z.string().min(1).max(80).optional(),
    user: z.string().min(1).max(64).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
    token: z.string().optional(),
  })
  .strict();
const IdParams = z.object({ id: z.string().min(1).max(200) });

export function registerModerationApi(scope: FastifyInstance, deps: ModerationApiDeps): void {
  const { ctx } = deps;
  const store = () => ctx.store;
  const moderator = (request: FastifyRequest): Principal => {
    const principal = deps.principalOf(request);
    if (!hasApiRole(principal, 'moderator'))
      throw new BitBratError('FORBIDDEN', `this needs a moderator or owner token; yours is a ${principal.role} token`);
    return principal;
  };
  const channelOf = (request: FastifyRequest) => parseChannelKey(validate(ChannelParams, request.params, 'path').channel);
  const body = (request: FastifyRequest) => (request.body === undefined || request.body === null ? {} : request.body);

  /** Publishes a moderation request to the moderation step and answers 202 with what to follow. */
  const request = async (principal: Principal, channel: string, payload: unknown) => {
    const parsed = validate(ModerationRequestSchema, payload, 'moderation request');
    const envelope = createModerationRequest(parsed, {
      ...channelOfKey(channel),
      by: { id: `api:${principal.label}`, login: `api:${principal.label}`, role: principal.role === 'owner' ? 'broadcaster' : 'moderator' },
      via: 'api',
    });
    await ctx.publish(stepTopic(MODERATION_STEP), envelope);
    return { requested: true, envelopeId: envelope.id, correlationId: envelope.correlationId };
  };

  // moderation ---------------------------------------------------------------------------------------

  scope.get('/api/moderation/:channel/filters', async (req) => await getFilterSettings(store(), channelOf(req)));
  scope.put('/api/moderation/:channel/filters', async (req) => {
    moderator(req);
    return await updateFilterSettings(store(), channelOf(req), req.body);
  });
  scope.delete('/api/moderation/:channel/filters', async (req) => {
    moderator(req);
    return await resetFilterSettings(store(), channelOf(req));
  });

  scope.get('/api/moderation/log', async (req) => {
    const query = validate(LogQuery, req.query, 'query');
    return {
      items: await listLog(store(), {
        ...(query.channel ? { channel: parseChannelKey(query.channel) } : {}),
        ...(query.user ? { user: query.user } : {}),
        ...(query.limit ? { limit: query.limit } : {}),
      }),
    };
  });
  scope.get('/api/moderation/log/:id', async (req) => {
    const { id } = validate(IdParams, req.params, 'path');
    const entry = await getLogEntry(store(), id);
    if (!entry) throw new BitBratError('NOT_FOUND', `no moderation action ${id}`);
    return entry;
  });
  scope.post('/api/moderation/log/:id/undo', async (req, reply) => {
    const principal = moderator(req);
    const { id } = validate(IdParams, req.params, 'path');
    const entry = await getUndoableLogEntry(store(), id);
    return reply.status(202).send({
      ...(await request(principal, entry.channel, { action: 'undo', logId: id, reason: `undo by ${principal.label}` })),
      logId: id,
    });
  });
  scope.post('/api/moderation/:channel/actions', async (req, reply) => {
    const principal = moderator(req);
    const channel = channelOf(req);
    const payload = body(req) as { action?: unknown };
    if (payload.action === 'undo') throw new BitBratError('BAD_REQUEST', 'undo through POST /api/moderation/log/:id/undo');
    return reply.status(202).send(await request(principal, channel, payload));
  });

  // toolkit ------------------------------------------------------------------------------------------

  for (const [kind, records] of Object.entries(NAMED_RECORDS)) {
    scope.get(`/api/toolkit/:channel/${kind}`, async (req) => ({ items: await records.list(store(), channelOf(req)) }));
    scope.put(`/api/toolkit/:channel/${kind}/:name`, async (req) => {
      moderator(req);
      const { name } = validate(ChannelNameParams, req.params, 'path');
      return await records.save(store(), channelOf(req), { ...(body(req) as object), name });
    });
    scope.delete(`/api/toolkit/:channel/${kind}/:name`, async (req, reply) => {
      moderator(req);
      const { name } = validate(ChannelNameParams, req.params, 'path');
      if (!(await records.remove(store(), channelOf(req), name))) throw new BitBratError('NOT_FOUND', `no ${records.noun} ${name}`);
      return reply.status(204).send();
    });
  }

  scope.get('/api/toolkit/:channel/quotes', async (req) => ({ items: await listQuotes(store(), channelOf(req)) }));
  scope.post('/api/toolkit/:channel/quotes', async (req, reply) => {
    const principal = moderator(req);
    const input = validate(QuoteInputSchema, req.body, 'quote');
    return reply.status(201).send(
      await addQuote(store(), channelOf(req), {
        text: input.text,
        ...(input.game ? { game: input.game } : {}),
        addedBy: input.addedBy ?? `api:${principal.label}`,
      }),
    );
  });
  scope.get('/api/toolkit/:channel/quotes/:number', async (req) => {
    const { number } = validate(QuoteParams, req.params, 'path');
    const quote = await getQuote(store(), channelOf(req), number);
    if (!quote) throw new BitBratError('NOT_FOUND', `no quote #${number}`);
    return quote;
  });
  scope.delete('/api/toolkit/:channel/quotes/:number', async (req, reply) => {
    moderator(req);
    const { number } = validate(QuoteParams, req.params, 'path');
    if (!(await deleteQuote(store(), channelOf(req), number))) throw new BitBratError('NOT_FOUND', `no quote #${number}`);
    return reply.status(204).send();
  });

  scope.get('/api/toolkit/:channel/giveaways', async (req) => ({ items: await listGiveaways(store(), channelOf(req)) }));
  scope.get('/api/toolkit/:channel/giveaways/current', async (req) => {
    const giveaway = await currentGiveaway(store(), channelOf(req));
    if (!giveaway) throw new BitBratError('NOT_FOUND', 'no giveaway yet in this channel');
    return { ...giveaway, entries: await listEntries(store(), giveaway) };
  });
  scope.post('/api/toolkit/:channel/giveaways', async (req, reply) => {
    const principal = moderator(req);
    return reply.status(201).send(await startGiveaway(store(), channelOf(req), body(req), `api:${principal.label}`));
  });
  scope.post('/api/toolkit/:channel/giveaways/draw', async (req) => {
    moderator(req);
    return await drawGiveaway(store(), channelOf(req));
  });
  scope.post('/api/toolkit/:channel/giveaways/cancel', async (req) => {
    moderator(req);
    return await cancelGiveaway(store(), channelOf(req));
  });
}
