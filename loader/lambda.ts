/**
 * Lambda entry of the loader, run on a one-minute schedule (see infra) with a reserved
 * concurrency of 1: loads every new micro-batch while time remains, then publishes warehouse
 * freshness and the age of any gap. A schedule rather than S3 notifications because loading
 * must follow stream order per shard and be serialised; a notification per object would start
 * many concurrent invocations that would only queue on the advisory lock. One minute leaves the
 * 30-minute budget almost untouched.
 */
import type { Context } from 'aws-lambda';
import { emitMetrics } from '../lib/metrics.ts';
import type { Loader } from './loader.ts';
import { loaderFromEnv, loaderMetrics } from './main.ts';

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

/** poolFor gives the pool an 'error' listener: an idle connection the warehouse drops does not end the container. */
async function buildLoader(): Promise<Loader> {
  const { loader, close } = await loaderFromEnv(process.env, 2);
  try {
    await loader.ensureSchema();
    return loader;
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

export async function handler(_event: unknown, context: Context): Promise<{ batches: number; lagSeconds: number | null; gapSeconds: number | null }> {
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
  emitMetrics('loader', loaderMetrics(loader.metrics, before, fresh));
  return { batches, lagSeconds: fresh.lagSeconds, gapSeconds: fresh.gapSeconds };
}
