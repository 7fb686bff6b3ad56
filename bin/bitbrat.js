#!/usr/bin/env -S node --max-semi-space-size=16
// --max-semi-space-size: a young generation of 16 MB; the services allocate a short-lived envelope per
// message, and the default size spends much more CPU on garbage collection (see the README's benchmarks).
// Loads the TypeScript CLI in this process through tsx, so no build step is needed and signals reach it directly.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
