/**
 * vitest global setup: one private PostgreSQL for the whole test run (tests take their own schema or
 * database on it), stopped and deleted when the run ends. Unit tests do not need it, so a failure to
 * start is handed to the tests that do (they fail with it) instead of failing the whole run.
 */
import type { TestProject } from 'vitest/node';
import { startPostgres } from './pg-server.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  try {
    const server = await startPostgres();
    project.provide('postgresUrl', server.url);
    project.provide('postgresError', '');
    return () => server.dispose();
  } catch (error) {
    project.provide('postgresUrl', '');
    project.provide('postgresError', (error as Error).message);
    return async () => undefined;
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's PostgreSQL server (user postgres, trust), or '' when it could not start. */
    postgresUrl: string;
    /** Why it could not start, or ''. */
    postgresError: string;
  }
}
