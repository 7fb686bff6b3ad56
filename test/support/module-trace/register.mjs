// `node --import ./register.mjs`: installs the tracing hooks next to this file.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
