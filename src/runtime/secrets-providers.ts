import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BitBratError } from '../core/index.js';
import { createEnvSecretsProvider, type SecretsProvider } from './secrets.js';

/**
 * The secrets providers behind `SECRETS_PROVIDER`: `env` (local), `file` (container secrets mounted as
 * files, e.g. compose `secrets:` under /run/secrets) and `gcp` (Google Secret Manager over its REST API).
 * No provider ever puts a secret's value into an error message or a log line.
 */

export const SecretsProviderKind = { env: 'env', file: 'file', gcp: 'gcp' } as const;
export type SecretsProviderKind = (typeof SecretsProviderKind)[keyof typeof SecretsProviderKind];

export interface SecretsProviderOptions {
  kind: SecretsProviderKind;
  /**
   * The environment snapshot the config module took. `env` reads secrets from it; `gcp` reads its
   * overrides from it: SECRET_MANAGER_ENDPOINT, GCE_METADATA_HOST, GOOGLE_OAUTH_ACCESS_TOKEN.
   */
  env?: Record<string, string | undefined>;
  /** `file`: directory holding one file per secret. Default `/run/secrets`. */
  dir?: string;
  /** `gcp`: the project whose Secret Manager holds the secrets (`GOOGLE_CLOUD_PROJECT`). */
  projectId?: string;
  /** `gcp`: Secret Manager base URL. Default SECRET_MANAGER_ENDPOINT or `https://secretmanager.googleapis.com`. */
  endpoint?: string;
  /** `gcp`: metadata server as `host[:port]` or a URL. Default GCE_METADATA_HOST or `metadata.google.internal`. */
  metadataHost?: string;
  /** `gcp`: a fixed OAuth access token instead of the metadata server. Default GOOGLE_OAUTH_ACCESS_TOKEN. */
  accessToken?: string;
  /** How long a value (or its absence) is reused. Default 5 000 ms for `file`, 300 000 ms for `gcp`. */
  cacheTtlMs?: number;
  /** `gcp`: deadline of one HTTP request. Default 10 000 ms. */
  timeoutMs?: number;
  /** `gcp`: the fetch implementation (tests). Default the global fetch. */
  fetch?: typeof fetch;
}

export const DEFAULT_SECRETS_DIR = '/run/secrets';
export const DEFAULT_FILE_SECRETS_TTL_MS = 5_000;
export const DEFAULT_GCP_SECRETS_TTL_MS = 300_000;
export const DEFAULT_SECRET_MANAGER_ENDPOINT = 'https://secretmanager.googleapis.com';
export const DEFAULT_METADATA_HOST = 'metadata.google.internal';
export const DEFAULT_SECRETS_TIMEOUT_MS = 10_000;
/** Secret names are environment-variable-like; this also keeps them from escaping the secrets dir. */
export const SECRET_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$/;

/** Builds the provider `kind` names. `env` needs `env`; `gcp` needs `projectId`. */
export function createSecretsProvider(options: SecretsProviderOptions): SecretsProvider {
  switch (options.kind) {
    case 'env':
      return createEnvSecretsProvider(options.env ?? {});
    case 'file':
      return createFileSecretsProvider(options);
    case 'gcp':
      return createGcpSecretsProvider(options);
    default:
      throw new BitBratError(
        'CONFIG_INVALID',
        `unknown SECRETS_PROVIDER ${String((options as { kind: unknown }).kind)} (expected env, file or gcp)`,
      );
  }
}

function checkName(name: string, kind: string): void {
  if (!SECRET_NAME_PATTERN.test(name)) {
    throw new BitBratError(
      'PROVIDER_ERROR',
      `invalid secret name ${JSON.stringify(name.slice(0, 80))} (provider: ${kind}); names are letters, digits, _ and -`,
    );
  }
}

interface CacheEntry {
  value: string | undefined;
  expires: number;
}

