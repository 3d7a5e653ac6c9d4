/**
 * End to end with bundled records: a hot row (1,000 updates in one transaction) and a row whose
 * changes include one over the 1 MiB record limit travel as a few records holding many changes
 * each; the warehouse, live and rebuilt from the archive, holds every version exactly once and
 * equals the truth.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRecord, type ChangeEvent } from '../formats/change-event.ts';
import pg from '../lib/pg.ts';
import { replayArchive } from '../replay/replay.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { archivedEvents, expectedFactVersions, versionDifferences, warehouseFactVersions } from './fact-versions.ts';
import { archiveEverything, startTestPipeline, type TestPipeline } from './pipeline-harness.ts';
import { until } from './until.ts';
import { readShards } from './stream-fixture.ts';

const HOT_UPDATES = 1_000;

describe('bundled records end to end', () => {
  let t: TestPipeline;
  beforeAll(async () => {
    t = await startTestPipeline({ shards: 2, scale: 0.02 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('loads a hot row and a claim-checked change that travelled bundled exactly once, live and in a replay', async () => {
    // the transaction must be streamed, not read by the initial snapshot
    await until('capture streaming, its snapshot done', () => t.pipeline.capture.metrics.state === 'streaming' && !t.pipeline.capture.snapshotPending);
    const huge = randomBytes(1_100_000).toString('base64'); // over the record limit: a pointer, bundled with its row's other changes
    await t.sourcePool.query(`DO $$
      BEGIN
        FOR i IN 1..${HOT_UPDATES} LOOP
          UPDATE sales_order SET units_sold = i, last_updated = now() WHERE sales_order_id = 1;
          IF i % 100 = 0 THEN UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id = i / 100; END IF;
        END LOOP;
        UPDATE design SET design_name = 'before', last_updated = now() WHERE design_id = 3;
        UPDATE design SET file_location = '${huge}', last_updated = now() WHERE design_id = 3;
        UPDATE design SET design_name = 'after', last_updated = now() WHERE design_id = 3;
      END $$`);
    const live = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
    expect(formatDifferences(live.differences)).toBe('');
    expect(t.pipeline.capture.metrics.changes).toBe(HOT_UPDATES + HOT_UPDATES / 100 + 3);

    // the records really were bundles: the hot row in a handful of records, its changes in order
    const p = t.pipeline;
    const records = [...(await readShards(p.kinesis, 'changes')).values()].flat();
    const hot = records
      .map((r) => decodeRecord(Buffer.from(r.Data!).toString('utf8')))
      .filter((events) => events.some((e) => e.kind === 'change' && e.table === 'sales_order' && e.key.sales_order_id === 1 && e.op === 'u'));
    expect(hot.length).toBeLessThanOrEqual(10); // a record goes once it has waited 20 ms: a few, not 1,000
    const units = hot.flat().map((e) => (e as ChangeEvent).after?.units_sold);
    expect(units).toEqual(Array.from({ length: HOT_UPDATES }, (_, i) => i + 1));
    const design = records.map((r) => decodeRecord(Buffer.from(r.Data!).toString('utf8'))).find((events) => events.some((e) => e.kind === 'pointer'));
    // (the change before it may have gone in an earlier record while the claim check was stored)
    expect(design?.map((e) => e.kind).slice(-2)).toEqual(['pointer', 'change']);
    expect(p.sink.metrics.events - p.sink.metrics.records).toBeGreaterThanOrEqual(HOT_UPDATES - hot.length);

    const wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
    try {
      const { rows } = await wh.query(
        `SELECT count(*)::int AS n, count(DISTINCT (source_lsn, source_pos))::int AS distinct FROM fact_sales_order WHERE sales_order_id = 1`,
      );
      expect(rows[0]).toEqual({ n: HOT_UPDATES + 1, distinct: HOT_UPDATES + 1 }); // the snapshot read and each update once
      expect((await wh.query(`SELECT design_name, length(file_location) AS n FROM dim_design WHERE design_id = 3`)).rows[0]).toEqual({
        design_name: 'after',
        n: huge.length,
      });

      // every fact version of the archive once, live and rebuilt from the archive (one event a line there)
      await archiveEverything(p);
      const expected = expectedFactVersions(await archivedEvents(p.s3, 'ingestion'));
      const found = await warehouseFactVersions(wh);
      expect(found.duplicated).toEqual([]);
      expect(versionDifferences(expected, found.versions)).toEqual([]);

      const pool = new pg.Pool({ connectionString: t.warehouseUrl, max: 2 });
      try {
        await replayArchive({ s3: p.s3, bucket: 'ingestion', pool, schema: 'rebuilt', freshSchema: true });
        const rebuilt = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, schema: 'rebuilt', waitMs: 0 });
        expect(formatDifferences(rebuilt.differences)).toBe('');
        await wh.query('SET search_path = rebuilt');
        const replayed = await warehouseFactVersions(wh);
        expect(replayed.duplicated).toEqual([]);
        expect(versionDifferences(expected, replayed.versions)).toEqual([]);
      } finally {
        await pool.end();
      }
    } finally {
      await wh.end();
    }
    expect(p.processor.metrics.deadLetters).toBe(0);
  });
});
