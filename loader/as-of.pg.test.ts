/**
 * Dimension histories and the as_of schema in a real warehouse: every change a version, ends
 * included; as_of at an LSN or a commit time shows the state then, unset the watermark's, past
 * it an error; a source transaction split over two shards is never half visible.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, EventSource, Op, Row, RowsEndEvent } from '../formats/change-event.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { mapEvents } from '../processors/transform.ts';
import { SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { createDatabase } from '../test/harness.ts';
import { changeEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { PostgresWarehouse, type Warehouse } from './warehouse.ts';
import { STAR_TABLES } from './warehouse-schema.ts';

const time = (minute: number) => `2024-05-01T09:${String(minute).padStart(2, '0')}:00.000000Z`;
const at = (lsn: string, minute: number, pos = 0): EventSource => ({ lsn, pos, xid: 1, commitTime: time(minute) });
const stamp = '2024-05-01 09:00:00';

const department = (id: number, name: string, op: Op, source: EventSource) =>
  changeEvent(
    'department',
    op,
    { department_id: id, department_name: name, location: 'Leeds', manager: 'M', created_at: stamp, last_updated: stamp } as Row,
    source,
  );
const staff = (id: number, first: string, departmentId: number, op: Op, source: EventSource) =>
  changeEvent(
    'staff',
    op,
    {
      staff_id: id,
      first_name: first,
      last_name: 'Lovelace',
      department_id: departmentId,
      email_address: 'a@example.com',
      created_at: stamp,
      last_updated: stamp,
    } as Row,
    source,
  );
const order = (id: number, units: number, op: Op, source: EventSource, staffId = 1) =>
  salesOrderChange(id, op as 'c', { units_sold: units, staff_id: staffId }, source);

/**
 * A warehouse of its own for a describe block: `load` is one load on `shard` (with `watermark`,
 * the shard's heartbeat: everything up to it loaded); `asOf` a query with totes.as_of set (null:
 * unset) for its transaction.
 */
function aWarehouse(name: string, connections: number) {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let warehouse: Warehouse;
  let batches = 0;
  beforeAll(async () => {
    db = await createDatabase(name);
    pool = poolFor(db.url, connections);
    warehouse = new PostgresWarehouse(pool);
    await warehouse.ensureSchema();
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });
  return {
    query: (sql: string, params?: unknown[]) => pool.query(sql, params),
    load: (events: (ChangeEvent | RowsEndEvent)[], watermark?: EventSource, shard = 's') => {
      const { rows, ends } = mapEvents(events);
      const n = batches++;
      return warehouse.loadTables(
        {
          batchKey: `b${n}`,
          shard,
          events: events.length,
          ends,
          ...(watermark && { manifestKey: `m${String(n).padStart(4, '0')}`, heartbeat: { lsn: watermark.lsn, commitTime: watermark.commitTime } }),
        },
        new Map(Object.entries(rows)) as Map<LoadTableName, LoadRow[]>,
      );
    },
    asOf: async (point: string | null, sql: string) => {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        if (point !== null) await c.query(`SELECT set_config('totes.as_of', $1, true)`, [point]);
        return (await c.query(sql)).rows;
      } finally {
        await c.query('ROLLBACK');
        c.release();
      }
    },
  };
}

