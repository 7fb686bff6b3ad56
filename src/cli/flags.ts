import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BitBratError } from '../core/index.js';

/** Parses flags strictly: unknown flags are an error naming the flag and the command. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = true,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    throw new BitBratError('BAD_REQUEST', `bitbrat ${command}: ${(error as Error).message}. Run "bitbrat help" for usage.`);
  }
}
