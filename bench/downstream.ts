/**
 * The figures after Kinesis, each in turns:
 *   the processor (Lambda events → Parquet micro-batches in S3), fed the stream's records as the
 *   event source mapping hands them over (5,000 a batch), one invocation at a time as one Lambda
 *   container runs them, each turn into a bucket of its own;
 *   the loader (micro-batches merged into a fresh warehouse each turn) against a plain COPY of the
 *   same rows into unindexed tables, the most the warehouse could take;
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
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { stageColumns } from '../loader/merge-sql.ts';
import { PROCESSOR_BATCH_SIZE, toLambdaRecord } from '../local/kinesis-poller.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { decodeParquet } from '../formats/parquet.ts';
import { Processor } from '../processors/processor.ts';
import { copyRows } from '../lib/pg-copy.ts';
import { createBucket, createDatabase, type BenchEnvironment } from './environment.ts';
import { interleave, ratioSpread, repeat, spread, type Spread } from './runs.ts';

export interface ProcessorRun {
  events: number;
  batches: number;
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
      return runProcessor(new MicroBatchStore(s3, BUCKETS.processed(turn)), events);
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
    const loadTurn = async (turn: number, role: 'trusted' | 'checked') => {
      say(
        `loader: turn ${turn + 1}/${turns}, ${role === 'trusted' ? 'a superuser' : 'a role that may not set session_replication_role'}, merging the micro-batches into a fresh warehouse`,
      );
      const { url, client } = await createDatabase(env.warehouse, `bench_warehouse_${role}_${turn + 1}`);
      if (role === 'checked') await client.query(`ALTER DATABASE "bench_warehouse_${role}_${turn + 1}" OWNER TO ${CHECKED_ROLE}`);
      await client.end();
      const pool = poolFor(role === 'checked' ? asRole(url, CHECKED_ROLE) : url, 2);
      try {
        const loader = new Loader(pool, store, new ShardStream(kinesis, streamName));
        await loader.ensureSchema();
        const trusted = await loader.warehouse.trustsReferences();
        if (trusted !== (role === 'trusted')) throw new Error(`the ${role} loader turn ${trusted ? 'trusts' : 'checks'} references`);
        const started = performance.now();
        while ((await loader.loadAvailable()) > 0);
        const seconds = (performance.now() - started) / 1000;
        return { rows: loader.metrics.rows, batches: loader.metrics.batches, seconds, rowsPerSecond: loader.metrics.rows / seconds };
      } finally {
        await pool.end();
      }
    };
    const loads = await interleave(
      turns,
      async (turn) => ({ trusted: await loadTurn(turn, 'trusted'), checked: await loadTurn(turn, 'checked') }),
      async (turn) => {
        say(`reference: turn ${turn + 1}/${turns}, COPY of the same rows`);
        return copyReference(copyDb.client, `copy_reference_${turn + 1}`, tables);
      },
    );
    const trustedLoads = loads.a.map((l) => l.trusted);
    const checkedLoads = loads.a.map((l) => l.checked);

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
async function readStream(kinesis: KinesisClient, streamName: string, records: number): Promise<KinesisStreamEvent[]> {
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

/** One Processor over every event, one invocation at a time; wall and CPU time. */
async function runProcessor(store: MicroBatchStore, events: KinesisStreamEvent[]): Promise<ProcessorRun> {
  const processor = new Processor(store);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  for (const event of events) {
    const { batchItemFailures } = await processor.handler(event);
    if (batchItemFailures.length) throw new Error('the processor failed a batch (see its log)');
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const { events: n, batches } = processor.metrics;
  return { events: n, batches, seconds, eventsPerSecond: n / seconds, eventsPerCpuSecond: n / ((cpu.user + cpu.system) / 1e6) };
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
