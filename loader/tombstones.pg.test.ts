/**
 * A tombstone keeps the values of the version it ends, however the stream was cut into loads:
 * the same stream loaded whole, one change per load and in random cuts gives the same
 * dimension rows and fact versions, for a delete, a TRUNCATE and a snapshot range's end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChangeEvent, compareLsn, type EventSource, type RowsEndEvent } from '../formats/change-event.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { mapEvents } from '../processors/transform.ts';
import { createDatabase } from '../test/harness.ts';
import { changeEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { PostgresWarehouse } from './warehouse.ts';

const at = (lsn: string, pos = 0): EventSource => ({ lsn, pos, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' });

const design = (id: number, op: 'c' | 'u' | 'r', name: string, source: EventSource, unchangedFile = false): ChangeEvent => {
  const row = {
    design_id: id,
    created_at: '2024-05-01 09:15:02',
    last_updated: '2024-05-01 09:15:02',
    design_name: name,
    file_location: '/d',
    file_name: `${name}.json`,
  };
  if (!unchangedFile) return changeEvent('design', op, row, source);
  const { file_name: _, ...sent } = row;
  return { ...changeEvent('design', op, sent, source), unchanged: ['file_name'] };
};
const deleted = (id: number, source: EventSource) => changeEvent('design', 'd', { design_id: id }, source);
const order = (id: number, op: 'c' | 'u' | 'd', units: number, source: EventSource, unchanged?: string[]): ChangeEvent => {
  const e = salesOrderChange(id, op, { units_sold: units, design_id: 99, agreed_delivery_location_id: 99 }, source);
  if (!unchanged) return e;
  const after = { ...e.after! };
  for (const c of unchanged) delete after[c];
  return { ...e, after, unchanged };
};

/** Inserts, updates (one keeping an unchanged TOAST value) and snapshot reads ended by deletes, a TRUNCATE and a snapshot range. */
const STREAM: (ChangeEvent | RowsEndEvent)[] = [
  design(1, 'c', 'first', at('1/10')),
  design(1, 'u', 'renamed', at('1/20'), true),
  deleted(1, at('1/30')),
  design(2, 'c', 'short-lived', at('1/12')),
  deleted(2, at('1/14')),
  design(3, 'r', 'read', at('1/16')),
  design(4, 'r', 'kept', at('1/18')),
  { v: 1, kind: 'snapshot-range', table: 'design', after: 2, through: 4, present: [[4, 4]], source: at('1/40') },
  design(5, 'c', 'after the range', at('1/42')),
  deleted(5, at('1/44')),
  design(6, 'c', 'six', at('1/11')),
  design(7, 'c', 'seven', at('1/13')),
  design(7, 'u', 'seven b', at('1/15'), true),
  order(1, 'c', 10, at('1/17')),
  order(1, 'u', 11, at('1/21'), ['unit_price']),
  order(1, 'd', 0, at('1/23')),
  order(2, 'c', 20, at('1/25')),
  { v: 1, kind: 'truncate', table: 'design', source: at('1/50') },
  { v: 1, kind: 'truncate', table: 'sales_order', source: at('1/50', 1) },
  design(7, 'c', 'seven again', at('1/60')),
  deleted(7, at('1/62')),
];
STREAM.sort((a, b) => compareLsn(a.source.lsn, b.source.lsn) || a.source.pos - b.source.pos);

/** A design's tombstone: the values of the version it ends (a file name kept unchanged from the one before). */
const tombstone = (name: string | null, lsn: string, pos = 0) => ({
  design_name: name,
  file_location: name && '/d',
  file_name: name && `${{ renamed: 'first', 'seven b': 'seven' }[name] ?? name}.json`,
  source_lsn: lsn,
  source_pos: pos,
  is_deleted: true,
});

/** The stream cut before each of `cuts` (indices, ascending). */
function cutAt(cuts: number[]): (ChangeEvent | RowsEndEvent)[][] {
  const bounds = [0, ...cuts, STREAM.length];
  return bounds.slice(1).map((end, i) => STREAM.slice(bounds[i], end));
}

