/**
 * The Node flags every BitBrat service process runs with: `npm start`, the container's entry point,
 * `bitbrat up`'s service processes and the benchmark's. Under load the envelopes in flight outlive V8's
 * default young generation, and promoting them to the old one cost about a tenth of the embedded
 * throughput; a 32 MB semi-space keeps them young. package.json and the Dockerfile cannot import this,
 * so a test holds them to it.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