/** A small TTL cache that also shares one in-flight lookup per name. */
function createCache(ttlMs: number, load: (name: string) => Promise<string | undefined>) {
  const entries = new Map<string, CacheEntry>();
  const loading = new Map<string, Promise<string | undefined>>();
  return async (name: string): Promise<string | undefined> => {
    const hit = entries.get(name);
    if (hit && hit.expires > Date.now()) return hit.value;
    const pending = loading.get(name);
    if (pending) return pending;
    const next = load(name)
      .then((value) => {
        if (ttlMs > 0) entries.set(name, { value, expires: Date.now() + ttlMs });
        return value;
      })
      .finally(() => loading.delete(name));
    loading.set(name, next);
    return next;
  };
}

/**
 * Reads `${dir}/<NAME>`, falling back to `${dir}/<name>` (compose secret names are usually lower-case).
 * The trailing newline editors add is removed; a missing or empty file is "not set".
 */
export function createFileSecretsProvider(options: Pick<SecretsProviderOptions, 'dir' | 'cacheTtlMs'> = {}): SecretsProvider {
  const dir = options.dir ?? DEFAULT_SECRETS_DIR;
  const readOne = async (file: string, name: string): Promise<string | undefined | null> => {
    try {
      const raw = await readFile(file, 'utf8');
      const value = raw.replace(/[\r\n]+$/, '');
      return value === '' ? undefined : value;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw new BitBratError(
        'PROVIDER_ERROR',
        `secret ${name}: cannot read ${file} (${code ?? 'error'}); check the file's permissions for the service's user`,
        { cause: error },
      );
    }
  };
  const get = createCache(options.cacheTtlMs ?? DEFAULT_FILE_SECRETS_TTL_MS, async (name) => {
    const exact = await readOne(path.join(dir, name), name);
    if (exact !== null) return exact;
    if (name.toLowerCase() === name) return undefined;
    const lower = await readOne(path.join(dir, name.toLowerCase()), name);
    return lower === null ? undefined : lower;
  });
  return {
    kind: 'file',
    async get(name) {
      checkName(name, 'file');
      return get(name);
    },
  };
}

function metadataBase(host: string): string {
  const trimmed = host.replace(/\/+$/, '');
  return /^https?:\/\//.test(trimmed) ? trimmed : `http://${trimmed}`;
}

/**
 * Google Secret Manager over REST: `GET {endpoint}/v1/projects/{project}/secrets/{name}/versions/latest:access`
 * with a bearer token from GOOGLE_OAUTH_ACCESS_TOKEN or the metadata server (Cloud Run's service account).
 * 404 means not set; 403 is SECRET_MISSING (no such secret or no secretAccessor grant); 5xx, 429 and
 * network failures are retryable PROVIDER_ERRORs.
 */
