/**
 * The layering the folder READMEs promise, held against the code: every production file's
 * imports of our own folders must be named on its folder's "May import:" line. Tests are not
 * layered (they may use harnesses from anywhere).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NOT_LAYERED = new Set(['node_modules', 'test', 'docs', 'bin', 'cdk.out', 'coverage', 'dist']);

function folders(): string[] {
  return readdirSync(ROOT).filter((f) => !f.startsWith('.') && !NOT_LAYERED.has(f) && statSync(join(ROOT, f)).isDirectory());
}

/** The folders a README's "May import:" line names ("nothing of ours" names none). */
function allowedImports(readme: string): Set<string> | null {
  const line = readme.split('\n').find((l) => l.startsWith('May import:'));
  if (!line) return null;
  return new Set([...line.matchAll(/`?([a-z-]+)\/`?/g)].map((m) => m[1]));
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'public' || e.name === 'certs' ? [] : sources(p);
    return /\.(ts|mjs)$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [p] : [];
  });
}

const IMPORT = /(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

describe('layers', () => {
  it('every folder says what it is and what it may import', () => {
    const missing = folders().filter((f) => {
      try {
        return allowedImports(readFileSync(join(ROOT, f, 'README.md'), 'utf8')) === null;
      } catch {
        return true;
      }
    });
    expect(missing).toEqual([]);
  });

  it('no production file imports a folder its README does not allow', () => {
    const violations: string[] = [];
    for (const folder of folders()) {
      const allowed = allowedImports(readFileSync(join(ROOT, folder, 'README.md'), 'utf8')) ?? new Set();
      for (const file of sources(join(ROOT, folder))) {
        for (const [, spec] of readFileSync(file, 'utf8').matchAll(IMPORT)) {
          const target = relative(ROOT, normalize(join(dirname(file), spec))).split('/')[0];
          if (target !== folder && !allowed.has(target)) violations.push(`${relative(ROOT, file)} imports ${spec}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('the check itself sees an import that is not allowed', () => {
    expect(allowedImports('# x\n\nMay import: formats/, lib/.')).toEqual(new Set(['formats', 'lib']));
    expect(allowedImports('# x\n\nMay import: nothing of ours.')).toEqual(new Set());
  });
});
