/**
 * A fake OBS Studio speaking obs-websocket v5 (JSON) on loopback, so the real obs-websocket-js is what the
 * tests exercise. It negotiates the `obswebsocket.json` subprotocol (any other is refused), sends Hello
 * with the salted challenge when a password is set, checks Identify, answers Requests and RequestBatches
 * from an in-memory OBS (scenes, scene items incl. groups, inputs, stream and record state), emits Events
 * to the sessions subscribed to their category, and closes with the v5 close codes. Every request is
 * recorded in `requests`.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** obs-websocket v5 close codes used here. */
export const ObsCloseCode = {
  messageDecodeError: 4002,
  notIdentified: 4007,
  alreadyIdentified: 4008,
  authenticationFailed: 4009,
  unsupportedRpcVersion: 4010,
} as const;

/** Event categories (EventSubscription bits) of the events the fake emits. */
const EVENT_CATEGORY: Record<string, number> = {
  CurrentProgramSceneChanged: 4,
  SceneListChanged: 4,
  SceneCreated: 4,
  SceneRemoved: 4,
  InputSettingsChanged: 8,
  StreamStateChanged: 64,
  RecordStateChanged: 64,
  SceneItemEnableStateChanged: 128,
};

export interface FakeSceneItem {
  sceneItemId: number;
  sourceName: string;
  enabled: boolean;
  /** Items of a group (the item is then a group). */
  groupItems?: FakeSceneItem[];
}

export interface FakeObsOptions {
  /** When set, Hello carries an authentication challenge and Identify must answer it. */
  password?: string;
  /** The RPC version the server speaks (default 1); an Identify asking for another is closed with 4010. */
  rpcVersion?: number;
  /** Scenes and their items; default a small setup with a group. */
  scenes?: Record<string, FakeSceneItem[]>;
  /** Inputs and their settings (text sources have `text`). */
  inputs?: Record<string, { kind: string; settings: Record<string, unknown> }>;
  programScene?: string;
  /** Listen on this port (a restart reuses the old one). */
  port?: number;
}

export interface RecordedRequest {
  requestType: string;
  requestData: Record<string, unknown>;
  batch: boolean;
}

type Status = { result: boolean; code: number; comment?: string };
const ok: Status = { result: true, code: 100 };
const notFound = (comment: string): Status => ({ result: false, code: 600, comment });

/** The default studio: "Main" with a webcam and an "Alerts" group holding "Raid" and "Follow"; "BRB"; "Ending". */
export function defaultScenes(): Record<string, FakeSceneItem[]> {
  return {
    Main: [
      { sceneItemId: 1, sourceName: 'Webcam', enabled: true },
      {
        sceneItemId: 2,
        sourceName: 'Alerts',
        enabled: true,
        groupItems: [
          { sceneItemId: 3, sourceName: 'Raid', enabled: false },
          { sceneItemId: 4, sourceName: 'Follow', enabled: false },
        ],
      },
      { sceneItemId: 5, sourceName: 'Now Playing', enabled: true },
    ],
    BRB: [{ sceneItemId: 1, sourceName: 'BRB Text', enabled: true }],
    Ending: [],
  };
}

export class FakeObs {
  readonly requests: RecordedRequest[] = [];
  /** Identify messages received (authentication included), in order. */
  readonly identifies: Array<Record<string, unknown>> = [];
  scenes: Record<string, FakeSceneItem[]>;
  inputs: Record<string, { kind: string; settings: Record<string, unknown> }>;
  programScene: string;
  streaming = false;
  recording = false;
  private server?: WebSocketServer;
  private readonly sessions = new Map<WebSocket, { identified: boolean; subscriptions: number }>();
  private listeners: Array<() => void> = [];
  private portNumber = 0;

