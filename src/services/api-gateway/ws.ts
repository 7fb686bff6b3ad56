/**
 * The chat WebSocket (`/ws/v1`): clients send chat frames that enter the pipeline like any platform's
 * chat, and get the bot's replies on the same socket.
 *
 * Client frames:  {type:'auth', token} · {type:'chat', id?, text, user?: {name, role?}, channel?} · {type:'ping', id?}
 * Server frames:  {type:'ready', role, connectionId} · {type:'ack', id, envelopeId, role}
 *                 {type:'reply', inReplyTo, text, envelopeId} · {type:'noreply', inReplyTo, envelopeId, outcome, code, reason}
 *                 {type:'error', code, message, inReplyTo?} · {type:'pong', id?}
 *
 * Limits: a frame over 8 KiB, non-JSON, binary or failing the schema gets an error frame and the
 * connection stays open (frames over 256 KiB are cut off by the WebSocket layer with close 1009). Each
 * connection may send 20 frames/s (burst 40); more get RATE_LIMITED error frames. A client that does not
 * read (more than 1 MiB waiting in its send buffer) is closed with 1013 "try again later" rather than
 * letting memory grow: replies are small, so only a stuck client gets there.
 * Authentication: a token in `Authorization: Bearer` or `?token=` is checked before the upgrade (a bad
 * one is refused with HTTP 401). Without one, the first frame must be `auth` within 10 s, else an
 * UNAUTHORIZED error frame and close 4401 (unless anonymous viewers are allowed).
 * Caps: at most 200 connections in all and 20 per token (or per address for anonymous viewers); one more
 * gets a RATE_LIMITED error frame and close 1013. 300 sockets on one token once pushed reply p99 to 7 s.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import type { WebSocket } from 'ws';
import { z } from 'zod';
import {
  EventType,
  Topic,
  createEnvelope,
  instanceEgressTopic,
  newId,
  noReplyReason,
  replyDeadline,
  textReplies,
  type Delivery,
  type Envelope,
} from '../../core/index.js';
import type { Logger } from '../../runtime/logger.js';
import { CLAIMABLE_ROLES, effectiveChatRole, type Authenticator, type Principal } from './auth.js';
import { capKey, createConnectionCaps } from './caps.js';

export const WS_LIMITS = {
  maxFrameBytes: 8 * 1024,
  /** Hard cap enforced by the WebSocket layer (close 1009); above maxFrameBytes so big frames get a friendly error. */
  maxPayloadBytes: 256 * 1024,
  maxBufferedBytes: 1024 * 1024,
  authTimeoutMs: 10_000,
  ratePerSec: 20,
  rateBurst: 40,
  /** How long a sent message waits for its reply before it is forgotten. */
  pendingTtlMs: 10 * 60_000,
  /** Open chat connections at once, all clients together (default of API_GATEWAY_WS_MAX_CONNECTIONS). */
  maxConnections: 200,
  /** Open chat connections per token, or per address for anonymous viewers (API_GATEWAY_WS_MAX_PER_TOKEN). */
  maxPerToken: 20,
} as const;

export const CloseCode = { unauthorized: 4401, tryAgainLater: 1013, goingAway: 1001 } as const;

const NAME_RE = /^[\p{L}\p{N}_.-]{1,64}$/u;

const ChatFrameSchema = z.object({
  type: z.literal('chat'),
  id: z.string().min(1).max(100).optional(),
  text: z.string().trim().min(1, 'text must not be empty').max(500, 'text is limited to 500 characters'),
  user: z
    .object({
      name: z.string().trim().regex(NAME_RE, 'user.name is 1–64 letters, digits, _ . -'),
      role: z
        .enum(CLAIMABLE_ROLES as [string, ...string[]], { error: `user.role must be one of ${CLAIMABLE_ROLES.join(', ')}` })
        .optional(),
    })
    .optional(),
  channel: z.string().trim().regex(NAME_RE, 'channel is 1–64 letters, digits, _ . -').optional(),
});

