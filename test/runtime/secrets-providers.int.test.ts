import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { BitBratError } from '../../src/core/index.js';
import { requireSecret } from '../../src/runtime/secrets.js';
import { createSecretsProvider } from '../../src/runtime/secrets-providers.js';
import { startFakeSecretManager, type FakeSecretManager } from '../fakes/secret-manager.js';
import { freePort } from '../support/ports.js';

const caught = async (promise: Promise<unknown>): Promise<BitBratError> => {
  try {
    await promise;
  } catch (error) {
    return error as BitBratError;
  }
  throw new Error('expected a rejection');
};

describe('the env secrets provider', () => {
  it('reads secrets from the environment snapshot and treats empty values as not set', async () => {
    const provider = createSecretsProvider({ kind: 'env', env: { TWITCH_CLIENT_SECRET: 's3cret', EMPTY: '' } });
    expect(provider.kind).toBe('env');
    expect(await provider.get('TWITCH_CLIENT_SECRET')).toBe('s3cret');
    expect(await provider.get('EMPTY')).toBeUndefined();
    expect(await provider.get('MISSING')).toBeUndefined();
  });
});

describe('the file secrets provider', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bitbrat-secrets-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads <dir>/<NAME> and strips the trailing newline only', async () => {
    writeFileSync(join(dir, 'OPENAI_API_KEY'), '  sk-abc def  \n');
    const provider = createSecretsProvider({ kind: 'file', dir });
    expect(provider.kind).toBe('file');
    expect(await provider.get('OPENAI_API_KEY')).toBe('  sk-abc def  ');
  });

  it('falls back to the lower-case file name, as compose secrets are usually named', async () => {
    writeFileSync(join(dir, 'twitch_client_secret'), 'from-compose\r\n');
    const provider = createSecretsProvider({ kind: 'file', dir });
    expect(await provider.get('TWITCH_CLIENT_SECRET')).toBe('from-compose');
  });

  it('returns undefined for a missing or empty file', async () => {
    writeFileSync(join(dir, 'EMPTY'), '\n');
    const provider = createSecretsProvider({ kind: 'file', dir });
    expect(await provider.get('NOT_THERE')).toBeUndefined();
    expect(await provider.get('EMPTY')).toBeUndefined();
    await expect(requireSecret(provider, 'NOT_THERE')).rejects.toMatchObject({ code: 'SECRET_MISSING' });
  });

  it('caches a value for its TTL and rereads the file afterwards (rotation)', async () => {
    // A fake clock: a real 150 ms could pass between two reads on a busy machine.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      writeFileSync(join(dir, 'TOKEN_ENCRYPTION_KEY'), 'first\n');
      const provider = createSecretsProvider({ kind: 'file', dir, cacheTtlMs: 150 });
      expect(await provider.get('TOKEN_ENCRYPTION_KEY')).toBe('first');
      writeFileSync(join(dir, 'TOKEN_ENCRYPTION_KEY'), 'second\n');
      vi.advanceTimersByTime(149);
      expect(await provider.get('TOKEN_ENCRYPTION_KEY')).toBe('first');
      vi.advanceTimersByTime(2);
      expect(await provider.get('TOKEN_ENCRYPTION_KEY')).toBe('second');
    } finally {
      vi.useRealTimers();
    }
  });

  it('fails with a clear PROVIDER_ERROR when the secret path cannot be read', async () => {
    // A directory where the file should be is unreadable as a file for every user, root included.
    mkdirSync(join(dir, 'BROKEN'));
    const provider = createSecretsProvider({ kind: 'file', dir });
    const error = await caught(provider.get('BROKEN'));
    expect(error).toBeInstanceOf(BitBratError);
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.message).toContain('secret BROKEN');
    expect(error.message).toContain(join(dir, 'BROKEN'));
  });

  it('refuses names that could escape the secrets directory', async () => {
    writeFileSync(join(dir, 'inside'), 'x');
    const provider = createSecretsProvider({ kind: 'file', dir: join(dir, 'sub') });
    await expect(provider.get('../inside')).rejects.toMatchObject({ code: 'PROVIDER_ERROR' });
  });

  it('defaults to /run/secrets', async () => {
    const provider = createSecretsProvider({ kind: 'file' });
    // Nothing is mounted there on a test machine; the point is that it looks there and finds nothing.
    expect(await provider.get('BITBRAT_TEST_SECRET_THAT_DOES_NOT_EXIST')).toBeUndefined();
  });
});

