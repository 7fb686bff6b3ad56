import { describe, expect, it } from 'vitest';
import { createServiceBatcher } from '../../src/runtime/store-batcher.js';

describe('a service store batcher', () => {
  it('writes a batch as soon as it holds MAX_IN_FLIGHT records, without waiting for its timer', async () => {
    const batches: number[][] = [];
    // A delay no test waits for: the batches below can only have been written because they were full.
    const batcher = createServiceBatcher<number, number>(
      { platform: { MAX_IN_FLIGHT: 2 } },
      { size: 200, delayMs: 60_000 },
      async (batch) => {
        batches.push(batch);
        return batch.map((value) => value * 10);
      },
    );
    const results = await Promise.all([1, 2, 3, 4].map((value) => batcher.add(value)));
    expect(results).toEqual([10, 20, 30, 40]);
    expect(batches).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it('keeps the configured size when it is below MAX_IN_FLIGHT', async () => {
    const batches: number[][] = [];
    const batcher = createServiceBatcher<number, true>({ platform: { MAX_IN_FLIGHT: 64 } }, { size: 3, delayMs: 60_000 }, async (batch) => {
      batches.push(batch);
      return batch.map(() => true as const);
    });
    await Promise.all([1, 2, 3].map((value) => batcher.add(value)));
    expect(batches).toEqual([[1, 2, 3]]);
  });
});
