/**
 * The loader's production bundle, run as the image runs it: its own process, from a folder
 * holding only the bundle and the CA bundles, against Postgres, S3 (s3rver) and Kinesis
 * (kinesalite). It reads the CA bundle where the image has it and then refuses a warehouse
 * without TLS; without it, it creates the warehouse schema, loads continuously, and on SIGTERM
 * exits 0. .ci/run also runs this file under Node 22, the image's runtime.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../lib/config.ts';
import pg from '../lib/pg.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { startNode } from '../test/process.ts';
import { until } from '../test/until.ts';
import { IMAGE } from '../infra/image.ts';
import { buildService, serviceBundle } from './bundle.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUCKET = 'processed';
const STREAM = 'changes';

describe(`the loader service bundle on Node ${process.versions.node}`, () => {
  let outDir: string;
  let aws: LocalAws;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let env: Record<string, string>;

  beforeAll(async () => {
    outDir = mkdtempSync(join(tmpdir(), 'totes-loader-'));
    [warehouse, aws] = await Promise.all([createDatabase('loadersvc'), startLocalAws({ stream: STREAM, shards: 1, buckets: [BUCKET] }), buildService(outDir)]);
    // as the Dockerfile's runtime stage lays it out: the bundles in the working directory, infra/certs/ as certs/
    cpSync(join(ROOT, 'infra/certs'), join(outDir, 'certs'), { recursive: true });
    env = {
      [ENV.warehouseUrl]: warehouse.url,
      [ENV.processedBucket]: BUCKET,
      [ENV.s3Endpoint]: aws.s3Endpoint,
      [ENV.streamName]: STREAM,
      [ENV.kinesisEndpoint]: aws.kinesisEndpoint,
      [ENV.loaderIdleMs]: '100',
      AWS_REGION: 'eu-west-2',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    };
  });
  afterAll(async () => {
    await aws?.stop();
    await warehouse?.drop();
    rmSync(outDir, { recursive: true, force: true });
  });

  it('reads the CA bundle where the image has it and then refuses a warehouse without TLS, in one line, exit 1', async () => {
    const caFile = join(outDir, IMAGE.certsDir.slice(`${IMAGE.workdir}/`.length), 'rds-ca-bundle.pem');
    const refused = startNode([serviceBundle('loader')], { cwd: outDir, env: { ...env, [ENV.caFile]: caFile } });
    expect((await refused.exited).code).toBe(1);
    const lines = refused.out.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ level: 60, msg: 'loader stopped: The server does not support SSL connections' });
  });

  it('creates the warehouse schema, keeps running, and on SIGTERM exits 0', async () => {
    const running = startNode([serviceBundle('loader')], { cwd: outDir, env });
    const admin = new pg.Client({ connectionString: warehouse.url });
    await admin.connect();
    try {
      await until(
        'the warehouse schema',
        async () => {
          if (!running.running()) throw new Error(`loader exited:\n${running.out.stdout.slice(-3000)}\n${running.out.stderr.slice(-3000)}`);
          return (await admin.query(`SELECT to_regclass('public.totes_load_log') AS t`)).rows[0].t === 'totes_load_log';
        },
        30_000,
        200,
      );
    } finally {
      await admin.end();
    }
    expect(running.running()).toBe(true);
    running.kill('SIGTERM');
    expect(await running.exited).toEqual({ code: 0, signal: null });
  });
});
