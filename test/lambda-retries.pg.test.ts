/**
 * One captured stream replayed through the processor and the loader by a simulated Lambda
 * event source mapping that misbehaves as the real one can: a ReportBatchItemFailures retry from
 * a record inside a batch it had written (the retry may run further), a handler that wrote its
 * manifest and then timed out (retried from the same record, or bisected), a function error
 * bisected into halves, a mapping re-created at TRIM_HORIZON or an earlier AT_TIMESTAMP (its
 * cuts overlap the old one's anyhow), and a batch given up on after its retries (its range goes
 * to the on-failure destination: a gap, processed again at the end as an operator would).
 *
 * Whenever the loader runs, no shard's watermark may pass a record no loaded batch holds, and
 * a gap with later batches behind it must be shown. At the end the warehouse equals the truth
 * and holds exactly the fact versions the stream makes. TOTES_LAMBDA_SEEDS=N runs N seeds.
 */
import type { _Record } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRecord, lsnToBigInt } from '../formats/change-event.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg, { inTransaction, poolFor } from '../lib/pg.ts';
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { Processor } from '../processors/processor.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Random } from '../totesys/random.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { captureWorkload } from './capture-workload.ts';
import { expectedFactVersions, versionDifferences, warehouseFactVersions } from './fact-versions.ts';
import { createDatabase, startLocalAws, type LocalAws } from './harness.ts';
import { createStream, lambdaEvent, putOnStream, readShards } from './stream-fixture.ts';

const SEEDS = Number(process.env.TOTES_LAMBDA_SEEDS ?? 1);
const SHARDS = 3;

/** One event source mapping's position on a shard. */
interface Mapping {
  shard: string;
  records: _Record[];
  /** Index of the next record it reads. */
  at: number;
}

const eventsOf = (r: _Record) => decodeRecord(Buffer.from(r.Data!).toString('utf8'));

