/**
 * Truncates and snapshot ranges in a real warehouse: they end exactly the rows before them,
 * once however often they arrive, and the result does not depend on whether an end or the
 * older changes of a row (from a lagging shard) load first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, EventSource, RowsEndEvent } from '../formats/change-event.ts';
import type { SourceTable } from '../formats/source-tables.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { mapEvents } from '../processors/transform.ts';
import { createDatabase } from '../test/harness.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { PostgresWarehouse, type Warehouse } from './warehouse.ts';

const at = (lsn: string, pos = 0): EventSource => ({ lsn, pos, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' });

const order = (id: number, op: 'c' | 'u' | 'd', source: EventSource, units = 1000) => salesOrderChange(id, op, { units_sold: units }, source);

function address(id: number, source: EventSource, op: 'c' | 'd' = 'c'): ChangeEvent {
  const after = {
    address_id: id,
    address_line_1: `${id} High Street`,
    address_line_2: null,
    district: null,
    city: 'Leeds',
    postal_code: 'LS1',
    country: 'UK',
    phone: '0113',
    created_at: '2024-05-01 09:15:02',
    last_updated: '2024-05-01 09:15:02',
  };
  if (op === 'd') return { v: 1, kind: 'change', op, table: 'address', key: { address_id: id }, before: { address_id: id }, after: null, source };
  return { v: 1, kind: 'change', op, table: 'address', key: { address_id: id }, before: null, after, source };
}

function counterparty(id: number, addressId: number, source: EventSource): ChangeEvent {
  const after = {
    counterparty_id: id,
    counterparty_legal_name: `Party ${id}`,
    legal_address_id: addressId,
    commercial_contact: null,
    delivery_contact: null,
    created_at: '2024-05-01 09:15:02',
    last_updated: '2024-05-01 09:15:02',
  };
  return { v: 1, kind: 'change', op: 'c', table: 'counterparty', key: { counterparty_id: id }, before: null, after, source };
}

function staffMember(id: number, source: EventSource): ChangeEvent {
  const after = {
    staff_id: id,
    first_name: 'Ada',
    last_name: 'Lovelace',
    department_id: 1,
    email_address: 'ada@example.com',
    created_at: '2024-05-01 09:15:02',
    last_updated: '2024-05-01 09:15:02',
  };
  return { v: 1, kind: 'change', op: 'c', table: 'staff', key: { staff_id: id }, before: null, after, source };
}

const truncate = (table: SourceTable, source: EventSource): RowsEndEvent => ({ v: 1, kind: 'truncate', table, source });

describe('truncates and snapshot ranges in the warehouse', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let warehouse: Warehouse;
  let batches = 0;

  /** One load transaction, as a micro-batch (or a replay batch) brings it. */
  const load = async (events: (ChangeEvent | RowsEndEvent)[]) => {
    const { rows, ends } = mapEvents(events);
    return warehouse.loadTables(
      { batchKey: `b${batches++}`, shard: 's', events: events.length, ends },
      new Map(Object.entries(rows)) as Map<LoadTableName, LoadRow[]>,
    );
  };
  const versions = async (ids: number[]) =>
    (
      await pool.query(
        `SELECT sales_order_id AS id, source_op AS op, source_lsn::text AS lsn, source_pos AS pos, units_sold AS units, is_deleted AS deleted
           FROM fact_sales_order WHERE sales_order_id = ANY($1) ORDER BY sales_order_id, source_lsn, source_pos`,
        [ids],
      )
    ).rows;

  beforeAll(async () => {
    db = await createDatabase('row_ends');
    pool = poolFor(db.url, 2);
    warehouse = new PostgresWarehouse(pool);
    await warehouse.ensureSchema();
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('a truncate ends every row before it, facts as versions with the values they end, dimensions as tombstones; once', async () => {
    await load([address(1, at('1/10')), counterparty(1, 1, at('1/10', 1)), order(1, 'c', at('1/20')), order(2, 'c', at('1/30'))]);
    await load([order(2, 'u', at('1/40'), 7)]);
    // TRUNCATE sales_order, address, staff CASCADE, then an insert in the same transaction (naming a
    // staff member made after the truncate, whose row comes on another shard: not one the truncate ends)
    const tx = '2/0';
    const statement = [
      truncate('sales_order', at(tx, 0)),
      truncate('address', at(tx, 1)),
      truncate('counterparty', at(tx, 2)),
      truncate('staff', at(tx, 3)),
      salesOrderChange(3, 'c', { units_sold: 1000, staff_id: 2 }, at(tx, 4)),
    ];
    expect(await load(statement)).toBe(true);
    expect(await versions([1, 2, 3])).toEqual([
      { id: 1, op: 'c', lsn: '1/20', pos: 0, units: 1000, deleted: false },
      { id: 1, op: 't', lsn: '2/0', pos: 0, units: 1000, deleted: true },
      { id: 2, op: 'c', lsn: '1/30', pos: 0, units: 1000, deleted: false },
      { id: 2, op: 'u', lsn: '1/40', pos: 0, units: 7, deleted: false },
      { id: 2, op: 't', lsn: '2/0', pos: 0, units: 7, deleted: true },
      { id: 3, op: 'c', lsn: '2/0', pos: 4, units: 1000, deleted: false },
    ]);
    expect((await pool.query('SELECT sales_order_id AS id FROM fact_sales_order_current')).rows).toEqual([{ id: 3 }]);
    const location = await pool.query(`SELECT location_id, address_line_1, is_deleted, source_lsn::text FROM dim_location ORDER BY 1`);
    expect(location.rows).toEqual([{ location_id: 1, address_line_1: '1 High Street', is_deleted: true, source_lsn: '2/0' }]);
    const party = await pool.query(`SELECT is_deleted, counterparty_legal_address_line_1 AS line FROM dim_counterparty WHERE counterparty_id = 1`);
    expect(party.rows).toEqual([{ is_deleted: true, line: null }]);
    // an inferred member (a dimension row only facts have named yet) ends, left at 0/0 for its real row to fill in;
    // one a fact after the truncate names does not
    const staff = await pool.query(`SELECT staff_id, is_deleted, source_lsn::text FROM dim_staff ORDER BY 1`);
    expect(staff.rows).toEqual([
      { staff_id: 1, is_deleted: true, source_lsn: '0/0' },
      { staff_id: 2, is_deleted: false, source_lsn: '0/0' },
    ]);
    expect(warehouse.metrics).toMatchObject({ truncates: 4, rowsEnded: 5 });

    // the copy every other shard carries, and a replay of the whole statement: nothing more
    const before = await versions([1, 2, 3]);
    await load([truncate('sales_order', at(tx, 0))]);
    await load(statement);
    expect(await versions([1, 2, 3])).toEqual(before);
    const log = await pool.query(`SELECT load_table, cause, rows_ended FROM totes_row_ends ORDER BY source_pos`);
    expect(log.rows).toEqual([
      { load_table: 'fact_sales_order', cause: 'truncate', rows_ended: 2 },
      { load_table: 'dim_location', cause: 'truncate', rows_ended: 1 },
      { load_table: 'dim_counterparty', cause: 'truncate', rows_ended: 1 },
      { load_table: 'dim_staff', cause: 'truncate', rows_ended: 1 },
    ]);
    expect(warehouse.metrics).toMatchObject({ truncates: 4, rowsEnded: 5 });
  });

  it('a snapshot range ends the keys of its range it did not find, and no others', async () => {
    await load([10, 11, 12, 13, 14].map((id) => order(id, 'c', at('3/10', id))));
    await load([
      {
        v: 1,
        kind: 'snapshot-range',
        table: 'sales_order',
        after: 10,
        through: 13,
        present: [
          [11, 11],
          [13, 13],
        ],
        source: at('3/20'),
      },
    ]);
    const ended = (await versions([10, 11, 12, 13, 14])).filter((v) => v.deleted);
    expect(ended).toEqual([{ id: 12, op: 'a', lsn: '3/20', pos: 0, units: 1000, deleted: true }]);
  });

  it('ends a row whose older changes load after the end, and takes an end back when the row had been deleted before it', async () => {
    // a shard whose copy of the truncate loads first, while the rows' own shards lag behind
    await load([order(20, 'c', at('4/10')), order(21, 'c', at('4/10', 1)), address(23, at('4/10', 2))]);
    await load([truncate('sales_order', at('5/0')), truncate('address', at('5/0', 1))]);
    const late = [
      order(20, 'd', at('4/20')),
      order(21, 'u', at('4/20', 1), 5),
      order(22, 'c', at('4/30')),
      address(22, at('4/30', 1)),
      address(23, at('4/30', 2), 'd'),
    ];
    await load(late);
    expect(await versions([20, 21, 22])).toEqual([
      { id: 20, op: 'c', lsn: '4/10', pos: 0, units: 1000, deleted: false },
      { id: 20, op: 'd', lsn: '4/20', pos: 0, units: 1000, deleted: true }, // its own delete: no second end after it
      { id: 21, op: 'c', lsn: '4/10', pos: 1, units: 1000, deleted: false },
      { id: 21, op: 'u', lsn: '4/20', pos: 1, units: 5, deleted: false },
      { id: 21, op: 't', lsn: '5/0', pos: 0, units: 5, deleted: true }, // ends the version that arrived late
      { id: 22, op: 'c', lsn: '4/30', pos: 0, units: 1000, deleted: false },
      { id: 22, op: 't', lsn: '5/0', pos: 0, units: 1000, deleted: true },
    ]);
    const location = await pool.query(`SELECT is_deleted, source_lsn::text FROM dim_location WHERE location_id = 22`);
    expect(location.rows).toEqual([{ is_deleted: true, source_lsn: '5/0' }]);
    // the staff member the facts named, ended while an inferred member, arrives after all: a tombstone with its values
    const staff = `SELECT first_name, is_deleted, source_lsn::text FROM dim_staff WHERE staff_id = 1`;
    expect((await pool.query(staff)).rows).toEqual([{ first_name: null, is_deleted: true, source_lsn: '0/0' }]);
    await load([staffMember(1, at('1/5'))]);
    expect((await pool.query(staff)).rows).toEqual([{ first_name: 'Ada', is_deleted: true, source_lsn: '2/0' }]); // the staff truncate of the first test
    // counted as the rows each end changed: each order with a version at the truncate (not 20: it deleted itself first),
    // location 22 (not 23, deleted before the truncate too), staff 1 once although the truncate reached it twice
    const counts = `SELECT load_table, source_lsn::text AS lsn, rows_ended FROM totes_row_ends
                     WHERE (load_table, source_lsn) IN (('dim_staff', '2/0'), ('dim_location', '5/0'), ('fact_sales_order', '5/0')) ORDER BY 2, 1`;
    const truncated = await pool.query(`SELECT count(*)::int AS n FROM fact_sales_order WHERE source_lsn = '5/0' AND source_op = 't'`);
    const exact = [
      { load_table: 'dim_staff', lsn: '2/0', rows_ended: 1 },
      { load_table: 'dim_location', lsn: '5/0', rows_ended: 1 },
      { load_table: 'fact_sales_order', lsn: '5/0', rows_ended: truncated.rows[0].n },
    ];
    expect((await pool.query(counts)).rows).toEqual(exact);
    const { rowsEnded } = warehouse.metrics;
    // the same late changes again (a replay): the ends still right are left as they are
    const records = `SELECT sales_order_id, sales_record_id FROM fact_sales_order WHERE source_op = 't' AND sales_order_id IN (21, 22) ORDER BY 1`;
    const before = (await pool.query(records)).rows;
    await load(late);
    expect((await pool.query(records)).rows).toEqual(before);
    expect((await pool.query(counts)).rows).toEqual(exact);
    expect(warehouse.metrics.rowsEnded).toBe(rowsEnded);
  });

  it('does not count an inferred member whose real row comes after the end: the row was not there to end', async () => {
    // the order's shard brings the order (which names location 50) before the address's shard brings the truncate and then the address
    const countOf = `SELECT rows_ended FROM totes_row_ends WHERE load_table = 'dim_location' AND source_lsn = '7/20'`;
    await load([salesOrderChange(31, 'c', { agreed_delivery_location_id: 50 }, at('7/30', 1))]);
    const { rowsEnded } = warehouse.metrics;
    await load([truncate('address', at('7/20'))]);
    expect((await pool.query(countOf)).rows).toEqual([{ rows_ended: 1 }]); // for now: ended while an inferred member
    await load([address(50, at('7/25'))]);
    expect((await pool.query(`SELECT is_deleted, source_lsn::text FROM dim_location WHERE location_id = 50`)).rows).toEqual([
      { is_deleted: false, source_lsn: '7/25' },
    ]);
    expect((await pool.query(countOf)).rows).toEqual([{ rows_ended: 0 }]);
    expect(warehouse.metrics.rowsEnded).toBe(rowsEnded);
    await load([address(50, at('7/25'))]); // again: nothing changes
    expect((await pool.query(countOf)).rows).toEqual([{ rows_ended: 0 }]);
    expect(warehouse.metrics.rowsEnded).toBe(rowsEnded);
  });

  it('does not reach an inferred member that a fact of the same load names after the end: the row existed at that fact', async () => {
    // one shard's batch brings the truncate and facts either side of it; the addresses come later on the other shard
    const countOf = `SELECT rows_ended FROM totes_row_ends WHERE load_table = 'dim_location' AND source_lsn = '8/20'`;
    const locations = `SELECT location_id, is_deleted, source_lsn::text FROM dim_location WHERE location_id IN (60, 61) ORDER BY 1`;
    await load([
      salesOrderChange(41, 'c', { agreed_delivery_location_id: 61 }, at('8/10')),
      truncate('address', at('8/20')),
      salesOrderChange(42, 'c', { agreed_delivery_location_id: 60 }, at('8/30')),
    ]);
    expect((await pool.query(locations)).rows).toEqual([
      { location_id: 60, is_deleted: false, source_lsn: '0/0' }, // named after the truncate: made after it
      { location_id: 61, is_deleted: true, source_lsn: '0/0' }, // named only before it: ended with the table
    ]);
    // 61, and location 50 of the test before (its row loaded by then)
    expect((await pool.query(countOf)).rows).toEqual([{ rows_ended: 2 }]);
    await load([address(60, at('8/25'))]);
    expect((await pool.query(locations)).rows[0]).toEqual({ location_id: 60, is_deleted: false, source_lsn: '8/25' });
    expect((await pool.query(countOf)).rows).toEqual([{ rows_ended: 2 }]);
  });
});
