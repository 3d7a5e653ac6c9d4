/**
 * The loader as a process (`totes run loader`, docker compose) and the configuration it shares
 * with the Fargate service (service/loader.ts): the warehouse, the processed bucket and the change stream (read to prove
 * micro-batches contiguous), all from the environment. With TOTES_HEALTH_PORT set it answers
 * GET /health within HEALTH_WAIT_MS: 503 while a shard holds a gap, the last pass failed or the
 * warehouse does not answer. Metrics in EMF every minute (TOTES_METRICS_SECONDS), the line going
 * out when the warehouse does not answer too, with WarehouseUnreachable = 1.
 */
import { createServer } from 'node:http';
import { ENV, databaseUrl, optionalNumber, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { log } from '../lib/log.ts';
import { emitMetrics, type MetricLine } from '../lib/metrics.ts';
import { poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { subjectKeysFrom } from '../stores/key-wrappers.ts';
import { Loader } from './loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import type { Freshness } from './warehouse.ts';

type Env = Record<string, string | undefined>;

/** At most 2.5 questions a second per shard: the event source mapping and Firehose take one each, and Kinesis allows 5. */
export const REAL_KINESIS_ASK_INTERVAL_MS = 400;
/** How long /health waits for the warehouse, and the metrics line for it (at most half its interval, so no line is skipped). */
const HEALTH_WAIT_MS = 1_000;
const METRICS_WAIT_MS = 10_000;

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
    loader: new Loader(pool, store, stream, env[ENV.warehouseSchema] ?? 'public', subjectKeysFrom(env, s3)),
    close: async () => {
      await pool.end();
      s3.destroy();
      kinesis.destroy();
    },
  };
}

/** The loader's running counts its metrics are the growth of. */
type LoadCounts = { batches: number; truncates: number; rowsEnded: number; unprovenJunctions: number };

/**
 * One interval's metrics, the same locally and deployed: what was loaded since
 * `before`, and freshness. LoaderGapAgeSeconds is 0 without a gap, so an alarm on it has a
 * figure every minute. `fresh` is null when the warehouse did not answer: WarehouseUnreachable
 * says so, and no freshness figure goes out (unknown is not zero).
 */
export function loaderMetrics(now: LoadCounts, before: LoadCounts, fresh: Freshness | null): MetricLine<'loader'> {
  return {
    BatchesLoaded: now.batches - before.batches,
    Truncates: now.truncates - before.truncates,
    RowsEnded: now.rowsEnded - before.rowsEnded,
    WarehouseUnreachable: fresh ? 0 : 1,
    // batches loaded past the stream's retention without proof that none lies before them (loader.ts)
    UnprovenJunctions: now.unprovenJunctions - before.unprovenJunctions,
    LoaderGapAgeSeconds: fresh ? (fresh.gapSeconds ?? 0) : null,
    WarehouseFreshnessSeconds: fresh?.lagSeconds ?? null,
  };
}

/**
 * The warehouse's freshness, or the reason there is none within `ms`. One question at a time:
 * while the warehouse is silent, callers wait on the question already asked instead of piling
 * more onto the pool.
 */
function boundedFreshness(loader: Loader): (ms: number) => Promise<Freshness | Error> {
  let asking: Promise<Freshness | Error> | null = null;
  return async (ms) => {
    asking ??= loader.freshness().then(
      (fresh) => fresh,
      (err: Error) => err,
    );
    const question = asking;
    question.finally(() => {
      if (asking === question) asking = null;
    });
    const waited = new AbortController();
    const answer = await Promise.race([question, sleep(ms, waited.signal).then(() => new Error(`no answer within ${ms} ms`))]);
    waited.abort();
    return answer;
  };
}

export async function runLoader(env: Env, untilStopped: Promise<void>): Promise<void> {
  const { loader, close } = await loaderFromEnv(env, 2);
  await loader.ensureSchema();
  const abort = new AbortController();
  const loop = loader.runLoop(abort.signal, optionalNumber(env, ENV.loaderIdleMs, 200));
  const freshness = boundedFreshness(loader);
  const healthPort = env[ENV.healthPort] ? optionalNumber(env, ENV.healthPort, 0) : null;
  const server =
    healthPort === null
      ? null
      : createServer((req, res) => {
          void freshness(HEALTH_WAIT_MS).then((fresh) => {
            if (fresh instanceof Error) {
              res.writeHead(503, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ healthy: false, ...loader.status, warehouse: `does not answer: ${fresh.message}`, ...loader.metrics }));
              return;
            }
            const healthy = loader.status.error === null && loader.status.gaps.length === 0;
            res.writeHead(req.url === '/health' ? (healthy ? 200 : 503) : 404, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ healthy, ...loader.status, freshness: fresh, ...loader.metrics }));
          });
        }).listen(healthPort);
  const counts = () => ({ ...loader.metrics, unprovenJunctions: loader.status.unprovenJunctions });
  let before = counts();
  const metricsMs = optionalNumber(env, ENV.metricsSeconds, 60) * 1000;
  const metrics = setInterval(async () => {
    const fresh = await freshness(Math.min(METRICS_WAIT_MS, metricsMs / 2));
    if (fresh instanceof Error) log.warn({ err: fresh.message }, 'the warehouse did not answer; metrics go out without freshness');
    const now = counts();
    emitMetrics('loader', loaderMetrics(now, before, fresh instanceof Error ? null : fresh));
    before = now;
  }, metricsMs);
  await untilStopped;
  clearInterval(metrics);
  server?.close();
  abort.abort();
  await loop;
  await close();
}