export function createGcpSecretsProvider(options: Omit<SecretsProviderOptions, 'kind'>): SecretsProvider {
  const env = options.env ?? {};
  const projectId = options.projectId ?? env.GOOGLE_CLOUD_PROJECT;
  if (!projectId) throw new BitBratError('CONFIG_INVALID', 'SECRETS_PROVIDER=gcp needs GOOGLE_CLOUD_PROJECT');
  const endpoint = (options.endpoint ?? env.SECRET_MANAGER_ENDPOINT ?? DEFAULT_SECRET_MANAGER_ENDPOINT).replace(/\/+$/, '');
  const metadata = metadataBase(options.metadataHost ?? env.GCE_METADATA_HOST ?? DEFAULT_METADATA_HOST);
  const fixedToken = options.accessToken ?? env.GOOGLE_OAUTH_ACCESS_TOKEN;
  const timeoutMs = options.timeoutMs ?? DEFAULT_SECRETS_TIMEOUT_MS;
  const doFetch = options.fetch ?? fetch;
  let token: { value: string; expires: number } | undefined;
  let tokenLoading: Promise<string> | undefined;

  const request = async (url: string, init: RequestInit, what: string): Promise<Response> => {
    try {
      return await doFetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      throw new BitBratError(
        'PROVIDER_ERROR',
        `${what}: request to ${new URL(url).origin} failed: ${error instanceof Error ? error.message : String(error)}`,
        { retryable: true, cause: error },
      );
    }
  };

  const fetchToken = async (): Promise<string> => {
    const url = `${metadata}/computeMetadata/v1/instance/service-accounts/default/token`;
    const response = await request(url, { headers: { 'Metadata-Flavor': 'Google' } }, 'access token from the metadata server');
    if (!response.ok) {
      await response.body?.cancel();
      throw new BitBratError('PROVIDER_ERROR', `access token from the metadata server: HTTP ${response.status}`, {
        retryable: response.status >= 500,
      });
    }
    const body = (await response.json().catch(() => undefined)) as { access_token?: unknown; expires_in?: unknown } | undefined;
    if (!body || typeof body.access_token !== 'string' || body.access_token === '') {
      throw new BitBratError('PROVIDER_ERROR', 'access token from the metadata server: the response has no access_token');
    }
    const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : 300;
    // Refresh a minute early so a token never expires between our check and Google's.
    token = { value: body.access_token, expires: Date.now() + Math.max(0, expiresIn - 60) * 1_000 };
    return token.value;
  };

  const accessToken = async (forceRefresh: boolean): Promise<string> => {
    if (fixedToken) return fixedToken;
    if (!forceRefresh && token && token.expires > Date.now()) return token.value;
    tokenLoading ??= fetchToken().finally(() => (tokenLoading = undefined));
    return tokenLoading;
  };

  const access = async (name: string): Promise<string | undefined> => {
    const url = `${endpoint}/v1/projects/${encodeURIComponent(projectId)}/secrets/${encodeURIComponent(name)}/versions/latest:access`;
    const what = `secret ${name} (project ${projectId})`;
    let response: Response | undefined;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const bearer = await accessToken(attempt > 0);
      response = await request(url, { headers: { Authorization: `Bearer ${bearer}`, Accept: 'application/json' } }, what);
      // An expired or revoked token: fetch a fresh one once (not possible with a fixed token).
      if (response.status === 401 && attempt === 0 && !fixedToken) {
        await response.body?.cancel();
        continue;
      }
      break;
    }
    const status = response!.status;
    if (status === 200) {
      const body = (await response!.json().catch(() => undefined)) as { payload?: { data?: unknown } } | undefined;
      const data = body?.payload?.data;
      if (typeof data !== 'string') throw new BitBratError('PROVIDER_ERROR', `${what}: Secret Manager answered without payload.data`);
      const value = Buffer.from(data, 'base64').toString('utf8');
      return value === '' ? undefined : value;
    }
    // Error bodies carry a status word (NOT_FOUND, PERMISSION_DENIED, …); values never appear in them.
    const errorStatus = await response!
      .json()
      .then((body: { error?: { status?: unknown } }) => (typeof body?.error?.status === 'string' ? body.error.status : undefined))
      .catch(() => undefined);
    const detail = `HTTP ${status}${errorStatus ? ` ${errorStatus}` : ''}`;
    if (status === 404) return undefined;
    if (status === 403) {
      throw new BitBratError(
        'SECRET_MISSING',
        `${what}: permission denied (${detail}); the secret does not exist or the service account lacks roles/secretmanager.secretAccessor on it`,
      );
    }
    if (status === 401) throw new BitBratError('PROVIDER_ERROR', `${what}: the access token was rejected (${detail})`);
    throw new BitBratError('PROVIDER_ERROR', `${what}: Secret Manager returned ${detail}`, { retryable: status >= 500 || status === 429 });
  };

  const get = createCache(options.cacheTtlMs ?? DEFAULT_GCP_SECRETS_TTL_MS, access);
  return {
    kind: 'gcp',
    async get(name) {
      checkName(name, 'gcp');
      return get(name);
    },
  };
}
