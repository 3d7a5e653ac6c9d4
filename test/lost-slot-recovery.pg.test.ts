/**
 * After a lost slot the warehouse ends equal to the source, deletes included: while capture is
 * down, rows are deleted, updated and inserted, the slot is lost for real (its WAL removed
 * past max_slot_wal_keep_size), and the capture service that starts next recreates it and
 * snapshots every table again while streaming. The snapshot ranges end the rows the source no
 * longer has, exactly once, and a replay of the archive (twice, and into the live warehouse)
 * builds the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from '../capture/capture-service.ts';
import type pg from '../lib/pg.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import { Pipeline } from '../local/pipeline.ts';
import type { EmbeddedPg } from '../local/servers.ts';
import { replayArchive } from '../replay/replay.ts';
import { primaryKeyOf, SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { targetOf } from '../processors/transform.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Simulator } from '../totesys/simulator.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { startLocalAws, type LocalAws } from './harness.ts';
import { loseSlot, startFragileSlotsPostgres } from './lost-slot.ts';
import { archiveEverything } from './pipeline-harness.ts';

const SLOT = 'recovering';

/** The keys each source table holds, ascending. */
async function keysOf(db: pg.Pool): Promise<Record<SourceTable, number[]>> {
  const out = {} as Record<SourceTable, number[]>;
  for (const t of SOURCE_TABLE_NAMES) out[t] = (await db.query(`SELECT ${primaryKeyOf(t)} AS k FROM "${t}" ORDER BY 1`)).rows.map((r) => Number(r.k));
  return out;
}

/** Rows ended per load table, as totes_row_ends counts them. */
async function rowsEnded(wh: pg.Pool, schema: string): Promise<Record<string, number>> {
  const { rows } = await wh.query(`SELECT load_table, sum(rows_ended)::int AS n FROM "${schema}".totes_row_ends GROUP BY 1 HAVING sum(rows_ended) <> 0`);
  return Object.fromEntries(rows.map((r) => [r.load_table, r.n]));
}

