import { mkdir, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { runChaos } from '../../bench/chaos.js';

describe('chaos: kill -9 every service, restart NATS, 10 s PostgreSQL outage, under steady load', () => {
  it('finalizes every event exactly once with no duplicate replies, and recovers quickly', async () => {
    const lines: string[] = [];
    const summary = await runChaos({ log: (line) => lines.push(line) });
    await mkdir('test-output', { recursive: true });
    await writeFile('test-output/chaos-summary.json', JSON.stringify(summary) + '\n');
    console.log(JSON.stringify(summary));
    expect(summary.killed.length).toBe(10);
    expect(summary.eventsSent).toBeGreaterThan(500);
    expect(summary.missing).toBe(0);
    expect(summary.finalized).toBe(summary.eventsSent);
    expect(summary.duplicateFinalizations).toBe(0);
    expect(summary.duplicateReplies).toBe(0);
    expect(summary.expectedReplies).toBeGreaterThan(summary.eventsSent / 2);
    expect(summary.replies).toBe(summary.expectedReplies);
    expect(summary.natsRecoveryMs).toBeLessThanOrEqual(5_000);
  }, 600_000);
});
