/**
 * The OBS service and connector against the fake obs-websocket 5 server (test/fakes/obs.ts) with the real
 * obs-websocket-js JSON client and a memory bus.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import OBSWebSocket, { EventSubscription } from 'obs-websocket-js/json';
import WebSocket from 'ws';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { createEnvelope, createStep, instanceEgressTopic, validateEnvelope, type Envelope } from '../../src/core/index.js';
import { obsActionAnnotation, type ObsAction } from '../../src/platforms/obs/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import service from '../../src/services/obs/index.js';
import { startFakeObs, type FakeObs } from '../fakes/obs.js';
import { collect, startTestHost } from '../support/harness.js';

const PASSWORD = 'obs-secret-password';
const INSTANCE = 'obs-test-1';
const encoder = new TextEncoder();

type Observed = Awaited<ReturnType<typeof collect>>;

async function startObsHost(bus: MemoryBus, env: Record<string, string>): Promise<Host> {
  return startTestHost({
    services: [service],
    bus,
    env: { INSTANCE_ID: INSTANCE, OBS_RECONNECT_INITIAL_MS: '50', OBS_RECONNECT_MAX_MS: '200', SOURCE_HEARTBEAT_MS: '60000', ...env },
    architecture: loadArchitecture(),
  });
}

async function debug(host: Host): Promise<any> {
  const response = await host.app.inject({ method: 'GET', url: '/_debug/obs' });
  expect(response.statusCode).toBe(200);
  return response.json();
}

/** An envelope carrying OBS actions with the `obs` step as its slip. */
function actionEnvelope(actions: ObsAction[], options: { reply?: boolean } = {}): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'api', channel: 'console', channelId: '' },
    routingSlip: [createStep('obs')],
    extra: { annotations: actions.map((action) => obsActionAnnotation('test', action, options)) },
  });
}

async function send(bus: MemoryBus, topic: string, envelope: Envelope): Promise<void> {
  await bus.publish(topic, encoder.encode(JSON.stringify(envelope)));
}

const statusOf = (observed: Observed, predicate: (payload: any) => boolean) =>
  observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.source.status' && predicate(value.payload));

