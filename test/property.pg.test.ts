/**
 * Property: whatever the workload, and however the stream delivers it — spread over shards,
 * batches retried whole or from the middle, shards loaded in any interleaving — the warehouse
 * ends equal to the truth, and every fact version is accounted for exactly once.
 *
 * `npm test` runs one fixed seed; TOTES_PROPERTY_SEEDS=N runs N seeds (a longer soak).
 */
import type { _Record } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareEventIds, encodeEvent, type ChangeEvent } from '../formats/change-event.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg, { inTransaction, poolFor } from '../lib/pg.ts';
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { mapEvents, targetOf } from '../processors/transform.ts';
import { LOAD_TABLES } from '../formats/load-tables.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Random } from '../totesys/random.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { createDatabase, startLocalAws, type LocalAws } from './harness.ts';
import { captureWorkload } from './capture-workload.ts';
import { createStream, lambdaEvent, putOnStream, readShards } from './stream-fixture.ts';

const SEEDS = Number(process.env.TOTES_PROPERTY_SEEDS ?? 1);
const SHARDS = 3;
const STREAM = 'changes';

/** Kinesis as it behaves at worst: per-shard order kept, batches retried whole or from a record inside them. */
function deliveries(shards: Map<string, _Record[]>, rng: Random): KinesisStreamEvent[] {
  const perShard: KinesisStreamEvent[][] = [...shards].map(([shard, records]) => {
    const batches: KinesisStreamEvent[] = [];
    for (let start = 0; start < records.length; ) {
      const size = rng.int(1, 40);
      const slice = records.slice(start, start + size);
      const asEvent = (rs: _Record[]) => lambdaEvent(rs, shard, STREAM);
      batches.push(asEvent(slice));
      if (rng.chance(0.15)) batches.push(asEvent(slice)); // the whole batch again (a retried invocation)
      if (rng.chance(0.15) && slice.length > 1) batches.push(asEvent(records.slice(start + rng.int(1, slice.length - 1), start + size + rng.int(0, 10)))); // from a failed record on
      start += size;
    }
    return batches;
  });
  // interleave the shards at random, keeping each shard's own order
  const out: KinesisStreamEvent[] = [];
  while (perShard.some((b) => b.length > 0)) {
    const live = perShard.filter((b) => b.length > 0);
    out.push(rng.pick(live).shift()!);
  }
  return out;
}

describe('property: any delivery order and duplication ends equal to the truth', () => {
  let aws: LocalAws;
  beforeAll(async () => {
    aws = await startLocalAws({ stream: STREAM, shards: SHARDS, buckets: [] });
  });
  afterAll(async () => {
    await aws?.stop();
  });

  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`seed ${seed}`, async () => {
      const source = await createDatabase('prop_src');
      const warehouse = await createDatabase('prop_wh');
      const bucket = `processed-${seed}-${Date.now()}`;
      const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
      await s3.send(new (await import('@aws-sdk/client-s3')).CreateBucketCommand({ Bucket: bucket }));
      const sourcePool = poolFor(source.url, 2);
      const warehousePool = poolFor(warehouse.url, 2);
      const kinesis = kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
      try {
        await inTransaction(sourcePool, async (db) => {
          await createTotesys(db, { seed, sizes: scaledSizes(0.003) });
        });
        const events = await captureWorkload(source.url, { seed, operations: 250, slot: `prop_${seed}` });
        const rng = new Random(seed * 7919);
        const store = new MicroBatchStore(s3, bucket);
        const processor = new Processor(store);
        const stream = `${STREAM}-${seed}`;
        await createStream(kinesis, stream, SHARDS);
        await putOnStream(kinesis, stream, events, { hashBuckets: 16 }); // rows of a bucket share records: bundles cut by every batch boundary
        const loader = new Loader(warehousePool, store, new ShardStream(kinesis, stream));
        await loader.ensureSchema();
        const changes = events.filter((e): e is ChangeEvent => e.kind === 'change');
        let lateReplays = 0;
        const processed: KinesisStreamEvent[] = [];
        const loaded = new Set<string>();
        for (const batch of deliveries(await readShards(kinesis, stream), rng)) {
          expect((await processor.handler(batch)).batchItemFailures).toEqual([]);
          if (rng.chance(0.2)) {
            await loader.loadAvailable();
            for (const b of processed) for (const r of b.Records) loaded.add(r.kinesis.data);
            processed.length = 0;
          }
          processed.push(batch);
          if (rng.chance(0.3)) {
            // a late re-delivery of a window already loaded (an archive replay into the live
            // warehouse): it must not take any row back to an older value, nor add a version
            const past = changes.filter((e) => loaded.has(Buffer.from(encodeEvent(e)).toString('base64')));
            const from = rng.int(0, Math.max(0, past.length - 1));
            const { rows } = mapEvents(past.slice(from, from + rng.int(1, 200)));
            await loader.warehouse.loadTables({ batchKey: `late-${lateReplays++}`, shard: 'replay', events: 0 }, new Map(Object.entries(rows)) as never);
          }
        }
        await loader.loadAvailable();
        expect(processor.metrics.deadLetters).toBe(0);

        const result = await verify({ sourceUrl: source.url, warehouseUrl: warehouse.url, waitMs: 0 });
        expect(formatDifferences(result.differences)).toBe('');

        // every fact version accounted for: one per fact change, and one per snapshot read that
        // shows a state the row's previous event did not (a chunk read after a change repeats it)
        const expected = new Map<string, number>();
        const previous = new Map<string, ChangeEvent>();
        for (const e of [...changes].sort((a, b) => compareEventIds(a.source, b.source))) {
          const table = targetOf(e.table);
          if (LOAD_TABLES[table].kind !== 'fact') continue;
          const id = `${table}:${e.key[LOAD_TABLES[table].key]}`;
          const prev = previous.get(id);
          previous.set(id, e);
          if (e.op === 'r' && prev && prev.op !== 'd' && JSON.stringify(prev.after) === JSON.stringify(e.after)) continue;
          expected.set(id, (expected.get(id) ?? 0) + 1);
        }
        const wh = new pg.Client({ connectionString: warehouse.url });
        await wh.connect();
        const found = new Map<string, number>();
        for (const table of ['fact_sales_order', 'fact_purchase_order', 'fact_payment'] as const) {
          const key = LOAD_TABLES[table].key;
          const { rows } = await wh.query(`SELECT ${key} AS id, count(*)::int AS n FROM ${table} GROUP BY ${key}`);
          for (const r of rows) found.set(`${table}:${r.id}`, r.n);
        }
        await wh.end();
        expect(Object.fromEntries([...found].sort())).toEqual(Object.fromEntries([...expected].sort()));
      } finally {
        await sourcePool.end();
        await warehousePool.end();
        s3.destroy();
        kinesis.destroy();
        await source.drop();
        await warehouse.drop();
      }
    });
  }
});
