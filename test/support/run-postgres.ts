/** The test run's PostgreSQL server, started once by `postgres-global-setup.ts`. */
import { inject } from 'vitest';
import type {} from './postgres-global-setup.js';
import { withDatabase } from './pg-server.js';

/** The run's server URL (database `postgres`, or `database`); throws why when it could not start. */
export function runPostgresUrl(database?: string): string {
  const url = inject('postgresUrl');
  if (!url) throw new Error(`PostgreSQL is required for this test but did not start: ${inject('postgresError') || 'no global setup ran'}`);
  return database ? withDatabase(url, database) : url;
}