describe('the gcp (Secret Manager) secrets provider against a fake Secret Manager and metadata server', () => {
  const project = 'bitbrat-prod';
  let fake: FakeSecretManager;

  beforeAll(async () => {
    fake = await startFakeSecretManager();
  });

  afterAll(async () => {
    await fake.stop();
  });

  beforeEach(() => {
    fake.requests.length = 0;
  });

  /** What the host passes: the env snapshot carries the endpoint overrides. */
  const gcp = (extra: Record<string, string> = {}, cacheTtlMs?: number) =>
    createSecretsProvider({
      kind: 'gcp',
      projectId: project,
      env: { SECRET_MANAGER_ENDPOINT: fake.url, GCE_METADATA_HOST: `127.0.0.1:${fake.port}`, ...extra },
      cacheTtlMs,
    });

  it('reads the latest version with a token from the metadata server and decodes the base64 payload', async () => {
    fake.setSecret(project, 'TWITCH_CLIENT_SECRET', 'ünïcode value\nwith newline');
    const provider = gcp();
    expect(provider.kind).toBe('gcp');
    expect(await provider.get('TWITCH_CLIENT_SECRET')).toBe('ünïcode value\nwith newline');
    expect(fake.requests.map((request) => request.path)).toEqual([
      '/computeMetadata/v1/instance/service-accounts/default/token',
      `/v1/projects/${project}/secrets/TWITCH_CLIENT_SECRET/versions/latest:access`,
    ]);
    expect(fake.requests.every((request) => request.authorized)).toBe(true);
  });

  it('caches values and the token: a second get makes no request', async () => {
    fake.setSecret(project, 'OPENAI_API_KEY', 'sk-cached');
    const provider = gcp();
    expect(await provider.get('OPENAI_API_KEY')).toBe('sk-cached');
    expect(await provider.get('OPENAI_API_KEY')).toBe('sk-cached');
    expect(fake.requests.filter((request) => request.path.endsWith(':access'))).toHaveLength(1);
    fake.setSecret(project, 'OAUTH_STATE_SECRET', 'other');
    expect(await provider.get('OAUTH_STATE_SECRET')).toBe('other');
    expect(fake.requests.filter((request) => request.path.endsWith('/token'))).toHaveLength(1);
  });

  it('returns undefined for a secret that does not exist (404)', async () => {
    expect(await gcp().get('NEVER_CREATED')).toBeUndefined();
  });

  it('fails with SECRET_MISSING naming the secret (never a value) when access is denied (403)', async () => {
    fake.setSecret(project, 'API_GATEWAY_TOKENS', 'super-secret-token-value');
    fake.deny(project, 'API_GATEWAY_TOKENS');
    const error = await caught(gcp().get('API_GATEWAY_TOKENS'));
    expect(error).toBeInstanceOf(BitBratError);
    expect(error.code).toBe('SECRET_MISSING');
    expect(error.message).toContain('API_GATEWAY_TOKENS');
    expect(error.message).toContain('secretAccessor');
    expect(error.message).not.toContain('super-secret-token-value');
  });

  it('fails with a retryable PROVIDER_ERROR on 5xx and does not cache the failure', async () => {
    fake.setSecret(project, 'TWITCH_REFRESH_TOKEN', 'refresh-value');
    const provider = gcp();
    fake.failNext(503);
    const error = await caught(provider.get('TWITCH_REFRESH_TOKEN'));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('HTTP 503');
    expect(error.message).not.toContain('refresh-value');
    expect(await provider.get('TWITCH_REFRESH_TOKEN')).toBe('refresh-value');
  });

  it('fetches a fresh token once when Secret Manager rejects the cached one (401)', async () => {
    fake.setSecret(project, 'TWITCH_ACCESS_TOKEN', 'access-value');
    fake.setSecret(project, 'TWITCH_CLIENT_ID', 'client-id');
    const provider = gcp();
    expect(await provider.get('TWITCH_CLIENT_ID')).toBe('client-id');
    fake.rotateToken();
    expect(await provider.get('TWITCH_ACCESS_TOKEN')).toBe('access-value');
    const paths = fake.requests.map((request) => `${request.path.endsWith('/token') ? 'token' : 'access'}:${request.authorized}`);
    expect(paths).toEqual(['token:true', 'access:true', 'access:false', 'token:true', 'access:true']);
  });

  it('uses GOOGLE_OAUTH_ACCESS_TOKEN instead of the metadata server when it is set', async () => {
    fake.setSecret(project, 'TOKEN_ENCRYPTION_KEY', 'key-value');
    const provider = gcp({ GOOGLE_OAUTH_ACCESS_TOKEN: fake.currentToken(), GCE_METADATA_HOST: '127.0.0.1:1' });
    expect(await provider.get('TOKEN_ENCRYPTION_KEY')).toBe('key-value');
    expect(fake.requests.some((request) => request.path.endsWith('/token'))).toBe(false);
  });

  it('fails with a retryable PROVIDER_ERROR when Secret Manager cannot be reached', async () => {
    const port = await freePort();
    const provider = createSecretsProvider({
      kind: 'gcp',
      projectId: project,
      env: { SECRET_MANAGER_ENDPOINT: `http://127.0.0.1:${port}`, GOOGLE_OAUTH_ACCESS_TOKEN: 'x' },
    });
    const error = await caught(provider.get('ANYTHING'));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.retryable).toBe(true);
  });

  it('needs a project id', () => {
    expect(() => createSecretsProvider({ kind: 'gcp', env: {} })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
