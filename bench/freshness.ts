/**
 * End-to-end freshness under a steady simulated load: for every fact row version the simulator
 * causes, (the moment a poll of the warehouse first sees it) − (its source commit time).
 *
 * Facts only append, so each new version is a new row: every POLL_MS one query reads the fact
 * rows written by transactions the previous poll could not have seen (xmin ≥ that poll's
 * snapshot xmin), and rows already seen are skipped. A row is counted visible at the end of
 * the poll that first returns it, so a latency is high by at most POLL_MS plus the poll itself.
 *
 * Beside it, the freshness an operator sees (totes_freshness: the age of the newest source commit
 * the warehouse fully reflects), sampled every WATERMARK_SAMPLE_MS while the simulator writes,
 * whenever that falls, not only right after a load.
 *
 * Two shapes: the local one (the pipeline as `totes up` runs it), and with `deployed` the
 * production settings (bench/deployed-shape.ts): heartbeat, the mapping's batch size, batching
 * window and once-a-second poll, the loader's pace on real Kinesis, and the loader continuous or
 * on its schedule.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Pipeline } from '../local/pipeline.ts';
import { sleep } from '../lib/retry.ts';
import type { SimulatorStats } from '../totesys/simulator.ts';
import { runDeployedLoader, type DeployedShape } from './deployed-shape.ts';
import { createBucket, createDatabase, createStream, type BenchEnvironment } from './environment.ts';
import { PUBLICATION, prepareSource } from './workloads.ts';

const POLL_MS = 50;
const WATERMARK_SAMPLE_MS = 100;
const FACTS = { fact_sales_order: 'sales_order_id', fact_purchase_order: 'purchase_order_id', fact_payment: 'payment_id' } as const;

export interface FreshnessFigures {
  rate: number;
  seconds: number;
  /** Changes the simulators actually wrote per second (they may fall short of `rate` on a busy machine). */
  achievedRate: number;
  /** Simulator processes writing side by side, and the transactions that failed on a collision between them. */
  simulators: number;
  failedTransactions: number;
  factVersions: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The age of the warehouse's watermark (totes_freshness) sampled every WATERMARK_SAMPLE_MS while the simulator wrote. */
  watermark: { samples: number; p50Ms: number; p95Ms: number; p99Ms: number; maxMs: number };
  /** Where the work stood when the simulator stopped: which stage was behind. */
  atSimulationEnd: { captured: number; inStream: number; processed: number; processorBatches: number; loadedRows: number; loaderBatches: number };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const NEW_FACT_ROWS = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon, coalesce((SELECT json_agg(v) FROM (${Object.entries(FACTS)
  .map(
    ([table, key]) =>
      `SELECT '${table}:' || ${key} || ':' || source_lsn || ':' || source_pos AS id, extract(epoch FROM source_commit_time) * 1000 AS commit_ms
       FROM ${table} WHERE xmin::text::bigint >= $1 AND source_commit_time >= to_timestamp($2 / 1000.0) AT TIME ZONE 'UTC'`,
  )
  .join(' UNION ALL ')}) v), '[]') AS rows`;

/** Changes/s one simulator process holds here (it writes one transaction at a time). */
const SIMULATOR_RATE = 1_000;

interface SimulationStats extends SimulatorStats {
  /** Transactions that failed on a collision between simulators (each is retried by a fresh simulator). */
  failed: number;
}

/** Runs bench/simulate.ts in enough child processes to write `rate` changes/s between them, until `seconds` have passed. */
async function simulate(sourceUrl: string, rate: number, seconds: number): Promise<SimulationStats> {
  const processes = Math.ceil(rate / SIMULATOR_RATE);
  const one = (seed: number) =>
    new Promise<SimulationStats>((resolve, reject) => {
      const args = ['--import', 'tsx', join(import.meta.dirname, 'simulate.ts'), sourceUrl, String(rate / processes), String(seconds), String(seed)];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.on('error', reject);
      // 'close', not 'exit': only then has all of its output arrived
      child.on('close', (code) => {
        if (code !== 0) return reject(new Error(`simulator exited ${code}`));
        try {
          resolve(JSON.parse(out));
        } catch {
          reject(new Error(`simulator printed no figures: ${JSON.stringify(out.slice(0, 200))}`));
        }
      });
    });
  const all = await Promise.all(Array.from({ length: processes }, (_, i) => one(7 + i)));
  return all.reduce((a, b) => ({ transactions: a.transactions + b.transactions, changes: a.changes + b.changes, failed: a.failed + b.failed }));
}

/** One run: its own source and warehouse databases, stream and buckets, all named after `tag`. */
export async function measureFreshness(
  env: BenchEnvironment,
  opts: { rate: number; seconds: number; tag: string; deployed?: DeployedShape },
  say: (line: string) => void,
): Promise<FreshnessFigures> {
  const source = await createDatabase(env.source, opts.tag);
  const warehouse = await createDatabase(env.warehouse, `${opts.tag}_warehouse`);
  const dashed = opts.tag.replaceAll('_', '-'); // stream and bucket names take no underscores, slot names no dashes
  const names = { stream: `bench-${dashed}`, ingestion: `bench-${dashed}-ingestion`, processed: `bench-${dashed}-processed` };
  await createStream(env, names.stream);
  for (const bucket of [names.ingestion, names.processed]) await createBucket(env, bucket);
  await prepareSource(source.client, { seedScale: 0.05 });
  const deployed = opts.deployed;
  const pipeline = new Pipeline({
    sourceUrl: source.url,
    warehouseUrl: warehouse.url,
    kinesisEndpoint: env.kinesisEndpoint,
    s3Endpoint: env.s3Endpoint,
    streamName: names.stream,
    ingestionBucket: names.ingestion,
    processedBucket: names.processed,
    capture: {
      slotName: opts.tag,
      publicationName: PUBLICATION,
      // deployed: capture's own status interval, as the task runs it
      ...(deployed ? { heartbeatMs: deployed.heartbeatMs } : { heartbeatMs: 1_000, statusIntervalMs: 5_000 }),
    },
    ...(deployed && {
      processorBatchSize: deployed.processorBatchSize,
      processorBatchingWindowMs: deployed.batchingWindowMs,
      processorPollMs: deployed.mappingPollMs,
      loaderAskIntervalMs: deployed.loaderAskIntervalMs,
      runLoader: false,
    }),
  });
  const latencies: number[] = [];
  const watermarkAges: number[] = [];
  const stopLoader = new AbortController();
  let loading: Promise<void> = Promise.resolve();
  try {
    await pipeline.start();
    say(`${opts.tag}: waiting for the snapshot to reach the warehouse`);
    // deployed: the snapshot loaded first, so the loader's measured pace starts in its steady state
    while ((await pipeline.loader.freshness()).watermarkCommitTime === null) {
      if (deployed) await pipeline.loader.loadAvailable();
      await sleep(200);
    }
    if (deployed) loading = runDeployedLoader(pipeline.loader, deployed.loader, stopLoader.signal);

    say(`${opts.tag}: simulating ${opts.rate.toLocaleString()} changes/s for ${opts.seconds} s`);
    const simStartMs = Date.now();
    let simEndMs = Infinity;
    let atSimulationEnd: FreshnessFigures['atSimulationEnd'] | null = null;
    const simulation = simulate(source.url, opts.rate, opts.seconds).finally(() => {
      simEndMs = Date.now();
      atSimulationEnd = {
        captured: pipeline.capture.metrics.changes,
        inStream: pipeline.sink.metrics.records,
        processed: pipeline.processor.metrics.events,
        processorBatches: pipeline.processor.metrics.batches,
        loadedRows: pipeline.loader.metrics.rows,
        loaderBatches: pipeline.loader.metrics.batches,
      };
    });
    const sampling = (async () => {
      while (Date.now() < simEndMs) {
        const { lagSeconds } = await pipeline.loader.freshness();
        if (lagSeconds !== null) watermarkAges.push(lagSeconds * 1_000);
        await sleep(WATERMARK_SAMPLE_MS);
      }
    })();
    sampling.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    // a scheduled loader may take one more period to load the simulation's end
    const drainMs = 60_000 + (deployed?.loader.kind === 'scheduled' ? deployed.loader.everyMs : 0);
    const seen = new Set<string>();
    let horizon = 0;
    for (;;) {
      const { rows } = await warehouse.client.query(NEW_FACT_ROWS, [horizon, simStartMs]);
      const seenAt = Date.now();
      horizon = Number(rows[0].horizon);
      for (const r of rows[0].rows as { id: string; commit_ms: number }[]) {
        if (seen.has(r.id)) continue;
        seen.add(r.id);
        latencies.push(seenAt - r.commit_ms);
      }
      if (Date.now() > simEndMs) {
        const { watermarkCommitTime } = await pipeline.loader.freshness();
        if ((watermarkCommitTime && Date.parse(watermarkCommitTime) > simEndMs) || Date.now() > simEndMs + drainMs) break;
      }
      await sleep(POLL_MS);
    }
    const stats = await simulation;
    await sampling;
    if (pipeline.captureError) throw pipeline.captureError;
    latencies.sort((a, b) => a - b);
    watermarkAges.sort((a, b) => a - b);
    return {
      rate: opts.rate,
      seconds: opts.seconds,
      achievedRate: stats.changes / ((simEndMs - simStartMs) / 1000),
      simulators: Math.ceil(opts.rate / SIMULATOR_RATE),
      failedTransactions: stats.failed,
      factVersions: latencies.length,
      p50Ms: percentile(latencies, 50),
      p95Ms: percentile(latencies, 95),
      p99Ms: percentile(latencies, 99),
      maxMs: latencies[latencies.length - 1],
      watermark: {
        samples: watermarkAges.length,
        p50Ms: percentile(watermarkAges, 50),
        p95Ms: percentile(watermarkAges, 95),
        p99Ms: percentile(watermarkAges, 99),
        maxMs: watermarkAges[watermarkAges.length - 1],
      },
      atSimulationEnd: atSimulationEnd!,
    };
  } finally {
    stopLoader.abort();
    await loading;
    await pipeline.stop();
    // its slot would hold WAL and a slot of max_replication_slots through every later run
    await source.client.query('SELECT pg_drop_replication_slot($1)', [opts.tag]).catch(() => undefined);
    await source.client.end();
    await warehouse.client.end();
  }
}
