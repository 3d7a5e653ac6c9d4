/**
 * A key change that keeps an unchanged TOAST value, loaded the ways the shards can bring its two
 * halves: the new key's insert before the old key's delete (the load waits), the delete first
 * with the old key used again before the insert comes (a dimension keeps the value on the new
 * key), both in one load with the key moved twice, and the insert delivered again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { createDatabase } from '../test/harness.ts';
import { KeyMoveNotLoadedError } from './key-moves.ts';
import { PostgresWarehouse } from './warehouse.ts';

let db: Awaited<ReturnType<typeof createDatabase>>;
let pool: pg.Pool;
let loads = 0;

beforeAll(async () => {
  db = await createDatabase('key_moves');
  pool = poolFor(db.url, 2);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

const BIG = 'b'.repeat(5000);
const OTHER = 'o'.repeat(4000);

function version(values: Record<string, unknown>, op: LoadRow['source_op'], lsn: string, pos: number, extra: Partial<LoadRow> = {}): LoadRow {
  return { ...values, source_op: op, source_lsn: lsn, source_pos: pos, source_commit_time: '2024-05-01T09:15:02.456Z', unchanged: null, ...extra } as LoadRow;
}

const design = (id: number, name: string, file: string | null) => ({ design_id: id, design_name: name, file_location: '/d', file_name: file });
const order = (id: number, item: string | null, quantity = 5) => ({
  purchase_order_id: id,
  created_date: '2024-05-01',
  created_time: '09:00:00',
  last_updated_date: '2024-05-01',
  last_updated_time: '09:00:00',
  staff_id: 1,
  counterparty_id: 1,
  item_code: item,
  item_quantity: quantity,
  item_unit_price: '2.50',
  currency_id: 1,
  agreed_delivery_date: '2024-06-01',
  agreed_payment_date: '2024-06-02',
  agreed_delivery_location_id: 1,
});

/** The two halves of a key change at (lsn, pos) and (lsn, pos + 1), the insert keeping `kept` unchanged. */
function moved(table: 'design' | 'order', from: number, to: number, lsn: string, pos: number, kept: string, values: Record<string, unknown>) {
  const key = table === 'design' ? 'design_id' : 'purchase_order_id';
  return {
    deleted: version({ [key]: from }, 'd', lsn, pos, { moved_key: to }),
    inserted: version({ ...values, [key]: to, [kept]: null }, 'c', lsn, pos + 1, { moved_key: from, unchanged: `,${kept},` }),
  };
}

describe('carrying unchanged TOAST across a key change', () => {
  let wh: PostgresWarehouse;
  const load = (table: LoadTableName, rows: LoadRow[]) =>
    wh.loadTables({ batchKey: `load-${loads++}`, shard: 'test', events: rows.length }, new Map([[table, rows]]));
  beforeAll(async () => {
    wh = new PostgresWarehouse(pool, 'public');
    await wh.ensureSchema();
  });

  it('waits for the old key when the insert comes first, and keeps the value on the new key when the old one is used again meanwhile', async () => {
    await load('dim_design', [version(design(2, 'Tote', BIG), 'c', '0/10', 0)]);
    const move = moved('design', 2, 9, '0/20', 0, 'file_name', design(9, 'Tote moved', null));
    await expect(load('dim_design', [move.inserted])).rejects.toThrow(KeyMoveNotLoadedError);
    // the old key's shard catches up: its delete, then the key used again with another value
    await load('dim_design', [move.deleted, version(design(2, 'New tote', OTHER), 'c', '0/30', 0)]);
    await load('dim_design', [move.inserted]);
    const { rows } = await pool.query(`SELECT design_id, design_name, length(file_name) AS n, is_deleted FROM dim_design ORDER BY design_id`);
    expect(rows).toEqual([
      { design_id: 2, design_name: 'New tote', n: OTHER.length, is_deleted: false },
      { design_id: 9, design_name: 'Tote moved', n: BIG.length, is_deleted: false },
    ]);
    await load('dim_design', [move.inserted]); // delivered again: changes nothing
    expect((await pool.query(`SELECT length(file_name) AS n FROM dim_design WHERE design_id = 9`)).rows).toEqual([{ n: BIG.length }]);
  });

  it('takes the value from the load when the key moves twice in it, after a change of the value', async () => {
    const first = moved('design', 3, 30, '0/50', 0, 'file_name', design(30, 'Bag', null));
    const second = moved('design', 30, 31, '0/50', 2, 'file_name', design(31, 'Bag', null));
    await load('dim_design', [version(design(3, 'Bag', OTHER), 'c', '0/40', 0)]);
    // the second move's insert first, as another shard may list it
    await load('dim_design', [second.inserted, version(design(3, 'Bag', BIG), 'u', '0/45', 0), first.deleted, first.inserted, second.deleted]);
    // (a dimension's tombstone holds no values to compare: only the live key)
    const { rows } = await pool.query(
      `SELECT design_id, CASE WHEN NOT is_deleted THEN length(file_name) END AS n, is_deleted FROM dim_design WHERE design_id IN (3, 30, 31) ORDER BY design_id`,
    );
    expect(rows).toEqual([
      { design_id: 3, n: null, is_deleted: true },
      { design_id: 30, n: null, is_deleted: true },
      { design_id: 31, n: BIG.length, is_deleted: false },
    ]);
  });

  it('does not wait when what the insert keeps is no column of the warehouse', async () => {
    const inserted = version({ counterparty_id: 50, counterparty_legal_name: 'Moved Ltd', legal_address_id: 1 }, 'c', '0/90', 1, {
      moved_key: 5,
      unchanged: ',commercial_contact,',
    });
    await load('dim_counterparty', [inserted]);
    expect((await pool.query(`SELECT counterparty_legal_name FROM dim_counterparty WHERE counterparty_id = 50`)).rows).toEqual([
      { counterparty_legal_name: 'Moved Ltd' },
    ]);
  });

  it('takes a fact version from the version the old key ended', async () => {
    await load('fact_purchase_order', [version(order(4, BIG), 'c', '0/60', 0)]);
    const move = moved('order', 4, 40, '0/70', 0, 'item_code', order(40, null, 7));
    await expect(load('fact_purchase_order', [move.inserted])).rejects.toThrow(/key 4's version at 0\/70:0 is not loaded yet/);
    await load('fact_purchase_order', [move.deleted, version(order(4, OTHER), 'c', '0/80', 0)]);
    await load('fact_purchase_order', [move.inserted]);
    const { rows } = await pool.query(
      `SELECT purchase_order_id AS id, source_op AS op, length(item_code) AS n, item_quantity AS q FROM fact_purchase_order ORDER BY source_lsn, source_pos, purchase_order_id`,
    );
    expect(rows).toEqual([
      { id: 4, op: 'c', n: BIG.length, q: 5 },
      { id: 4, op: 'd', n: BIG.length, q: 5 },
      { id: 40, op: 'c', n: BIG.length, q: 7 },
      { id: 4, op: 'c', n: OTHER.length, q: 5 },
    ]);
  });
});
