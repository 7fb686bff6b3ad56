/**
 * The traced Helix client against the fake Twitch with the real Twurple and the real OpenTelemetry SDK,
 * exporting to the fake OTLP collector: every call is a client span named after its Helix path, a root
 * span outside a message and a child of the message's span inside one, with the HTTP attributes and
 * Twitch's status; a refusal is an error span with an exception event.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ApiClient } from '@twurple/api';
import { StaticAuthProvider } from '@twurple/auth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHelixClient } from '../../src/platforms/twitch/helix.js';
import { PROJECT_ROOT } from '../../src/runtime/manifest.js';
import { loadTracingConfig } from '../../src/runtime/tracing-config.js';
import { createTracing, runInSpan, tracedCall, type Tracing } from '../../src/runtime/tracing.js';
import { startFakeOtlpCollector, type FakeOtlpCollector, type ReceivedSpan } from '../fakes/otlp.js';
import { BOT, OTHER, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';
import { helixCallAttributes } from '../support/traces.js';

let world: TwitchWorld;
let collector: FakeOtlpCollector;
let tracing: Tracing;
let api: ApiClient;

beforeAll(async () => {
  world = await startTwitchWorld({ botScopes: ['chat:read', 'moderator:manage:chat_messages'] });
  world.api.addModerator(STREAMER.id, BOT.id);
  world.api.setStream(STREAMER.id, { title: 'Speedrun', gameName: 'Celeste' });
  collector = await startFakeOtlpCollector();
  tracing = (await createTracing(
    loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '20', OTEL_SERVICE_NAME: 'helix-test' }),
    { service: 'helix-test', instanceId: 'helix-1' },
  ))!;
  api = createHelixClient({
    authProvider: new StaticAuthProvider(world.api.clientId, world.bot.accessToken, ['chat:read', 'moderator:manage:chat_messages']),
    tracing,
  });
});
afterAll(async () => {
  await tracing?.shutdown();
  await collector?.close();
  await world?.stop();
});

/** The spans named `name` that arrived after the first `skip` of them. */
async function spansNamed(name: string, count = 1, skip = 0): Promise<ReceivedSpan[]> {
  const named = (all: readonly ReceivedSpan[]) => all.filter((span) => span.name === name).slice(skip);
  await tracing.flush();
  return named(await collector.waitFor((all) => named(all).length >= count, 10_000));
}

