import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One private PostgreSQL for the run (tests never use a server someone else started).
    globalSetup: ['test/support/postgres-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: integration suites start real servers, so keep concurrency modest.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
