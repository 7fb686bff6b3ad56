import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.join(import.meta.dirname, '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sourceFiles(file);
    return /\.(ts|mjs)$/.test(name) ? [file] : [];
  });
}

describe('routing-slip rule citations in the code', () => {
  it('point to docs/slip-rules.md, which defines every rule number cited', () => {
    const docs = readFileSync(path.join(ROOT, 'docs', 'slip-rules.md'), 'utf8');
    const defined = new Set([...docs.matchAll(/\*\*(R\d+) —/g)].map((match) => match[1]));
    expect([...defined].sort()).toEqual(['R1', 'R10', 'R11', 'R2', 'R3', 'R4', 'R5', 'R6', 'R7', 'R8', 'R9']);
    const withoutPointer: string[] = [];
    const undefinedRules = new Set<string>();
    for (const file of sourceFiles(path.join(ROOT, 'src'))) {
      const text = readFileSync(file, 'utf8');
      const cited = [...text.matchAll(/\b(R(?:1[01]|[1-9]))\b/g)].map((match) => match[1]!);
      if (cited.length === 0) continue;
      if (!text.includes('docs/slip-rules.md')) withoutPointer.push(path.relative(ROOT, file));
      for (const rule of cited) if (!defined.has(rule)) undefinedRules.add(rule);
    }
    expect({ withoutPointer, undefinedRules: [...undefinedRules] }).toEqual({ withoutPointer: [], undefinedRules: [] });
  });
});
