import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createEnvelope, Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { badgeRole, resolveIdentity } from '../../src/services/auth/resolve.js';
import { createStore, type Store } from '../../src/store/index.js';
import { collect, startTestHost } from '../support/harness.js';

const encoder = new TextEncoder();
let seq = 0;

function chat(
  options: {
    id?: string;
    login?: string;
    payload?: Record<string, unknown>;
    role?: string;
    platform?: string;
    channel?: string;
    channelId?: string;
    type?: string;
  } = {},
): Envelope {
  const id = options.id ?? `user-${++seq}-${Math.random().toString(36).slice(2, 6)}`;
  return createEnvelope({
    type: options.type ?? 'external.chat.message.v1',
    source: { platform: options.platform ?? 'twitch', channel: options.channel ?? 'streamer', channelId: options.channelId ?? '1000' },
    user: { id, name: options.login ?? `login_${id}`, displayName: 'Someone', profileImageUrl: '', role: options.role ?? '' },
    payload: { text: 'hello', ...options.payload },
  });
}

describe('role resolution (pure)', () => {
  it('takes the highest badge in any shape a normalizer produces', () => {
    expect(badgeRole(chat({ payload: { badges: ['subscriber'] } }))).toBe('subscriber');
    expect(badgeRole(chat({ payload: { badges: { subscriber: '12', moderator: '1' } } }))).toBe('moderator');
    expect(badgeRole(chat({ payload: { badges: 'vip/1,subscriber/6' } }))).toBe('vip');
    expect(badgeRole(chat({ payload: { isMod: true } }))).toBe('moderator');
    expect(badgeRole(chat({ payload: { badges: [] } }))).toBe('viewer');
  });

  it('knows the channel owner as the broadcaster by id or login', () => {
    expect(badgeRole(chat({ id: '1000' }))).toBe('broadcaster');
    expect(badgeRole(chat({ login: 'Streamer', channel: '#streamer', channelId: '' }))).toBe('broadcaster');
  });

  it('lets a stored ban win and otherwise takes the highest role held', () => {
    expect(resolveIdentity('moderator', ['banned'])).toMatchObject({ role: 'banned', permissions: [], banned: true });
    expect(resolveIdentity('viewer', ['moderator']).role).toBe('moderator');
    expect(resolveIdentity('moderator', ['trusted'])).toMatchObject({ role: 'moderator', roles: ['moderator', 'trusted'] });
    expect(resolveIdentity('subscriber', ['trusted']).role).toBe('trusted');
    expect(resolveIdentity('viewer', ['system']).role).toBe('viewer');
    expect(resolveIdentity('viewer').permissions).toEqual(['chat', 'commands:use']);
    expect(resolveIdentity('moderator').permissions).toEqual(
      expect.arrayContaining(['chat', 'commands:manage', 'rules:read', 'spam:exempt']),
    );
    expect(resolveIdentity('moderator').permissions).not.toContain('rules:write');
    expect(resolveIdentity('broadcaster').permissions).toEqual(expect.arrayContaining(['rules:write', 'admin', 'commands:manage']));
  });
});

