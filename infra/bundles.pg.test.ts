/**
 * The artifacts `cdk synth` builds, not the sources: the stack synthesized with its Lambda
 * bundled by esbuild and its Docker context staged. The processor's package runs its handler
 * (in this process's Node: .ci/run runs this file under Node 22 too, the Lambda runtime); the
 * image's services, capture and the loader, are run from their bundles in service/.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../lib/config.ts';
import { s3Client } from '../lib/aws.ts';
import { startLocalAws, type LocalAws } from '../test/harness.ts';
import { kinesisEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { synthesizeWithAssets } from './testing.ts';

const BUCKET = 'processed';
const outdir = mkdtempSync(join(tmpdir(), 'totes-synth-'));
const synth = synthesizeWithAssets(outdir);
const functions = Object.entries(synth.template.findResources('AWS::Lambda::Function'));
const functionId = (match: (env: Record<string, unknown>) => boolean) => functions.find(([, f]) => match(f.Properties.Environment?.Variables ?? {}))![0];
const processorId = functionId((env) => ENV.processedBucket in env);
const load = <T>(dir: string) => createRequire(import.meta.url)(join(dir, 'index.js')) as T;

describe('the synthesized assets', () => {
  let aws: LocalAws;
  const saved = { ...process.env };

  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [BUCKET] });
    Object.assign(process.env, { [ENV.processedBucket]: BUCKET, [ENV.s3Endpoint]: aws.s3Endpoint });
  });
  afterAll(async () => {
    process.env = saved;
    await aws?.stop();
    rmSync(outdir, { recursive: true, force: true });
  });

  it("the processor's package turns a Kinesis event into a micro-batch", async () => {
    const { handler } = load<{ handler: (e: KinesisStreamEvent) => Promise<KinesisStreamBatchResponse> }>(synth.functionCode(processorId));
    expect(await handler(kinesisEvent([salesOrderChange(1)]))).toEqual({ batchItemFailures: [] });
    const listed = await s3Client({ s3Endpoint: aws.s3Endpoint }).send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'manifests/' }));
    expect(listed.KeyCount).toBe(1);
  });

  it("the image's build context is the repository less .dockerignore, with the CA bundle the runtime stage copies", () => {
    const context = synth.imageContext;
    for (const kept of ['Dockerfile', 'package-lock.json', 'service/capture.ts', 'service/loader.ts', DEFAULT_CONFIG.dbCaBundlePath])
      expect(existsSync(join(context, kept)), kept).toBe(true);
    for (const left of ['node_modules', '.git', 'dist', '.ci', 'cdk.out', 'README.md', 'docs', 'test', 'bench', 'service/bundle.test.ts'])
      expect(existsSync(join(context, left)), left).toBe(false);
  });
});
