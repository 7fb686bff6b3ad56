/**
 * Overlays for OBS browser sources, served on the gateway's HTTP port:
 *
 *   GET  /overlay/alerts?key=…   follow, sub, gift, cheer and raid alerts, queued and shown one at a time
 *   GET  /overlay/chat?key=…     a chat box
 *   GET  /overlay/feed?key=…     their server-sent events (`alert`, `chat`); EventSource reconnects by itself
 *   GET  /api/overlay            the key and ready-made URLs (moderator or owner token)
 *   POST /api/overlay/key        rotate the key (owner token); overlays using the old key are cut off
 *
 * The overlay key is read-only and separate from the API tokens: it only opens these pages and their
 * feed, so pasting it into OBS never hands out the owner token. It lives (encrypted) in the token store
 * as `overlay:key`, so every gateway instance accepts the same key and a rotation reaches all of them.
 * Like the dashboard's live feed, the feed polls the store (events recorded by persistence), which works
 * the same in every topology. Page options (text templates, sound, timings) are URL parameters, so each
 * browser source can be set up differently; see README "Overlays".
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Envelope } from '../../core/index.js';
import type { Logger } from '../../runtime/logger.js';
import type { EventRecord, Store } from '../../store/index.js';
import { hasApiRole, tokenFromRequest, type Authenticator } from './auth.js';
import { openSse } from './sse.js';

/** Token-store id of the overlay key. */
export const OVERLAY_KEY_ID = 'overlay:key';

/** One alert as the overlay page receives it; the page renders it with its text template. */
export interface OverlayAlert {
  id: string;
  kind: 'follow' | 'sub' | 'gift' | 'cheer' | 'raid';
  name: string;
  tier?: number;
  count?: number;
  bits?: number;
  viewers?: number;
  message?: string;
}

/** One chat line for the chat box. */
export interface OverlayChatLine {
  id: string;
  name: string;
  text: string;
  color?: string;
  platform: string;
}

type Payload = Record<string, unknown>;
const nameOf = (value: unknown): string | undefined => {
  if (!value || typeof value !== 'object') return undefined;
  const user = value as { name?: unknown; login?: unknown };
  return typeof user.name === 'string' && user.name ? user.name : typeof user.login === 'string' && user.login ? user.login : undefined;
};
const numberOf = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);

/** The alert an EventSub envelope shows, if any (a gifted sub is shown by its gift event, not twice). */
export function alertFromEnvelope(envelope: Envelope): OverlayAlert | undefined {
  const event = envelope.externalEvent;
  if (envelope.type !== 'twitch.eventsub.v1' || !event) return undefined;
  const payload = event.payload as Payload;
  const actor = nameOf(payload.user) ?? (envelope.user.displayName || envelope.user.name || 'Someone');
  /** Who gave (gifts, bits): Twitch marks an anonymous giver, whose name the alert must not show. */
  const giver = payload.isAnonymous === true ? 'Anonymous' : actor;
  switch (event.kind) {
    case 'channel.follow':
      return { id: envelope.id, kind: 'follow', name: actor };
    case 'channel.subscribe':
      if (payload.isGift === true) return undefined;
      return { id: envelope.id, kind: 'sub', name: actor, tier: numberOf(payload.tierLevel) ?? 1 };
    case 'channel.subscription.gift':
      return { id: envelope.id, kind: 'gift', name: giver, count: numberOf(payload.total) ?? 1, tier: numberOf(payload.tierLevel) ?? 1 };
    case 'channel.cheer':
      return {
        id: envelope.id,
        kind: 'cheer',
        name: giver,
        bits: numberOf(payload.bits) ?? 0,
        message: typeof payload.message === 'string' ? payload.message : '',
      };
    case 'channel.raid':
      return { id: envelope.id, kind: 'raid', name: nameOf(payload.fromBroadcaster) ?? actor, viewers: numberOf(payload.viewers) ?? 0 };
    default:
      return undefined;
  }
}

