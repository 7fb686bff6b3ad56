/**
 * The frame service tests share: one embedded store per test file, and after each test its host, bus and
 * fakes stopped in that order (the host first, so nothing publishes to a closed bus).
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { createMemoryBus, type MemoryBus, type MessageBus } from '../../src/bus/index.js';
import { Topic } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import type { ServiceDefinition } from '../../src/runtime/service.js';
import { createStore, type Store } from '../../src/store/index.js';
import { collect, startOnMemoryBus, startTestHost, type MemoryBusHost, type TestHostOptions } from './harness.js';

/** Secrets that hold only TOKEN_ENCRYPTION_KEY: `char` 64 times (a hex digit makes a valid key). */
export const tokenKeySecrets = (char: string) => ({
  get: async (name: string) => (name === 'TOKEN_ENCRYPTION_KEY' ? char.repeat(64) : undefined),
});

/**
 * An embedded (PGlite) store, initialised: in memory unless `dataDir` names a folder; with `tokenKey`, it
 * encrypts OAuth tokens with the key `tokenKeySecrets(tokenKey)` holds.
 */
export async function openEmbeddedStore(options: { dataDir?: string; tokenKey?: string } = {}): Promise<Store> {
  const store = await createStore({
    driver: 'pglite',
    dataDir: options.dataDir ?? 'memory://',
    embedded: true,
    ...(options.tokenKey ? { secrets: tokenKeySecrets(options.tokenKey) } : {}),
  });
  await store.init();
  return store;
}

/**
 * Opens an embedded (PGlite, in memory) store before the file's tests and closes it after them; with
 * `perTest`, a fresh one for every test. Connector tests want that: a token refresh still finishing for the
 * previous test's host could otherwise write that test's tokens over the next one's. `tokenKey` as for
 * `openEmbeddedStore`.
 */
export function useEmbeddedStore(opened: (store: Store) => void, options: { perTest?: boolean; tokenKey?: string } = {}): void {
  let store: Store | undefined;
  const open = async () => {
    store = await openEmbeddedStore({ tokenKey: options.tokenKey });
    opened(store);
  };
  const close = async () => {
    await store?.close();
    store = undefined;
  };
  if (options.perTest) {
    beforeEach(open);
    afterEach(close);
  } else {
    beforeAll(open);
    afterAll(close);
  }
}

/** Something a test started: stopped (a host, a fake) or closed (a bus, a store) when the test is done. */
export type Releasable = { stop(): Promise<unknown> } | { close(): Promise<unknown> } | undefined;

/** Stops or closes each of `items` in turn (unset ones skipped): a host before its bus, a bus before its store. */
export async function release(...items: Releasable[]): Promise<void> {
  for (const item of items) {
    if (!item) continue;
    if ('stop' in item) await item.stop();
    else await item.close();
  }
}

/** After the file's (or the describe block's) tests: `release` of what `started()` names, in that order. */
export function releaseAfterAll(started: () => Releasable[]): void {
  afterAll(async () => {
    await release(...started());
  });
}

/** The services a file's tests share, on their own memory bus with an embedded store. */
export type StoreAndServices = MemoryBusHost & { store: Store };

/**
 * Before the file's (or the describe block's) tests: an embedded store, filled by `seed` when given, then
 * the services on their own memory bus with that store (`host()` as for `startOnMemoryBus`, asked for once
 * the store is open); `started` receives all of it. After the tests: host, bus and store released.
 */
export function useStoreAndServices(setup: {
  seed?: (store: Store) => Promise<unknown>;
  host: () => Omit<TestHostOptions, 'bus'> & { observe?: string[] };
  started: (running: StoreAndServices) => void | Promise<void>;
}): void {
  let running: StoreAndServices | undefined;
  let store: Store | undefined;
  beforeAll(async () => {
    store = await openEmbeddedStore();
    await setup.seed?.(store);
    const options = setup.host();
    running = { ...(await startOnMemoryBus({ ...options, extra: { ...options.extra, store } })), store };
    await setup.started(running);
  });
  afterAll(async () => {
    await release(running?.host, running?.bus, store);
  });
}

/** What one test started; any part may be unset (the test failed before starting it). */
export interface Started {
  host?: Host;
  bus?: MessageBus;
  fakes?: Array<{ stop(): Promise<unknown> } | undefined>;
}

/**
 * After each test: stops what `started()` names (host, then bus, then fakes), then runs `reset` (where the
 * file forgets them and cleans its store), so the next test starts from nothing.
 */
export function stopAfterEach(started: () => Started, reset?: () => void | Promise<void>): void {
  afterEach(async () => {
    const { host, bus, fakes = [] } = started();
    await release(host, bus, ...fakes);
    await reset?.();
  });
}

/** A started service host and what a test reads from it. */
export interface ServiceHost {
  /** Starts the services on a fresh memory bus with the file's store; resolves to what reaches ingress. */
  start(env: Record<string, string>): Promise<Awaited<ReturnType<typeof collect>>>;
  /** The host of the running test (throws when none was started). */
  readonly host: Host;
}

/**
 * Services on a memory bus with the file's embedded store, started by each test with its own env; after
 * the test the host, the bus and the fakes `fakes()` names are stopped, then `reset` runs.
 */
export function useServiceHost(options: {
  services: ServiceDefinition[];
  store: () => Store;
  fakes?: () => Started['fakes'];
  reset?: () => Promise<void>;
}): ServiceHost {
  let host: Host | undefined;
  let bus: MemoryBus | undefined;
  stopAfterEach(
    () => ({ host, bus, fakes: options.fakes?.() ?? [] }),
    async () => {
      host = undefined;
      bus = undefined;
      await options.reset?.();
    },
  );
  return {
    async start(env) {
      bus = createMemoryBus();
      const observed = await collect(bus, [Topic.ingress]);
      host = await startTestHost({
        services: options.services,
        bus,
        env,
        architecture: loadArchitecture(),
        extra: { store: options.store() },
      });
      return observed;
    },
    get host() {
      if (!host) throw new Error('no host was started in this test');
      return host;
    },
  };
}

/** Hosts a test starts with `start`; whatever is still running after the test is stopped. */
export interface TestHosts {
  /** Starts the services on a fresh memory bus with the file's store, the base env and `env` over it. */
  start(env?: Record<string, string | undefined>): Promise<Host>;
  /** Stops one of them now (the test wants it gone before it ends). */
  stop(host: Host): Promise<void>;
}

/**
 * Services a test may start several times with different env, each on its own memory bus with the file's
 * store; after each test every host it started and did not stop is stopped.
 */
export function useTestHosts(options: {
  services: ServiceDefinition[];
  store: () => Store;
  env: () => Record<string, string | undefined>;
}): TestHosts {
  const running: Host[] = [];
  afterEach(async () => {
    for (const host of running.splice(0)) await host.stop();
  });
  return {
    async start(env = {}) {
      const host = await startTestHost({
        services: options.services,
        bus: createMemoryBus(),
        env: { ...options.env(), ...env },
        extra: { store: options.store() },
      });
      running.push(host);
      return host;
    },
    async stop(host) {
      running.splice(running.indexOf(host), 1);
      await host.stop();
    },
  };
}

/** Forgets the Twitch tokens a test stored, so the next one starts without them. */
export async function forgetTwitchTokens(store: Store): Promise<void> {
  for (const id of ['twitch:bot', 'twitch:broadcaster']) await store.deleteToken(id);
}
