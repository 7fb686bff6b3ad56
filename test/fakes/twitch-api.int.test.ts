import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startFakeTwitch, type FakeTwitch } from './twitch-api.js';

/** A raw WebSocket client that keeps every frame it receives. */
async function connect(url: string) {
  const socket = new WebSocket(url);
  const frames: any[] = [];
  socket.on('message', (data) => frames.push(JSON.parse(String(data))));
  const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  const next = async (type: string, after = 0) => {
    for (let waited = 0; waited < 5_000; waited += 10) {
      const found = frames.slice(after).find((frame) => frame.metadata?.message_type === type);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no ${type} frame`);
  };
  return { socket, frames, closed, next };
}

describe('fake Twitch (auth, Helix, EventSub WebSocket)', () => {
  let fake: FakeTwitch;

  beforeEach(async () => {
    fake = await startFakeTwitch({ keepaliveTimeoutSeconds: 10 });
    fake.addUser({ id: '1001', login: 'streamer', displayName: 'Streamer' });
  });
  afterEach(async () => {
    await fake.stop();
  });

  it('validates issued tokens and rejects unknown ones with 401', async () => {
    const { accessToken } = fake.issueToken('1001', { scopes: ['chat:read'] });
    const ok = await fetch(`${fake.url}/auth/validate`, { headers: { authorization: `OAuth ${accessToken}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ client_id: fake.clientId, login: 'streamer', user_id: '1001', scopes: ['chat:read'] });
    const bad = await fetch(`${fake.url}/auth/validate`, { headers: { authorization: 'OAuth nope' } });
    expect(bad.status).toBe(401);
  });

  it('refreshes with a known refresh token, rotating it, and answers 400 to a bad one', async () => {
    const { accessToken, refreshToken } = fake.issueToken('1001', { scopes: ['chat:read'] });
    const query = (token: string) =>
      new URLSearchParams({
        grant_type: 'refresh_token',
        client_id: fake.clientId,
        client_secret: fake.clientSecret,
        refresh_token: token,
      }).toString();
    const refreshed = await fetch(`${fake.url}/auth/token?${query(refreshToken)}`, { method: 'POST' });
    expect(refreshed.status).toBe(200);
    const body = (await refreshed.json()) as { access_token: string; refresh_token: string; scope: string[] };
    expect(body.access_token).not.toBe(accessToken);
    expect(body.refresh_token).not.toBe(refreshToken);
    expect(body.scope).toEqual(['chat:read']);
    // The old access token is no longer valid; the old refresh token cannot be reused.
    expect((await fetch(`${fake.url}/auth/validate`, { headers: { authorization: `OAuth ${accessToken}` } })).status).toBe(401);
    expect((await fetch(`${fake.url}/auth/token?${query(refreshToken)}`, { method: 'POST' })).status).toBe(400);
    expect((await fetch(`${fake.url}/auth/token?${query('garbage')}`, { method: 'POST' })).status).toBe(400);
  });

  it('exchanges an authorization code once, checking the redirect URI', async () => {
    const code = fake.createAuthorizationCode('1001', { scopes: ['bits:read'], redirectUri: 'http://localhost/cb' });
    const exchange = (redirectUri: string) =>
      fetch(
        `${fake.url}/auth/token?${new URLSearchParams({ grant_type: 'authorization_code', client_id: fake.clientId, client_secret: fake.clientSecret, code, redirect_uri: redirectUri })}`,
        { method: 'POST' },
      );
    expect((await exchange('http://elsewhere/cb')).status).toBe(400);
    const ok = await exchange('http://localhost/cb');
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ scope: ['bits:read'], token_type: 'bearer' });
    expect((await exchange('http://localhost/cb')).status).toBe(400);
  });

  it('serves Helix under /mock with rate-limit headers and requires a token and client id', async () => {
    const { accessToken } = fake.issueToken('1001');
    fake.setStream('1001', { title: 'Speedrun', gameName: 'Celeste', viewerCount: 42 });
    const headers = { authorization: `Bearer ${accessToken}`, 'client-id': fake.clientId };
    const users = await fetch(`${fake.url}/mock/users?login=streamer`, { headers });
    expect(users.headers.get('ratelimit-remaining')).toBe('799');
    expect(((await users.json()) as any).data[0]).toMatchObject({ id: '1001', login: 'streamer', display_name: 'Streamer' });
    const streams = await fetch(`${fake.url}/mock/streams?user_id=1001`, { headers });
    expect(((await streams.json()) as any).data[0]).toMatchObject({
      title: 'Speedrun',
      game_name: 'Celeste',
      viewer_count: 42,
      type: 'live',
    });
    expect((await fetch(`${fake.url}/mock/users?id=1001`, { headers: { 'client-id': fake.clientId } })).status).toBe(401);
  });

  it('welcomes sockets, records subscriptions, sends notifications, duplicates, revocations and reconnects', async () => {
    const { accessToken } = fake.issueToken('1001', { scopes: ['moderator:read:followers'] });
    const client = await connect(`ws://127.0.0.1:${fake.port}/ws`);
    const welcome = await client.next('session_welcome');
    const sessionId = welcome.payload.session.id as string;
    expect(welcome.payload.session.keepalive_timeout_seconds).toBe(10);

    const created = await fetch(`${fake.url}/eventsub/subscriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'client-id': fake.clientId, 'content-type': 'application/json' },
      body: JSON.stringify({
        type: 'channel.follow',
        version: '2',
        condition: { broadcaster_user_id: '1001', moderator_user_id: '1001' },
        transport: { method: 'websocket', session_id: sessionId },
      }),
    });
    expect(created.status).toBe(202);
    expect(fake.activeSubscriptions('channel.follow')).toHaveLength(1);
    expect(fake.activeSubscriptions()[0]!.transport.session_id).toBe(sessionId);

    const [messageId] = fake.notify('channel.follow', '2', { user_id: '7', user_login: 'fan', user_name: 'Fan' });
    const notification = await client.next('notification');
    expect(notification.metadata).toMatchObject({ message_id: messageId, subscription_type: 'channel.follow', subscription_version: '2' });
    expect(notification.payload.event.user_login).toBe('fan');

    const before = client.frames.length;
    fake.sendDuplicate(messageId!);
    expect((await client.next('notification', before)).metadata.message_id).toBe(messageId);

    const reconnecting = fake.sendReconnect();
    const reconnect = await client.next('session_reconnect');
    const second = await connect(reconnect.payload.session.reconnect_url as string);
    await reconnecting;
    expect((await second.next('session_welcome')).payload.session.id).toBe(sessionId);
    client.socket.close();
    await client.closed;
    expect(fake.activeSubscriptions()).toHaveLength(1);
    fake.notify('channel.follow', '2', { user_id: '8' });
    expect((await second.next('notification')).payload.event.user_id).toBe('8');

    fake.revoke('channel.follow');
    expect((await second.next('revocation')).payload.subscription.status).toBe('authorization_revoked');
    expect(fake.activeSubscriptions()).toHaveLength(0);
    second.socket.close();
    await second.closed;
    expect(fake.sessions[0]!.status).toBe('disconnected');
  });

  it('refuses subscriptions for an unknown session or without the required scope', async () => {
    const { accessToken } = fake.issueToken('1001', { scopes: [] });
    const client = await connect(`ws://127.0.0.1:${fake.port}/ws`);
    const sessionId = (await client.next('session_welcome')).payload.session.id as string;
    const create = (type: string, session: string) =>
      fetch(`${fake.url}/eventsub/subscriptions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'client-id': fake.clientId, 'content-type': 'application/json' },
        body: JSON.stringify({
          type,
          version: '1',
          condition: { broadcaster_user_id: '1001' },
          transport: { method: 'websocket', session_id: session },
        }),
      });
    expect((await create('stream.online', 'no-such-session')).status).toBe(400);
    expect((await create('channel.cheer', sessionId)).status).toBe(403);
    expect((await create('stream.online', sessionId)).status).toBe(202);
    expect((await create('stream.online', sessionId)).status).toBe(409);
    client.socket.close();
  });
});
