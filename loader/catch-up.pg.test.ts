/**
 * The loader after a long outage, the way it runs on AWS: questions to the stream paced at real
 * Kinesis's rate (0.4 s a question per shard), a run's planning held to a time budget, and a
 * stream that has aged out the records around the frontier. A backlog drains at the loader's
 * speed whatever its length, every run saves progress, and past the retention the warehouse
 * still ends with every version, once.
 */
import type { KinesisClient, _Record } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg, { poolFor } from '../lib/pg.ts';
import { freePort, startKinesis, type LocalKinesis } from '../local/servers.ts';
import { BatchChain } from '../processors/batch-chain.ts';
import { Processor } from '../processors/processor.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { createStream, lambdaEvent, putOnStream, readShards } from '../test/stream-fixture.ts';
import { TrimmedStream } from '../test/trimmed-stream.ts';
import { Loader } from './loader.ts';
import { REAL_KINESIS_ASK_INTERVAL_MS } from './main.ts';

describe('loader after a long outage', () => {
  let aws: LocalAws;
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  let streams = 0;
  const cleanups: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [] });
    kinesis = await startKinesis({ port: await freePort(), streams: [] });
    client = kinesisClient({ kinesisEndpoint: kinesis.endpoint });
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });
  afterAll(async () => {
    client?.destroy();
    await kinesis?.stop();
    await aws?.stop();
  });

  /**
   * `orders` sales orders created on a stream of `shards` shards, one event a record, and every
   * record processed as a batch of its own (the most junctions a backlog can have), with or
   * without the processor asking the stream which batch each follows.
   */
  async function backlog(opts: { shards: number; orders: number; chained: boolean; answer?: 'refuse' | 'empty-pages' }) {
    const name = `catch-up-${++streams}`;
    await createStream(client, name, opts.shards);
    await putOnStream(
      client,
      name,
      Array.from({ length: opts.orders }, (_, i) => salesOrderChange(i + 1)),
      { maxEventsPerRecord: 1 },
    );
    const records = await readShards(client, name);
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    await s3.send(new CreateBucketCommand({ Bucket: name }));
    const wh = await createDatabase('catchup');
    const pool = poolFor(wh.url, 2);
    cleanups.push(
      () => wh.drop(),
      () => pool.end(),
      async () => s3.destroy(),
    );
    const store = new MicroBatchStore(s3, name);
    const stream = new TrimmedStream(client, opts.answer);
    const processor = new Processor(store, opts.chained ? new BatchChain(new ShardStream(stream, name)) : null);
    /** The processor over one shard's records[from..to] (inclusive), one invocation a record. */
    const process = async (shard: string, from = 0, to = records.get(shard)!.length - 1) => {
      for (const r of records.get(shard)!.slice(from, to + 1)) expect((await processor.handler(lambdaEvent([r], shard, name))).batchItemFailures).toEqual([]);
    };
    const loader = new Loader(pool, store, new ShardStream(stream, name, REAL_KINESIS_ASK_INTERVAL_MS));
    await loader.ensureSchema();
    const loadedOrders = async () => {
      const c = new pg.Client({ connectionString: wh.url });
      await c.connect();
      const { rows } = await c.query('SELECT sales_order_id FROM fact_sales_order ORDER BY sales_order_id');
      await c.end();
      return rows.map((r) => r.sales_order_id as number);
    };
    return { records, stream, process, loader, loadedOrders };
  }

  const allOrders = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

  it('drains 300+ batches a shard on two shards in one 90 s run with real pacing, asking the stream almost nothing', async () => {
    const { records, stream, process, loader, loadedOrders } = await backlog({ shards: 2, orders: 700, chained: true });
    await Promise.all([...records.keys()].map((shard) => process(shard)));
    expect(Math.min(...[...records.values()].map((r) => r.length))).toBeGreaterThanOrEqual(300);
    const asked = stream.iterators;
    const started = Date.now();
    await loader.loadAvailable(200_000, started + 90_000);
    expect(await loadedOrders()).toEqual(allOrders(700));
    // one question a shard (the first batch's junction with nothing loaded): not one a batch
    expect(stream.iterators - asked).toBeLessThanOrEqual(4);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('saves progress on every run held to its budget when it must ask the stream about each junction', async () => {
    const { records, process, loader, loadedOrders } = await backlog({ shards: 2, orders: 60, chained: false });
    await Promise.all([...records.keys()].map((shard) => process(shard)));
    const progress: number[] = [];
    for (let run = 0; run < 20 && (progress.at(-1) ?? 0) < 60; run++) {
      await loader.loadAvailable(200_000, Date.now() + 3_000);
      progress.push((await loadedOrders()).length);
    }
    expect(progress.at(-1)).toBe(60);
    // more than one run was needed, and every run moved the warehouse on
    expect(progress.length).toBeGreaterThan(1);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThan(progress[i - 1]);
  });

  for (const answer of ['refuse', 'empty-pages'] as const) {
    it(`resumes past the stream's retention (an aged-out iterator answered by ${answer}): every version loaded once, the unproven junctions said`, async () => {
      const { records, stream, process, loader, loadedOrders } = await backlog({ shards: 1, orders: 12, chained: false, answer });
      const [[shard, shardRecords]] = [...records];
      await process(shard, 0, 2);
      expect(await loader.loadAvailable()).toBe(3);
      await process(shard, 3);
      // the loader was down past the retention: everything up to the 8th record has aged out
      stream.trim(shard, shardRecords[7].SequenceNumber!);
      await loader.loadAvailable();
      expect(await loadedOrders()).toEqual(allOrders(12));
      expect(loader.status.gaps).toEqual([]);
      // junctions after records 3..7 were aged out; from the 8th on the stream proves them
      expect(loader.status.unprovenJunctions).toBe(5);
      expect(await loader.loadAvailable()).toBe(0);
    });
  }

  it('needs no proof from the stream past its retention where the processor chained the batches', async () => {
    const { records, stream, process, loader, loadedOrders } = await backlog({ shards: 1, orders: 10, chained: true });
    const [[shard, shardRecords]] = [...records];
    await process(shard, 0, 0);
    expect(await loader.loadAvailable()).toBe(1);
    await process(shard, 1);
    stream.trim(shard, shardRecords[8].SequenceNumber!);
    await loader.loadAvailable();
    expect(await loadedOrders()).toEqual(allOrders(10));
    expect(loader.status.unprovenJunctions).toBe(0);
  });

  it('shows a gap, not a stall, where the stream still holds a record after an aged-out frontier that no batch holds', async () => {
    const { records, stream, process, loader, loadedOrders } = await backlog({ shards: 1, orders: 10, chained: false });
    const [[shard, shardRecords]] = [...records] as [string, _Record[]][];
    await process(shard, 0, 2);
    await loader.loadAvailable();
    // the mapping gave up on records 4..6 (never processed), and 4..5 have aged out; 6 is still in the stream
    await process(shard, 6);
    stream.trim(shard, shardRecords[4].SequenceNumber!);
    await loader.loadAvailable();
    expect(loader.status.gaps).toEqual([
      expect.objectContaining({
        shard,
        after: shardRecords[2].SequenceNumber,
        missing: shardRecords[5].SequenceNumber,
        resumesAt: shardRecords[6].SequenceNumber,
      }),
    ]);
    expect(await loadedOrders()).toHaveLength(3);
  });
});
