/**
 * The chat WebSocket's limits, on the gateway itself with a stand-in socket (no network): a client that
 * stops reading is closed with 1013, a connection that never authenticates is closed with 4401 after the
 * auth timeout, and shutdown closes every client with 1001.
 */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import { createReply, type Envelope } from '../../src/core/index.js';
import { createLogger, createSecretScrubber } from '../../src/runtime/logger.js';
import { createAuthenticator } from '../../src/services/api-gateway/auth.js';
import { CloseCode, WS_LIMITS, createChatGateway } from '../../src/services/api-gateway/ws.js';

/** Stands in for a `ws` socket whose peer never reads: everything sent stays in its send buffer. */
class StuckSocket extends EventEmitter {
  readonly OPEN = 1;
  readonly CLOSED = 3;
  readyState = 1;
  bufferedAmount = 0;
  readonly frames: Array<Record<string, any>> = [];
  closed?: { code: number; reason: string };

  send(data: string): void {
    this.frames.push(JSON.parse(data));
    this.bufferedAmount += Buffer.byteLength(data);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = { code, reason };
    this.readyState = this.CLOSED;
    this.emit('close', code, Buffer.from(reason));
  }

  /** A text frame from the client. */
  receive(frame: unknown): void {
    this.emit('message', Buffer.from(JSON.stringify(frame)), false);
  }
}

function gateway() {
  const published: Envelope[] = [];
  const logLines: string[] = [];
  const chat = createChatGateway({
    instanceId: 'gw-test',
    authenticator: () => createAuthenticator([{ token: 'owner-token-123', role: 'owner' }], false),
    publish: async (_topic, envelope) => void published.push(envelope),
    logger: createLogger({
      level: 'warn',
      scrubber: createSecretScrubber(),
      destination: { write: (line: string) => void logLines.push(line) },
    }),
  });
  return { chat, published, logLines };
}

const connect = (chat: ReturnType<typeof gateway>['chat']) => {
  const socket = new StuckSocket();
  chat.accept(socket as unknown as WebSocket, undefined);
  return socket;
};

afterEach(() => {
  vi.useRealTimers();
});

describe('the chat WebSocket limits', () => {
  it('closes a client that stops reading with 1013 once more than 1 MiB waits for it, and records the reply as undelivered', async () => {
    const { chat, published, logLines } = gateway();
    const socket = connect(chat);
    socket.receive({ type: 'auth', token: 'owner-token-123' });
    await vi.waitFor(() => expect(socket.frames.at(-1)).toMatchObject({ type: 'ready', role: 'owner' }));
    // Eight questions, answered with 200 KB each: the client reads none of it.
    for (let index = 0; index < 8; index += 1) socket.receive({ type: 'chat', id: `q${index}`, text: 'tell me a long story' });
    await vi.waitFor(() => expect(published).toHaveLength(8));
    const story = 'x'.repeat(200_000);

    const outcomes: Array<{ bufferedBefore: number; delivered: boolean; reason?: string }> = [];
    for (const envelope of published) {
      const bufferedBefore = socket.bufferedAmount;
      const { delivery } = chat.deliver({ ...envelope, candidates: [createReply('commands', story)] });
      outcomes.push({ bufferedBefore, delivered: delivery!.delivered, ...(delivery!.reason ? { reason: delivery!.reason } : {}) });
    }
    // Delivered while at most 1 MiB waited; the first reply over the limit closes the connection.
    const firstRefused = outcomes.findIndex((outcome) => !outcome.delivered);
    expect(firstRefused).toBeGreaterThan(0);
    expect(outcomes.slice(0, firstRefused).every((outcome) => outcome.bufferedBefore <= WS_LIMITS.maxBufferedBytes)).toBe(true);
    expect(outcomes[firstRefused]!.bufferedBefore).toBeGreaterThan(WS_LIMITS.maxBufferedBytes);
    expect(outcomes[firstRefused]!.reason).toBe('CLIENT_SLOW');
    expect(socket.closed).toEqual({ code: CloseCode.tryAgainLater, reason: 'client too slow' });
    expect(CloseCode.tryAgainLater).toBe(1013);
    // Later replies for the closed client are not sent, and are recorded as such.
    expect(outcomes.slice(firstRefused + 1).map((outcome) => outcome.reason)).toEqual(
      Array(outcomes.length - firstRefused - 1).fill('CLIENT_GONE'),
    );
    expect(socket.frames.filter((frame) => frame.type === 'reply')).toHaveLength(firstRefused);
    expect(chat.stats().clients).toBe(0);
    expect(logLines.some((line) => line.includes('websocket client is not reading; closing it'))).toBe(true);
    chat.close();
  });

  it('closes a connection that sends no auth frame within the auth timeout with UNAUTHORIZED and 4401', () => {
    vi.useFakeTimers();
    const { chat } = gateway();
    const silent = connect(chat);
    const authenticates = connect(chat);
    authenticates.receive({ type: 'auth', token: 'owner-token-123' });

    vi.advanceTimersByTime(WS_LIMITS.authTimeoutMs - 1);
    expect(silent.closed).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(silent.frames).toEqual([
      { type: 'error', code: 'UNAUTHORIZED', message: `no auth frame within ${WS_LIMITS.authTimeoutMs / 1000} s` },
    ]);
    expect(silent.closed).toEqual({ code: CloseCode.unauthorized, reason: 'unauthorized' });
    expect(CloseCode.unauthorized).toBe(4401);
    // The one that authenticated in time stays open.
    expect(authenticates.closed).toBeUndefined();
    expect(authenticates.frames.map((frame) => frame.type)).toEqual(['ready']);
    expect(chat.stats().clients).toBe(1);
    chat.close();
  });

  it('closes every client with 1001 on shutdown, including one still authenticating, whose timeout then never fires', () => {
    vi.useFakeTimers();
    const { chat } = gateway();
    const ready = connect(chat);
    ready.receive({ type: 'auth', token: 'owner-token-123' });
    const authenticating = connect(chat);

    chat.close();
    expect(ready.closed).toEqual({ code: CloseCode.goingAway, reason: 'server shutting down' });
    expect(authenticating.closed).toEqual({ code: CloseCode.goingAway, reason: 'server shutting down' });
    expect(CloseCode.goingAway).toBe(1001);
    vi.advanceTimersByTime(WS_LIMITS.authTimeoutMs * 2);
    expect(authenticating.frames).toEqual([]);
    expect(chat.stats().clients).toBe(0);
  });
});
