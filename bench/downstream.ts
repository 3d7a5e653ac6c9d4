/**
 * The figures after Kinesis, each in turns:
 *   the processor (Lambda events → Parquet micro-batches in S3), fed the stream's records as the
 *   event source mapping hands them over (5,000 a batch), one invocation at a time as one Lambda
 *   container runs them, asking the stream which batch each follows as the deployed one does,
 *   each turn into a bucket of its own;
 *   the loader (micro-batches merged into a fresh warehouse each turn) against a plain COPY of the
 *   same rows into unindexed tables, the most the warehouse could take; and the same micro-batches
 *   loaded as a backlog after an outage, with the stream asked at real Kinesis's pace, beside it;
 *   a replay rebuilding a fresh schema from the archive the Firehose stand-in wrote of the stream.
 */
import { performance } from 'node:perf_hooks';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { replayArchive } from '../replay/replay.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { Loader, PLAN_BUDGET_MS } from '../loader/loader.ts';
import { REAL_KINESIS_ASK_INTERVAL_MS } from '../loader/main.ts';
import { ShardStream, type StreamClient } from '../stores/shard-stream.ts';
import { HISTORY_TABLES, historyName } from '../loader/history-sql.ts';
import { stageColumns } from '../loader/merge-sql.ts';
import { PROCESSOR_BATCH_SIZE, toLambdaRecord } from '../local/kinesis-poller.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { decodeParquet } from '../formats/parquet.ts';
import { BatchChain } from '../processors/batch-chain.ts';
import { Processor } from '../processors/processor.ts';
import { copyRows } from '../lib/pg-copy.ts';
import { createBucket, createDatabase, type BenchEnvironment } from './environment.ts';
import { interleave, ratioSpread, repeat, spread, type Spread } from './runs.ts';

export interface ProcessorRun {
  events: number;
  /** Load rows written: about one a change (a snapshot read or a delete may make none or two). */
  rows: number;
  batches: number;
  /** Batches handed over again after a failure, as the event source mapping retries them. */
  retries: number;
  seconds: number;
  eventsPerSecond: number;
  /** Events per second of this process's CPU time (user + system): what one core could do, whatever else the machine ran. */
  eventsPerCpuSecond: number;
}

export interface DownstreamFigures {
  processor: ProcessorRun[];
  processorEventsPerSecond: Spread;
  processorEventsPerCpuSecond: Spread;
  /** A superuser's loader: references trusted in the load transaction. */
  loader: LoaderRun[];
  /** A loader whose role may not set session_replication_role: Postgres checks every reference, row by row. */
  loaderChecked: LoaderRun[];
  /** Reading and decoding the micro-batches alone, once: the part of the loader's time that is not SQL. */
  fetchDecode: { rows: number; seconds: number; rowsPerSecond: number };
  copy: { rows: number; seconds: number; rowsPerSecond: number }[];
  loaderVsCopy: Spread;
  loaderRowsPerSecond: Spread;
  loaderCheckedVsCopy: Spread;
  loaderCheckedRowsPerSecond: Spread;
  /** The same micro-batches as a backlog after an outage: the stream asked at real Kinesis's pace, in passes as the Lambda runs. */
  catchUp: CatchUpRun[];
  catchUpRowsPerSecond: Spread;
  catchUpBatchesPerSecond: Spread;
  /** Catch-up against the steady-state loader of the same turn. */
  catchUpVsLoader: Spread;
  /** Minutes to drain a 72-hour backlog at 1,000 changes/s at each turn's rate (backlogDrainMinutes). */
  catchUp72hMinutes: Spread;
  /** The superuser's turns: an as-of question's milliseconds, and the dimension histories' bytes per million changes loaded. */
  asOfQueryMs: Spread;
  historyBytesPerMillionChanges: Spread;
  replay: {
    events: number;
    seconds: number;
    eventsPerSecond: number;
    peakRssMb: number;
    peakHeapMb: number;
    /** The most events the replay held at once (its reorder window, two batches, the objects read ahead), and the window. */
    peakEventsHeld: number;
    windowEvents: number;
    phases: Record<string, number>;
  }[];
  replayEventsPerSecond: Spread;
  /** The bench process's RSS high-water during each replay (it also holds the bench's own state). */
  replayPeakRssMb: Spread;
}

interface LoaderRun {
  rows: number;
  batches: number;
  seconds: number;
  rowsPerSecond: number;
  /** The superuser's turns: measureHistory over the warehouse loaded. */
  asOfQueryMs?: number;
  /** The orders the as-of question read (every one the workload wrote), and the rows of its answer. */
  asOfQueryOrders?: number;
  asOfQueryRows?: number;
  historyBytesPerMillionChanges?: number;
}

