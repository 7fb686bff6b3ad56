/**
 * `!scene <name>` through the real pipeline (auth → router → analyzer → commands → obs step) with the OBS
 * service connected to the fake obs-websocket server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createEnvelope, Topic, type Envelope } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import { createEventRouter } from '../../src/services/event-router/index.js';
import obsService from '../../src/services/obs/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeObs, type FakeObs } from '../fakes/obs.js';
import { collect, startTestHost } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

const encoder = new TextEncoder();
let counter = 0;

function chat(text: string, badges: string[]): Envelope {
  counter += 1;
  const login = `${badges[0] ?? 'viewer'}_${counter}`;
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1000', egressDestination: Topic.egress },
    user: { id: String(5000 + counter), name: login, displayName: login, profileImageUrl: '', role: '' },
    payload: { text, messageId: `m-${counter}`, badges, isMod: badges.includes('moderator'), isSubscriber: false, emotes: [] },
  });
}

describe('!scene from chat', () => {
  let fake: FakeObs;
  let store: Store;
  let bus: MessageBus;
  let host: Host;
  let observer: Awaited<ReturnType<typeof collect>>;

  beforeAll(async () => {
    fake = await startFakeObs();
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    bus = createMemoryBus();
    await bus.connect();
    observer = await collect(bus, [Topic.egress, Topic.finalizer, Topic.deadletter]);
    host = await startTestHost({
      services: [authService, createEventRouter(), createQueryAnalyzer(), createCommandsService(), obsService],
      bus,
      architecture: loadArchitecture(),
      env: { INSTANCE_ID: 'scene-test', OBS_WEBSOCKET_URL: fake.url },
      extra: { store },
    });
    await fake.waitFor(() => fake.identifiedSessions === 1 && fake.requestsOf('GetRecordStatus').length === 1);
    await waitFor(async () => ((await host.app.inject({ method: 'GET', url: '/_debug/obs' })).json().status === 'connected' ? true : undefined), { message: 'OBS connected' });
  });

  afterAll(async () => {
    await host?.stop();
    await bus?.close();
    await store?.close();
    await fake?.stop();
  });

  const say = async (text: string, badges: string[]): Promise<Envelope> => {
    const envelope = chat(text, badges);
    await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
    return (await observer.waitFor(Topic.egress, (value) => value.id === envelope.id)) as Envelope;
  };

  it('switches the scene for a moderator and tells chat, with the obs step in the slip', async () => {
    const out = await say('!scene BRB', ['moderator']);
    expect(fake.programScene).toBe('BRB');
    expect(out.candidates?.map((candidate) => candidate.text)).toEqual(['OBS: switched to scene "BRB".']);
    expect(out.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['query-analyzer:OK', 'router:OK', 'commands:OK', 'obs:OK']);
  });

  it('switches the scene for the broadcaster, matching the name without regard to case', async () => {
    const out = await say('!scene ending', ['broadcaster']);
    expect(fake.programScene).toBe('Ending');
    expect(out.candidates?.[0]?.text).toBe('OBS: switched to scene "Ending".');
  });

  it("does nothing to OBS for a viewer's !scene", async () => {
    const before = fake.requests.length;
    const out = await say('!scene Main', []);
    expect(fake.programScene).toBe('Ending');
    expect(fake.requests.length).toBe(before);
    expect(out.routingSlip.map((step) => step.id)).not.toContain('obs');
    expect(out.candidates?.[0]?.text).toContain('only moderators can switch scenes');
  });

  it('answers an unknown scene with the list of scenes', async () => {
    const before = fake.requestsOf('SetCurrentProgramScene').length;
    const out = await say('!scene Starting Soon', ['moderator']);
    expect(out.candidates?.map((candidate) => candidate.text)).toEqual(['OBS: there is no scene "Starting Soon". Scenes: Main, BRB, Ending']);
    expect(fake.requestsOf('SetCurrentProgramScene').length).toBe(before);
    expect(fake.programScene).toBe('Ending');
  });
});
