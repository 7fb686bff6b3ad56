import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, ErrorDescriptions } from '../../src/core/index.js';

const DOC = path.join(import.meta.dirname, '..', '..', 'docs', 'error-codes.md');

/** The table rows of docs/error-codes.md: code → description. */
function documentedCodes(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const match = /^\| `([A-Z_]+)` \| (.+?) \|/.exec(line);
    if (match) rows.set(match[1]!, match[2]!);
  }
  return rows;
}

describe('the error-code registry and docs/error-codes.md', () => {
  it('documents every code with the registry’s own description, and no code the registry lacks', () => {
    const documented = documentedCodes();
    const expected = new Map(Object.values(ErrorCode).map((code) => [code, ErrorDescriptions[code]]));
    const missing = [...expected]
      .filter(([code, text]) => documented.get(code) !== text)
      .map(([code, text]) => `| \`${code}\` | ${text} |`);
    const extra = [...documented.keys()].filter((code) => !expected.has(code as ErrorCode));
    expect({ missing, extra }).toEqual({ missing: [], extra: [] });
  });
});
