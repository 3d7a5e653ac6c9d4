/**
 * No production file imports, however indirectly, a file that imports it: a circle makes the
 * order of module evaluation matter and hides which of two files is the lower one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SKIPPED = new Set(['node_modules', 'cdk.out', 'coverage', 'dist', 'public', 'certs']);
const IMPORT = /(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name.startsWith('.') || SKIPPED.has(e.name) ? [] : sources(p);
    return /\.(ts|mjs)$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [p] : [];
  });
}

/** Each circle of imports in `graph`, once, as the files around it. */
function importCircles(graph: Map<string, string[]>): string[][] {
  const circles: string[][] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string) => {
    const at = path.indexOf(file);
    if (at >= 0) return void circles.push(path.slice(at));
    if (done.has(file)) return;
    path.push(file);
    for (const next of graph.get(file) ?? []) visit(next);
    path.pop();
    done.add(file);
  };
  for (const file of [...graph.keys()].sort()) visit(file);
  return circles;
}

describe('imports', () => {
  it('form no circle', () => {
    const graph = new Map<string, string[]>();
    for (const file of sources(ROOT)) {
      const imports = [...readFileSync(file, 'utf8').matchAll(IMPORT)].map(([, spec]) => relative(ROOT, normalize(join(dirname(file), spec))));
      graph.set(relative(ROOT, file), imports);
    }
    expect(importCircles(graph)).toEqual([]);
  });

  it('the check itself sees a circle', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(importCircles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });
});