describe('processor and loader under randomized Lambda retry behaviour', () => {
  let aws: LocalAws;
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [] });
  });
  afterAll(async () => {
    await aws?.stop();
  });

  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`seed ${seed}: the warehouse equals the truth, and no watermark ever passes an unloaded record`, async () => {
      const rng = new Random(seed * 104_729);
      const [source, warehouse] = await Promise.all([createDatabase('esm_src'), createDatabase('esm_wh')]);
      const kinesis = kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
      const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
      const sourcePool = poolFor(source.url, 2);
      const warehousePool = poolFor(warehouse.url, 2);
      try {
        await inTransaction(sourcePool, async (db) => {
          await createTotesys(db, { seed, sizes: scaledSizes(0.003) });
        });
        const events = await captureWorkload(source.url, { seed, operations: 400, heartbeatMs: 100, slot: `esm_${seed}` });
        const stream = `esm-${seed}`;
        await createStream(kinesis, stream, SHARDS);
        await putOnStream(kinesis, stream, events, { hashBuckets: 16 }); // rows of a bucket share records: bundles cut by every batch boundary
        const shards = await readShards(kinesis, stream);
        await s3.send(new CreateBucketCommand({ Bucket: stream }));
        const store = new MicroBatchStore(s3, stream);
        const processor = new Processor(store);
        const loader = new Loader(warehousePool, store, new ShardStream(kinesis, stream));
        await loader.ensureSchema();

        /** The ranges of records a manifest was written for. */
        const written: { shard: string; from: number; to: number }[] = [];
        const invoke = async (m: Mapping, from: number, to: number) => {
          if (to <= from) return;
          written.push({ shard: m.shard, from, to });
          expect((await processor.handler(lambdaEvent(m.records.slice(from, to), m.shard, stream))).batchItemFailures).toEqual([]);
        };
        const seqs = (records: _Record[]) => records.map((r) => BigInt(r.SequenceNumber!));

        /** What the loaded batches hold, from the load log (batch ids name each batch's last and first record). */
        const loadedRanges = async () => {
          const { rows } = await warehousePool.query(`SELECT batch_key FROM totes_load_log`);
          return rows.map((r) => {
            const [shard, range] = (r.batch_key as string).split('/');
            const [last, first] = range.split('-').map((x) => BigInt(x));
            return { shard, first, last };
          });
        };
        const isLoaded = (ranges: Awaited<ReturnType<typeof loadedRanges>>, shard: string, seq: bigint) =>
          ranges.some((r) => r.shard === shard && r.first <= seq && seq <= r.last);

        /** No shard's watermark, nor its frontier, is past a record no loaded batch holds. */
        const checkWatermarks = async () => {
          const ranges = await loadedRanges();
          const { rows } = await warehousePool.query(`SELECT shard, watermark_lsn::text AS lsn, frontier_seq FROM totes_shard_progress`);
          for (const row of rows) {
            const records = shards.get(row.shard)!;
            const at = seqs(records);
            const heartbeat = records.findIndex((r) => eventsOf(r).some((e) => e.kind === 'heartbeat' && lsnToBigInt(e.source.lsn) === lsnToBigInt(row.lsn)));
            if (row.lsn !== '0/0') expect(heartbeat, `the watermark ${row.lsn} of ${row.shard} is a heartbeat on it`).toBeGreaterThanOrEqual(0);
            const claimed = Math.max(heartbeat, row.frontier_seq ? at.indexOf(BigInt(row.frontier_seq)) : -1);
            const unloaded = at.slice(0, claimed + 1).filter((s) => !isLoaded(ranges, row.shard, s));
            expect(unloaded, `records before the watermark or frontier of ${row.shard} that no loaded batch holds`).toEqual([]);
          }
        };

        const mappings: Mapping[] = [...shards].map(([shard, records]) => ({ shard, records, at: 0 }));
        const givenUp: { m: Mapping; from: number; to: number }[] = [];
        const stats = { invocations: 0, itemFailures: 0, timeouts: 0, bisects: 0, recreated: 0, givenUp: 0, loads: 0 };
        for (;;) {
          const live = mappings.filter((m) => m.at < m.records.length);
          if (live.length === 0) break;
          const m = rng.pick(live);
          const from = m.at;
          const to = Math.min(m.records.length, from + rng.int(1, 20));
          const roll = rng.next();
          stats.invocations++;
          if (roll < 0.12 && to - from > 1) {
            // the batch was written, then reported failed from a record inside it: the retry starts there and may run further
            await invoke(m, from, to);
            m.at = from + rng.int(1, to - from - 1);
            stats.itemFailures++;
          } else if (roll < 0.22) {
            // the handler wrote its manifest and timed out: retried from the same record, cut anew, or bisected
            await invoke(m, from, to);
            stats.timeouts++;
            if (rng.chance(0.5) && to - from > 1) {
              const middle = from + Math.floor((to - from) / 2);
              await invoke(m, from, middle);
              await invoke(m, middle, to);
              m.at = to;
              stats.bisects++;
            }
          } else if (roll < 0.3 && to - from > 1) {
            // a function error before any manifest: BisectBatchOnFunctionError halves
            const middle = from + Math.floor((to - from) / 2);
            await invoke(m, from, middle);
            await invoke(m, middle, to);
            m.at = to;
            stats.bisects++;
          } else if (roll < 0.34) {
            // the mapping re-created at TRIM_HORIZON or an earlier AT_TIMESTAMP; the old one goes on a while, or is deleted
            mappings.push({ shard: m.shard, records: m.records, at: rng.chance(0.3) ? 0 : rng.int(Math.max(0, from - 40), from) });
            if (rng.chance(0.5)) m.at = m.records.length;
            stats.recreated++;
          } else if (roll < 0.39) {
            // retries exhausted (maxRecordAge): the range goes to the on-failure destination
            givenUp.push({ m, from, to });
            m.at = to;
            stats.givenUp++;
          } else {
            await invoke(m, from, to);
            m.at = to;
          }
          if (rng.chance(0.2)) {
            await loader.loadAvailable();
            stats.loads++;
            await checkWatermarks();
          }
        }

        // everything processed but what was given up: where a record no batch holds has batches after it, a gap
        while ((await loader.loadAvailable()) > 0);
        await checkWatermarks();
        const expectedGaps = [...shards.keys()].flatMap((shard) => {
          const covered = (i: number) => written.some((w) => w.shard === shard && w.from <= i && i < w.to);
          const missing = shards.get(shard)!.findIndex((_, i) => !covered(i));
          return missing >= 0 && written.some((w) => w.shard === shard && w.from > missing)
            ? [{ shard, missing: shards.get(shard)![missing].SequenceNumber }]
            : [];
        });
        expect(loader.status.gaps.map((g) => ({ shard: g.shard, missing: g.missing })).sort((a, b) => a.shard.localeCompare(b.shard))).toEqual(expectedGaps);
        expect((await loader.freshness()).gapShards).toBe(expectedGaps.length);

        // the operator processes the given-up ranges again from the stream
        for (const g of givenUp) await invoke(g.m, g.from, g.to);
        while ((await loader.loadAvailable()) > 0);
        await checkWatermarks();
        expect(loader.status.gaps).toEqual([]);
        expect(processor.metrics.deadLetters).toBe(0);

        const result = await verify({ sourceUrl: source.url, warehouseUrl: warehouse.url, waitMs: 0 });
        expect(formatDifferences(result.differences)).toBe('');
        const wh = new pg.Client({ connectionString: warehouse.url });
        await wh.connect();
        const found = await warehouseFactVersions(wh);
        await wh.end();
        expect(found.duplicated).toEqual([]);
        expect(versionDifferences(expectedFactVersions(events), found.versions)).toEqual([]);
        // the watermark reached the last heartbeat on every shard
        const last = events.filter((e) => e.kind === 'heartbeat').at(-1)!;
        expect(lsnToBigInt((await loader.freshness()).watermarkLsn!)).toBe(lsnToBigInt(last.source.lsn));
        console.info(
          `lambda retries (seed ${seed}): ${events.length} events over ${SHARDS} shards; ${JSON.stringify(stats)}; gaps shown: ${expectedGaps.length}`,
        );
        expect(stats.itemFailures + stats.timeouts + stats.bisects + stats.recreated + stats.givenUp).toBeGreaterThan(stats.invocations / 4);
      } finally {
        await sourcePool.end();
        await warehousePool.end();
        kinesis.destroy();
        s3.destroy();
        await source.drop();
        await warehouse.drop();
      }
    });
  }
});