describe('dimension history and the warehouse as of a source commit', () => {
  const { query, load, asOf } = aWarehouse('as_of', 3);
  const staffAsOf = (point: string | null) =>
    asOf(point, `SELECT staff_id, first_name, department_name, is_deleted, source_lsn::text FROM as_of.dim_staff ORDER BY staff_id`);
  const ordersAsOf = (point: string | null) => asOf(point, `SELECT sales_order_id AS id, units_sold AS units FROM as_of.fact_sales_order ORDER BY 1`);

  it('as_of has every star table with the public columns', async () => {
    const columns = async (schema: string, table: string) =>
      (
        await query(`SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, [
          schema,
          table,
        ])
      ).rows;
    for (const table of STAR_TABLES) {
      const own = await columns('public', table);
      expect(own.length).toBeGreaterThan(0);
      expect(await columns('as_of', table), table).toEqual(own);
    }
  });

  it('keeps a version per change, ends included, and shows the warehouse as of an LSN, a commit time or its watermark', async () => {
    await load([department(1, 'Sales', 'c', at('1/10', 0)), staff(1, 'Ada', 1, 'c', at('1/10', 0, 1))]);
    expect(await staffAsOf(null).catch((e: Error) => e.message)).toMatch(/no watermark yet/);
    await load([order(1, 10, 'c', at('1/20', 10))]);
    await load(
      [department(1, 'Revenue', 'u', at('1/30', 20)), staff(1, 'Ada B', 1, 'u', at('1/30', 20, 1)), order(1, 20, 'u', at('1/30', 20, 2))],
      at('1/30', 20),
    );

    // unset: the watermark's state; past it: an error saying how far the warehouse has loaded
    const then = [{ staff_id: 1, first_name: 'Ada B', department_name: 'Revenue', is_deleted: false, source_lsn: '1/30' }];
    expect(await staffAsOf(null)).toEqual(then);
    expect(await staffAsOf('1/20')).toEqual([{ staff_id: 1, first_name: 'Ada', department_name: 'Sales', is_deleted: false, source_lsn: '1/10' }]);
    expect(await ordersAsOf('1/20')).toEqual([{ id: 1, units: 10 }]);
    expect(await ordersAsOf('1/10')).toEqual([]);
    expect(await staffAsOf('2024-05-01 09:15:00')).toEqual(await staffAsOf('1/20'));
    expect(await staffAsOf('2024-05-01 09:20')).toEqual(then);
    for (const past of ['1/31', '2024-05-01 09:21'])
      expect(await staffAsOf(past).catch((e: Error) => e.message)).toMatch(
        /past what the warehouse has loaded: every source transaction up to LSN 1\/30 \(committed 2024-05-01 09:20:00/,
      );
    expect(await staffAsOf('yesterday-ish').catch((e: Error) => e.message)).toMatch(/neither a source commit LSN/);

    // a delete, a truncate, and an inferred member filled in later: each a version
    await load([
      order(1, 20, 'd', at('1/40', 30)),
      { v: 1, kind: 'truncate', table: 'department', source: at('1/50', 40) },
      order(2, 5, 'c', at('1/60', 50), 2),
    ]);
    const placeholder = `SELECT source_op AS op, source_lsn::text AS lsn FROM dim_staff_history WHERE staff_id = 2`;
    expect((await query(placeholder)).rows).toEqual([{ op: 'i', lsn: '0/0' }]);
    // its row comes (from a lagging shard): the placeholder goes, the history is the source's alone (as a replay makes it)
    await load([staff(2, 'Grace', 1, 'c', at('1/55', 45))], at('1/60', 50));
    const history = await query(
      `SELECT 'department' AS t, department_id AS id, department_name AS name, source_op AS op, source_lsn::text AS lsn, source_commit_time::text AS at, is_deleted AS deleted
         FROM totes_department_history
       UNION ALL SELECT 'staff', staff_id, first_name, source_op, source_lsn::text, source_commit_time::text, is_deleted FROM dim_staff_history
       ORDER BY 1, 2, 5`,
    );
    expect(history.rows).toEqual([
      { t: 'department', id: 1, name: 'Sales', op: 'c', lsn: '1/10', at: '2024-05-01 09:00:00', deleted: false },
      { t: 'department', id: 1, name: 'Revenue', op: 'u', lsn: '1/30', at: '2024-05-01 09:20:00', deleted: false },
      { t: 'department', id: 1, name: 'Revenue', op: 't', lsn: '1/50', at: '2024-05-01 09:40:00', deleted: true },
      { t: 'staff', id: 1, name: 'Ada', op: 'c', lsn: '1/10', at: '2024-05-01 09:00:00', deleted: false },
      { t: 'staff', id: 1, name: 'Ada B', op: 'u', lsn: '1/30', at: '2024-05-01 09:20:00', deleted: false },
      { t: 'staff', id: 2, name: 'Grace', op: 'c', lsn: '1/55', at: '2024-05-01 09:45:00', deleted: false },
    ]);
    const versions = await query(
      `SELECT staff_id, first_name, valid_from::text, valid_to::text, is_current FROM dim_staff_versions WHERE staff_id = 1 ORDER BY valid_from`,
    );
    expect(versions.rows).toEqual([
      { staff_id: 1, first_name: 'Ada', valid_from: '2024-05-01 09:00:00', valid_to: '2024-05-01 09:20:00', is_current: false },
      { staff_id: 1, first_name: 'Ada B', valid_from: '2024-05-01 09:20:00', valid_to: null, is_current: true },
    ]);
    expect(await ordersAsOf('1/40')).toEqual([]);
    // staff 2 is not shown before its row began; the department's truncate ended its derived columns
    expect(await staffAsOf('1/50')).toEqual([{ staff_id: 1, first_name: 'Ada B', department_name: null, is_deleted: false, source_lsn: '1/30' }]);

    // as of the watermark, every star table is the public one (facts: their current versions), inferred members' placeholders aside
    for (const table of STAR_TABLES) {
      const current = table.startsWith('fact_') ? `${table}_current` : table === 'dim_date' ? table : `(SELECT * FROM ${table} WHERE source_lsn <> '0/0') p`;
      const differ = await asOf(
        null,
        `SELECT count(*)::int AS n FROM ((TABLE as_of.${table} EXCEPT ALL SELECT * FROM ${current}) UNION ALL (SELECT * FROM ${current} EXCEPT ALL TABLE as_of.${table})) d`,
      );
      expect(differ, table).toEqual([{ n: 0 }]);
    }

    // each fact version with the star as it stood at its commit
    const atTime = await query(
      `SELECT source_lsn::text AS lsn, units_sold AS units, first_name, department_name FROM fact_sales_order_at_time WHERE sales_order_id = 1 ORDER BY source_lsn`,
    );
    expect(atTime.rows).toEqual([
      { lsn: '1/20', units: 10, first_name: 'Ada', department_name: 'Sales' },
      { lsn: '1/30', units: 20, first_name: 'Ada B', department_name: 'Revenue' },
      { lsn: '1/40', units: 20, first_name: 'Ada B', department_name: 'Revenue' },
    ]);
    // the same star through the SCD2 views (docs/time-travel.md's join), for every live version of the orders
    const scd2 = await query(`SELECT d.department_name, sum(f.units_sold) AS units
      FROM fact_sales_order f
      JOIN dim_staff_versions s ON s.staff_id = f.sales_staff_id AND f.source_lsn >= s.valid_from_lsn AND (s.valid_to_lsn IS NULL OR f.source_lsn < s.valid_to_lsn)
      JOIN totes_department_versions d ON d.department_id = s.department_id
       AND f.source_lsn >= d.valid_from_lsn AND (d.valid_to_lsn IS NULL OR f.source_lsn < d.valid_to_lsn)
     WHERE NOT f.is_deleted GROUP BY 1 ORDER BY 1`);
    const atTimeSums = await query(
      `SELECT department_name, sum(units_sold) AS units FROM fact_sales_order_at_time WHERE NOT is_deleted AND department_name IS NOT NULL GROUP BY 1 ORDER BY 1`,
    );
    expect(scd2.rows).toEqual([
      { department_name: 'Revenue', units: '20' },
      { department_name: 'Sales', units: '10' },
    ]);
    expect(atTimeSums.rows).toEqual(scd2.rows);
  });
});

describe('a source transaction split over two shards, through as_of', () => {
  const { query, load } = aWarehouse('as_of_shards', 2);
  const read = async () => (await query(`SELECT staff_id, department_name FROM as_of.dim_staff`)).rows;

  it('is never half visible: one shard loaded past it shows nothing of it until the other has', async () => {
    // a staff member moved to a new department, made in the same transaction (2/10): the two rows on two shards
    await load([department(5, 'Old', 'c', at('2/0', 0)), staff(5, 'Ada', 5, 'c', at('2/0', 0, 1))], at('2/0', 0), 'a');
    await load([], at('2/0', 0), 'b');
    expect(await read()).toEqual([{ staff_id: 5, department_name: 'Old' }]);
    const tx = [department(6, 'New', 'c', at('2/10', 10)), staff(5, 'Ada', 6, 'u', at('2/10', 10, 1))];
    await load([tx[0]], at('2/20', 20), 'a'); // shard a's half
    expect(await read()).toEqual([{ staff_id: 5, department_name: 'Old' }]);
    await load([tx[1]], at('2/20', 20), 'b'); // and shard b's
    expect(await read()).toEqual([{ staff_id: 5, department_name: 'New' }]);
  });
});

describe('a warehouse begun from a snapshot, through as_of and the views of history', () => {
  const { query, load, asOf } = aWarehouse('as_of_snapshot', 2);
  /** A snapshot chunk's end: the keys of `table` in (after, through] are `present`. */
  const chunkEnd = (table: SourceTable, after: number | null, through: number | null, present: [number, number][], source: EventSource): RowsEndEvent => ({
    v: 1,
    kind: 'snapshot-range',
    table,
    after,
    through,
    present,
    source,
  });
  const staffAsOf = (point: string | null) => asOf(point, `SELECT staff_id, first_name, department_name FROM as_of.dim_staff ORDER BY 1`);

  it('begins its history where the initial snapshot of every table has loaded, and joins older facts to the first versions', async () => {
    // the snapshot reads the department, then orders, then (later) staff: each table at its own chunk's position
    await load(
      [
        department(1, 'Sales', 'r', at('3/8', 8)),
        chunkEnd('department', null, null, [[1, 1]], at('3/8', 8, 1)),
        order(1, 10, 'r', at('3/10', 10)),
        chunkEnd('sales_order', null, null, [[1, 1]], at('3/10', 10, 1)),
        staff(1, 'Ada', 1, 'r', at('3/12', 12)),
        chunkEnd('staff', null, 1, [[1, 1]], at('3/12', 12, 1)), // a first chunk of staff: more to come
      ],
      at('3/12', 12),
    );
    expect(await staffAsOf(null).catch((e: Error) => e.message)).toMatch(
      /history has not begun: the initial snapshot of dim_counterparty, dim_currency, dim_design, dim_location, dim_payment_type, dim_staff, dim_transaction, fact_payment, fact_purchase_order has not loaded yet/,
    );
    const start = `SELECT since::text, since_time::text, unsnapshotted FROM totes_history_start`;
    expect((await query(start)).rows[0]).toMatchObject({ since: null, since_time: null });
    const rest = SOURCE_TABLE_NAMES.filter((t) => !['department', 'sales_order', 'staff'].includes(t));
    await load(
      [
        staff(2, 'Grace', 1, 'r', at('3/20', 20)),
        chunkEnd('staff', 1, null, [[2, 2]], at('3/20', 20, 1)),
        ...rest.map((t, i) => chunkEnd(t, null, null, [], at('3/20', 20, 2 + i))),
        staff(3, 'Hedy', 1, 'c', at('3/30', 30)),
        order(2, 5, 'c', at('3/31', 31), 3),
        department(1, 'Revenue', 'u', at('3/32', 32)),
      ],
      at('3/40', 40),
    );
    expect((await query(start)).rows).toEqual([{ since: '3/20', since_time: '2024-05-01 09:20:00+00', unsnapshotted: null }]);
    for (const before of ['3/19', '2024-05-01 09:19:59'])
      expect(await staffAsOf(before).catch((e: Error) => e.message)).toMatch(
        /before the warehouse's history begins: the source is known from LSN 3\/20 \(committed 2024-05-01 09:20:00/,
      );
    expect(await staffAsOf('3/20')).toEqual([
      { staff_id: 1, first_name: 'Ada', department_name: 'Sales' },
      { staff_id: 2, first_name: 'Grace', department_name: 'Sales' },
    ]);
    expect((await staffAsOf(null)).map((r) => r.department_name)).toEqual(['Revenue', 'Revenue', 'Revenue']);

    // the snapshot's first versions hold from the beginning; a row inserted later from its insert
    const versions = await query(
      `SELECT staff_id, valid_from::text, valid_from_lsn::text, is_current FROM dim_staff_versions ORDER BY staff_id, valid_from_lsn`,
    );
    expect(versions.rows).toEqual([
      { staff_id: 1, valid_from: '-infinity', valid_from_lsn: '0/0', is_current: true },
      { staff_id: 2, valid_from: '-infinity', valid_from_lsn: '0/0', is_current: true },
      { staff_id: 3, valid_from: '2024-05-01 09:30:00', valid_from_lsn: '3/30', is_current: true },
    ]);
    // an order the snapshot read before its staff member joins that member's first version, the department as it was then
    const atTime = await query(`SELECT sales_order_id AS id, first_name, department_name FROM fact_sales_order_at_time ORDER BY source_lsn`);
    expect(atTime.rows).toEqual([
      { id: 1, first_name: 'Ada', department_name: 'Sales' },
      { id: 2, first_name: 'Hedy', department_name: 'Sales' },
    ]);
  });
});
