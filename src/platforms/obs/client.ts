/**
 * The OBS connection: obs-websocket-js 5 (JSON build: subprotocol `obswebsocket.json`; the package's
 * plain import is the MessagePack build). It connects, reads the studio state (program scene, scenes,
 * stream and record state), keeps it current from events, and reconnects with a capped exponential
 * backoff. A refused password (close 4009) or an RPC version OBS does not speak (4010) is a
 * configuration error: reported once with what to fix and retried only at the longest backoff, never in
 * a tight loop. Never throws after `start`; trouble is reported through `onStateChange`.
 */
import OBSWebSocket, { EventSubscription, OBSWebSocketError } from 'obs-websocket-js/json';
import type { Logger } from '../../runtime/logger.js';
import type { ObsRequester } from './egress.js';
import { listScenes } from './egress.js';
import type { ObsStudioState } from './normalize.js';

/** obs-websocket close codes the connector treats as configuration errors. */
export const ObsCloseCode = { authenticationFailed: 4009, unsupportedRpcVersion: 4010 } as const;

/** The RPC version this connector speaks. */
export const OBS_RPC_VERSION = 1;

/** OBS events that enter the pipeline (and keep the studio state current). */
export const OBS_FORWARDED_EVENTS = [
  'CurrentProgramSceneChanged',
  'SceneListChanged',
  'SceneCreated',
  'SceneRemoved',
  'SceneNameChanged',
  'StreamStateChanged',
  'RecordStateChanged',
  'SceneItemEnableStateChanged',
  'ExitStarted',
] as const;

export type ObsConnectionStatus = 'not_configured' | 'connecting' | 'connected' | 'disconnected' | 'error';

export interface ObsSnapshot {
  status: ObsConnectionStatus;
  authStatus: 'valid' | 'invalid' | 'missing' | 'unknown';
  state: ObsStudioState;
  counters: { events: number; actions: number; errors: number; reconnects: number };
  lastError: { code: string; message: string; at: string } | null;
  nextReconnectAt?: string;
}

export interface ObsConnectorOptions {
  /** e.g. ws://127.0.0.1:4455. */
  url: string;
  password?: string;
  /** First reconnect delay (ms); default 1 000. */
  reconnectInitialMs?: number;
  /** Longest reconnect delay, and the delay after a configuration error (ms); default 30 000. */
  reconnectMaxMs?: number;
  logger: Logger;
  /** Every forwarded OBS event. */
  onEvent?(eventType: string, eventData: Record<string, unknown>): void;
  /** Every state change (status, scene, outputs). */
  onStateChange?(snapshot: ObsSnapshot): void;
}

/** The connector: the requester actions use, plus lifecycle and a snapshot. */
export interface ObsConnector extends ObsRequester {
  start(): void;
  stop(): Promise<void>;
  snapshot(): ObsSnapshot;
  /** Counts an action performed (for the source metrics). */
  countAction(ok: boolean): void;
}

const EVENT_SUBSCRIPTIONS = EventSubscription.General | EventSubscription.Scenes | EventSubscription.Outputs | EventSubscription.SceneItems;

/** A NOT_CONNECTED error for requests while OBS is not connected. */
class NotConnectedError extends Error {
  readonly code = 'NOT_CONNECTED';
}

