/** The store: one interface, three drivers. Drivers are imported on demand so unused SDKs never load. */
import { BitBratError } from '../core/errors.js';
import type { CreateStoreOptions, Store } from './types.js';

export * from './types.js';
export { ensurePrivateDir } from './common.js';

const DRIVERS = ['pglite', 'postgres', 'firestore'] as const;

/** Builds (does not connect) the configured store; call init() before use. */
export async function createStore(options: CreateStoreOptions): Promise<Store> {
  switch (options.driver) {
    case 'pglite': {
      const { createPgliteStore } = await import('./pglite.js');
      return createPgliteStore(options);
    }
    case 'postgres': {
      if (!options.databaseUrl)
        throw new BitBratError('CONFIG_INVALID', 'STORE_DRIVER=postgres needs DATABASE_URL (e.g. postgres://user@host:5432/bitbrat)');
      const { createPostgresStore } = await import('./postgres.js');
      return createPostgresStore(options);
    }
    case 'firestore': {
      if (!options.firestore?.projectId)
        throw new BitBratError('CONFIG_INVALID', 'STORE_DRIVER=firestore needs a Google Cloud project id (GOOGLE_CLOUD_PROJECT)');
      const { createFirestoreStore } = await import('./firestore.js');
      return createFirestoreStore(options);
    }
    default:
      throw new BitBratError(
        'CONFIG_INVALID',
        `unknown store driver "${String((options as { driver?: unknown }).driver)}" (expected one of ${DRIVERS.join(', ')})`,
      );
  }
}