/** README's sales by staff member and department, over the tables of `schema` (facts: `fact`). */
const staffSalesQuestion = (schema: string, fact: string) => `SELECT s.first_name, s.last_name, s.department_name, sum(f.units_sold * f.unit_price) AS value
  FROM ${schema}.${fact} f JOIN ${schema}.dim_staff s ON s.staff_id = f.sales_staff_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;

/** The question over the as-of views, at the warehouse's watermark (totes.as_of unset). */
const AS_OF_QUESTION = staffSalesQuestion('as_of', 'fact_sales_order');

/**
 * After a load: the as-of question's time (the best of three: the first also reads the tables
 * in), and the bytes the dimension histories and totes_commits take per million rows loaded.
 * The question must read every order the bench wrote: the stream ends with a heartbeat after the
 * workload, so the watermark covers it, and its answer must equal the same question over the
 * current tables; a watermark short of that would time a smaller question, and fails the turn.
 */
async function measureHistory(
  pool: pg.Pool,
  rows: number,
): Promise<Pick<LoaderRun, 'asOfQueryMs' | 'asOfQueryOrders' | 'asOfQueryRows' | 'historyBytesPerMillionChanges'>> {
  const times: number[] = [];
  let answer: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    answer = (await pool.query(AS_OF_QUESTION)).rows;
    times.push(performance.now() - started);
  }
  const { rows: counts } = await pool.query(
    `SELECT (SELECT count(*) FROM as_of.fact_sales_order)::int AS as_of, (SELECT count(*) FROM public.fact_sales_order_current)::int AS current`,
  );
  const current = (await pool.query(staffSalesQuestion('public', 'fact_sales_order_current'))).rows;
  if (counts[0].current === 0 || counts[0].as_of !== counts[0].current || JSON.stringify(answer) !== JSON.stringify(current))
    throw new Error(
      `the as-of question read ${counts[0].as_of} of the ${counts[0].current} orders loaded (${answer.length} rows, ${current.length} over the current tables): the watermark does not cover the workload`,
    );
  const { rows: size } = await pool.query(
    `SELECT sum(pg_total_relation_size(c.oid))::float8 AS bytes FROM pg_class c
      WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND (c.relname = ANY($1) OR c.relname = 'totes_commits')`,
    [HISTORY_TABLES.map(historyName)],
  );
  return {
    asOfQueryMs: Math.min(...times),
    asOfQueryOrders: counts[0].as_of,
    asOfQueryRows: answer.length,
    historyBytesPerMillionChanges: (size[0].bytes / rows) * 1e6,
  };
}

interface CatchUpRun extends LoaderRun {
  batchesPerSecond: number;
  /** loadAvailable calls until one loaded nothing. */
  passes: number;
  /** Questions asked of the stream (GetShardIterator calls), each after the last one on its shard by at least the pace. */
  questions: number;
  /** Changes the loaded rows hold, a second (the processor's changes per load row applied). */
  changesPerSecond: number;
}

/** The backlog an outage over a weekend leaves: 72 hours of changes at 1,000 a second. */
const BACKLOG = { hours: 72, changesPerSecond: 1_000 };

/**
 * Minutes for a loader that takes `changesPerSecond` to drain BACKLOG while the changes go on
 * arriving at the same 1,000 a second: backlog / (rate − arrivals). Infinite when it cannot.
 */
export function backlogDrainMinutes(changesPerSecond: number): number {
  const backlog = BACKLOG.hours * 3_600 * BACKLOG.changesPerSecond;
  return changesPerSecond > BACKLOG.changesPerSecond ? backlog / (changesPerSecond - BACKLOG.changesPerSecond) / 60 : Number.POSITIVE_INFINITY;
}

/** A stream client that counts the questions asked through it: one GetShardIterator each (stores/shard-stream.ts). */
function countingQuestions(client: KinesisClient): StreamClient & { questions: number } {
  const counted = {
    questions: 0,
    send: ((command: Parameters<KinesisClient['send']>[0]) => {
      if (command instanceof GetShardIteratorCommand) counted.questions++;
      return client.send(command);
    }) as StreamClient['send'],
  };
  return counted;
}

/** The warehouse role of the checked loader turns: owns its database, may not set session_replication_role. */
const CHECKED_ROLE = 'bench_loader';

const asRole = (url: string, role: string) => {
  const u = new URL(url);
  u.username = role;
  u.password = role;
  return u.toString();
};

const BUCKETS = { ingestion: 'bench-ingestion', processed: (turn: number) => `bench-processed-${turn + 1}` };

/** How long one COPY turn copies for (the rows again and again): long enough to be a rate, not a start-up. */
const COPY_SECONDS = 2;

export async function measureDownstream(
  env: BenchEnvironment,
  streamName: string,
  records: number,
  turns: number,
  say: (line: string) => void,
): Promise<DownstreamFigures> {
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  const s3 = s3Client({ s3Endpoint: env.s3Endpoint });
  const copyDb = await createDatabase(env.warehouse, 'bench_copy');
  try {
    say(`reading ${records.toLocaleString()} records of ${streamName} into Lambda events (not timed)`);
    const events = await readStream(kinesis, streamName, records);

    const processor = await repeat(turns, async (turn) => {
      say(`processor: turn ${turn + 1}/${turns}, ${records.toLocaleString()} events`);
      await createBucket(env, BUCKETS.processed(turn));
      // a container of its own each turn: its first batch on each shard follows nothing it knows
      return runProcessor(new MicroBatchStore(s3, BUCKETS.processed(turn)), new BatchChain(new ShardStream(kinesis, streamName)), events);
    });

    say('archive: the Firehose stand-in writes the same records to the ingestion bucket (not timed)');
    await createBucket(env, BUCKETS.ingestion);
    const firehose = new FirehoseStandin({ s3, bucket: BUCKETS.ingestion, deliveryStreamName: streamName });
    for (const event of events) await firehose.consume(event);
    await firehose.stop();
    events.length = 0; // --full holds a million records here: let them go before the decoded rows come

    const store = new MicroBatchStore(s3, BUCKETS.processed(0));
    const decodeStarted = performance.now();
    const tables = await readMicroBatches(store);
    const decodeSeconds = (performance.now() - decodeStarted) / 1000;
    const fetchedRows = [...tables.values()].reduce((n, rows) => n + rows.length, 0);

    await copyDb.client.query(`CREATE ROLE ${CHECKED_ROLE} LOGIN PASSWORD '${CHECKED_ROLE}'`);
    /** A loader over the micro-batches into a fresh warehouse of its own. */
    const withFreshLoader = async <T>(
      name: string,
      role: 'trusted' | 'checked',
      stream: ShardStream,
      f: (loader: Loader, pool: pg.Pool) => Promise<T>,
    ): Promise<T> => {
      const { url, client } = await createDatabase(env.warehouse, name);
      if (role === 'checked') await client.query(`ALTER DATABASE "${name}" OWNER TO ${CHECKED_ROLE}`);
      await client.end();
      const pool = poolFor(role === 'checked' ? asRole(url, CHECKED_ROLE) : url, 2);
      try {
        const loader = new Loader(pool, store, stream);
        await loader.ensureSchema();
        const trusted = await loader.warehouse.trustsReferences();
        if (trusted !== (role === 'trusted')) throw new Error(`the ${role} loader turn ${trusted ? 'trusts' : 'checks'} references`);
        return await f(loader, pool);
      } finally {
        await pool.end();
      }
    };
    const loadTurn = (turn: number, role: 'trusted' | 'checked'): Promise<LoaderRun> => {
      say(
        `loader: turn ${turn + 1}/${turns}, ${role === 'trusted' ? 'a superuser' : 'a role that may not set session_replication_role'}, merging the micro-batches into a fresh warehouse`,
      );
      return withFreshLoader(`bench_warehouse_${role}_${turn + 1}`, role, new ShardStream(kinesis, streamName), async (loader, pool) => {
        const started = performance.now();
        while ((await loader.loadAvailable()) > 0);
        const seconds = (performance.now() - started) / 1000;
        const run = { rows: loader.metrics.rows, batches: loader.metrics.batches, seconds, rowsPerSecond: loader.metrics.rows / seconds };
        return role === 'trusted' ? { ...run, ...(await measureHistory(pool, loader.metrics.rows)) } : run;
      });
    };
    const changesPerRow = processor[0].events / processor[0].rows;
    const catchUpTurn = (turn: number): Promise<CatchUpRun> => {
      say(
        `loader catch-up: turn ${turn + 1}/${turns}, the micro-batches as a backlog, the stream asked once per ${REAL_KINESIS_ASK_INTERVAL_MS} ms a shard, passes of a ${PLAN_BUDGET_MS / 1000} s budget`,
      );
      const counted = countingQuestions(kinesis);
      return withFreshLoader(
        `bench_warehouse_catchup_${turn + 1}`,
        'trusted',
        new ShardStream(counted, streamName, REAL_KINESIS_ASK_INTERVAL_MS),
        async (loader) => {
          const started = performance.now();
          let passes = 0;
          // as the Lambda runs: each pass plans within its budget, at its default rows a transaction
          for (let loaded = 1; loaded > 0; passes++) loaded = await loader.loadAvailable(undefined, Date.now() + PLAN_BUDGET_MS);
          const seconds = (performance.now() - started) / 1000;
          const { gaps, unprovenJunctions } = loader.status;
          if (gaps.length > 0 || unprovenJunctions > 0)
            throw new Error(`the catch-up turn found ${gaps.length} gaps and ${unprovenJunctions} unproven junctions`);
          const { rows, batches } = loader.metrics;
          if (rows !== processor[0].rows) throw new Error(`the catch-up turn loaded ${rows} rows of the ${processor[0].rows} the processor wrote`);
          return {
            rows,
            batches,
            seconds,
            rowsPerSecond: rows / seconds,
            batchesPerSecond: batches / seconds,
            passes,
            questions: counted.questions,
            changesPerSecond: (rows * changesPerRow) / seconds,
          };
        },
      );
    };
    const loads = await interleave(
      turns,
      async (turn) => ({ trusted: await loadTurn(turn, 'trusted'), catchUp: await catchUpTurn(turn), checked: await loadTurn(turn, 'checked') }),
      async (turn) => {
        say(`reference: turn ${turn + 1}/${turns}, COPY of the same rows`);
        return copyReference(copyDb.client, `copy_reference_${turn + 1}`, tables);
      },
    );
    const trustedLoads = loads.a.map((l) => l.trusted);
    const checkedLoads = loads.a.map((l) => l.checked);
    const catchUp = loads.a.map((l) => l.catchUp);

    const replayDb = await createDatabase(env.warehouse, 'bench_replay');
    await replayDb.client.end();
    const replayPool = poolFor(replayDb.url, 2);
    const replay = await repeat(turns, async (turn) => {
      say(`replay: turn ${turn + 1}/${turns}, rebuilding a fresh schema from the archive`);
      // where the time goes: seconds from the start to each phase's start
      const started = performance.now();
      const phases: Record<string, number> = {};
      const onProgress = (p: { phase: string }) => {
        phases[p.phase] ??= (performance.now() - started) / 1000;
      };
      const r = await replayArchive({ s3, bucket: BUCKETS.ingestion, pool: replayPool, schema: `replay_rebuild_${turn + 1}`, freshSchema: true, onProgress });
      return {
        events: r.events,
        seconds: r.seconds,
        eventsPerSecond: r.eventsPerSecond,
        peakRssMb: r.memory.peakRssMb,
        peakHeapMb: r.memory.peakHeapMb,
        peakEventsHeld: r.memory.peakEventsHeld,
        windowEvents: r.windowEvents,
        phases,
      };
    }).finally(() => replayPool.end());

    return {
      processor,
      processorEventsPerSecond: spread(processor.map((p) => p.eventsPerSecond)),
      processorEventsPerCpuSecond: spread(processor.map((p) => p.eventsPerCpuSecond)),
      loader: trustedLoads,
      loaderChecked: checkedLoads,
      fetchDecode: { rows: fetchedRows, seconds: decodeSeconds, rowsPerSecond: fetchedRows / decodeSeconds },
      copy: loads.b,
      loaderVsCopy: ratioSpread(
        trustedLoads.map((l) => l.rowsPerSecond),
        loads.b.map((c) => c.rowsPerSecond),
      ),
      loaderRowsPerSecond: spread(trustedLoads.map((l) => l.rowsPerSecond)),
      loaderCheckedVsCopy: ratioSpread(
        checkedLoads.map((l) => l.rowsPerSecond),
        loads.b.map((c) => c.rowsPerSecond),
      ),
      loaderCheckedRowsPerSecond: spread(checkedLoads.map((l) => l.rowsPerSecond)),
      catchUp,
      catchUpRowsPerSecond: spread(catchUp.map((c) => c.rowsPerSecond)),
      catchUpBatchesPerSecond: spread(catchUp.map((c) => c.batchesPerSecond)),
      catchUpVsLoader: ratioSpread(
        catchUp.map((c) => c.rowsPerSecond),
        trustedLoads.map((l) => l.rowsPerSecond),
      ),
      catchUp72hMinutes: spread(catchUp.map((c) => backlogDrainMinutes(c.changesPerSecond))),
      asOfQueryMs: spread(trustedLoads.map((l) => l.asOfQueryMs!)),
      historyBytesPerMillionChanges: spread(trustedLoads.map((l) => l.historyBytesPerMillionChanges!)),
      replay,
      replayEventsPerSecond: spread(replay.map((r) => r.eventsPerSecond)),
      replayPeakRssMb: spread(replay.map((r) => r.peakRssMb)),
    };
  } finally {
    await copyDb.client.end();
    kinesis.destroy();
    s3.destroy();
  }
}

/** Every record of the stream as the event source mapping hands them over: per shard, GetRecords batches of PROCESSOR_BATCH_SIZE. */
export async function readStream(kinesis: KinesisClient, streamName: string, records: number): Promise<KinesisStreamEvent[]> {
  const events: KinesisStreamEvent[] = [];
  let read = 0;
  for (const shard of (await kinesis.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? []) {
    let iterator = (await kinesis.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
      .ShardIterator;
    while (iterator) {
      const out = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: PROCESSOR_BATCH_SIZE }));
      const batch = out.Records ?? [];
      if (batch.length === 0) break; // the stream is complete before this runs: an empty read is its end
      events.push({ Records: batch.map((r) => toLambdaRecord(r, shard.ShardId!, streamName)) });
      read += batch.length;
      iterator = out.NextShardIterator;
    }
  }
  if (read !== records) throw new Error(`${streamName} holds ${read} records, capture put ${records}`);
  return events;
}

/** Times one batch is handed to the processor before the bench gives up on it. */
const PROCESSOR_ATTEMPTS = 3;

/** One Processor over every event, one invocation at a time; wall and CPU time. */
export async function runProcessor(store: MicroBatchStore, chain: BatchChain, events: KinesisStreamEvent[]): Promise<ProcessorRun> {
  const processor = new Processor(store, chain);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  let retries = 0;
  for (const event of events) {
    // as the event source mapping does: a failed batch is handed over again (s3rver under a busy machine may drop a connection)
    for (let attempt = 1; (await processor.handler(event)).batchItemFailures.length > 0; attempt++) {
      if (attempt >= PROCESSOR_ATTEMPTS) throw new Error(`the processor failed a batch ${attempt} times (see its log)`);
      retries++;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const { events: n, rows, batches } = processor.metrics;
  return { events: n, rows, batches, retries, seconds, eventsPerSecond: n / seconds, eventsPerCpuSecond: n / ((cpu.user + cpu.system) / 1e6) };
}

/** Every load row the processor wrote, by load table, read as the loader reads them. */
async function readMicroBatches(store: MicroBatchStore): Promise<Map<LoadTableName, LoadRow[]>> {
  const tables = new Map<LoadTableName, LoadRow[]>();
  for (const shard of await store.listShards()) {
    for (const key of await store.listManifests(shard, undefined, Infinity)) {
      for (const t of (await store.getManifest(key)).tables) {
        const rows = await decodeParquet(t.table, await store.getBytes(t.key));
        const all = tables.get(t.table) ?? [];
        for (const row of rows) all.push(row);
        tables.set(t.table, all);
      }
    }
  }
  return tables;
}

/** COPY every load table's rows, one transaction a pass, into unindexed tables of the staging columns, pass after pass for COPY_SECONDS. */
async function copyReference(
  client: pg.Client,
  schema: string,
  tables: Map<LoadTableName, LoadRow[]>,
): Promise<{ rows: number; seconds: number; rowsPerSecond: number }> {
  await client.query(`CREATE SCHEMA ${schema}`);
  for (const table of tables.keys()) {
    await client.query(
      `CREATE TABLE ${schema}."${table}" (${stageColumns(table)
        .map(([n, t]) => `"${n}" ${t}`)
        .join(', ')})`,
    );
  }
  const started = performance.now();
  let rows = 0;
  do {
    await client.query('BEGIN');
    for (const [table, tableRows] of tables)
      rows += await copyRows(
        client,
        `${schema}."${table}"`,
        stageColumns(table).map(([n]) => n),
        tableRows,
      );
    await client.query('COMMIT');
  } while (performance.now() - started < COPY_SECONDS * 1000);
  const seconds = (performance.now() - started) / 1000;
  await client.query(`DROP SCHEMA ${schema} CASCADE`); // the warehouse cluster's disk is shared with the loader turns
  return { rows, seconds, rowsPerSecond: rows / seconds };
}
