/**
 * The figures after Kinesis: the processor (Kinesis events → Parquet micro-batches in S3), the
 * loader (micro-batches merged into the warehouse) and, beside the loader, a plain COPY of the
 * same rows into unindexed tables: the most the warehouse could take. Then a replay rebuilds a
 * fresh schema from the archive the Firehose stand-in wrote of the same stream.
 */
import { performance } from 'node:perf_hooks';
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { replayArchive } from '../replay/replay.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../loader/shard-stream.ts';
import { stageColumns } from '../loader/merge-sql.ts';
import { KinesisPoller } from '../local/kinesis-poller.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { decodeParquet } from '../formats/parquet.ts';
import { Processor } from '../processors/processor.ts';
import { copyRows } from './copy-in.ts';
import { BUCKETS, createDatabase, type BenchEnvironment } from './environment.ts';

export interface DownstreamFigures {
  processor: { events: number; batches: number; seconds: number; eventsPerSecond: number };
  loader: { rows: number; batches: number; seconds: number; rowsPerSecond: number };
  /** Reading and decoding the same micro-batches alone: the part of the loader's time that is not SQL. */
  fetchDecode: { rows: number; seconds: number; rowsPerSecond: number };
  copy: { rows: number; seconds: number; rowsPerSecond: number };
  replay: { events: number; seconds: number; eventsPerSecond: number };
}

/** Runs the processor over every record of `streamName`, then loads what it wrote. */
export async function measureDownstream(env: BenchEnvironment, streamName: string, records: number, say: (line: string) => void): Promise<DownstreamFigures> {
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  const s3 = s3Client({ s3Endpoint: env.s3Endpoint });
  const store = new MicroBatchStore(s3, BUCKETS.processed);
  const { url, client } = await createDatabase(env.warehouse, 'bench_warehouse');
  const pool = poolFor(url, 2);
  try {
    say(`processor: ${records.toLocaleString()} events from ${streamName}`);
    const processor = new Processor(store);
    const poller = new KinesisPoller({ client: kinesis, streamName, consumer: processor.handler, batchSize: 5_000, name: 'bench-processor' });
    const processorStarted = performance.now();
    await poller.start();
    while (processor.metrics.events < records) await sleep(10);
    const processorSeconds = (performance.now() - processorStarted) / 1000;
    await poller.stop();

    say('archive: the Firehose stand-in writes the same stream to the ingestion bucket (not timed)');
    const firehose = new FirehoseStandin({ s3, bucket: BUCKETS.ingestion, deliveryStreamName: streamName });
    let archived = 0;
    const archiver = new KinesisPoller({
      client: kinesis,
      streamName,
      batchSize: 10_000,
      name: 'bench-archiver',
      consumer: async (event) => {
        await firehose.consume(event);
        archived += event.Records.length;
      },
    });
    await archiver.start();
    while (archived < records) await sleep(10);
    await archiver.stop();
    await firehose.stop();

    say('loader: merging the micro-batches');
    const loader = new Loader(pool, store, new ShardStream(kinesis, streamName));
    await loader.ensureSchema();
    const loaderStarted = performance.now();
    while ((await loader.loadAvailable()) > 0);
    const loaderSeconds = (performance.now() - loaderStarted) / 1000;

    say('reference: COPY of the same rows');
    const decodeStarted = performance.now();
    const tables = await readMicroBatches(store);
    const decodeSeconds = (performance.now() - decodeStarted) / 1000;
    const copy = await copyReference(client, tables);

    say('replay: rebuilding a fresh schema from the archive');
    const replayed = await replayArchive({ s3, bucket: BUCKETS.ingestion, pool, schema: 'replay_rebuild', freshSchema: true });

    const fetchedRows = [...tables.values()].reduce((n, rows) => n + rows.length, 0);
    return {
      processor: {
        events: processor.metrics.events,
        batches: processor.metrics.batches,
        seconds: processorSeconds,
        eventsPerSecond: processor.metrics.events / processorSeconds,
      },
      loader: { rows: loader.metrics.rows, batches: loader.metrics.batches, seconds: loaderSeconds, rowsPerSecond: loader.metrics.rows / loaderSeconds },
      fetchDecode: { rows: fetchedRows, seconds: decodeSeconds, rowsPerSecond: fetchedRows / decodeSeconds },
      copy,
      replay: { events: replayed.events, seconds: replayed.seconds, eventsPerSecond: replayed.eventsPerSecond },
    };
  } finally {
    await pool.end();
    await client.end();
    kinesis.destroy();
    s3.destroy();
  }
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

/** COPY every load table's rows into an unindexed table of the staging columns, one transaction. */
async function copyReference(client: pg.Client, tables: Map<LoadTableName, LoadRow[]>): Promise<DownstreamFigures['copy']> {
  await client.query('CREATE SCHEMA copy_reference');
  for (const table of tables.keys()) {
    await client.query(
      `CREATE TABLE copy_reference."${table}" (${stageColumns(table)
        .map(([n, t]) => `"${n}" ${t}`)
        .join(', ')})`,
    );
  }
  const started = performance.now();
  let rows = 0;
  await client.query('BEGIN');
  for (const [table, tableRows] of tables)
    rows += await copyRows(
      client,
      `copy_reference."${table}"`,
      stageColumns(table).map(([n]) => n),
      tableRows,
    );
  await client.query('COMMIT');
  const seconds = (performance.now() - started) / 1000;
  return { rows, seconds, rowsPerSecond: rows / seconds };
}