/** A small deterministic generator (mulberry32), so a failing cut can be run again. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('tombstones keep the values of the version they end, however the stream is cut', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let loads = 0;

  /** Load `batches` into a fresh schema; returns its dimension rows and fact versions. */
  const loadCut = async (batches: (ChangeEvent | RowsEndEvent)[][]) => {
    const schema = `cut_${loads++}`;
    const warehouse = new PostgresWarehouse(pool, schema);
    await warehouse.ensureSchema();
    for (const events of batches) {
      const { rows, ends } = mapEvents(events);
      await warehouse.loadTables(
        { batchKey: `${schema}/${loads++}`, shard: 's', events: events.length, ends },
        new Map(Object.entries(rows)) as Map<LoadTableName, LoadRow[]>,
      );
    }
    const read = async (sql: string) => (await pool.query(sql)).rows;
    return {
      design: await read(
        `SELECT design_id, design_name, file_location, file_name, source_lsn::text, source_pos, is_deleted FROM "${schema}".dim_design ORDER BY 1`,
      ),
      orders: await read(
        `SELECT sales_order_id, source_op, source_lsn::text, source_pos, units_sold, unit_price, is_deleted FROM "${schema}".fact_sales_order ORDER BY 1, 3, 4`,
      ),
    };
  };

  beforeAll(async () => {
    db = await createDatabase('tombstones');
    pool = poolFor(db.url, 2);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('gives the same rows loaded whole, one change per load and in random cuts, each tombstone with the values it ends', async () => {
    const whole = await loadCut([STREAM]);
    expect(whole.design.filter((d) => d.design_id !== 99)).toEqual([
      { design_id: 1, ...tombstone('renamed', '1/30') }, // the update's name, the insert's unchanged file name
      { design_id: 2, ...tombstone('short-lived', '1/14') },
      { design_id: 3, ...tombstone('read', '1/40') }, // the snapshot range did not find it
      { design_id: 4, ...tombstone('kept', '1/50') }, // found by the snapshot range, then truncated
      { design_id: 5, ...tombstone('after the range', '1/44') },
      { design_id: 6, ...tombstone('six', '1/50') },
      { design_id: 7, ...tombstone('seven again', '1/62') }, // inserted again after the truncate
    ]);
    expect(whole.orders.filter((o) => o.is_deleted)).toEqual([
      { sales_order_id: 1, source_op: 'd', source_lsn: '1/23', source_pos: 0, units_sold: 11, unit_price: '3.99', is_deleted: true },
      { sales_order_id: 2, source_op: 't', source_lsn: '1/50', source_pos: 1, units_sold: 20, unit_price: '3.99', is_deleted: true },
    ]);

    expect(await loadCut(cutAt(STREAM.map((_, i) => i).slice(1)))).toEqual(whole);
    const next = random(27);
    for (let run = 0; run < 6; run++) {
      const cuts = STREAM.map((_, i) => i).filter((i) => i > 0 && next() < 0.3);
      expect(await loadCut(cutAt(cuts)), `cut before ${cuts.join(', ')}`).toEqual(whole);
    }
  });

  it("ends the version a row's changes make when another shard's copy of the end loads before them", async () => {
    // design 8 changes and design 9 deletes itself on one shard, before a TRUNCATE every shard carries
    const [before, changes, end] = [
      [design(8, 'c', 'eight', at('2/10')), design(9, 'c', 'nine', at('2/10', 1))],
      [design(8, 'u', 'eight b', at('2/20')), deleted(9, at('2/20', 1))],
      { v: 1, kind: 'truncate', table: 'design', source: at('2/30') } as RowsEndEvent,
    ];
    const inOrder = await loadCut([before, [...changes, end]]);
    expect(inOrder.design).toEqual([
      { design_id: 8, ...tombstone('eight b', '2/30') },
      { design_id: 9, ...tombstone('nine', '2/20', 1) },
    ]);
    // the other shard's copy of the end first, then the rows' shard: its changes, its copy of the end
    expect(await loadCut([before, [end], [...changes, end]])).toEqual(inOrder);
  });
});
