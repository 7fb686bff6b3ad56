import { randomBytes } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBitBratError } from '../../src/core/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { mapFirestoreError } from '../../src/store/firestore.js';
import { firestoreEmulatorInstalled, startFirestoreEmulator, type FirestoreEmulator } from '../support/firestore-emulator.js';
import { requireServer } from '../support/wait.js';
import { describeStoreContract } from './store-contract.js';

const projectId = 'bitbrat-test';
const key = randomBytes(32).toString('hex');
const secrets = { get: async (name: string) => (name === 'TOKEN_ENCRYPTION_KEY' ? key : undefined) };
const runPrefix = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}_`;

let emulator: FirestoreEmulator | undefined;

beforeAll(async () => {
  requireServer(
    'Firestore emulator',
    firestoreEmulatorInstalled(),
    'install the google-cloud-sdk cloud-firestore-emulator component and java',
  );
  emulator = await startFirestoreEmulator();
}, 120_000);

afterAll(async () => {
  await emulator?.stop();
});

const open = async (prefix: string): Promise<Store> =>
  await createStore({ driver: 'firestore', firestore: { projectId, host: emulator!.host, collectionPrefix: prefix }, secrets });

describeStoreContract('firestore (emulator)', { create: () => open(`${runPrefix}contract_`) });

describe('firestore store', () => {
  let store: Store;
  let raw: Firestore;
  const prefix = `${runPrefix}driver_`;

  beforeAll(async () => {
    store = await open(prefix);
    await store.init();
    raw = new Firestore({ projectId, host: emulator!.host, ssl: false, universeDomain: 'googleapis.com' });
  });
  afterAll(async () => {
    await store?.close();
    await raw?.terminate();
  });

  async function codeOf(promise: Promise<unknown>) {
    const error = await promise.then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    return isBitBratError(error) ? error.code : error;
  }

  it('refuses documents over 1 MiB with DOCUMENT_TOO_LARGE', async () => {
    const big = 'x'.repeat(1_100_000);
    const record = { id: 'huge', correlationId: 'huge', type: 't', receivedAt: '2030-01-01T00:00:00.000Z' };
    expect(await codeOf(store.recordIngress([{ ...record, ingress: { envelope: {} as never, raw: big } }]))).toBe('DOCUMENT_TOO_LARGE');
    expect(await codeOf(store.recordFinal([{ ...record, outcome: 'completed', replyText: big }]))).toBe('DOCUMENT_TOO_LARGE');
    expect(await codeOf(store.mergeSource({ id: 'twitch:big', platform: 'twitch', metadata: { blob: big } }))).toBe('DOCUMENT_TOO_LARGE');
    expect(
      await codeOf(
        store.recordIngress([
          { ...record, id: 'small' },
          { ...record, ingress: { envelope: {} as never, raw: big } },
        ]),
      ),
    ).toBe('DOCUMENT_TOO_LARGE');
    expect(await store.getEvent('huge')).toBeUndefined();
    expect(await store.getEvent('small')).toBeUndefined();
    // Just under the limit is fine.
    await store.recordIngress([{ ...record, id: 'large', ingress: { envelope: {} as never, raw: 'y'.repeat(900_000) } }]);
    expect((await store.getEvent('large'))?.ingress?.raw).toHaveLength(900_000);
  });

  it("maps the server's own size rejection to DOCUMENT_TOO_LARGE", async () => {
    const error = await raw
      .collection(`${prefix}scratch`)
      .doc('big')
      .set({ blob: 'z'.repeat(1_100_000) })
      .then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
    expect(error).toBeDefined();
    const mapped = mapFirestoreError(error);
    expect(isBitBratError(mapped) && mapped.code).toBe('DOCUMENT_TOO_LARGE');
  });

  it('stores oauth tokens encrypted and records the layout version', async () => {
    await store.putToken({
      id: 'twitch:bot',
      accessToken: 'fs-PLAINTEXT-access',
      refreshToken: 'fs-PLAINTEXT-refresh',
      scopes: ['chat:read'],
      obtainedAt: '2030-01-01T00:00:00.000Z',
    });
    const doc = (await raw.collection(`${prefix}oauth_tokens`).doc('twitch:bot').get()).data();
    expect(doc?.accessToken).toMatch(/^enc:v1:/);
    expect(JSON.stringify(doc)).not.toContain('PLAINTEXT');
    expect((await raw.collection(`${prefix}meta`).doc('schema').get()).data()?.version).toBe(1);
  });

  it('escapes ids that are not valid document ids', async () => {
    await store.claimKey('urls', 'https://example.com/a/b', 60_000);
    expect(await store.claimKey('urls', 'https://example.com/a/b', 60_000)).toBe(false);
    await store.upsertCommand({
      name: '..',
      response: 'dots',
      aliases: [],
      minRole: 'viewer',
      cooldownSec: 0,
      userCooldownSec: 0,
      enabled: true,
    });
    expect((await store.getCommand('..'))?.response).toBe('dots');
  });

  it('keeps counts exact when two store instances contend through Firestore transactions', async () => {
    const other = await open(prefix);
    await other.init();
    try {
      const results = await Promise.all(
        Array.from({ length: 4 }, (_, index) => (index % 2 === 0 ? store : other).incrementCounter('contended', 1)),
      );
      expect([...results].sort()).toEqual([1, 2, 3, 4]);
      await Promise.all([
        store.mergeSource({ id: 'twitch:two', platform: 'twitch', metrics: { messagesIn: 1 } }),
        other.mergeSource({ id: 'twitch:two', platform: 'twitch', metrics: { messagesOut: 2 } }),
      ]);
      expect((await other.getSource('twitch:two'))?.metrics).toEqual({ messagesIn: 1, messagesOut: 2 });
    } finally {
      await other.close();
    }
  });

  it('answers ping false once the emulator is gone', async () => {
    expect(await store.ping()).toBe(true);
    await emulator!.stop();
    expect(await store.ping()).toBe(false);
  });
});
