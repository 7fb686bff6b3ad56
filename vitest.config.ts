import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One private PostgreSQL for the run (tests never use a server someone else started).
    globalSetup: ['test/support/postgres-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two test files at a time, one per core (vitest's default would be one); integration suites start
    // real servers, so no more than that.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