describe('the OBS service connected to OBS', () => {
  let fake: FakeObs;
  let bus: MemoryBus;
  let host: Host;
  let observed: Observed;

  beforeAll(async () => {
    fake = await startFakeObs({ password: PASSWORD });
    fake.streaming = false;
    bus = createMemoryBus();
    observed = await collect(bus, ['internal.ingress.v1', 'internal.finalizer.v1', 'internal.deadletter.v1']);
    host = await startObsHost(bus, { OBS_WEBSOCKET_URL: fake.url, OBS_WEBSOCKET_PASSWORD: PASSWORD });
    await statusOf(observed, (payload) => payload.status === 'connected');
  });

  afterAll(async () => {
    await host?.stop();
    await bus?.close();
    await fake?.stop();
  });

  it('identifies with the salted challenge over the obswebsocket.json subprotocol, asking for RPC version 1', () => {
    expect(fake.identifies).toHaveLength(1);
    expect(fake.identifies[0]).toMatchObject({ rpcVersion: 1 });
    expect(typeof fake.identifies[0]!.authentication).toBe('string');
    expect(fake.identifiedSessions).toBe(1);
  });

  it('reads the program scene, the scenes and the stream and record state at connect into the obs:studio source', async () => {
    expect(fake.requestsOf('GetCurrentProgramScene')).toHaveLength(1);
    expect(fake.requestsOf('GetStreamStatus')).toHaveLength(1);
    expect(fake.requestsOf('GetRecordStatus')).toHaveLength(1);
    const status = (await statusOf(observed, (payload) => payload.status === 'connected')) as Envelope;
    expect(validateEnvelope(status).ok).toBe(true);
    expect(status.source.platform).toBe('obs');
    expect(status.payload).toMatchObject({
      sourceId: 'obs:studio',
      platform: 'obs',
      authStatus: 'valid',
      metadata: { programScene: 'Main', streaming: false, recording: false, scenes: ['Main', 'BRB', 'Ending'] },
    });
    expect(JSON.stringify(observed.received)).not.toContain(PASSWORD);
    const ready = await host.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json().components['obs.obs']).toMatchObject({ ready: true, configured: true });
  });

  it('keeps the source current from scene, stream and record events and publishes each event as obs.event.v1', async () => {
    fake.programScene = 'BRB';
    fake.emit('CurrentProgramSceneChanged', { sceneName: 'BRB', sceneUuid: 'uuid-BRB' });
    fake.emit('StreamStateChanged', { outputActive: true, outputState: 'OBS_WEBSOCKET_OUTPUT_STARTED' });
    fake.emit('RecordStateChanged', { outputActive: true, outputState: 'OBS_WEBSOCKET_OUTPUT_STARTED' });
    await statusOf(
      observed,
      (payload) => payload.metadata?.programScene === 'BRB' && payload.metadata?.streaming === true && payload.metadata?.recording === true,
    );
    const event = (await observed.waitFor(
      'internal.ingress.v1',
      (value) => value.type === 'obs.event.v1' && value.externalEvent?.kind === 'StreamStateChanged',
    )) as Envelope;
    expect(validateEnvelope(event).ok).toBe(true);
    expect(event.source).toMatchObject({ platform: 'obs', channel: 'studio', egressDestination: instanceEgressTopic(INSTANCE) });
    expect(event.externalEvent?.payload).toMatchObject({ outputActive: true });
    fake.emit('RecordStateChanged', { outputActive: false, outputState: 'OBS_WEBSOCKET_OUTPUT_STOPPED' });
    fake.emit('StreamStateChanged', { outputActive: false, outputState: 'OBS_WEBSOCKET_OUTPUT_STOPPED' });
    await statusOf(observed, (payload) => payload.metadata?.streaming === false && payload.metadata?.recording === false);
  });

  it('performs the actions an envelope carries on the obs step and records a result for each', async () => {
    fake.recording = false;
    const envelope = actionEnvelope([
      { action: 'switchScene', scene: 'main' },
      { action: 'showSource', source: 'Raid' },
      { action: 'hideSource', source: 'Webcam', scene: 'Main' },
      { action: 'setText', source: 'Now Playing', text: 'Lo-fi beats' },
      { action: 'startRecording' },
    ]);
    await send(bus, 'internal.obs.v1', envelope);
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === envelope.id)) as Envelope;
    const results = final.annotations!.filter((annotation) => annotation.kind === 'obs.result');
    expect(results.map((result) => result.value)).toEqual([true, true, true, true, true]);
    expect(final.routingSlip[0]).toMatchObject({ id: 'obs', status: 'OK' });
    expect(fake.programScene).toBe('Main');
    // Raid sits in the "Alerts" group: it is addressed through the group, not the scene.
    expect(fake.findItem('Alerts', 'Raid')?.enabled).toBe(true);
    expect(fake.requestsOf('SetSceneItemEnabled').map((request) => request.requestData)).toEqual([
      { sceneName: 'Alerts', sceneItemId: 3, sceneItemEnabled: true },
      { sceneName: 'Main', sceneItemId: 1, sceneItemEnabled: false },
    ]);
    expect(
      fake
        .requestsOf('GetSceneItemId')
        .some((request) => request.requestData.sceneName === 'Alerts' && request.requestData.sourceName === 'Raid'),
    ).toBe(true);
    expect(fake.inputs['Now Playing']!.settings.text).toBe('Lo-fi beats');
    expect(fake.recording).toBe(true);

    const stop = actionEnvelope([{ action: 'stopRecording' }]);
    await send(bus, 'internal.obs.v1', stop);
    await observed.waitFor('internal.finalizer.v1', (value) => value.id === stop.id);
    expect(fake.recording).toBe(false);
  });

  it('shows a source for a while and hides it again when durationMs has passed', async () => {
    fake.findItem('Alerts', 'Follow')!.enabled = false;
    const envelope = actionEnvelope([{ action: 'showSource', source: 'Follow', scene: 'Main', durationMs: 100 }]);
    await send(bus, 'internal.obs.v1', envelope);
    await fake.waitFor(() => fake.findItem('Alerts', 'Follow')!.enabled);
    await fake.waitFor(() => !fake.findItem('Alerts', 'Follow')!.enabled);
    const toggles = fake.requestsOf('SetSceneItemEnabled').filter((request) => request.requestData.sceneItemId === 4);
    expect(toggles.map((request) => request.requestData.sceneItemEnabled)).toEqual([true, false]);
  });

  it('answers an unknown scene with the list of scenes and records unknown sources and invalid actions as failed', async () => {
    const envelope = actionEnvelope([{ action: 'switchScene', scene: 'Nope' }], { reply: true });
    envelope.annotations!.push({ ...obsActionAnnotation('test', { action: 'showSource', source: 'Ghost', scene: 'Main' }) });
    envelope.annotations!.push({
      id: 'bad-1',
      kind: 'obs.action',
      source: 'test',
      createdAt: new Date().toISOString(),
      payload: { action: 'explode', actionId: 'bad-1' },
    });
    const before = fake.requestsOf('SetCurrentProgramScene').length;
    await send(bus, 'internal.obs.v1', envelope);
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === envelope.id)) as Envelope;
    const results = final.annotations!.filter((annotation) => annotation.kind === 'obs.result');
    expect(results.map((result) => result.label)).toEqual(['UNKNOWN_SCENE', 'UNKNOWN_SOURCE', 'INVALID_ACTION']);
    expect(final.candidates?.[0]?.text).toBe('OBS: there is no scene "Nope". Scenes: Main, BRB, Ending');
    expect(fake.requestsOf('SetCurrentProgramScene').length).toBe(before);
  });

  it('is the egress for envelopes of platform obs: a rule reacting to an OBS event can change OBS', async () => {
    const envelope = createEnvelope({
      type: 'obs.event.v1',
      source: { platform: 'obs', channel: 'studio', channelId: '', egressDestination: instanceEgressTopic(INSTANCE) },
      extra: { annotations: [obsActionAnnotation('rule', { action: 'setText', source: 'BRB Text', text: 'Back soon' })] },
    });
    await send(bus, instanceEgressTopic(INSTANCE), envelope);
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === envelope.id)) as Envelope;
    expect(final.annotations!.find((annotation) => annotation.kind === 'obs.result')?.value).toBe(true);
    expect(fake.inputs['BRB Text']!.settings.text).toBe('Back soon');
  });

  it('reconnects by itself after OBS restarts and reads the state again', async () => {
    const identifies = fake.identifies.length;
    await fake.stop();
    await statusOf(observed, (payload) => payload.status === 'disconnected');
    fake.programScene = 'Ending';
    await fake.start();
    await fake.waitFor(() => fake.identifiedSessions === 1);
    const status = (await statusOf(
      observed,
      (payload) => payload.status === 'connected' && payload.metadata?.programScene === 'Ending',
    )) as Envelope;
    expect(fake.identifies.length).toBe(identifies + 1);
    expect(status.payload.metrics).toMatchObject({ reconnects: expect.any(Number) });
    expect((status.payload.metrics as { reconnects: number; errors: number }).reconnects).toBeGreaterThan(0);
    expect((status.payload.metrics as { errors: number }).errors).toBeGreaterThan(0);
  });
});

