/**
 * A whole pipeline for a test: a seeded totesys database and a warehouse database on the
 * shared test server, kinesalite and s3rver on free ports, and the services wired as in AWS.
 */
import { inTransaction, poolFor } from '../lib/pg.ts';
import type { CaptureConfig, CaptureService } from '../capture/capture-service.ts';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pipeline } from '../local/pipeline.ts';
import { tempDir } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { createDatabase, startLocalAws } from './harness.ts';
import type pg from '../lib/pg.ts';

export interface TestPipeline {
  pipeline: Pipeline;
  sourceUrl: string;
  warehouseUrl: string;
  sourcePool: pg.Pool;
  kinesisEndpoint: string;
  s3Endpoint: string;
  stop(): Promise<void>;
}

/** Stop capture (the pipeline's, or one that took over its sink) and wait until the archive holds every record the stream accepted. */
export async function archiveEverything(p: Pipeline, capture: Pick<CaptureService, 'stop'> = p.capture): Promise<void> {
  await capture.stop();
  const deadline = Date.now() + 30_000;
  while (p.firehose.records < p.sink.metrics.records) {
    if (Date.now() > deadline) throw new Error(`archive holds ${p.firehose.records} of ${p.sink.metrics.records} records`);
    await p.firehose.deliver(true);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startTestPipeline(
  opts: {
    shards?: number;
    scale?: number;
    seed?: number;
    start?: boolean;
    capture?: Partial<CaptureConfig>;
    /** Seal personal values under a key store (bucket "keys", a master key file of its own). */
    personalData?: boolean;
  } = {},
): Promise<TestPipeline> {
  const [source, warehouse, aws] = await Promise.all([
    createDatabase('totesys'),
    createDatabase('warehouse'),
    startLocalAws({ stream: 'changes', shards: opts.shards ?? 2, buckets: ['ingestion', 'processed', ...(opts.personalData ? ['keys'] : [])] }),
  ]);
  const keyDir = opts.personalData ? tempDir('master-key') : null;
  const sourcePool = poolFor(source.url, 4);
  await inTransaction(sourcePool, async (db) => {
    await createTotesys(db, { seed: opts.seed ?? 7, sizes: scaledSizes(opts.scale ?? 0.02) });
  });
  const pipeline = new Pipeline({
    sourceUrl: source.url,
    warehouseUrl: warehouse.url,
    kinesisEndpoint: aws.kinesisEndpoint,
    s3Endpoint: aws.s3Endpoint,
    streamName: 'changes',
    ingestionBucket: 'ingestion',
    processedBucket: 'processed',
    ...(keyDir ? { keys: { bucket: 'keys', masterKeyFile: join(keyDir, 'master.key') } } : {}),
    capture: { slotName: `slot_${source.name}`, heartbeatMs: 300, statusIntervalMs: 1_000, ...opts.capture },
    archiveIntervalMs: 500,
  });
  if (opts.start ?? true) await pipeline.start();
  return {
    pipeline,
    sourceUrl: source.url,
    warehouseUrl: warehouse.url,
    sourcePool,
    kinesisEndpoint: aws.kinesisEndpoint,
    s3Endpoint: aws.s3Endpoint,
    async stop() {
      await pipeline.stop();
      await sourcePool.end();
      await aws.stop();
      await source.drop();
      await warehouse.drop();
      if (keyDir) rmSync(keyDir, { recursive: true, force: true });
    },
  };
}
