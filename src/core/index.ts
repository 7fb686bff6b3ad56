export * from './envelope.js';
export * from './delivery.js';
export * from './errors.js';
export * from './topics.js';
export * from './builders.js';
export * from './slip.js';
export * from './deadletter.js';
export * from './schema-file.js';
export * from './json.js';
export {
  createAnnotation,
  withAnnotations,
  messageText,
  noReplyNote,
  noReplyReason,
  NO_REPLY_KIND,
  type AnnotationFields,
} from './annotations.js';
export { DEFER, deriveFastCheck, type DeriveOptions, type FastCheck, type FastRefinement } from './fast-check.js';
