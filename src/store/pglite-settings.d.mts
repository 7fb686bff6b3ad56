import type { PGlite } from '@electric-sql/pglite';

/** PostgreSQL settings for the single-user embedded database (see pglite-settings.mjs). */
export declare const PGLITE_SETTINGS: Readonly<{ shared_buffers: string; max_connections: string; temp_buffers: string }>;
/** V8 flags set before PGlite compiles its WebAssembly. */
export declare const PGLITE_V8_FLAGS: string;
/** PGlite's own start parameters plus PGLITE_SETTINGS. */
export declare function pgliteStartParams(): string[];
/** Opens PGlite on `dataDir` (in memory when undefined) with the embedded settings. */
export declare function openPglite(dataDir: string | undefined): Promise<PGlite>;
