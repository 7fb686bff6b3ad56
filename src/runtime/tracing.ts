/**
 * The runtime's view of tracing: a small interface the slip engine and the connectors call, and the
 * span of the message being handled (AsyncLocalStorage). The OpenTelemetry SDK lives behind it in
 * otel.ts and is imported only when an OTLP endpoint is configured: with tracing off nothing of it is
 * loaded and every call site is one `undefined` check.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { TracingConfig } from './tracing-config.js';

/** Attribute values a span takes; undefined ones are left out. */
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

/** What kind of work a span stands for (OpenTelemetry's SpanKind). */
export type SpanKind = 'internal' | 'client' | 'producer' | 'consumer';

/** A span the runtime started. `end` is called exactly once. */
export interface RuntimeSpan {
  /** 32 lower-case hex characters. */
  readonly traceId: string;
  /** 16 lower-case hex characters. */
  readonly spanId: string;
  /** The W3C `traceparent` naming this span as the parent (what is published with a message). */
  readonly traceparent: string;
  setAttributes(attributes: SpanAttributes): void;
  /** Names the span once what it does is known (the step, after the guard). */
  rename(name: string): void;
  /** Marks the span as failed with a stable error code. */
  fail(code: string, message?: string): void;
  /**
   * Records an `exception` event: the error's class as `exception.type`, `message` (default the error's
   * message) as `exception.message`, and the stack's frames. The message is what the caller chose to
   * show; the error's own message is not copied from the stack.
   */
  recordException(error: unknown, message?: string): void;
  end(): void;
}

export interface StartSpanOptions {
  kind?: SpanKind;
  /** The parent: a span of this process, or a W3C `traceparent` from a message's headers. */
  parent?: RuntimeSpan | string;
  /** Without a usable parent: the trace id the new root span takes (an envelope's traceId). */
  traceId?: string;
  attributes?: SpanAttributes;
}

/** A tracer provider of one host. */
export interface Tracing {
  startSpan(name: string, options?: StartSpanOptions): RuntimeSpan;
  /** Exports every span ended so far. */
  flush(): Promise<void>;
  /** Flushes, then stops exporting. */
  shutdown(): Promise<void>;
}

interface Active {
  readonly tracing: Tracing;
  readonly span: RuntimeSpan;
}

const activeSpan = new AsyncLocalStorage<Active>();

/** Runs `fn` with `span` as the current span: spans started inside it (`traced`) are its children. */
export function runInSpan<T>(tracing: Tracing, span: RuntimeSpan, fn: () => T): T {
  return activeSpan.run({ tracing, span }, fn);
}

/** The span of the message this code runs for, if it is traced. */
export function currentSpan(): RuntimeSpan | undefined {
  return activeSpan.getStore()?.span;
}

/** The tracer of the message this code runs for, if it is traced. */
export function currentTracing(): Tracing | undefined {
  return activeSpan.getStore()?.tracing;
}

const isThenable = (value: unknown): value is PromiseLike<unknown> => typeof (value as { then?: unknown } | null)?.then === 'function';

/** The stable code of an error (BitBratError, SendError, …) or its class name. */
function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code) return code;
  return error instanceof Error ? error.name : 'ERROR';
}

const describeByDefault = (error: unknown) => ({
  type: errorCode(error),
  message: error instanceof Error ? error.message : String(error),
});

/** How `tracedCall` makes its span. */
export interface TracedCallOptions {
  /** Default `client`: a call out to another system. */
  kind?: SpanKind;
  /** The span's attributes; a function is only called when a span is made, so building them costs nothing with tracing off. */
  attributes?: SpanAttributes | (() => SpanAttributes);
  /**
   * What a thrown or rejected error is recorded as: `error.type` and the status and exception message.
   * Default: the error's `code` (or class name) and its message. Keep tokens and personal data out.
   */
  describeError?: (error: unknown) => { type: string; message: string };
}

