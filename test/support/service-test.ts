/**
 * The frame service tests share: one embedded store per test file, and after each test its host, bus and
 * fakes stopped in that order (the host first, so nothing publishes to a closed bus).
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { MessageBus } from '../../src/bus/index.js';
import type { Host } from '../../src/runtime/index.js';
import { createStore, type Store } from '../../src/store/index.js';

/** Opens an embedded (PGlite, in memory) store before the file's tests and closes it after them. */
export function useEmbeddedStore(opened: (store: Store) => void): void {
  let store: Store | undefined;
  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    await store.init();
    opened(store);
  });
  afterAll(async () => {
    await store?.close();
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
    await host?.stop();
    await bus?.close();
    for (const fake of fakes) await fake?.stop();
    await reset?.();
  });
}
