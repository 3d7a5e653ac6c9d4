/**
 * Lambda entry of the loader, run on a one-minute schedule (see infra): loads every new
 * micro-batch while time remains, then publishes warehouse freshness. A schedule rather than
 * S3 notifications because loading must follow stream order per shard and be serialised; a
 * notification per object would start many concurrent invocations that would only queue on
 * the advisory lock. One minute leaves the 30-minute budget almost untouched.
 */
import type { Context } from 'aws-lambda';
import { ENV, databaseUrl, required } from '../lib/config.ts';
import { s3Client } from '../lib/aws.ts';
import { emitMetrics } from '../lib/metrics.ts';
import { poolFor } from '../lib/pg.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Loader } from './loader.ts';

let loader: Loader | null = null;

export async function handler(_event: unknown, context: Context): Promise<{ batches: number; lagSeconds: number | null }> {
  if (!loader) {
    const pool = poolFor(await databaseUrl(process.env, 'warehouse'), 2);
    const store = new MicroBatchStore(
      s3Client({ s3Endpoint: process.env[ENV.s3Endpoint] }),
      required(process.env, ENV.processedBucket, 'the processed bucket name'),
    );
    loader = new Loader(pool, store, process.env[ENV.warehouseSchema] ?? 'public');
    await loader.ensureSchema();
  }
  let batches = 0;
  const before = { ...loader.metrics };
  while (context.getRemainingTimeInMillis() > 30_000) {
    const n = await loader.loadAvailable();
    batches += n;
    if (n === 0) break;
  }
  const fresh = await loader.freshness();
  emitMetrics('loader', {
    BatchesLoaded: { value: batches, unit: 'Count' },
    Truncates: { value: loader.metrics.truncates - before.truncates, unit: 'Count' },
    RowsEnded: { value: loader.metrics.rowsEnded - before.rowsEnded, unit: 'Count' },
    ...(fresh.lagSeconds != null ? { WarehouseFreshnessSeconds: { value: fresh.lagSeconds, unit: 'Seconds' } } : {}),
  });
  return { batches, lagSeconds: fresh.lagSeconds };
}