/** Runs `fn` in a new span under `parent` (or as a root), ends it, and records a failure on it. */
function runSpan<T>(
  tracing: Tracing,
  parent: RuntimeSpan | undefined,
  name: string,
  options: TracedCallOptions,
  fn: (span: RuntimeSpan | undefined) => T,
): T {
  const attributes = typeof options.attributes === 'function' ? options.attributes() : options.attributes;
  const span = tracing.startSpan(name, { kind: options.kind ?? 'client', ...(parent ? { parent } : {}), attributes });
  const failWith = (error: unknown) => {
    const { type, message } = (options.describeError ?? describeByDefault)(error);
    span.fail(type, message);
    span.recordException(error, message);
    span.end();
  };
  let result: T;
  try {
    result = activeSpan.run({ tracing, span }, () => fn(span));
  } catch (error) {
    failWith(error);
    throw error;
  }
  if (!isThenable(result)) {
    span.end();
    return result;
  }
  return Promise.resolve(result).then(
    (value) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      failWith(error);
      throw error;
    },
  ) as T;
}

/**
 * Runs `fn` as a child span of the current message's span: a call out to Twitch, the LLM or the store.
 * Outside a traced message (tracing off, or code not running for a message) it only calls `fn`.
 * A synchronous `fn` stays synchronous.
 */
export function traced<T>(name: string, attributes: SpanAttributes, fn: (span: RuntimeSpan | undefined) => T): T {
  const active = activeSpan.getStore();
  if (!active) return fn(undefined);
  return runSpan(active.tracing, active.span, name, { attributes }, fn);
}

/**
 * Runs `fn` as a span for a connector's call to its platform's API, made for a message or not: the child
 * of the current message's span when there is one, else a new root span on `tracing` (the host's tracer,
 * `ServiceContext.tracing`), so start-up lookups, subscriptions and polls are traced too. With tracing off
 * (`tracing` undefined and no message span) it only calls `fn`: no attributes are built and the result is
 * returned as is. A synchronous `fn` stays synchronous. Spans default to kind `client`.
 */
export function tracedCall<T>(
  tracing: Tracing | undefined,
  name: string,
  options: TracedCallOptions,
  fn: (span: RuntimeSpan | undefined) => T,
): T {
  const active = activeSpan.getStore();
  if (active) return runSpan(active.tracing, active.span, name, options, fn);
  if (!tracing) return fn(undefined);
  return runSpan(tracing, undefined, name, options, fn);
}

/**
 * The OpenTelemetry HTTP client attributes of a request to `url`: `http.request.method`, `server.address`,
 * `server.port` and `url.full` without the query string (it may name users). A `url` that does not parse
 * gives the method alone: describing a call never fails it.
 */
export function httpClientAttributes(method: string, url: string | URL): SpanAttributes {
  let parsed: URL;
  try {
    parsed = typeof url === 'string' ? new URL(url) : url;
  } catch {
    return { 'http.request.method': method.toUpperCase() };
  }
  const port = parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : parsed.protocol === 'http:' ? 80 : undefined;
  return {
    'http.request.method': method.toUpperCase(),
    'server.address': parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    'server.port': port,
    'url.full': `${parsed.origin}${parsed.pathname}`,
  };
}

/**
 * The host's tracer for `config`: undefined when tracing is off, without importing the SDK. `service`
 * names the process when OTEL_SERVICE_NAME does not.
 */
export async function createTracing(
  config: TracingConfig,
  defaults: { service: string; instanceId: string },
): Promise<Tracing | undefined> {
  if (!config.enabled) return undefined;
  const { createOtelTracing } = await import('./otel.js');
  return createOtelTracing(config, defaults);
}

/** Parses a W3C `traceparent` (version 00); undefined when it is not one or names an invalid id. */
export function parseTraceparent(value: string | undefined): { traceId: string; spanId: string; sampled: boolean } | undefined {
  if (!value) return undefined;
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value.trim());
  if (!match || match[1] === 'ff') return undefined;
  const [, , traceId, spanId, flags] = match;
  if (/^0+$/.test(traceId!) || /^0+$/.test(spanId!)) return undefined;
  return { traceId: traceId!, spanId: spanId!, sampled: (parseInt(flags!, 16) & 1) === 1 };
}
