#!/usr/bin/env node
// Loads the TypeScript CLI in this process through tsx, so no build step is needed and signals reach it directly.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