export function createObsConnector(options: ObsConnectorOptions): ObsConnector {
  const initialMs = options.reconnectInitialMs ?? 1_000;
  const maxMs = options.reconnectMaxMs ?? 30_000;
  const logger = options.logger;
  let obs: OBSWebSocket | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let attempt = 0;
  const snap: ObsSnapshot = {
    status: 'connecting',
    authStatus: 'unknown',
    state: {},
    counters: { events: 0, actions: 0, errors: 0, reconnects: 0 },
    lastError: null,
  };

  const changed = () => {
    try {
      options.onStateChange?.(snapshot());
    } catch (error) {
      logger.warn({ err: error }, 'obs state listener failed');
    }
  };
  const snapshot = (): ObsSnapshot => structuredClone(snap);

  const fail = (code: string, message: string) => {
    snap.counters.errors += 1;
    snap.lastError = { code, message, at: new Date().toISOString() };
  };

  /** Why a close or connect error happened, and whether it is a configuration error. */
  const explain = (error: unknown): { code: string; message: string; config: boolean } => {
    const code = error instanceof OBSWebSocketError ? error.code : undefined;
    const reason = error instanceof Error && error.message ? error.message : 'connection closed';
    if (code === ObsCloseCode.authenticationFailed) {
      const message = options.password
        ? 'OBS refused the password (close 4009): set OBS_WEBSOCKET_PASSWORD to the password in OBS → Tools → WebSocket Server Settings'
        : 'OBS requires a password (close 4009): set the OBS_WEBSOCKET_PASSWORD secret to the password in OBS → Tools → WebSocket Server Settings';
      return { code: 'OBS_AUTH_FAILED', message, config: true };
    }
    if (code === ObsCloseCode.unsupportedRpcVersion) {
      return {
        code: 'OBS_UNSUPPORTED_RPC',
        message: `OBS does not speak obs-websocket RPC version ${OBS_RPC_VERSION} (close 4010: ${reason}); use OBS 28 or newer with obs-websocket 5`,
        config: true,
      };
    }
    if (error instanceof OBSWebSocketError && code === -1)
      return { code: 'OBS_PROTOCOL', message: `not an obs-websocket 5 server: ${reason}`, config: true };
    return {
      code: 'OBS_UNREACHABLE',
      message: `OBS is not reachable at ${options.url}: ${reason}${code && code > 0 ? ` (close ${code})` : ''}`,
      config: false,
    };
  };

  const schedule = (delayMs: number) => {
    if (stopped) return;
    snap.nextReconnectAt = new Date(Date.now() + delayMs).toISOString();
    timer = setTimeout(() => {
      timer = undefined;
      snap.counters.reconnects += 1;
      void connect();
    }, delayMs);
    timer.unref();
  };

  const backoff = () => {
    // Exponential from initialMs, capped, with ±20 % jitter so several bots do not hammer OBS in step.
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
    attempt += 1;
    return Math.max(1, Math.round(base * (0.8 + Math.random() * 0.4)));
  };

  const handleDown = (error: unknown, client: OBSWebSocket) => {
    if (client !== obs || stopped) return;
    obs = undefined;
    client.removeAllListeners();
    const why = explain(error);
    fail(why.code, why.message);
    if (why.config) {
      snap.status = 'error';
      if (why.code === 'OBS_AUTH_FAILED') snap.authStatus = 'invalid';
      logger.error({ code: why.code }, why.message);
      schedule(maxMs);
    } else {
      snap.status = 'disconnected';
      logger.warn({ code: why.code }, why.message);
      schedule(backoff());
    }
    changed();
  };

  const readState = async (client: OBSWebSocket) => {
    const requester: ObsRequester = {
      call: (type, data) => client.call(type as never, data as never) as Promise<Record<string, unknown>>,
      programScene: () => snap.state.programScene,
    };
    const [program, stream, record, scenes, version] = await Promise.all([
      client.call('GetCurrentProgramScene'),
      client.call('GetStreamStatus'),
      client.call('GetRecordStatus'),
      listScenes(requester),
      client.call('GetVersion').catch(() => undefined),
    ]);
    snap.state = {
      programScene: program.currentProgramSceneName ?? (program as { sceneName?: string }).sceneName,
      streaming: stream.outputActive,
      recording: record.outputActive,
      scenes,
      ...(version?.obsVersion ? { obsVersion: version.obsVersion } : {}),
    };
  };

  const refreshScenes = (client: OBSWebSocket) => {
    void listScenes({
      call: (type, data) => client.call(type as never, data as never) as Promise<Record<string, unknown>>,
      programScene: () => snap.state.programScene,
    })
      .then((scenes) => {
        snap.state.scenes = scenes;
        changed();
      })
      .catch((error: unknown) => logger.warn({ err: error }, 'could not refresh the OBS scene list'));
  };

  const onEvent = (client: OBSWebSocket, eventType: string, data: Record<string, unknown>) => {
    snap.counters.events += 1;
    let stateChanged = false;
    if (eventType === 'CurrentProgramSceneChanged' && typeof data.sceneName === 'string') {
      snap.state.programScene = data.sceneName;
      stateChanged = true;
    } else if (eventType === 'StreamStateChanged' && typeof data.outputActive === 'boolean') {
      stateChanged = snap.state.streaming !== data.outputActive;
      snap.state.streaming = data.outputActive;
    } else if (eventType === 'RecordStateChanged' && typeof data.outputActive === 'boolean') {
      stateChanged = snap.state.recording !== data.outputActive;
      snap.state.recording = data.outputActive;
    } else if (eventType.startsWith('Scene') && eventType !== 'SceneItemEnableStateChanged') {
      refreshScenes(client);
    }
    try {
      options.onEvent?.(eventType, data);
    } catch (error) {
      logger.warn({ err: error, eventType }, 'obs event listener failed');
    }
    if (stateChanged) changed();
  };

  const connect = async () => {
    if (stopped) return;
    const client = new OBSWebSocket();
    obs = client;
    snap.status = 'connecting';
    snap.nextReconnectAt = undefined;
    changed();
    client.on('ConnectionClosed', (error) => handleDown(error, client));
    for (const eventType of OBS_FORWARDED_EVENTS) {
      client.on(eventType as never, ((data: Record<string, unknown>) => onEvent(client, eventType, data ?? {})) as never);
    }
    try {
      await client.connect(options.url, options.password, { rpcVersion: OBS_RPC_VERSION, eventSubscriptions: EVENT_SUBSCRIPTIONS });
      if (client !== obs) return;
      await readState(client);
      if (client !== obs) return;
      attempt = 0;
      snap.status = 'connected';
      snap.authStatus = options.password ? 'valid' : 'unknown';
      logger.info({ url: options.url, scene: snap.state.programScene }, 'connected to OBS');
      changed();
    } catch (error) {
      if (client !== obs) return;
      // A failed connect may also have emitted ConnectionClosed; handleDown runs once per client.
      handleDown(error, client);
      await client.disconnect().catch(() => undefined);
    }
  };

  return {
    start() {
      stopped = false;
      void connect();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const client = obs;
      obs = undefined;
      client?.removeAllListeners();
      await client?.disconnect().catch(() => undefined);
      snap.status = 'disconnected';
    },
    snapshot,
    async call(requestType, requestData) {
      const client = obs;
      if (!client || snap.status !== 'connected')
        throw new NotConnectedError(`OBS is not connected (${snap.lastError?.message ?? snap.status})`);
      return (await client.call(requestType as never, requestData as never)) as Record<string, unknown> | undefined;
    },
    programScene: () => snap.state.programScene,
    countAction(ok) {
      snap.counters.actions += 1;
      if (!ok) snap.counters.errors += 1;
    },
  };
}
