import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { createConnectionCaps } from '../../src/services/api-gateway/caps.js';
import { createAuthenticator } from '../../src/services/api-gateway/index.js';
import { CloseCode, createChatGateway } from '../../src/services/api-gateway/ws.js';
import { createLogger, createSecretScrubber } from '../../src/runtime/logger.js';

/** A socket double: records frames and close codes, and closes like ws does. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  frames: any[] = [];
  closedWith?: number;
  send(data: string) {
    this.frames.push(JSON.parse(data));
  }
  close(code: number) {
    if (this.readyState !== 1) return;
    this.readyState = 3;
    this.closedWith = code;
    this.emit('close');
  }
}

const silent = createLogger({ level: 'silent', scrubber: createSecretScrubber() });

function gateway(limits: { maxConnections?: number; maxPerToken?: number }) {
  const authenticator = createAuthenticator(
    [
      { token: 'token-aaaaaaaa', role: 'owner', label: 'token#1' },
      { token: 'token-bbbbbbbb', role: 'viewer', label: 'token#2' },
    ],
    false,
  );
  const chat = createChatGateway({
    instanceId: 'caps',
    limits,
    authenticator: () => authenticator,
    publish: async () => undefined,
    logger: silent,
  });
  const open = (token?: string) => {
    const socket = new FakeSocket();
    const principal = token ? authenticator.authenticate(token) : undefined;
    chat.accept(socket as unknown as WebSocket, principal?.ok ? principal.principal : undefined, '127.0.0.1');
    return socket;
  };
  return { chat, open };
}

describe('connection caps', () => {
  it('gives each key at most its share and every key together at most the total, and frees a slot on release', () => {
    const caps = createConnectionCaps({ max: 3, perKey: 2, what: 'sockets' });
    const a1 = caps.acquire('a');
    const a2 = caps.acquire('a');
    const a3 = caps.acquire('a');
    expect([a1.ok, a2.ok, a3.ok]).toEqual([true, true, false]);
    expect(a3.ok ? '' : a3.reason).toMatch(/at most 2 sockets per token/);
    const b1 = caps.acquire('b');
    const b2 = caps.acquire('b');
    expect(b1.ok).toBe(true);
    expect(b2.ok ? '' : b2.reason).toMatch(/maximum of 3 sockets/);
    if (a1.ok) {
      a1.release();
      a1.release(); // a second release frees nothing more
    }
    expect(caps.open).toBe(2);
    expect(caps.acquire('a').ok).toBe(true);
    expect(caps.acquire('a').ok).toBe(false);
  });

  it('closes a chat socket over the per-token cap with 1013 and a RATE_LIMITED frame, while another token still connects', () => {
    const { open } = gateway({ maxPerToken: 2 });
    const first = open('token-aaaaaaaa');
    const second = open('token-aaaaaaaa');
    const third = open('token-aaaaaaaa');
    expect(first.frames[0]).toMatchObject({ type: 'ready' });
    expect(second.frames[0]).toMatchObject({ type: 'ready' });
    expect(third.closedWith).toBe(CloseCode.tryAgainLater);
    expect(third.frames).toEqual([
      expect.objectContaining({
        type: 'error',
        code: 'RATE_LIMITED',
        message: expect.stringMatching(/at most 2 chat connections per token/),
      }),
    ]);
    expect(open('token-bbbbbbbb').frames[0]).toMatchObject({ type: 'ready' });
    first.close(1000);
    expect(open('token-aaaaaaaa').frames[0]).toMatchObject({ type: 'ready' });
  });

  it('refuses a socket past the server-wide cap before authentication, and counts sockets still waiting for their auth frame', () => {
    const { chat, open } = gateway({ maxConnections: 2, maxPerToken: 10 });
    const waiting = open();
    open('token-aaaaaaaa');
    const refused = open('token-bbbbbbbb');
    expect(refused.closedWith).toBe(CloseCode.tryAgainLater);
    expect(refused.frames[0]).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/maximum of 2 chat connections/) });
    expect(chat.stats().clients).toBe(2);
    waiting.close(1000);
    expect(open('token-bbbbbbbb').frames[0]).toMatchObject({ type: 'ready' });
    chat.close();
  });
});