const ClientFrameSchema = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('auth'), token: z.string().min(1).max(512) }),
    ChatFrameSchema,
    z.object({ type: z.literal('ping'), id: z.string().max(100).optional() }),
  ],
  { error: 'type must be one of auth, chat, ping' },
);

export type ChatFrame = z.infer<typeof ChatFrameSchema>;

interface Connection {
  id: string;
  socket: WebSocket;
  principal?: Principal;
  /** The client's address: anonymous viewers are capped per address. */
  address: string;
  /** Frees this connection's slot under its token's cap. */
  release?: () => void;
  tokens: number;
  refilledAt: number;
  authTimer?: NodeJS.Timeout;
}

interface Pending {
  connection: Connection;
  messageId: string;
  at: number;
}

export interface ChatGatewayOptions {
  instanceId: string;
  /** Connection caps; defaults from WS_LIMITS. */
  limits?: { maxConnections?: number; maxPerToken?: number };
  authenticator: () => Authenticator;
  publish(topic: string, envelope: Envelope): Promise<void>;
  logger: Logger;
}

export interface ChatGatewayStats {
  clients: number;
  messagesIn: number;
  messagesOut: number;
  errors: number;
  lastMessageAt?: string;
}

export interface ChatGateway {
  /** Takes over an upgraded socket; `principal` when the upgrade request was already authenticated. */
  accept(socket: WebSocket, principal: Principal | undefined, address?: string): void;
  /** Delivers an egress envelope's replies to the socket that sent it; returns the envelope with `delivery` set. */
  deliver(envelope: Envelope): Envelope;
  stats(): ChatGatewayStats;
  close(): void;
}

const problems = (error: z.ZodError) => error.issues.map((issue) => `${issue.path.join('.') || 'frame'}: ${issue.message}`).join('; ');

