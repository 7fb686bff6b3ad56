import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createBus, type MessageBus } from '../bus/index.js';
import { BitBratError } from '../core/index.js';
import { loadPlatformConfig, type PlatformConfig } from '../runtime/config.js';
import { busOptionsFromConfig, createSecrets, storeOptionsFromConfig } from '../runtime/host.js';
import type { Store } from '../store/index.js';

/** Platform config for an operator command (same variables as the services). */
export function cliConfig(env: Record<string, string | undefined>): Readonly<PlatformConfig> {
  return loadPlatformConfig(env);
}

/** Opens the configured store directly (for commands that run next to, not inside, the platform). */
export async function openStore(config: Readonly<PlatformConfig>, env: Record<string, string | undefined>): Promise<Store> {
  const { createStore } = await import('../store/index.js');
  const store = await createStore(storeOptionsFromConfig(config, await createSecrets(config, env)));
  await store.init();
  return store;
}

/** Connects to the configured bus; the memory bus lives inside the running platform, so it is refused. */
export async function openBus(config: Readonly<PlatformConfig>): Promise<MessageBus> {
  if (config.MESSAGE_BUS_DRIVER === 'memory') {
    throw new BitBratError(
      'NOT_CONFIGURED',
      'the memory bus lives inside the running platform; start it (npm start) so this command can go through its API, or use MESSAGE_BUS_DRIVER=nats|pubsub',
    );
  }
  const bus = await createBus(busOptionsFromConfig(config, 'bitbrat-cli'));
  await bus.connect();
  return bus;
}

/** The flags of a command that goes through the running platform's API: where it listens, and the token. */
export const API_FLAGS = { url: { type: 'string' }, token: { type: 'string' } } as const;

/** The running platform's API: `--url`/API_URL or http://HOST:PORT, with `--token`/API_TOKEN or the embedded token file. */
export async function apiTarget(
  config: Readonly<PlatformConfig>,
  env: Record<string, string | undefined>,
  flags: { url?: string; token?: string } = {},
) {
  const host = config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST;
  const url = (flags.url ?? env.API_URL ?? `http://${host}:${config.PORT}`).replace(/\/$/, '');
  let token = flags.token ?? env.API_TOKEN;
  if (!token) token = (await readFile(path.join(config.DATA_DIR ?? './data', 'gateway-token'), 'utf8').catch(() => '')).trim() || undefined;
  return { url, token };
}

/** Calls the API; undefined when nothing is listening there. */
async function callApi(
  target: { url: string; token?: string },
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; json: any } | undefined> {
  let response: Response;
  try {
    response = await fetch(target.url + route, {
      method,
      headers: {
        ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10_000),
    });
  } catch {
    return undefined;
  }
  const text = await response.text();
  let json: unknown = text;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    // keep text
  }
  return { status: response.status, json };
}

/**
 * Calls the API for an operator command (`label`, e.g. "bitbrat dlq"): the answer when it is a success;
 * otherwise writes why to stderr — nothing listening there, or the API's status and message — and
 * returns undefined (the command then exits 1).
 */
export async function callApiOrReport(
  label: string,
  target: { url: string; token?: string },
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; json: any } | undefined> {
  const response = await callApi(target, method, route, body);
  if (!response) {
    process.stderr.write(
      `${label}: nothing answers at ${target.url}. With the embedded store the platform owns the database: start it with "npm start" (or pass --url of a running api-gateway).\n`,
    );
    return undefined;
  }
  if (response.status >= 300) {
    const message = typeof response.json === 'string' ? response.json : (response.json?.message ?? JSON.stringify(response.json));
    process.stderr.write(`${label}: the API answered ${response.status}: ${message}\n`);
    return undefined;
  }
  return response;
}
