/**
 * The loader as a process (`totes run loader`, docker compose) and the configuration it shares
 * with the Lambda: the warehouse, the processed bucket and the change stream (read to prove
 * micro-batches contiguous), all from the environment. With TOTES_HEALTH_PORT set it answers
 * GET /health: 503 while a shard holds a gap or the last pass failed. Metrics in EMF every minute.
 */
import { createServer } from 'node:http';
import { ENV, databaseUrl, optionalNumber, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { log } from '../lib/log.ts';
import { emitMetrics, type Unit } from '../lib/metrics.ts';
import { poolFor } from '../lib/pg.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Loader } from './loader.ts';
import { ShardStream } from './shard-stream.ts';
import type { Freshness } from './warehouse.ts';

type Env = Record<string, string | undefined>;

/** At most 2.5 questions a second per shard: the event source mapping and Firehose take one each, and Kinesis allows 5. */
export const REAL_KINESIS_ASK_INTERVAL_MS = 400;

/** The loader and what closes its connections. */
export async function loaderFromEnv(env: Env, connections: number): Promise<{ loader: Loader; close: () => Promise<void> }> {
  const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
  const kinesis = kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] });
  const store = new MicroBatchStore(s3, required(env, ENV.processedBucket, 'the processed bucket name'));
  // real Kinesis (no emulator endpoint): share each shard's 5 GetRecords a second with its other readers
  const askIntervalMs = env[ENV.kinesisEndpoint] ? 0 : REAL_KINESIS_ASK_INTERVAL_MS;
  const stream = new ShardStream(
    kinesis,
    required(env, ENV.streamName, 'the Kinesis stream name (the loader reads it to prove micro-batches contiguous)'),
    askIntervalMs,
  );
  const pool = poolFor(await databaseUrl(env, 'warehouse'), connections);
  return {
    loader: new Loader(pool, store, stream, env[ENV.warehouseSchema] ?? 'public'),
    close: async () => {
      await pool.end();
      s3.destroy();
      kinesis.destroy();
    },
  };
}

/** LoaderGapAgeSeconds is 0 without a gap, so an alarm on it has a figure every minute. */
export function loaderMetrics(batches: number, fresh: Freshness): Record<string, { value: number; unit: Unit }> {
  return {
    BatchesLoaded: { value: batches, unit: 'Count' },
    LoaderGapAgeSeconds: { value: fresh.gapSeconds ?? 0, unit: 'Seconds' },
    ...(fresh.lagSeconds != null ? { WarehouseFreshnessSeconds: { value: fresh.lagSeconds, unit: 'Seconds' } } : {}),
  };
}

export async function runLoader(env: Env, untilStopped: Promise<void>): Promise<void> {
  const { loader, close } = await loaderFromEnv(env, 2);
  await loader.ensureSchema();
  const abort = new AbortController();
  const loop = loader.runLoop(abort.signal);
  const healthPort = env[ENV.healthPort] ? optionalNumber(env, ENV.healthPort, 0) : null;
  const server =
    healthPort === null
      ? null
      : createServer((req, res) => {
          loader.freshness().then(
            (freshness) => {
              const healthy = loader.status.error === null && loader.status.gaps.length === 0;
              res.writeHead(req.url === '/health' ? (healthy ? 200 : 503) : 404, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ healthy, ...loader.status, freshness, ...loader.metrics }));
            },
            (err: Error) => {
              res.writeHead(503, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ healthy: false, error: `warehouse: ${err.message}` }));
            },
          );
        }).listen(healthPort);
  let batches = loader.metrics.batches;
  const metrics = setInterval(() => {
    loader.freshness().then(
      (fresh) => {
        emitMetrics('loader', loaderMetrics(loader.metrics.batches - batches, fresh));
        batches = loader.metrics.batches;
      },
      (err: Error) => log.warn({ err: err.message }, 'metrics failed'),
    );
  }, 60_000);
  await untilStopped;
  clearInterval(metrics);
  server?.close();
  abort.abort();
  await loop;
  await close();
}