describe('recovery from a lost slot', () => {
  let server: EmbeddedPg;
  let aws: LocalAws;
  let source: pg.Pool;
  let pipeline: Pipeline;
  let second: CaptureService | null = null;

  beforeAll(async () => {
    [server, aws] = await Promise.all([
      startFragileSlotsPostgres('recovery', ['totesys', 'warehouse']),
      startLocalAws({ stream: 'changes', shards: 2, buckets: ['ingestion', 'processed'] }),
    ]);
    source = poolFor(server.url('totesys'), 3);
    await inTransaction(source, async (db) => {
      await createTotesys(db, { seed: 21, sizes: scaledSizes(0.01) });
    });
    pipeline = new Pipeline({
      sourceUrl: server.url('totesys'),
      warehouseUrl: server.url('warehouse'),
      kinesisEndpoint: aws.kinesisEndpoint,
      s3Endpoint: aws.s3Endpoint,
      streamName: 'changes',
      ingestionBucket: 'ingestion',
      processedBucket: 'processed',
      capture: { slotName: SLOT, heartbeatMs: 300, statusIntervalMs: 500 },
      archiveIntervalMs: 500,
    });
    await pipeline.start();
  });
  afterAll(async () => {
    await second?.stop().catch(() => undefined);
    await pipeline?.stop();
    await source?.end();
    await aws?.stop();
    await server?.stop();
  });

  it('ends the rows deleted while the slot was lost, once, and a replay builds the same', async () => {
    await new Simulator(source, 3).run({ changes: 200 });
    // rows the warehouse will have, and that will be gone: a new address and department nobody references
    const { rows: made } = await source.query(
      `WITH a AS (INSERT INTO address (address_line_1, city, postal_code, country, phone, last_updated) VALUES ('1 Gone St', 'Leeds', 'LS1', 'UK', '0113', now()) RETURNING address_id),
            d AS (INSERT INTO department (department_name, location, manager, last_updated) VALUES ('Gone', 'Leeds', 'Nobody', now()) RETURNING department_id)
       SELECT (SELECT address_id FROM a) AS address, (SELECT department_id FROM d) AS department`,
    );
    const before = await verify({ sourceUrl: server.url('totesys'), warehouseUrl: server.url('warehouse'), waitMs: 60_000 });
    expect(formatDifferences(before.differences)).toBe('');

    // capture is down; the business goes on, deleting rows the warehouse has
    await pipeline.capture.stop();
    const existing = await keysOf(source);
    const orders = existing.sales_order.slice(0, 12);
    await inTransaction(source, async (db) => {
      const { rows: tx } = await db.query(`SELECT transaction_id FROM transaction WHERE sales_order_id = ANY($1)`, [orders]);
      await db.query(`DELETE FROM payment WHERE transaction_id = ANY($1)`, [tx.map((r) => r.transaction_id)]);
      await db.query(`DELETE FROM transaction WHERE transaction_id = ANY($1)`, [tx.map((r) => r.transaction_id)]);
      await db.query(`DELETE FROM sales_order WHERE sales_order_id = ANY($1)`, [orders]);
      await db.query(`DELETE FROM address WHERE address_id = $1`, [made[0].address]);
      await db.query(`DELETE FROM department WHERE department_id = $1`, [made[0].department]);
    });
    await new Simulator(source, 4).run({ changes: 200 });
    const remaining = await keysOf(source);
    const gone = Object.fromEntries(SOURCE_TABLE_NAMES.map((t) => [t, existing[t].filter((k) => !remaining[t].includes(k))])) as typeof existing;
    const endedExactly = Object.fromEntries(SOURCE_TABLE_NAMES.filter((t) => gone[t].length > 0).map((t) => [targetOf(t), gone[t].length]));
    expect(gone.sales_order.length).toBeGreaterThanOrEqual(orders.length);
    await loseSlot(source, SLOT);

    second = new CaptureService(
      { ...DEFAULT_CAPTURE_CONFIG, sourceUrl: server.url('totesys'), slotName: SLOT, createPrerequisites: true, heartbeatMs: 300, statusIntervalMs: 500 },
      pipeline.sink,
    );
    const running = second.run();
    running.catch(() => undefined);
    const after = await verify({ sourceUrl: server.url('totesys'), warehouseUrl: server.url('warehouse'), waitMs: 90_000 });
    expect(formatDifferences(after.differences)).toBe('');
    expect(after.ok).toBe(true);

    const wh = poolFor(server.url('warehouse'), 2);
    try {
      const ended = await wh.query(`SELECT sales_order_id AS id FROM fact_sales_order WHERE source_op = 'a' ORDER BY 1`);
      expect(ended.rows.map((r) => r.id)).toEqual(gone.sales_order);
      const location = await wh.query(`SELECT is_deleted FROM dim_location WHERE location_id = $1`, [made[0].address]);
      expect(location.rows).toEqual([{ is_deleted: true }]);
      // the rows ended, as the warehouse holds them (tombstones of the dimensions, 'a' versions of the facts)
      const tombstones = await wh.query(`SELECT transaction_id AS id FROM dim_transaction WHERE is_deleted ORDER BY 1`);
      expect(tombstones.rows.map((r) => r.id)).toEqual(expect.arrayContaining(gone.transaction));
      const payments = await wh.query(`SELECT payment_id AS id FROM fact_payment WHERE source_op = 'a' ORDER BY 1`);
      expect(payments.rows.map((r) => r.id)).toEqual(gone.payment);
      // counted once each, however often an end was evaluated again for a lagging shard's rows
      expect(await rowsEnded(wh, 'public')).toEqual(endedExactly);
      expect(pipeline.loader.metrics.rowsEnded).toBe(Object.values(endedExactly).reduce((a, b) => a + b, 0));

      // replay-safe: the archive rebuilds the same warehouse; again, and into the live one, it adds nothing
      await archiveEverything(pipeline, second);
      const base = { s3: pipeline.s3, bucket: 'ingestion', pool: wh, schema: 'rebuilt', batchEvents: 400 };
      await replayArchive({ ...base, freshSchema: true });
      const rebuilt = await verify({ sourceUrl: server.url('totesys'), warehouseUrl: server.url('warehouse'), schema: 'rebuilt', waitMs: 0 });
      expect(formatDifferences(rebuilt.differences)).toBe('');
      const versions = (schema: string) =>
        wh.query(`SELECT source_op, count(*)::int AS n FROM "${schema}".fact_sales_order GROUP BY 1 ORDER BY 1`).then((r) => r.rows);
      const live = await versions('public');
      expect(await versions('rebuilt')).toEqual(live);
      expect(await rowsEnded(wh, 'rebuilt')).toEqual(endedExactly);
      expect((await replayArchive(base)).batchesSkipped).toBeGreaterThan(0);
      await replayArchive({ ...base, schema: 'public' });
      expect(await versions('public')).toEqual(live);
      expect(await rowsEnded(wh, 'public')).toEqual(endedExactly);
    } finally {
      await wh.end();
    }
  });
});
