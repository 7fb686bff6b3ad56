#!/usr/bin/env node
// The `bitbrat` command. Runs the compiled CLI from dist/ when it matches src/ (`npm install` and `npm run
// build` make it), else loads the TypeScript sources in this process through tsx, so an edited checkout
// needs no build step. BITBRAT_FROM_SOURCE=1 always runs the sources. Signals reach the CLI directly.
import module from 'node:module';
import { fileURLToPath } from 'node:url';
import { compiledEntry } from './compiled.js';

// Node 22.1+ keeps compiled code of the modules it loads on disk and reuses it on the next start (a no-op on Node 20).
module.enableCompileCache?.();

const entry = process.env.BITBRAT_FROM_SOURCE === '1' ? undefined : compiledEntry(fileURLToPath(new URL('..', import.meta.url)));
if (entry) {
  await import(entry);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
