import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { BitBratError } from '../core/index.js';
import { API_FLAGS, apiTarget, cliConfig } from './context.js';
import { parseFlags } from './flags.js';

/** Exit codes of `bitbrat send`. */
export const SendExit = { ok: 0, error: 1, usage: 2, noReply: 3, timeout: 4 } as const;

const ROLES = ['viewer', 'subscriber', 'vip', 'trusted', 'moderator', 'broadcaster'];

interface Output {
  write(text: string): unknown;
}

/**
 * `bitbrat send "text" [--user name] [--role moderator] [--channel c] [--url http://127.0.0.1:8080]
 * [--token T] [--timeout 15000]`: sends one chat message through the api-gateway's WebSocket and prints
 * the bot's reply. The token defaults to API_TOKEN, then `${DATA_DIR}/gateway-token` (the embedded
 * default). Exit codes: 0 reply printed, 1 error, 2 usage, 3 processed without a reply, 4 timed out.
 */
export async function sendCommand(
  args: string[],
  env: Record<string, string | undefined>,
  io: { stdout: Output; stderr: Output } = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const { values, positionals } = parseFlags('send', args, {
    user: { type: 'string' },
    role: { type: 'string' },
    channel: { type: 'string' },
    ...API_FLAGS,
    timeout: { type: 'string' },
  });
  const text = positionals.join(' ').trim();
  if (!text) throw new BitBratError('BAD_REQUEST', 'give the message text, e.g. bitbrat send "!ping"');
  const timeoutMs = values.timeout === undefined ? 15_000 : Number(values.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000)
    throw new BitBratError('BAD_REQUEST', '--timeout is milliseconds from 100 to 600000');
  const role = values.role?.toLowerCase();
  if (role !== undefined && !ROLES.includes(role)) throw new BitBratError('BAD_REQUEST', `--role must be one of ${ROLES.join(', ')}`);

  const target = await apiTarget(cliConfig(env), env, { url: values.url, token: values.token });
  let wsUrl: URL;
  try {
    wsUrl = new URL('/ws/v1', target.url.replace(/^http/i, 'ws'));
  } catch {
    throw new BitBratError('BAD_REQUEST', `--url ${target.url} is not a URL`);
  }
  const id = randomUUID();
  const frame = {
    type: 'chat',
    id,
    text,
    ...(values.user || role ? { user: { name: values.user ?? 'console', ...(role ? { role } : {}) } } : {}),
    ...(values.channel ? { channel: values.channel } : {}),
  };

  return await new Promise<number>((resolve) => {
    const socket = new WebSocket(wsUrl, {
      headers: target.token ? { authorization: `Bearer ${target.token}` } : {},
      handshakeTimeout: Math.min(timeoutMs, 10_000),
    });
    let envelopeId: string | undefined;
    let settled = false;
    const finish = (code: number, message?: { out?: string; err?: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (message?.out) io.stdout.write(message.out + '\n');
      if (message?.err) io.stderr.write(message.err + '\n');
      socket.removeAllListeners('close');
      socket.on('error', () => undefined);
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.terminate();
      resolve(code);
    };
    const timer = setTimeout(() => {
      const where = envelopeId
        ? ` The message was accepted as envelope ${envelopeId}: see GET ${target.url}/api/events/${envelopeId} or the dashboard.`
        : '';
      finish(SendExit.timeout, { err: `bitbrat send: no reply within ${timeoutMs} ms.${where}` });
    }, timeoutMs);

    socket.on('unexpected-response', (_request, response) => {
      const status = response.statusCode ?? 0;
      const hint =
        status === 401
          ? target.token
            ? 'the gateway refused the token (check --token, API_TOKEN or data/gateway-token)'
            : 'the gateway needs a token: pass --token or set API_TOKEN'
          : `the gateway answered HTTP ${status}`;
      finish(SendExit.error, { err: `bitbrat send: ${hint}` });
    });
    socket.on('error', (error) => {
      finish(SendExit.error, {
        err: `bitbrat send: cannot connect to ${wsUrl.href}: ${error.message}. Is the platform running (npm start)? Use --url for another address.`,
      });
    });
    socket.on('open', () => socket.send(JSON.stringify(frame)));
    socket.on('message', (data) => {
      let message: Record<string, any>;
      try {
        message = JSON.parse(String(data));
      } catch {
        return;
      }
      switch (message.type) {
        case 'ack':
          if (message.id === id) envelopeId = message.envelopeId;
          return;
        case 'reply':
          if (message.inReplyTo === id) finish(SendExit.ok, { out: String(message.text) });
          return;
        case 'noreply':
          if (message.inReplyTo === id) {
            const why = message.reason ? `: ${message.reason}` : '';
            finish(SendExit.noReply, { err: `bitbrat send: no reply${why} (outcome: ${message.outcome}; envelope ${message.envelopeId})` });
          }
          return;
        case 'error':
          if (message.inReplyTo === undefined || message.inReplyTo === id)
            finish(SendExit.error, { err: `bitbrat send: ${message.code}: ${message.message}` });
          return;
        default:
      }
    });
    socket.on('close', (code, reason) => {
      finish(SendExit.error, {
        err: `bitbrat send: the connection closed before a reply (${code}${reason.length ? ` ${reason.toString()}` : ''})`,
      });
    });
  });
}