/** The chat-box line for a recorded chat message (the bot's own and empty lines included as they are). */
export function chatLineFromRecord(record: EventRecord): OverlayChatLine | undefined {
  if (record.type !== 'external.chat.message.v1' || !record.text) return undefined;
  const envelope = record.ingress?.envelope;
  const color =
    typeof envelope?.payload.color === 'string' && /^#[0-9a-f]{6}$/i.test(envelope.payload.color) ? envelope.payload.color : undefined;
  return {
    id: record.id,
    name: envelope?.user.displayName || record.userName || 'someone',
    text: record.text,
    platform: record.platform ?? '',
    ...(color ? { color } : {}),
  };
}

export interface OverlayOptions {
  store: () => Store;
  authenticator: () => Authenticator;
  /** How often the feed reads the store (ms). */
  pollMs: number;
  logger: Logger;
  /** Directory holding overlay.html/.js/.css. */
  publicDir: string;
}

export interface Overlays {
  stop(): void;
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
const sameKey = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

const OVERLAY_HEADERS = {
  // Sounds may come from anywhere the streamer points the page at; nothing else leaves the origin.
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' https: http: data:; connect-src 'self'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const WINDOW = 50;

/** Registers the overlay pages, their feed and the key API on `app`. */
export async function registerOverlays(app: FastifyInstance, options: OverlayOptions): Promise<Overlays> {
  const page = await readFile(path.join(options.publicDir, 'overlay.html'), 'utf8');
  const script = await readFile(path.join(options.publicDir, 'overlay.js'));
  const style = await readFile(path.join(options.publicDir, 'overlay.css'));
  const clients = new Set<{ key: string; kind: 'alerts' | 'chat'; send(event: string, data: unknown): void; end(): void }>();
  let timer: NodeJS.Timeout | undefined;
  let seen: Set<string> | undefined;
  let stopped = false;

  const currentKey = async (create: boolean): Promise<string | undefined> => {
    const stored = await options.store().getToken(OVERLAY_KEY_ID);
    if (stored || !create) return stored?.accessToken;
    return rotateKey();
  };
  const rotateKey = async (): Promise<string> => {
    const key = randomBytes(18).toString('base64url');
    await options
      .store()
      .putToken({ id: OVERLAY_KEY_ID, accessToken: key, scopes: ['overlay:read'], obtainedAt: new Date().toISOString() });
    return key;
  };
  const keyAccepted = async (presented: unknown): Promise<boolean> => {
    if (typeof presented !== 'string' || presented.length < 8) return false;
    const key = await currentKey(false);
    return !!key && sameKey(key, presented);
  };

  /** One poll: new alerts and chat lines to every client; the first poll only learns what exists. */
  const tick = async () => {
    const store = options.store();
    const [alerts, chat, key] = await Promise.all([
      store.listEvents({ type: 'twitch.eventsub.v1', limit: WINDOW }),
      store.listEvents({ type: 'external.chat.message.v1', limit: WINDOW }),
      currentKey(false),
    ]);
    // A rotated key cuts off the overlays still using the old one.
    for (const client of [...clients]) if (!key || !sameKey(key, client.key)) client.end();
    const first = !seen;
    const known = seen ?? new Set<string>();
    const fresh = [...alerts.items, ...chat.items].filter((record) => !known.has(record.id)).reverse();
    for (const record of fresh) known.add(record.id);
    if (known.size > WINDOW * 8) seen = new Set([...alerts.items, ...chat.items].map((record) => record.id));
    else seen = known;
    if (first) return;
    for (const record of fresh) {
      if (record.type === 'twitch.eventsub.v1') {
        const envelope = record.ingress?.envelope ?? record.final ?? (await store.getEvent(record.id))?.ingress?.envelope;
        const alert = envelope ? alertFromEnvelope(envelope) : undefined;
        if (alert) for (const client of clients) if (client.kind === 'alerts') client.send('alert', alert);
      } else {
        const line = chatLineFromRecord(record.ingress ? record : ((await store.getEvent(record.id)) ?? record));
        if (line) for (const client of clients) if (client.kind === 'chat') client.send('chat', line);
      }
    }
  };

  const schedule = () => {
    if (stopped || clients.size === 0) {
      timer = undefined;
      seen = undefined;
      return;
    }
    timer = setTimeout(() => {
      void tick()
        .catch((error: unknown) => options.logger.warn({ err: error }, 'overlay feed poll failed; will retry'))
        .finally(schedule);
    }, options.pollMs);
    timer.unref();
  };

  const refuse = (reply: FastifyReply) =>
    reply
      .status(401)
      .headers({ ...OVERLAY_HEADERS, 'content-type': 'text/plain; charset=utf-8' })
      .send('This overlay key is not valid (it may have been rotated). Copy the overlay URL again from GET /api/overlay.');

  await app.register(async (scope) => {
    for (const kind of ['alerts', 'chat'] as const) {
      scope.get(`/overlay/${kind}`, async (request, reply) => {
        if (!(await keyAccepted((request.query as Record<string, unknown>).key))) return refuse(reply);
        return reply.headers({ ...OVERLAY_HEADERS, 'content-type': 'text/html; charset=utf-8' }).send(page.replace('{{kind}}', kind));
      });
    }
    scope.get('/overlay/assets/overlay.js', async (_request, reply) =>
      reply.headers({ ...OVERLAY_HEADERS, 'content-type': 'text/javascript; charset=utf-8' }).send(script),
    );
    scope.get('/overlay/assets/overlay.css', async (_request, reply) =>
      reply.headers({ ...OVERLAY_HEADERS, 'content-type': 'text/css; charset=utf-8' }).send(style),
    );

    scope.get('/overlay/feed', async (request, reply) => {
      const query = request.query as Record<string, unknown>;
      const kind: 'alerts' | 'chat' | undefined = query.kind === 'chat' ? 'chat' : query.kind === 'alerts' ? 'alerts' : undefined;
      if (!kind) return reply.status(400).send({ error: 'BAD_REQUEST', message: 'kind must be alerts or chat' });
      if (!(await keyAccepted(query.key)))
        return reply.status(401).send({ error: 'UNAUTHORIZED', message: 'the overlay key is not valid' });
      const stream = openSse(reply, {
        maxBuffered: 256 * 1024,
        overflow: 'drop',
        // The page retries after 2 s when the platform restarts (EventSource does this by itself).
        retryMs: 2000,
        onEnd: () => clients.delete(client),
      });
      const client = { key: String(query.key), kind, send: stream.send, end: stream.end };
      // Learn what already happened before saying hello, so an event right after it is never taken for old.
      if (!seen) await tick().catch((error: unknown) => options.logger.warn({ err: error }, 'overlay feed baseline failed'));
      if (stream.closed) return;
      clients.add(client);
      client.send('hello', { kind });
      if (!timer) schedule();
    });

    const principal = (request: FastifyRequest) => options.authenticator().authenticate(tokenFromRequest(request.headers, request.query));
    const origin = (request: FastifyRequest) => `${request.protocol}://${request.headers.host ?? 'localhost'}`;
    const describe = (request: FastifyRequest, key: string) => ({
      key,
      urls: { alerts: `${origin(request)}/overlay/alerts?key=${key}`, chat: `${origin(request)}/overlay/chat?key=${key}` },
    });

    scope.get('/api/overlay', async (request, reply) => {
      const auth = principal(request);
      if (!auth.ok) return reply.status(401).send({ error: auth.code, message: auth.message });
      if (!hasApiRole(auth.principal, 'moderator'))
        return reply.status(403).send({ error: 'FORBIDDEN', message: 'the overlay key needs a moderator or owner token' });
      return describe(request, (await currentKey(true))!);
    });

    scope.post('/api/overlay/key', async (request, reply) => {
      const auth = principal(request);
      if (!auth.ok) return reply.status(401).send({ error: auth.code, message: auth.message });
      if (!hasApiRole(auth.principal, 'owner'))
        return reply.status(403).send({ error: 'FORBIDDEN', message: 'rotating the overlay key needs an owner token' });
      const key = await rotateKey();
      options.logger.info({ by: auth.principal.label }, 'overlay key rotated');
      for (const client of [...clients]) if (!sameKey(key, client.key)) client.end();
      return describe(request, key);
    });
  });

  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const client of [...clients]) client.end();
    },
  };
}