describe('the OBS service when OBS refuses it', () => {
  let bus: MemoryBus;
  let host: Host | undefined;
  let fake: FakeObs | undefined;

  beforeAll(() => {
    bus = createMemoryBus();
  });
  afterEach(async () => {
    await host?.stop();
    await fake?.stop();
    host = undefined;
    fake = undefined;
  });
  afterAll(async () => {
    await bus.close();
  });

  it('reports a wrong password (close 4009) as an auth error naming the secret and does not retry in a tight loop', async () => {
    fake = await startFakeObs({ password: PASSWORD });
    const observed = await collect(bus, ['internal.ingress.v1']);
    host = await startTestHost({
      services: [service],
      bus,
      env: {
        INSTANCE_ID: 'obs-auth',
        OBS_WEBSOCKET_URL: fake.url,
        OBS_WEBSOCKET_PASSWORD: 'wrong-password',
        OBS_RECONNECT_INITIAL_MS: '10',
        OBS_RECONNECT_MAX_MS: '60000',
      },
      architecture: loadArchitecture(),
    });
    const status = (await statusOf(observed, (payload) => payload.status === 'error')) as Envelope;
    expect(status.payload).toMatchObject({ authStatus: 'invalid', lastError: { code: 'OBS_AUTH_FAILED' } });
    expect((status.payload.lastError as { message: string }).message).toContain('OBS_WEBSOCKET_PASSWORD');
    const snapshot = await debug(host);
    // The next try waits for the longest backoff (60 s here), not the 10 ms initial one.
    expect(Date.parse(snapshot.nextReconnectAt) - Date.now()).toBeGreaterThan(50_000);
    expect(fake.identifies).toHaveLength(1);
    const ready = await host.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().components['obs.obs'].detail).toContain('OBS refused the password');
    expect(JSON.stringify(observed.received)).not.toContain('wrong-password');
  });

  it('reports an OBS that does not speak RPC version 1 (close 4010) as a configuration error', async () => {
    fake = await startFakeObs({ rpcVersion: 2 });
    const observed = await collect(bus, ['internal.ingress.v1']);
    host = await startTestHost({
      services: [service],
      bus,
      env: { INSTANCE_ID: 'obs-rpc', OBS_WEBSOCKET_URL: fake.url, OBS_RECONNECT_MAX_MS: '60000' },
      architecture: loadArchitecture(),
    });
    const status = (await statusOf(observed, (payload) => payload.status === 'error')) as Envelope;
    expect(status.payload).toMatchObject({ lastError: { code: 'OBS_UNSUPPORTED_RPC' } });
    expect((status.payload.lastError as { message: string }).message).toContain('RPC version 1');
    expect(fake.identifies).toHaveLength(1);
  });

  it('stays ready and says what to set when OBS_WEBSOCKET_URL is not set', async () => {
    const observed = await collect(bus, ['internal.ingress.v1']);
    host = await startTestHost({ services: [service], bus, env: { INSTANCE_ID: 'obs-none' }, architecture: loadArchitecture() });
    const status = (await statusOf(observed, (payload) => payload.status === 'not_configured')) as Envelope;
    expect((status.payload.metadata as { howToConnect: string }).howToConnect).toContain('OBS_WEBSOCKET_URL');
    const ready = await host.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().components['obs.obs']).toMatchObject({ ready: true, configured: false });
    // An action with OBS not configured is recorded as not done, never thrown.
    const envelope = actionEnvelope([{ action: 'switchScene', scene: 'Main' }]);
    const finals = await collect(bus, ['internal.finalizer.v1']);
    await send(bus, 'internal.obs.v1', envelope);
    const final = (await finals.waitFor('internal.finalizer.v1', (value) => value.id === envelope.id)) as Envelope;
    expect(final.annotations!.find((annotation) => annotation.kind === 'obs.result')?.label).toBe('NOT_CONFIGURED');
  });
});

