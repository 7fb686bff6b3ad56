/**
 * The Node flags every BitBrat service process runs with: `npm start`, the container's entry point,
 * `bitbrat up`'s service processes and the benchmark's. package.json and the Dockerfile cannot import
 * this, so a test holds them to it.
 *
 * - `--max-semi-space-size=32`: under load the envelopes in flight outlive V8's default young
 *   generation, and promoting them to the old one cost about a tenth of the embedded throughput; a
 *   32 MB semi-space keeps them young.
 * - `--liftoff-only`: the only WebAssembly in a BitBrat process is the embedded database (PGlite, 9 MB
 *   of it). V8 otherwise compiles it twice, keeping both: ~60 MB resident on Node 20 and ~360 MB on
 *   Node 24, plus seconds of CPU while starting, for no measurable gain at a streamer's load
 *   (src/store/pglite-settings.mjs has the figures). It must be given on the command line: Node 24
 *   freezes V8's flags once it has started, so setting it from code works only on Node 20.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32', '--liftoff-only'];
