/**
 * The one place a Twurple ApiClient is made. With tracing on, every call the client makes is a client
 * span `twitch.<api> <METHOD> /<path>` (`twitch.helix GET /streams`, `twitch.helix POST
 * /eventsub/subscriptions`): the child of the current message's span, or a root span for calls made
 * outside a message (start-up lookups, EventSub subscriptions, the stream poll). Every Twurple endpoint
 * goes through the client's public `callApi`, and so do the clients `asUser`, `asIntent` and
 * `withoutUser` hand out, so wrapping `callApi` here covers every Helix call, including ones added
 * later. Twurple is pinned to an exact version; test/platforms/twitch-helix.int.test.ts fails if this
 * stops holding.
 */
import { ApiClient, type ApiReportedRequest, type BaseApiClient } from '@twurple/api';
import type { AuthProvider } from '@twurple/auth';
import { twurpleMockApiPort } from '../../runtime/config.js';
import { httpClientAttributes, tracedCall, type RuntimeSpan, type Tracing } from '../../runtime/tracing.js';
import { safeTwitchErrorMessage } from './token-store.js';

type CallOptions = Parameters<BaseApiClient['callApi']>[0];

export interface HelixClientOptions {
  authProvider: AuthProvider;
  /** The host's tracer (`ServiceContext.tracing`); without it the client is Twurple's own, untouched. */
  tracing?: Tracing;
}

/** A Twurple ApiClient; with `tracing`, each of its calls is a span. */
export function createHelixClient(options: HelixClientOptions): ApiClient {
  const api = new ApiClient({ authProvider: options.authProvider });
  const { tracing } = options;
  if (!tracing) return api;
  instrument(api, tracing);
  // The per-user clients share the config and rate limiter but are new objects: instrument each.
  const asUser = api.asUser.bind(api);
  const asIntent = api.asIntent.bind(api);
  const withoutUser = api.withoutUser.bind(api);
  api.asUser = (user, runner) => asUser(user, (ctx) => runner(instrument(ctx, tracing)));
  api.asIntent = (intents, runner) => asIntent(intents, (ctx) => runner(instrument(ctx, tracing)));
  api.withoutUser = (runner) => withoutUser((ctx) => runner(instrument(ctx, tracing)));
  return api;
}

/** The URL Twurple calls for `options` (as @twurple/api-call builds it, mock API included), without the query. */
export function twurpleUrl(options: Pick<CallOptions, 'url' | 'type'>): string {
  const type = options.type ?? 'helix';
  if (type === 'custom') return options.url;
  const path = options.url.replace(/^\//, '');
  const mock = twurpleMockApiPort();
  if (type === 'auth') return mock ? `http://localhost:${mock}/auth/${path}` : `https://id.twitch.tv/oauth2/${path}`;
  if (!mock) return `https://api.twitch.tv/helix/${path}`;
  return path === 'eventsub/subscriptions' ? `http://localhost:${mock}/${path}` : `http://localhost:${mock}/mock/${path}`;
}

/** The span name of a call: `twitch.helix GET /users`. Twurple's paths hold no ids (those go in the query). */
export function helixSpanName(options: Pick<CallOptions, 'url' | 'type' | 'method'>): string {
  const type = options.type ?? 'helix';
  const path = type === 'custom' ? safePath(options.url) : `/${options.url.replace(/^\//, '').split('?')[0]}`;
  return `twitch.${type} ${options.method ?? 'GET'} ${path}`;
}

const safePath = (url: string) => {
  try {
    return new URL(url).pathname;
  } catch {
    return url.split('?')[0]!;
  }
};

/** The HTTP status of a Twurple HttpStatusCodeError (read by shape: @twurple/api-call is not a direct dependency). */
const statusOf = (error: unknown): number | undefined => {
  const code = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof code === 'number' ? code : undefined;
};

/** A failed call: `error.type` is Twitch's status code (OpenTelemetry's HTTP convention) or the error's class. */
const describeError = (error: unknown) => ({
  type: String(statusOf(error) ?? (error instanceof Error ? error.name : 'Error')),
  message: safeTwitchErrorMessage(error),
});

function instrument<C extends BaseApiClient>(client: C, tracing: Tracing): C {
  // Twurple reports each finished request with the options object it was given: its status and the user whose token it used.
  const reports = new WeakMap<object, ApiReportedRequest>();
  client.onRequest((request) => reports.set(request.options, request));
  const callApi = client.callApi.bind(client);
  const finish = (span: RuntimeSpan | undefined, options: CallOptions, error?: unknown) => {
    const report = reports.get(options);
    span?.setAttributes({
      'http.response.status_code': statusOf(error) ?? report?.httpStatus,
      'bitbrat.twitch.token_user_id': report?.resolvedUserId ?? undefined,
    });
  };
  client.callApi = <T>(options: CallOptions): Promise<T> =>
    tracedCall(
      tracing,
      helixSpanName(options),
      {
        attributes: () => ({
          ...httpClientAttributes(options.method ?? 'GET', twurpleUrl(options)),
          'bitbrat.platform': 'twitch',
          'bitbrat.twitch.api': options.type ?? 'helix',
        }),
        describeError,
      },
      async (span) => {
        try {
          const result = await callApi<T>(options);
          finish(span, options);
          return result;
        } catch (error) {
          finish(span, options, error);
          throw error;
        }
      },
    );
  return client;
}