describe('the fake OBS', () => {
  it('answers a request batch in order, carrying on past a failed request', async () => {
    const fake = await startFakeObs({ password: PASSWORD });
    const client = new OBSWebSocket();
    try {
      await client.connect(fake.url, PASSWORD, { rpcVersion: 1 });
      const results = await client.callBatch([
        { requestType: 'GetSceneItemId', requestData: { sceneName: 'Main', sourceName: 'Nope' } },
        { requestType: 'SetCurrentProgramScene', requestData: { sceneName: 'BRB' } },
        { requestType: 'GetCurrentProgramScene' },
      ]);
      expect(results.map((result) => [result.requestType, result.requestStatus.result, result.requestStatus.code])).toEqual([
        ['GetSceneItemId', false, 600],
        ['SetCurrentProgramScene', true, 100],
        ['GetCurrentProgramScene', true, 100],
      ]);
      expect(results[2]!.responseData).toMatchObject({ currentProgramSceneName: 'BRB' });
      expect(fake.requests.every((request) => request.batch)).toBe(true);
    } finally {
      await client.disconnect();
      await fake.stop();
    }
  });

  it('sends events only in the categories a session subscribed to', async () => {
    const fake = await startFakeObs();
    const client = new OBSWebSocket();
    try {
      await client.connect(fake.url, undefined, { rpcVersion: 1, eventSubscriptions: EventSubscription.Outputs });
      const scenes: string[] = [];
      client.on('CurrentProgramSceneChanged', (data) => scenes.push(data.sceneName));
      const stream = new Promise<boolean>((resolve) => client.once('StreamStateChanged', (data) => resolve(data.outputActive)));
      // In order on one socket: when the stream event arrives, a scene event sent before it would have too.
      fake.emit('CurrentProgramSceneChanged', { sceneName: 'BRB', sceneUuid: 'uuid-BRB' });
      fake.emit('StreamStateChanged', { outputActive: true, outputState: 'OBS_WEBSOCKET_OUTPUT_STARTED' });
      expect(await stream).toBe(true);
      expect(scenes).toEqual([]);
    } finally {
      await client.disconnect();
      await fake.stop();
    }
  });

  it('closes with 4009 when Identify answers the challenge with the wrong password', async () => {
    const fake = await startFakeObs({ password: PASSWORD });
    const client = new OBSWebSocket();
    try {
      const error = await client.connect(fake.url, 'not-it', { rpcVersion: 1 }).then(
        () => undefined,
        (caught: unknown) => caught as { code?: number },
      );
      expect(error?.code).toBe(4009);
    } finally {
      await fake.stop();
    }
  });

  it('refuses a client that does not offer the obswebsocket.json subprotocol', async () => {
    const fake = await startFakeObs();
    try {
      const refused = await new Promise<boolean>((resolve) => {
        const socket = new WebSocket(fake.url, ['chat']);
        socket.on('open', () => {
          socket.close();
          resolve(false);
        });
        socket.on('error', () => resolve(true));
      });
      expect(refused).toBe(true);
    } finally {
      await fake.stop();
    }
  });
});
