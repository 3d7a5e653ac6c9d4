/**
 * Resharding while streaming (kinesalite's SplitShard and MergeShards; an ON_DEMAND stream does
 * it by itself): the whole pipeline runs under simulated business while one shard is split and
 * then two shards are merged. The producer sends heartbeats to the new shards, the pollers read
 * each parent to its end before its children, and the loader loads a parent before its children
 * and leaves a closed parent out of freshness once it is loaded to its end. The warehouse ends
 * equal to the truth, with every fact version the archive makes and none twice (per-key order
 * held across the reshards).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../lib/pg.ts';
import { s3Client } from '../lib/aws.ts';
import { lsnToBigInt } from '../formats/change-event.ts';
import { HEARTBEAT_PREFIX } from '../formats/source-signals.ts';
import { Simulator } from '../totesys/simulator.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { archivedEvents, expectedFactVersions, versionDifferences, warehouseFactVersions } from './fact-versions.ts';
import { startTestPipeline, type TestPipeline } from './pipeline-harness.ts';
import { until } from './until.ts';
import { mergeShards, openShards, splitShard } from './stream-fixture.ts';

describe('resharding while streaming', () => {
  let t: TestPipeline;
  beforeAll(async () => {
    t = await startTestPipeline({ shards: 2, scale: 0.02 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('splits and merges shards under load; the warehouse ends equal to the truth and freshness covers the open shards', async () => {
    const p = t.pipeline;
    const stream = p.config.streamName;
    const abort = new AbortController();
    const simulator = new Simulator(t.sourcePool, 19);
    const business = simulator.run({ rate: 150, signal: abort.signal });
    const wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
    try {
      await until('changes loaded', () => p.loader.metrics.rows > 200, 60_000);
      const [first, second] = await openShards(p.kinesis, stream);
      await splitShard(p.kinesis, stream, first);
      const [left, right] = await openShards(p.kinesis, stream);
      expect(right).not.toBe(second);
      await until('changes after the split', () => simulator.stats.changes > 600, 60_000);
      // both children open: the watermark passes a new heartbeat only when each child carries it
      const marker = lsnToBigInt((await t.sourcePool.query(`SELECT pg_logical_emit_message(true, $1, '')::text AS lsn`, [HEARTBEAT_PREFIX])).rows[0].lsn);
      await until(
        'the watermark past a heartbeat sent after the split',
        async () => lsnToBigInt((await p.loader.freshness()).watermarkLsn ?? '0/0') >= marker,
        30_000,
      );
      // the split's right half and the old second shard are adjacent: merge them
      await mergeShards(p.kinesis, stream, right, second);
      const open = await openShards(p.kinesis, stream);
      expect(open).toHaveLength(2);
      expect(open[0]).toBe(left);
      await until('changes after the merge', () => simulator.stats.changes > 1_000, 60_000);
      abort.abort();
      await business;

      const result = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
      expect(formatDifferences(result.differences)).toBe('');

      // every closed shard is loaded to its end and left out of freshness; the open ones carry it
      await until('closed shards loaded to their end', async () => {
        const { rows } = await wh.query(`SELECT count(*) FILTER (WHERE NOT ended)::int AS open FROM totes_shard_progress`);
        return rows[0].open === open.length;
      });
      const progress = await wh.query(`SELECT shard, ended, watermark_lsn::text AS lsn, gap_since FROM totes_shard_progress ORDER BY shard`);
      expect(progress.rows.map((r) => [r.shard, r.ended])).toEqual(
        [first, second, left, right, ...open.filter((s) => s !== left)].sort().map((s) => [s, !open.includes(s)]),
      );
      expect(progress.rows.every((r) => r.gap_since === null)).toBe(true);
      // heartbeats keep moving the watermarks, so progress and freshness are read together until
      // one pair agrees: a freshness that counted a closed parent would never equal the open lowest
      let fresh = await p.loader.freshness();
      await until('freshness at the lowest open shard watermark', async () => {
        const { rows } = await wh.query(`SELECT ended, watermark_lsn::text AS lsn FROM totes_shard_progress ORDER BY shard`);
        fresh = await p.loader.freshness();
        const again = await wh.query(`SELECT ended, watermark_lsn::text AS lsn FROM totes_shard_progress ORDER BY shard`);
        if (JSON.stringify(again.rows) !== JSON.stringify(rows)) return false; // moved while freshness was read
        const openLowest = rows.filter((r) => !r.ended).reduce((min, r) => (lsnToBigInt(r.lsn) < min ? lsnToBigInt(r.lsn) : min), 2n ** 64n);
        return lsnToBigInt(fresh.watermarkLsn!) === openLowest;
      });
      expect(fresh.lagSeconds).toBeLessThan(30);

      // every fact version the archive makes, once
      await p.capture.stop();
      await until('the archive to hold the stream', async () => {
        await p.firehose.deliver(true);
        return p.firehose.records >= p.sink.metrics.records;
      });
      const s3 = s3Client({ s3Endpoint: t.s3Endpoint });
      const expected = expectedFactVersions(await archivedEvents(s3, p.config.ingestionBucket));
      s3.destroy();
      const found = await warehouseFactVersions(wh);
      expect(found.duplicated).toEqual([]);
      expect(versionDifferences(expected, found.versions).slice(0, 10)).toEqual([]);
      console.info(`reshard: ${simulator.stats.changes} changes; shards ${progress.rows.map((r) => `${r.shard}${r.ended ? ' (ended)' : ''}`).join(', ')}`);
    } finally {
      abort.abort();
      await business.catch(() => undefined);
      await wh.end();
    }
  });
});