describe('the traced Helix client', () => {
  it('makes a call outside a message a root client span with the HTTP attributes and Twitch’s status', async () => {
    const users = await api.users.getUsersByNames([STREAMER.login]);
    expect(users.map((user) => user.id)).toEqual([STREAMER.id]);
    const [span] = await spansNamed('twitch.helix GET /users');
    expect(span).toMatchObject({ kind: 3, parentSpanId: '', status: { code: 0 } });
    expect(span!.attributes).toMatchObject({
      ...helixCallAttributes(world.api.port, '/users'),
      'bitbrat.twitch.api': 'helix',
      'bitbrat.twitch.token_user_id': BOT.id,
    });
    // The query (logins, ids) stays out of the span.
    expect(JSON.stringify(span!.attributes)).not.toContain(STREAMER.login);
    expect(span!.resource['service.name']).toBe('helix-test');
  });

  it('traces the calls of the clients asUser, asIntent and withoutUser hand out, and the EventSub endpoint', async () => {
    const before = collector.spans.filter((span) => span.name === 'twitch.helix GET /streams').length;
    const stream = await api.asUser(BOT.id, async (ctx) => await ctx.streams.getStreamByUserId(STREAMER.id));
    expect(stream?.title).toBe('Speedrun');
    await api.asIntent(['chat'], async (ctx) => await ctx.streams.getStreamByUserId(STREAMER.id));
    await api.withoutUser(async (ctx) => await ctx.streams.getStreamByUserId(STREAMER.id));
    const streams = await spansNamed('twitch.helix GET /streams', 3, before);
    expect(streams.map((span) => [span.kind, span.parentSpanId, span.attributes['http.response.status_code']])).toEqual([
      [3, '', 200],
      [3, '', 200],
      [3, '', 200],
    ]);

    await api.eventSub.getSubscriptions();
    const [listed] = await spansNamed('twitch.helix GET /eventsub/subscriptions');
    // Twurple's mock API serves EventSub without the /mock prefix; the span names the URL it called.
    expect(listed!.attributes['url.full']).toBe(`http://localhost:${world.api.port}/eventsub/subscriptions`);
  });

  it('makes a call made for a message a child of the message’s span, in its trace', async () => {
    const message = tracing.startSpan('moderation internal.moderation.v1', { kind: 'consumer' });
    await runInSpan(tracing, message, () =>
      api.asUser(BOT.id, async (ctx) => await ctx.moderation.deleteChatMessages(STREAMER.id, 'msg-in-trace')),
    );
    message.end();
    const [span] = await spansNamed('twitch.helix DELETE /moderation/chat');
    expect(span).toMatchObject({ traceId: message.traceId, parentSpanId: message.spanId, kind: 3, status: { code: 0 } });
    expect(span!.attributes['http.response.status_code']).toBe(204);
    expect(world.api.deletedMessages.map((deleted) => deleted.messageId)).toContain('msg-in-trace');
  });

  it('marks a refused call as an error with Twitch’s status and records the exception, without the request’s URL', async () => {
    const refused = await api
      .asUser(BOT.id, async (ctx) => await ctx.moderation.deleteChatMessages(OTHER.id, 'msg-refused'))
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect((refused as { statusCode?: number }).statusCode).toBe(403);
    const [span] = await spansNamed('twitch.helix DELETE /moderation/chat', 1, 1);
    expect(span!.status).toEqual({
      code: 2,
      message: '403: Twitch answered HTTP 403: The user in moderator_id is not one of the broadcaster’s moderators.',
    });
    expect(span!.attributes).toMatchObject({ 'error.type': '403', 'http.response.status_code': 403 });
    const exception = span!.events.find((event) => event.name === 'exception');
    expect(exception?.attributes).toMatchObject({
      'exception.type': 'HttpStatusCodeError',
      'exception.message': 'Twitch answered HTTP 403: The user in moderator_id is not one of the broadcaster’s moderators.',
    });
    // Twurple's own message quotes the URL with its query; none of it reaches the span.
    expect(JSON.stringify(span)).not.toContain('msg-refused');
  });

  it('records an exception’s stack frames under the message the caller chose, never the error’s own', async () => {
    expect(() =>
      tracedCall(
        tracing,
        'kick.api GET /public/v1/users',
        { describeError: () => ({ type: 'Error', message: 'Kick answered HTTP 500' }) },
        () => {
          throw new Error('https://api.kick.com/public/v1/users?id=secret-user');
        },
      ),
    ).toThrow('secret-user');
    const [span] = await spansNamed('kick.api GET /public/v1/users');
    const stack = String(span!.events.find((event) => event.name === 'exception')?.attributes['exception.stacktrace']);
    expect(stack).toMatch(/^Error: Kick answered HTTP 500\n\s+at /);
    expect(JSON.stringify(span)).not.toContain('secret-user');
  });

  it('is Twurple’s own client, untouched, without a tracer', () => {
    const plain = createHelixClient({ authProvider: new StaticAuthProvider(world.api.clientId, world.bot.accessToken) });
    expect(Object.hasOwn(plain, 'callApi')).toBe(false);
    expect(Object.hasOwn(plain, 'asUser')).toBe(false);
    expect(plain.callApi).toBe(ApiClient.prototype.callApi);
  });

  it('is the only place an ApiClient is made, so every Helix call of the platform is traced', () => {
    const files = (readdirSync(path.join(PROJECT_ROOT, 'src'), { recursive: true }) as string[]).filter((file) => file.endsWith('.ts'));
    const making = files.filter((file) => /new ApiClient\(/.test(readFileSync(path.join(PROJECT_ROOT, 'src', file), 'utf8')));
    expect(making.map((file) => file.split(path.sep).join('/'))).toEqual(['platforms/twitch/helix.ts']);
  });
});
