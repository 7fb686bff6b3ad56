import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadPlatformConfig } from '../../src/runtime/config.js';
import { createLogger, createSecretScrubber, usesPrettyLogs, type LogDestination, type LogFormat } from '../../src/runtime/logger.js';

// An ANSI colour escape, as pino-pretty writes around levels and messages.
const ANSI = /\u001b\[\d+m/;

function capture(format: LogFormat | undefined, isTTY: boolean | undefined) {
  const lines: string[] = [];
  const destination: LogDestination = { write: (line) => lines.push(line), ...(isTTY === undefined ? {} : { isTTY }) };
  const scrubber = createSecretScrubber();
  scrubber.add('hunter2-secret');
  const logger = createLogger({ service: 'auth', instanceId: 'i-1', scrubber, destination, format });
  return { lines, logger };
}

describe('log format', () => {
  it('writes JSON when the destination is not a terminal and the format is auto', () => {
    const { lines, logger } = capture('auto', false);
    logger.info({ topic: 'internal.auth.v1' }, 'consumer started');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 'info',
      service: 'auth',
      instanceId: 'i-1',
      topic: 'internal.auth.v1',
      msg: 'consumer started',
    });
  });

  it('writes one coloured line per event when the destination is a terminal and the format is auto', () => {
    const { lines, logger } = capture(undefined, true);
    logger.info({ topic: 'internal.auth.v1' }, 'consumer started');
    logger.error({ err: new Error('connection refused\nsecond line') }, 'publish failed');
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).toMatch(ANSI);
      // One line per event: the only newline ends it (the error's stack stays escaped inside it).
      expect(line.indexOf('\n')).toBe(line.length - 1);
      expect(() => JSON.parse(line)).toThrow();
    }
    expect(lines[0]).toContain('INFO');
    expect(lines[0]).toContain('auth: consumer started');
    expect(lines[0]).toContain('"topic":"internal.auth.v1"');
    expect(lines[1]).toContain('ERROR');
    expect(lines[1]).toContain('connection refused');
  });

  it('always writes JSON under LOG_FORMAT=json, even to a terminal', () => {
    const { lines, logger } = capture('json', true);
    logger.warn('slow consumer');
    expect(lines[0]).not.toMatch(ANSI);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', msg: 'slow consumer' });
  });

  it('writes pretty lines without colours under LOG_FORMAT=pretty when the destination is not a terminal', () => {
    const { lines, logger } = capture('pretty', false);
    logger.info('ready');
    expect(lines[0]).not.toMatch(ANSI);
    expect(lines[0]).toMatch(/INFO.*auth: ready/);
  });

  it('scrubs registered secret values and redacts secret keys in pretty lines too', () => {
    const { lines, logger } = capture('pretty', true);
    logger.info({ token: 'plain-token-value', headers: { authorization: 'Bearer abc' } }, 'login with hunter2-secret');
    logger.error({ err: new Error('refused: hunter2-secret') }, 'failed');
    const all = lines.join('');
    expect(all).not.toContain('hunter2-secret');
    expect(all).not.toContain('plain-token-value');
    expect(all).not.toContain('Bearer abc');
    expect(all.match(/\[REDACTED\]/g)?.length).toBeGreaterThanOrEqual(4);
  });

  it('chooses pretty output only for pretty, or for auto on a terminal', () => {
    expect(usesPrettyLogs('pretty', {} as LogDestination)).toBe(true);
    expect(usesPrettyLogs('json', { write: () => undefined, isTTY: true })).toBe(false);
    expect(usesPrettyLogs('auto', { write: () => undefined, isTTY: true })).toBe(true);
    expect(usesPrettyLogs('auto', { write: () => undefined })).toBe(false);
  });

  it('does not load pino-pretty when writing JSON', () => {
    const logger = fileURLToPath(new URL('../../src/runtime/logger.ts', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const { createLogger } = await import(${JSON.stringify(logger)});
      createLogger({ format: 'json', destination: { write() {}, isTTY: true } }).info('x');
      const loaded = Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes('pino-pretty'));
      process.stdout.write(String(loaded));`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('false');
  });
});

describe('LOG_FORMAT', () => {
  it('defaults to auto and accepts json and pretty', () => {
    expect(loadPlatformConfig({}).LOG_FORMAT).toBe('auto');
    expect(loadPlatformConfig({ LOG_FORMAT: 'json' }).LOG_FORMAT).toBe('json');
    expect(loadPlatformConfig({ LOG_FORMAT: 'pretty' }).LOG_FORMAT).toBe('pretty');
  });

  it('rejects another value, naming the allowed ones', () => {
    expect(() => loadPlatformConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT: must be one of auto, json, pretty/);
  });
});
