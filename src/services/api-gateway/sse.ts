/**
 * A server-sent-events response, as the live-update stream and the overlay feed both serve one: the
 * reply is taken over from fastify, a comment line keeps proxies from closing an idle stream, and a
 * client that stops reading is not buffered for without bound.
 */
import type { FastifyReply } from 'fastify';

/** How often an idle stream gets a keep-alive comment. */
const HEARTBEAT_MS = 15_000;

export interface SseOptions {
  /** Bytes the client may leave unread before events stop being written. */
  maxBuffered: number;
  /** What happens past `maxBuffered`: drop the event (the client catches up later) or end the stream (it reconnects). */
  overflow: 'drop' | 'end';
  /** Tells `EventSource` how long to wait before reconnecting. */
  retryMs?: number;
  /** Called once when the stream ends, by `end()` or because the client went away. */
  onEnd?(): void;
}

/** An open event stream. */
export interface SseStream {
  /** Whether the stream has ended. */
  readonly closed: boolean;
  /** Sends one event (data as JSON), unless the stream has ended or the client is too far behind. */
  send(event: string, data: unknown): void;
  /** Ends the stream (once). */
  end(): void;
}

/** Takes over `reply` and answers 200 with an event stream. */
export function openSse(reply: FastifyReply, options: SseOptions): SseStream {
  reply.hijack();
  const response = reply.raw;
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let closed = false;
  const stream: SseStream = {
    get closed() {
      return closed;
    },
    send(event, data) {
      if (closed) return;
      if (response.writableLength > options.maxBuffered) {
        if (options.overflow === 'end') stream.end();
        return;
      }
      response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      options.onEnd?.();
      response.end();
    },
  };
  const heartbeat = setInterval(() => !closed && response.write(': keep-alive\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  // The response's 'close' fires when the client goes away (or we end it).
  response.on('close', () => stream.end());
  if (options.retryMs !== undefined) response.write(`retry: ${options.retryMs}\n\n`);
  return stream;
}
