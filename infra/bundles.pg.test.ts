/**
 * The artifacts `cdk synth` builds, not the sources: the stack synthesized with its Lambdas
 * bundled by esbuild and its Docker context staged. The loader's package carries the CA bundle
 * where TOTES_DB_CA_FILE points, and both Lambda packages run their handlers (in this process's
 * Node: .ci/run runs this file under Node 22 too, the Lambda runtime).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Context, KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../lib/config.ts';
import { s3Client } from '../lib/aws.ts';
import pg from '../lib/pg.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { kinesisEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { parseBundle } from './ca-bundle.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { REPO_ROOT } from './repo.ts';
import { synthesizeWithAssets } from './testing.ts';

const BUCKET = 'processed';
const outdir = mkdtempSync(join(tmpdir(), 'totes-synth-'));
const synth = synthesizeWithAssets(outdir);
const functions = Object.entries(synth.template.findResources('AWS::Lambda::Function'));
const functionId = (match: (env: Record<string, unknown>) => boolean) => functions.find(([, f]) => match(f.Properties.Environment?.Variables ?? {}))![0];
const loaderId = functionId((env) => ENV.warehouseSecret in env);
const processorId = functionId((env) => ENV.processedBucket in env && !(ENV.warehouseSecret in env));
const load = <T>(dir: string) => createRequire(import.meta.url)(join(dir, 'index.js')) as T;
const context = { getRemainingTimeInMillis: () => 90_000 } as unknown as Context;

describe('the synthesized assets', () => {
  let aws: LocalAws;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  const saved = { ...process.env };

  beforeAll(async () => {
    [aws, warehouse] = await Promise.all([startLocalAws({ stream: 'unused', shards: 1, buckets: [BUCKET] }), createDatabase('bundles')]);
    Object.assign(process.env, {
      [ENV.processedBucket]: BUCKET,
      [ENV.s3Endpoint]: aws.s3Endpoint,
      [ENV.warehouseUrl]: warehouse.url,
      [ENV.streamName]: 'unused',
      [ENV.kinesisEndpoint]: aws.kinesisEndpoint,
    });
  });
  afterAll(async () => {
    process.env = saved;
    await aws?.stop();
    await warehouse?.drop();
    rmSync(outdir, { recursive: true, force: true });
  });

  it("the loader's package holds the CA bundle TOTES_DB_CA_FILE names, as X.509 CA certificates equal to infra/certs'", () => {
    const code = synth.functionCode(loaderId);
    const caFile = synth.template.toJSON().Resources[loaderId].Properties.Environment.Variables[ENV.caFile] as string;
    expect(caFile).toMatch(/^\/var\/task\//);
    const inPackage = join(code, caFile.slice('/var/task/'.length));
    expect(readdirSync(code).sort()).toEqual(['index.js', 'index.js.map', caFile.slice('/var/task/'.length)].sort());
    const pem = readFileSync(inPackage, 'utf8');
    expect(pem).toBe(readFileSync(join(REPO_ROOT, DEFAULT_CONFIG.dbCaBundlePath), 'utf8'));
    expect(parseBundle(pem).every((c) => c.ca)).toBe(true);
  });

  it('the loader package reads that file and then refuses a database without TLS; without it, it creates the schema and runs', async () => {
    const { handler } = load<{ handler: (e: unknown, c: Context) => Promise<{ batches: number }> }>(synth.functionCode(loaderId));
    const caFile = synth.template.toJSON().Resources[loaderId].Properties.Environment.Variables[ENV.caFile] as string;
    process.env[ENV.caFile] = join(synth.functionCode(loaderId), caFile.slice('/var/task/'.length));
    await expect(handler({}, context)).rejects.toThrow(/does not support SSL/);
    process.env[ENV.caFile] = join(synth.functionCode(loaderId), 'missing.pem');
    await expect(handler({}, context)).rejects.toThrow(/ENOENT/);
    delete process.env[ENV.caFile];
    expect(await handler({}, context)).toEqual({ batches: 0, lagSeconds: null, gapSeconds: null });
    const admin = new pg.Client({ connectionString: warehouse.url });
    await admin.connect();
    try {
      expect((await admin.query(`SELECT to_regclass('public.totes_load_log') AS t`)).rows[0].t).toBe('totes_load_log');
    } finally {
      await admin.end();
    }
  });

  it("the processor's package turns a Kinesis event into a micro-batch", async () => {
    const { handler } = load<{ handler: (e: KinesisStreamEvent) => Promise<KinesisStreamBatchResponse> }>(synth.functionCode(processorId));
    expect(await handler(kinesisEvent([salesOrderChange(1)]))).toEqual({ batchItemFailures: [] });
    const listed = await s3Client({ s3Endpoint: aws.s3Endpoint }).send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'manifests/' }));
    expect(listed.KeyCount).toBe(1);
  });

  it("the image's build context is the repository less .dockerignore, with the CA bundle the runtime stage copies", () => {
    const context = synth.imageContext;
    for (const kept of ['Dockerfile', 'package-lock.json', 'service/capture.ts', DEFAULT_CONFIG.dbCaBundlePath])
      expect(existsSync(join(context, kept)), kept).toBe(true);
    for (const left of ['node_modules', '.git', 'dist', '.ci/node22', 'cdk.out']) expect(existsSync(join(context, left)), left).toBe(false);
  });
});
