// Module hooks for a child process: appends each npm package the process resolves, once, to the file in
// MODULE_TRACE_FILE. Used to check which SDKs a start-up loads.
import { appendFileSync } from 'node:fs';

const seen = new Set();
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(result.url);
  if (match && !seen.has(match[1]) && process.env.MODULE_TRACE_FILE) {
    seen.add(match[1]);
    appendFileSync(process.env.MODULE_TRACE_FILE, `${match[1]}\n`);
  }
  return result;
}
