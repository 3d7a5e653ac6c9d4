/**
 * Lambda entry of the loader, run on a one-minute schedule (see infra): loads every new
 * micro-batch while time remains, then publishes warehouse freshness and the age of any gap. A
 * schedule rather than S3 notifications because loading must follow stream order per shard and
 * be serialised; a notification per object would start many concurrent invocations that would
 * only queue on the advisory lock. One minute leaves the 30-minute budget almost untouched.
 */
import type { Context } from 'aws-lambda';
import { emitMetrics } from '../lib/metrics.ts';
import type { Loader } from './loader.ts';
import { loaderFromEnv, loaderMetrics } from './main.ts';

let loader: Loader | null = null;

export async function handler(_event: unknown, context: Context): Promise<{ batches: number; lagSeconds: number | null; gapSeconds: number | null }> {
  if (!loader) {
    ({ loader } = await loaderFromEnv(process.env, 2));
    await loader.ensureSchema();
  }
  let batches = 0;
  while (context.getRemainingTimeInMillis() > 30_000) {
    const n = await loader.loadAvailable();
    batches += n;
    if (n === 0) break;
  }
  const fresh = await loader.freshness();
  emitMetrics('loader', loaderMetrics(batches, fresh));
  return { batches, lagSeconds: fresh.lagSeconds, gapSeconds: fresh.gapSeconds };
}
