import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/runtime/manifest.js';
import { SERVICE_NODE_FLAGS } from '../../src/runtime/node-flags.js';

/**
 * Static checks of the Dockerfile: there is no Docker engine on the build machines, so the image is
 * not built here. These checks catch what breaks a build or a container start: missing COPY sources,
 * sources the .dockerignore hides, a missing entry point, running as root, a dev-only runtime dependency.
 */

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Joins continuation lines and drops comments, as Docker reads the file. */
function instructions(text: string): Instruction[] {
  const result: Instruction[] = [];
  let buffer = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (!buffer && (/^\s*#/.test(line) || line.trim() === '')) return;
    if (!buffer) start = index + 1;
    if (line.endsWith('\\')) {
      buffer += `${line.slice(0, -1)} `;
      return;
    }
    buffer += line;
    const match = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(buffer);
    if (match) result.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim(), line: start });
    buffer = '';
  });
  return result;
}

function stages(list: Instruction[]): Stage[] {
  const result: Stage[] = [];
  for (const instruction of list) {
    if (instruction.keyword === 'FROM') {
      const [image, as, name] = instruction.args.split(/\s+/);
      result.push({ from: image!, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      result.at(-1)?.instructions.push(instruction);
    }
  }
  return result;
}

/** COPY arguments without flags: every entry but the last is a source. */
function copyParts(args: string): { flags: string[]; sources: string[]; destination: string } {
  const words = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  const flags = words.filter((word) => word.startsWith('--'));
  const rest = words.filter((word) => !word.startsWith('--'));
  return { flags, sources: rest.slice(0, -1), destination: rest.at(-1)! };
}

function dockerignorePatterns(): string[] {
  return readFileSync(path.join(PROJECT_ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
}

/** True when a top-level path is excluded by a simple (no glob) .dockerignore entry. */
function ignored(source: string, patterns: string[]): boolean {
  const normalized = source.replace(/^\.\//, '').replace(/\/$/, '');
  return patterns.some(
    (pattern) => !pattern.startsWith('!') && !/[*?[]/.test(pattern) && (normalized === pattern || normalized.startsWith(`${pattern}/`)),
  );
}

const dockerfile = readFileSync(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
const all = instructions(dockerfile);
const parsed = stages(all);
const runtime = parsed.at(-1)!;
const packageJson = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
};

describe('the Dockerfile', () => {
  it('has a build stage and a runtime stage, both on node:24-slim', () => {
    expect(parsed.length).toBeGreaterThanOrEqual(2);
    for (const stage of parsed) expect(stage.from).toBe('node:24-slim');
    expect(parsed[0]!.name).toBe('build');
    expect(runtime.name).toBe('runtime');
  });

  it('installs from the lock file with npm ci in the build stage and prunes dev dependencies', () => {
    const buildRuns = parsed[0]!.instructions.filter((instruction) => instruction.keyword === 'RUN').map((instruction) => instruction.args);
    expect(buildRuns.some((command) => /\bnpm ci\b/.test(command))).toBe(true);
    expect(buildRuns.some((command) => /\bnpm prune --omit=dev\b/.test(command))).toBe(true);
    const copiesLock = parsed[0]!.instructions.some(
      (instruction) => instruction.keyword === 'COPY' && copyParts(instruction.args).sources.includes('package-lock.json'),
    );
    expect(copiesLock).toBe(true);
    // The runtime stage takes node_modules from the pruned build stage, never installs on its own.
    const runtimeRuns = runtime.instructions.filter((instruction) => instruction.keyword === 'RUN').map((instruction) => instruction.args);
    expect(runtimeRuns.some((command) => /\bnpm (ci|install)\b/.test(command))).toBe(false);
    expect(
      runtime.instructions.some(
        (instruction) =>
          instruction.keyword === 'COPY' && instruction.args.includes('--from=build') && instruction.args.includes('/app/node_modules'),
      ),
    ).toBe(true);
  });

  it('keeps tsx (which runs the TypeScript sources when dist/ does not match them) as a production dependency, since dev dependencies are pruned', () => {
    expect(packageJson.dependencies.tsx).toBeDefined();
    expect(packageJson.devDependencies.tsx).toBeUndefined();
    expect(readFileSync(path.join(PROJECT_ROOT, 'bin', 'bitbrat.js'), 'utf8')).toMatch(/import\('tsx\/esm\/api'\)/);
    for (const [name] of Object.entries(packageJson.dependencies)) expect(packageJson.devDependencies[name], name).toBeUndefined();
  });

  it('copies only sources that exist and that .dockerignore does not hide', () => {
    const patterns = dockerignorePatterns();
    const copies = all.filter((instruction) => instruction.keyword === 'COPY' || instruction.keyword === 'ADD');
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) {
      const { flags, sources } = copyParts(copy.args);
      if (flags.some((flag) => flag.startsWith('--from='))) continue;
      for (const source of sources) {
        expect(existsSync(path.join(PROJECT_ROOT, source)), `line ${copy.line}: COPY source ${source} is missing`).toBe(true);
        expect(ignored(source, patterns), `line ${copy.line}: COPY source ${source} is excluded by .dockerignore`).toBe(false);
      }
    }
  });

  it('copies everything the services read at run time: the manifest, the sources, bin, config and schemas', () => {
    const copied = runtime.instructions
      .filter((instruction) => instruction.keyword === 'COPY')
      .flatMap((instruction) => copyParts(instruction.args).sources.map((source) => source.replace(/^\/app\//, '')));
    for (const needed of ['architecture.yaml', 'package.json', 'bin', 'src', 'dist', 'config', 'schemas'])
      expect(copied, needed).toContain(needed);
    expect(statSync(path.join(PROJECT_ROOT, 'config', 'rules.default.json')).isFile()).toBe(true);
  });

  it('compiles the sources into dist/ in the build stage, and the runtime takes src/ and dist/ from that same stage', () => {
    const build = parsed[0]!.instructions;
    const at = (predicate: (instruction: Instruction) => boolean) => build.findIndex(predicate);
    const copiesOf = (source: string) =>
      at((instruction) => instruction.keyword === 'COPY' && copyParts(instruction.args).sources.includes(source));
    const npmCi = at((instruction) => instruction.keyword === 'RUN' && /\bnpm ci\b/.test(instruction.args));
    const compile = at((instruction) => instruction.keyword === 'RUN' && /node scripts\/build\.mjs/.test(instruction.args));
    // npm ci runs the prepare script, which needs scripts/ and bin/ in place (and finds no src/ yet).
    expect(copiesOf('scripts')).toBeGreaterThanOrEqual(0);
    expect(copiesOf('scripts')).toBeLessThan(npmCi);
    expect(copiesOf('bin')).toBeLessThan(npmCi);
    expect(compile).toBeGreaterThan(copiesOf('src'));
    // src/ and dist/ come from the same stage, so the build's record of its sources matches them in the image.
    for (const source of ['/app/src', '/app/dist']) {
      expect(
        runtime.instructions.some(
          (instruction) =>
            instruction.keyword === 'COPY' &&
            instruction.args.includes('--from=build') &&
            copyParts(instruction.args).sources.includes(source),
        ),
        source,
      ).toBe(true);
    }
    expect(packageJson.scripts.prepare).toBe('node scripts/build.mjs');
    expect(packageJson.dependencies.esbuild).toBeDefined();
  });

  it('runs as the unprivileged node user with a /readyz health check and the bitbrat entry point', () => {
    const last = (keyword: string) => runtime.instructions.filter((instruction) => instruction.keyword === keyword).at(-1)?.args;
    expect(last('USER')).toBe('node');
    const healthcheck = last('HEALTHCHECK')!;
    expect(healthcheck).toMatch(/CMD node -e/);
    expect(healthcheck).toContain('http://127.0.0.1:${PORT:-8080}/readyz');
    expect(healthcheck).toContain('fetch(');
    expect(JSON.parse(last('ENTRYPOINT')!)).toEqual(['node', ...SERVICE_NODE_FLAGS, 'bin/bitbrat.js']);
    expect(JSON.parse(last('CMD')!)).toEqual(['start']);
    expect(existsSync(path.join(PROJECT_ROOT, 'bin', 'bitbrat.js'))).toBe(true);
    // The entry point loads the CLI, which must exist in the copied sources.
    const entry = readFileSync(path.join(PROJECT_ROOT, 'bin', 'bitbrat.js'), 'utf8');
    const target = /import\('\.\.\/(src\/[^']+)'\)/.exec(entry)?.[1];
    expect(target).toBeDefined();
    expect(existsSync(path.join(PROJECT_ROOT, target!))).toBe(true);
    expect(runtime.instructions.some((instruction) => instruction.keyword === 'ENV' && /HOST=0\.0\.0\.0/.test(instruction.args))).toBe(
      true,
    );
  });

  it('keeps local state and secrets out of the build context', () => {
    const patterns = dockerignorePatterns();
    for (const path of ['node_modules', 'dist', 'data', '.git', 'deploy', '.env']) expect(patterns, path).toContain(path);
  });
});

describe('the Node flags of service processes (SERVICE_NODE_FLAGS)', () => {
  it('npm start and npm run bench use them, as the container entry point and bitbrat up do', () => {
    const scripts = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
      .scripts;
    expect(scripts.start).toBe(['node', ...SERVICE_NODE_FLAGS, 'bin/bitbrat.js', 'start'].join(' '));
    expect(scripts.bench!.startsWith(['node', ...SERVICE_NODE_FLAGS, ''].join(' '))).toBe(true);
  });
});