  constructor(private readonly options: FakeObsOptions = {}) {
    this.scenes = options.scenes ?? defaultScenes();
    this.inputs = options.inputs ?? {
      'Now Playing': { kind: 'text_ft2_source_v2', settings: { text: 'nothing yet' } },
      'BRB Text': { kind: 'text_gdiplus_v3', settings: { text: 'Be right back' } },
    };
    this.programScene = options.programScene ?? Object.keys(this.scenes)[0]!;
    this.portNumber = options.port ?? 0;
  }

  /** Starts listening (again, after `stop`, on the same port). */
  async start(): Promise<void> {
    const server = new WebSocketServer({
      host: '127.0.0.1',
      port: this.portNumber,
      // OBS only speaks its own subprotocols; a client that offers none of them is refused at the handshake.
      handleProtocols: (protocols) => (protocols.has('obswebsocket.json') ? 'obswebsocket.json' : false),
    });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    this.server = server;
    this.portNumber = (server.address() as AddressInfo).port;
    server.on('connection', (socket) => this.accept(socket));
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.portNumber}`;
  }

  /** Sessions currently identified. */
  get identifiedSessions(): number {
    return [...this.sessions.values()].filter((session) => session.identified).length;
  }

  /** Closes every session (code 1001, like OBS quitting) and the server. */
  async stop(): Promise<void> {
    for (const socket of this.sessions.keys()) socket.close(1001, 'server stopping');
    this.sessions.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Requests of one type, in order. */
  requestsOf(type: string): RecordedRequest[] {
    return this.requests.filter((request) => request.requestType === type);
  }

  /** Resolves when `predicate` holds (checked after every request, identify and connection change). */
  waitFor(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((listener) => listener !== check);
        reject(new Error('fake OBS: condition not reached in time'));
      }, timeoutMs);
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((listener) => listener !== check);
        resolve();
      };
      this.listeners.push(check);
    });
  }

  /** Sends an Event (op 5) to every identified session subscribed to its category. */
  emit(eventType: string, eventData: Record<string, unknown> = {}): void {
    const intent = EVENT_CATEGORY[eventType] ?? 1;
    for (const [socket, session] of this.sessions) {
      if (session.identified && (session.subscriptions & intent) !== 0) send(socket, 5, { eventType, eventIntent: intent, eventData });
    }
  }

  /** Finds an item in a scene or group by source name. */
  findItem(container: string, sourceName: string): FakeSceneItem | undefined {
    return this.itemsOf(container)?.find((item) => item.sourceName === sourceName);
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Items of a scene, or of a group (groups are scenes to obs-websocket). */
  private itemsOf(name: string): FakeSceneItem[] | undefined {
    if (this.scenes[name]) return this.scenes[name];
    for (const items of Object.values(this.scenes)) {
      const group = items.find((item) => item.groupItems && item.sourceName === name);
      if (group) return group.groupItems;
    }
    return undefined;
  }

  private accept(socket: WebSocket): void {
    const session = { identified: false, subscriptions: 0 };
    this.sessions.set(socket, session);
    const salt = randomBytes(16).toString('base64');
    const challenge = randomBytes(16).toString('base64');
    send(socket, 0, {
      obsWebSocketVersion: '5.5.0',
      rpcVersion: this.options.rpcVersion ?? 1,
      ...(this.options.password ? { authentication: { challenge, salt } } : {}),
    });
    socket.on('close', () => {
      this.sessions.delete(socket);
      this.changed();
    });
    socket.on('message', (data) => {
      let message: { op?: unknown; d?: Record<string, unknown> };
      try {
        message = JSON.parse(String(data));
      } catch {
        socket.close(ObsCloseCode.messageDecodeError, 'message is not JSON');
        return;
      }
      const d = message.d ?? {};
      if (message.op === 1) {
        this.identifies.push(d);
        if (session.identified) return socket.close(ObsCloseCode.alreadyIdentified, 'already identified');
        if (d.rpcVersion !== (this.options.rpcVersion ?? 1))
          return socket.close(ObsCloseCode.unsupportedRpcVersion, `rpcVersion ${String(d.rpcVersion)} is not supported`);
        if (this.options.password) {
          const secret = sha256(this.options.password + salt);
          if (d.authentication !== sha256(secret + challenge))
            return socket.close(ObsCloseCode.authenticationFailed, 'Authentication failed.');
        }
        session.identified = true;
        session.subscriptions = typeof d.eventSubscriptions === 'number' ? d.eventSubscriptions : 1023;
        send(socket, 2, { negotiatedRpcVersion: this.options.rpcVersion ?? 1 });
        this.changed();
        return;
      }
      if (!session.identified) return socket.close(ObsCloseCode.notIdentified, 'not identified');
      if (message.op === 6) {
        const { requestId, requestType } = d as { requestId: string; requestType: string };
        const requestData = (d.requestData ?? {}) as Record<string, unknown>;
        this.requests.push({ requestType, requestData, batch: false });
        const [requestStatus, responseData] = this.handle(requestType, requestData);
        send(socket, 7, { requestType, requestId, requestStatus, ...(responseData ? { responseData } : {}) });
        this.changed();
        return;
      }
      if (message.op === 8) {
        const requests = (d.requests ?? []) as Array<{ requestType: string; requestData?: Record<string, unknown>; requestId?: string }>;
        const results = [];
        for (const request of requests) {
          this.requests.push({ requestType: request.requestType, requestData: request.requestData ?? {}, batch: true });
          const [requestStatus, responseData] = this.handle(request.requestType, request.requestData ?? {});
          results.push({
            requestType: request.requestType,
            ...(request.requestId ? { requestId: request.requestId } : {}),
            requestStatus,
            ...(responseData ? { responseData } : {}),
          });
          if (!requestStatus.result && d.haltOnFailure) break;
        }
        send(socket, 9, { requestId: d.requestId, results });
        this.changed();
      }
    });
    this.changed();
  }

  private handle(type: string, data: Record<string, unknown>): [Status, Record<string, unknown>?] {
    const sceneNames = Object.keys(this.scenes);
    switch (type) {
      case 'GetVersion':
        return [ok, { obsVersion: '31.0.0', obsWebSocketVersion: '5.5.0', rpcVersion: 1, availableRequests: [] }];
      case 'GetSceneList':
        // OBS lists scenes bottom-up (index 0 is the last scene in its UI).
        return [
          ok,
          {
            currentProgramSceneName: this.programScene,
            currentPreviewSceneName: null,
            scenes: sceneNames
              .map((sceneName, index) => ({ sceneName, sceneIndex: sceneNames.length - 1 - index, sceneUuid: `uuid-${sceneName}` }))
              .reverse(),
          },
        ];
      case 'GetCurrentProgramScene':
        return [ok, { sceneName: this.programScene, currentProgramSceneName: this.programScene, sceneUuid: `uuid-${this.programScene}` }];
      case 'SetCurrentProgramScene': {
        const name = String(data.sceneName ?? '');
        if (!this.scenes[name]) return [notFound(`No source was found by the name of \`${name}\`.`)];
        this.programScene = name;
        this.emit('CurrentProgramSceneChanged', { sceneName: name, sceneUuid: `uuid-${name}` });
        return [ok];
      }
      case 'GetStreamStatus':
        return [
          ok,
          { outputActive: this.streaming, outputReconnecting: false, outputTimecode: '00:00:00.000', outputDuration: 0, outputBytes: 0 },
        ];
      case 'GetRecordStatus':
        return [
          ok,
          { outputActive: this.recording, outputPaused: false, outputTimecode: '00:00:00.000', outputDuration: 0, outputBytes: 0 },
        ];
      case 'StartStream':
        if (this.streaming) return [{ result: false, code: 500, comment: 'Stream is already active.' }];
        this.streaming = true;
        this.emit('StreamStateChanged', { outputActive: true, outputState: 'OBS_WEBSOCKET_OUTPUT_STARTED' });
        return [ok];
      case 'StopStream':
        if (!this.streaming) return [{ result: false, code: 501, comment: 'Stream is not active.' }];
        this.streaming = false;
        this.emit('StreamStateChanged', { outputActive: false, outputState: 'OBS_WEBSOCKET_OUTPUT_STOPPED' });
        return [ok];
      case 'StartRecord':
        if (this.recording) return [{ result: false, code: 500, comment: 'Record is already active.' }];
        this.recording = true;
        this.emit('RecordStateChanged', { outputActive: true, outputState: 'OBS_WEBSOCKET_OUTPUT_STARTED', outputPath: null });
        return [ok];
      case 'StopRecord':
        if (!this.recording) return [{ result: false, code: 501, comment: 'Record is not active.' }];
        this.recording = false;
        this.emit('RecordStateChanged', {
          outputActive: false,
          outputState: 'OBS_WEBSOCKET_OUTPUT_STOPPED',
          outputPath: '/tmp/recording.mkv',
        });
        return [ok, { outputPath: '/tmp/recording.mkv' }];
      case 'GetSceneItemList':
      case 'GetGroupSceneItemList': {
        const name = String(data.sceneName ?? '');
        const items = type === 'GetSceneItemList' ? this.scenes[name] : this.itemsOf(name);
        if (!items) return [notFound(`No source was found by the name of \`${name}\`.`)];
        return [
          ok,
          {
            sceneItems: items.map((item, index) => ({
              sceneItemId: item.sceneItemId,
              sourceName: item.sourceName,
              sceneItemEnabled: item.enabled,
              isGroup: !!item.groupItems,
              sceneItemIndex: index,
              inputKind: item.groupItems ? null : (this.inputs[item.sourceName]?.kind ?? 'color_source_v3'),
            })),
          },
        ];
      }
      case 'GetSceneItemId': {
        const container = String(data.sceneName ?? '');
        const items = this.itemsOf(container);
        if (!items) return [notFound(`No source was found by the name of \`${container}\`.`)];
        const item = items.find((candidate) => candidate.sourceName === data.sourceName);
        if (!item) return [notFound(`No scene items were found in the specified scene by that name or offset.`)];
        return [ok, { sceneItemId: item.sceneItemId }];
      }
      case 'SetSceneItemEnabled': {
        const container = String(data.sceneName ?? '');
        const item = this.itemsOf(container)?.find((candidate) => candidate.sceneItemId === data.sceneItemId);
        if (!item) return [notFound('No scene item was found by that id.')];
        if (typeof data.sceneItemEnabled !== 'boolean')
          return [{ result: false, code: 300, comment: 'Your request is missing the `sceneItemEnabled` field.' }];
        item.enabled = data.sceneItemEnabled;
        this.emit('SceneItemEnableStateChanged', { sceneName: container, sceneItemId: item.sceneItemId, sceneItemEnabled: item.enabled });
        return [ok];
      }
      case 'GetInputSettings': {
        const input = this.inputs[String(data.inputName ?? '')];
        if (!input) return [notFound(`No source was found by the name of \`${String(data.inputName)}\`.`)];
        return [ok, { inputKind: input.kind, inputSettings: input.settings }];
      }
      case 'SetInputSettings': {
        const name = String(data.inputName ?? '');
        const input = this.inputs[name];
        if (!input) return [notFound(`No source was found by the name of \`${name}\`.`)];
        const settings = (data.inputSettings ?? {}) as Record<string, unknown>;
        input.settings = data.overlay === false ? { ...settings } : { ...input.settings, ...settings };
        this.emit('InputSettingsChanged', { inputName: name, inputSettings: input.settings });
        return [ok];
      }
      default:
        return [{ result: false, code: 204, comment: `Your request type \`${type}\` is not valid.` }];
    }
  }
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64');

function send(socket: WebSocket, op: number, d: Record<string, unknown>): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ op, d }));
}

/** Creates and starts a fake OBS on a free loopback port. */
export async function startFakeObs(options: FakeObsOptions = {}): Promise<FakeObs> {
  const fake = new FakeObs(options);
  await fake.start();
  return fake;
}
