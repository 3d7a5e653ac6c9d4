/**
 * What capture sends so the warehouse can end rows no delete names: a TRUNCATE as one event
 * per table it reached, and after every snapshot chunk the keys of its range that exist, both
 * on every shard.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareEventIds, type ChangeEvent, type SnapshotRangeEvent } from '../formats/change-event.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { createDatabase } from '../test/harness.ts';
import { MemorySink } from '../test/memory-sink.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from './capture-service.ts';

const until = async (what: string, check: () => boolean | Promise<boolean>, ms = 20_000) => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

describe('capture of truncates and snapshot ranges', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let service: CaptureService;
  const sink = new MemorySink();

  beforeAll(async () => {
    db = await createDatabase('capture_ends');
    pool = poolFor(db.url, 2);
    await inTransaction(pool, async (c) => {
      await createTotesys(c, { seed: 5, sizes: scaledSizes(0.005) });
    });
    // small chunks: several per table
    service = new CaptureService(
      { ...DEFAULT_CAPTURE_CONFIG, sourceUrl: db.url, slotName: `s_${db.name}`, createPrerequisites: true, heartbeatMs: 0, snapshotChunkRows: 10 },
      sink,
    );
    service.run().catch(() => undefined);
    await until('the snapshot', () => service.metrics.state === 'streaming' && !service.snapshotPending);
  });
  afterAll(async () => {
    await service?.stop().catch(() => undefined);
    await pool?.end();
    await db?.drop();
  });

  it("follows each chunk with its range, and a table's ranges cover every key, naming exactly the keys it read", async () => {
    for (const table of SOURCE_TABLE_NAMES) {
      const ranges = sink.broadcasts.filter((e): e is SnapshotRangeEvent => e.kind === 'snapshot-range' && e.table === table);
      expect(ranges.length, table).toBeGreaterThan(0);
      expect(ranges[0].after, table).toBeNull();
      expect(ranges.at(-1)!.through, table).toBeNull();
      for (let i = 1; i < ranges.length; i++) expect(ranges[i].after, table).toBe(ranges[i - 1].through);
      const present = ranges.flatMap((r) => r.present.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)));
      const read = sink.events.filter((e): e is ChangeEvent => e.kind === 'change' && e.op === 'r' && e.table === table).map((e) => Object.values(e.key)[0]);
      expect(present, table).toEqual(read);
      // after the chunk's rows, in the same position sequence
      for (const r of ranges) {
        const rows = sink.events.filter((e) => e.kind === 'change' && e.op === 'r' && e.source.lsn === r.source.lsn);
        for (const row of rows) expect(compareEventIds(row.source, r.source)).toBeLessThan(0);
      }
    }
  });

  it('sends a TRUNCATE as one event per table it reached, on every shard, between the changes around it', async () => {
    const from = sink.events.length;
    await inTransaction(pool, async (c) => {
      await c.query(`UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id = 1`);
      await c.query(`TRUNCATE sales_order CASCADE`); // reaches transaction and payment
      await c.query(
        `INSERT INTO sales_order (sales_order_id, created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
                                  agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)
         SELECT 1, now(), now(), (SELECT min(design_id) FROM design), (SELECT min(staff_id) FROM staff), (SELECT min(counterparty_id) FROM counterparty),
                5, 2.50, 1, '2024-06-01', '2024-06-02', (SELECT min(address_id) FROM address)`,
      );
    });
    await until('the transaction', () => sink.events.slice(from).some((e) => e.kind === 'change' && e.table === 'sales_order' && e.op === 'c'));
    const tx = sink.events.slice(from);
    expect(tx.map((e) => (e.kind === 'change' ? `${e.op} ${e.table}` : `${e.kind} ${'table' in e ? e.table : ''}`))).toEqual([
      'u payment',
      'truncate sales_order',
      'truncate transaction',
      'truncate payment',
      'c sales_order',
    ]);
    expect(tx.map((e) => e.source.pos)).toEqual([0, 1, 2, 3, 4]);
    expect(new Set(tx.map((e) => e.source.lsn)).size).toBe(1);
    expect(sink.broadcasts.filter((e) => e.kind === 'truncate')).toEqual(tx.slice(1, 4));
    expect(service.metrics.truncates).toBe(3);
  });
});
