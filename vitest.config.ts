import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One private PostgreSQL for the run (tests never use a server someone else started).
    globalSetup: ['test/support/postgres-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One test file at a time: the whole-service Twitch tests interfered with each other when two files ran
    // in parallel processes (see the EventSub tests); on 2 cores a run takes about 9 minutes instead of 6.
    maxWorkers: 1,
    reporters: ['default'],
  },
});