export function createChatGateway(options: ChatGatewayOptions): ChatGateway {
  const connections = new Set<Connection>();
  const maxConnections = options.limits?.maxConnections ?? WS_LIMITS.maxConnections;
  const caps = createConnectionCaps({
    max: maxConnections,
    perKey: options.limits?.maxPerToken ?? WS_LIMITS.maxPerToken,
    what: 'chat connections',
  });
  const pending = new Map<string, Pending>();
  const counters = { messagesIn: 0, messagesOut: 0, errors: 0, lastMessageAt: undefined as string | undefined };
  const egressTopic = instanceEgressTopic(options.instanceId);

  const sweeper = setInterval(() => {
    const cutoff = Date.now() - WS_LIMITS.pendingTtlMs;
    for (const [key, entry] of pending) if (entry.at < cutoff) pending.delete(key);
  }, 60_000);
  sweeper.unref();

  /** Sends a frame unless the client is closed or not reading; a stuck client is closed with 1013. */
  const send = (connection: Connection, frame: Record<string, unknown>): boolean => {
    const socket = connection.socket;
    if (socket.readyState !== socket.OPEN) return false;
    if (socket.bufferedAmount > WS_LIMITS.maxBufferedBytes) {
      options.logger.warn(
        { connectionId: connection.id, bufferedBytes: socket.bufferedAmount },
        'websocket client is not reading; closing it',
      );
      socket.close(CloseCode.tryAgainLater, 'client too slow');
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  };

  const sendError = (connection: Connection, code: string, message: string, inReplyTo?: string) => {
    counters.errors += 1;
    send(connection, { type: 'error', code, message, ...(inReplyTo ? { inReplyTo } : {}) });
  };

  /** Refuses a connection over a cap: an error frame, then 1013 "try again later". */
  const overCap = (socket: WebSocket, reason: string) => {
    counters.errors += 1;
    options.logger.warn({ reason }, 'websocket connection refused');
    socket.send(JSON.stringify({ type: 'error', code: 'RATE_LIMITED', message: reason }));
    socket.close(CloseCode.tryAgainLater, 'too many connections');
  };

  const authenticated = (connection: Connection, principal: Principal) => {
    connection.release?.();
    const slot = caps.acquire(capKey(principal, connection.address));
    if (!slot.ok) return overCap(connection.socket, slot.reason);
    connection.release = slot.release;
    connection.principal = principal;
    if (connection.authTimer) clearTimeout(connection.authTimer);
    connection.authTimer = undefined;
    send(connection, { type: 'ready', role: principal.role, connectionId: connection.id });
  };

  const refuse = (connection: Connection, message: string) => {
    sendError(connection, 'UNAUTHORIZED', message);
    connection.socket.close(CloseCode.unauthorized, 'unauthorized');
  };

  /** Token bucket per connection. */
  const allow = (connection: Connection): boolean => {
    const now = Date.now();
    connection.tokens = Math.min(WS_LIMITS.rateBurst, connection.tokens + ((now - connection.refilledAt) / 1000) * WS_LIMITS.ratePerSec);
    connection.refilledAt = now;
    if (connection.tokens < 1) return false;
    connection.tokens -= 1;
    return true;
  };

  const chat = async (connection: Connection, frame: ChatFrame) => {
    const principal = connection.principal!;
    const messageId = frame.id ?? newId();
    const role = effectiveChatRole(frame.user?.role, principal);
    const name = frame.user?.name ?? (principal.anonymous ? 'anonymous' : 'console');
    const channel = frame.channel ?? 'console';
    const envelope = createEnvelope({
      type: EventType.chatMessage,
      source: { platform: 'api', channel, channelId: channel, egressDestination: egressTopic },
      user: { id: name.toLowerCase(), name: name.toLowerCase(), displayName: name, profileImageUrl: '', role },
      // auth believes `trustedRole` only from platform `api`, and the gateway has already capped it.
      payload: { text: frame.text, trustedRole: role, connectionId: connection.id, client: principal.label },
      // The console waits for an answer: a slip that ends without one still comes back here as `noreply` (R2).
      extra: { message: { id: messageId, text: frame.text }, qos: { reportEnding: true } },
    });
    // Registered before publishing: the reply can come back before publish() resolves.
    pending.set(envelope.id, { connection, messageId, at: Date.now() });
    try {
      await options.publish(Topic.ingress, envelope);
    } catch (error) {
      pending.delete(envelope.id);
      options.logger.error({ err: error, connectionId: connection.id }, 'could not publish a console chat message');
      sendError(connection, 'PUBLISH_FAILED', 'the message could not be published; try again', messageId);
      return;
    }
    counters.messagesIn += 1;
    counters.lastMessageAt = new Date().toISOString();
    send(connection, { type: 'ack', id: messageId, envelopeId: envelope.id, role });
  };

  const onMessage = async (connection: Connection, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    const size = Array.isArray(data) ? data.reduce((sum, part) => sum + part.length, 0) : data.byteLength;
    if (!allow(connection)) return sendError(connection, 'RATE_LIMITED', `at most ${WS_LIMITS.ratePerSec} frames per second`);
    if (isBinary) return sendError(connection, 'BAD_REQUEST', 'frames must be JSON text, not binary');
    if (size > WS_LIMITS.maxFrameBytes)
      return sendError(connection, 'BAD_REQUEST', `the frame is ${size} bytes; the limit is ${WS_LIMITS.maxFrameBytes}`);
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return sendError(connection, 'BAD_REQUEST', 'the frame is not valid JSON');
    }
    const parsed = ClientFrameSchema.safeParse(json);
    const clientId =
      json && typeof json === 'object' && typeof (json as { id?: unknown }).id === 'string'
        ? (json as { id: string }).id.slice(0, 100)
        : undefined;
    if (!parsed.success) return sendError(connection, 'BAD_REQUEST', problems(parsed.error), clientId);
    const frame = parsed.data;
    if (frame.type === 'auth') {
      const result = options.authenticator().authenticate(frame.token);
      if (!result.ok) return refuse(connection, result.message);
      return authenticated(connection, result.principal);
    }
    if (!connection.principal) return refuse(connection, 'authenticate first: send {"type":"auth","token":"…"} or connect with a token');
    if (frame.type === 'ping') return void send(connection, { type: 'pong', ...(frame.id ? { id: frame.id } : {}) });
    await chat(connection, frame);
  };

  return {
    accept(socket, principal, address = 'unknown') {
      // Not yet authenticated sockets count too, so the cap also bounds those waiting for an auth frame.
      if (connections.size >= maxConnections)
        return overCap(socket, `the server holds its maximum of ${maxConnections} chat connections; try again later`);
      const connection: Connection = { id: newId(), socket, address, tokens: WS_LIMITS.rateBurst, refilledAt: Date.now() };
      connections.add(connection);
      socket.on('message', (data, isBinary) => {
        onMessage(connection, data as Buffer, isBinary).catch((error) => {
          options.logger.error({ err: error, connectionId: connection.id }, 'websocket frame handling failed');
          sendError(connection, 'INTERNAL', 'the frame could not be handled');
        });
      });
      socket.on('close', () => {
        connections.delete(connection);
        connection.release?.();
        if (connection.authTimer) clearTimeout(connection.authTimer);
        for (const [key, entry] of pending) if (entry.connection === connection) pending.delete(key);
      });
      socket.on('error', (error) => options.logger.debug({ err: error, connectionId: connection.id }, 'websocket error'));
      if (principal) return authenticated(connection, principal);
      const anonymous = options.authenticator().authenticate(undefined);
      if (anonymous.ok) return authenticated(connection, anonymous.principal);
      connection.authTimer = setTimeout(
        () => refuse(connection, `no auth frame within ${WS_LIMITS.authTimeoutMs / 1000} s`),
        WS_LIMITS.authTimeoutMs,
      );
      connection.authTimer.unref();
    },

    deliver(envelope) {
      const at = new Date().toISOString();
      const entry = pending.get(envelope.id) ?? pending.get(envelope.correlationId);
      const destination = entry ? `api-gateway:${options.instanceId}:${entry.connection.id}` : `api-gateway:${options.instanceId}`;
      const done = (delivery: { delivered: boolean; reason?: string }): Envelope => ({
        ...envelope,
        delivery: { ...delivery, at, destination } satisfies Delivery,
      });
      if (!entry || entry.connection.socket.readyState !== entry.connection.socket.OPEN) {
        return done({ delivered: false, reason: 'CLIENT_GONE' });
      }
      pending.delete(envelope.id);
      pending.delete(envelope.correlationId);
      const deadline = replyDeadline(envelope);
      if (deadline !== undefined && Date.now() > deadline) {
        send(entry.connection, { type: 'error', code: 'DEADLINE', message: 'the reply missed its deadline', inReplyTo: entry.messageId });
        return done({ delivered: false, reason: 'DEADLINE' });
      }
      const replies = textReplies(envelope);
      if (replies.length === 0) {
        const ending = noReplyReason(envelope);
        send(entry.connection, {
          type: 'noreply',
          inReplyTo: entry.messageId,
          envelopeId: envelope.id,
          outcome: envelope.outcome ?? 'completed',
          code: ending.code,
          reason: ending.reason,
        });
        return done({ delivered: false, reason: 'NO_REPLY' });
      }
      let sent = 0;
      for (const reply of replies) {
        if (
          send(entry.connection, {
            type: 'reply',
            inReplyTo: entry.messageId,
            text: reply.text,
            envelopeId: envelope.id,
            candidateId: reply.id,
          })
        )
          sent += 1;
      }
      counters.messagesOut += sent;
      if (sent === 0)
        return done({
          delivered: false,
          reason: entry.connection.socket.readyState === entry.connection.socket.OPEN ? 'SEND_FAILED' : 'CLIENT_SLOW',
        });
      return done({ delivered: true });
    },

    stats: () => ({ clients: connections.size, ...counters }),

    close() {
      clearInterval(sweeper);
      for (const connection of connections) {
        if (connection.authTimer) clearTimeout(connection.authTimer);
        connection.socket.close(CloseCode.goingAway, 'server shutting down');
      }
      connections.clear();
      pending.clear();
    },
  };
}
