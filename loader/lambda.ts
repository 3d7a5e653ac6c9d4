/**
 * Lambda entry of the loader, run on a one-minute schedule (see infra) with a reserved
 * concurrency of 1: loads every new micro-batch while time remains, then publishes warehouse
 * freshness. A schedule rather than S3 notifications because loading must follow stream order
 * per shard and be serialised; a notification per object would start many concurrent
 * invocations that would only queue on the advisory lock. One minute leaves the 30-minute
 * budget almost untouched.
 */
import type { Context } from 'aws-lambda';
import { ENV, databaseUrl, required } from '../lib/config.ts';
import { s3Client } from '../lib/aws.ts';
import { log } from '../lib/log.ts';
import { emitMetrics } from '../lib/metrics.ts';
import { poolFor } from '../lib/pg.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Loader } from './loader.ts';

/** Stop starting loads this long after a run began: the next scheduled run starts a minute after this one. */
const RUN_WINDOW_MS = 45_000;
/** ...or when this little of the timeout is left: a load in progress must finish within it. */
const MARGIN_MS = 30_000;

let ready: Promise<Loader> | null = null;

/**
 * This container's loader, its schema ensured. Built by the first invocation; an attempt that
 * fails (the warehouse unreachable, the secret unreadable) is forgotten, so the next
 * invocation tries again from the start rather than loading into a schema never created.
 */
function containerLoader(): Promise<Loader> {
  if (!ready) {
    const attempt = buildLoader();
    ready = attempt;
    attempt.catch(() => {
      if (ready === attempt) ready = null;
    });
  }
  return ready;
}

async function buildLoader(): Promise<Loader> {
  const pool = poolFor(await databaseUrl(process.env, 'warehouse'), 2);
  // An idle connection the warehouse drops (restart, failover) is an 'error' event on the
  // pool: unhandled, it would end the container. The pool replaces the connection.
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle warehouse connection lost'));
  try {
    const store = new MicroBatchStore(
      s3Client({ s3Endpoint: process.env[ENV.s3Endpoint] }),
      required(process.env, ENV.processedBucket, 'the processed bucket name'),
    );
    const loader = new Loader(pool, store, process.env[ENV.warehouseSchema] ?? 'public');
    await loader.ensureSchema();
    return loader;
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}

export async function handler(_event: unknown, context: Context): Promise<{ batches: number; lagSeconds: number | null }> {
  const loader = await containerLoader();
  const stopAt = Date.now() + Math.min(RUN_WINDOW_MS, context.getRemainingTimeInMillis() - MARGIN_MS);
  let batches = 0;
  const before = { ...loader.metrics };
  while (Date.now() < stopAt) {
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
