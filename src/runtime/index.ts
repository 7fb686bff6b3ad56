export * from './config.js';
export * from './logger.js';
export * from './metrics.js';
export * from './health.js';
export * from './http.js';
export * from './manifest.js';
export * from './node-flags.js';
export * from './secrets.js';
export * from './service.js';
export * from './engine.js';
export * from './host.js';
export {
  traced,
  tracedCall,
  httpClientAttributes,
  currentSpan,
  createTracing,
  parseTraceparent,
  type Tracing,
  type RuntimeSpan,
  type SpanAttributes,
  type SpanKind,
  type TracedCallOptions,
} from './tracing.js';
export { loadTracingConfig, type TracingConfig } from './tracing-config.js';