describe('the auth service', () => {
  let store: Store;
  let bus: MessageBus;
  let host: Host | undefined;

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  });
  afterAll(async () => {
    await store?.close();
  });
  afterEach(async () => {
    await host?.stop();
    host = undefined;
    await bus?.close();
  });

  const start = async () => {
    bus = createMemoryBus();
    await bus.connect();
    const observer = await collect(bus, [Topic.authenticated, Topic.finalizer, Topic.deadletter]);
    host = await startTestHost({ services: [authService], bus, extra: { store } });
    const send = async (envelope: Envelope) => {
      await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
    };
    const authenticated = (envelope: Envelope): Promise<Envelope> =>
      observer.waitFor(Topic.authenticated, (value) => value.id === envelope.id);
    return { observer, send, authenticated };
  };

  it("gives a viewer the viewer role and permissions, and marks only the first message ever as 'first-message'", async () => {
    const { send, authenticated } = await start();
    const first = chat({ id: 'viewer-1', login: 'newbie' });
    await send(first);
    const out = await authenticated(first);
    expect(out.user).toMatchObject({ role: 'viewer', permissions: ['chat', 'commands:use'] });
    expect(out.annotations?.filter((a) => a.kind === 'first-message')).toHaveLength(1);
    const second = chat({ id: 'viewer-1', login: 'newbie' });
    await send(second);
    const out2 = await authenticated(second);
    expect(out2.annotations?.some((a) => a.kind === 'first-message')).toBe(false);
    expect((await store.getUser('twitch:viewer-1'))?.messageCount).toBe(2);
  });

  it('derives the role from Twitch badges and ignores a role claimed on the envelope', async () => {
    const { send, authenticated } = await start();
    const mod = chat({ payload: { badges: ['moderator', 'subscriber'] } });
    const claimer = chat({ role: 'broadcaster', payload: { badges: ['subscriber'] } });
    await send(mod);
    await send(claimer);
    expect((await authenticated(mod)).user.role).toBe('moderator');
    expect((await authenticated(mod)).user.permissions).toContain('commands:manage');
    expect((await authenticated(claimer)).user.role).toBe('subscriber');
  });

  it('honours a role from the api-gateway only when it is marked trustedRole', async () => {
    const { send, authenticated } = await start();
    const trusted = chat({ platform: 'api', role: 'moderator', payload: { trustedRole: true } });
    const named = chat({ platform: 'api', payload: { trustedRole: 'broadcaster' } });
    const untrusted = chat({ platform: 'api', role: 'moderator' });
    const twitchClaim = chat({ platform: 'twitch', role: 'moderator', payload: { trustedRole: true } });
    for (const envelope of [trusted, named, untrusted, twitchClaim]) await send(envelope);
    expect((await authenticated(trusted)).user.role).toBe('moderator');
    expect((await authenticated(named)).user.role).toBe('broadcaster');
    expect((await authenticated(untrusted)).user.role).toBe('viewer');
    expect((await authenticated(twitchClaim)).user.role).toBe('viewer');
  });

  it('applies stored roles: a stored moderator role lifts a viewer, trusted is kept alongside badges', async () => {
    const { send, authenticated } = await start();
    await store.touchUser({ platform: 'twitch', userId: 'promoted', login: 'promoted', at: new Date().toISOString() });
    await store.setUserRoles('twitch:promoted', ['moderator']);
    await store.touchUser({ platform: 'twitch', userId: 'trusted-vip', login: 'tv', at: new Date().toISOString() });
    await store.setUserRoles('twitch:trusted-vip', ['trusted']);
    const promoted = chat({ id: 'promoted' });
    const trustedVip = chat({ id: 'trusted-vip', payload: { badges: ['vip'] } });
    await send(promoted);
    await send(trustedVip);
    const p = await authenticated(promoted);
    expect(p.user.role).toBe('moderator');
    expect(p.annotations?.some((a) => a.kind === 'first-message')).toBe(false);
    const t = await authenticated(trustedVip);
    expect(t.user.role).toBe('trusted');
    expect(t.user.roles).toEqual(expect.arrayContaining(['vip', 'trusted']));
    expect(t.user.permissions).toEqual(expect.arrayContaining(['links:post', 'spam:exempt']));
  });

  it('handles a banned user: nothing goes on, the envelope is finalized with a moderation annotation', async () => {
    const { send, observer } = await start();
    await store.touchUser({ platform: 'twitch', userId: 'troll', login: 'troll', at: new Date().toISOString() });
    await store.setUserRoles('twitch:troll', ['banned']);
    const envelope = chat({ id: 'troll', payload: { badges: ['moderator'] } });
    await send(envelope);
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
    expect(final.outcome).toBe('handled');
    expect(final.user).toMatchObject({ role: 'banned', permissions: [] });
    expect(final.annotations?.find((a) => a.kind === 'moderation')).toMatchObject({ label: 'banned', source: 'auth' });
    expect(observer.envelopes(Topic.authenticated).some((value) => value.id === envelope.id)).toBe(false);
  });

  it('passes system events through untouched without creating a user', async () => {
    const { send, authenticated } = await start();
    const system = createEnvelope({
      type: 'system.stream.online',
      source: { platform: 'twitch', channel: 'streamer', channelId: '1000' },
      payload: { startedAt: '2025-01-01T00:00:00.000Z' },
    });
    await send(system);
    const out = await authenticated(system);
    expect(out).toEqual(system);
    expect(await store.getUser('twitch:system')).toBeUndefined();
  });
});

describe('auth never hands out the system role for chat', () => {
  it('a chat message without a user id, or claiming the system role, gets viewer rights', async () => {
    const { createStore } = await import('../../src/store/index.js');
    const { createMemoryBus } = await import('../../src/bus/index.js');
    const { createEnvelope, Topic } = await import('../../src/core/index.js');
    const { collect, startTestHost } = await import('../support/harness.js');
    const authModule = await import('../../src/services/auth/index.js');
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    await store.init();
    const bus = createMemoryBus();
    await bus.connect();
    const observer = await collect(bus, [Topic.authenticated]);
    const host = await startTestHost({ services: [authModule.default], bus, extra: { store } });
    try {
      for (const user of [
        { id: '', name: '', displayName: '', profileImageUrl: '', role: '' },
        { id: 'system', name: 'mallory', displayName: 'mallory', profileImageUrl: '', role: 'system' },
      ]) {
        const envelope = createEnvelope({
          type: 'external.chat.message.v1',
          source: { platform: 'twitch', channel: 'c', channelId: '1' },
          user,
          payload: { text: '!addcom !x y' },
        });
        await bus.publish(Topic.ingress, new TextEncoder().encode(JSON.stringify(envelope)));
        const out = await observer.waitFor(Topic.authenticated, (value) => value.id === envelope.id);
        expect(out.user.role).toBe('viewer');
        expect(out.user.permissions).not.toContain('commands:manage');
      }
    } finally {
      await host.stop();
      await store.close();
    }
  });
});
