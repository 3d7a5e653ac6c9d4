/**
 * The generated merge SQL, statement by statement, against a real Postgres: what each promises
 * in merge-sql.ts (dimensions only move forward, facts append once per change, deletes carry
 * the values they end, unchanged TOAST keeps its value, snapshot reads append only differences,
 * inferred members, dim_date, and the warehouse-side joins).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { createDatabase } from '../test/harness.ts';
import { appendFactSql, datesSql, inferredMembersSql, mergeDimensionSql, propagationSql, referencedKeys } from './merge-sql.ts';
import { createStages, stageRows } from './stage.ts';
import { warehouseDdl } from './warehouse-schema.ts';

let db: Awaited<ReturnType<typeof createDatabase>>;
let pool: pg.Pool;
let schemas = 0;

beforeAll(async () => {
  db = await createDatabase('merge_sql');
  pool = poolFor(db.url, 2);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** A fresh warehouse schema for one test. */
async function warehouse(): Promise<string> {
  const schema = `wh_${++schemas}`;
  await inTransaction(pool, (c) => c.query(warehouseDdl(schema)));
  return schema;
}

const COMMIT_TIME = '2024-05-01T09:15:02.456789Z';
/** A load row: business values, then the change it came from. */
function row(values: Record<string, unknown>, op: LoadRow['source_op'], lsn: string, pos = 0, unchanged: string | null = null): LoadRow {
  return { ...values, source_op: op, source_lsn: lsn, source_pos: pos, source_commit_time: COMMIT_TIME, unchanged } as LoadRow;
}

/** Stage `rows` as the loader does, then run `statements`, in one transaction (the stage is emptied at commit). */
async function staged<T>(table: LoadTableName, rows: LoadRow[], statements: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, async (c) => {
    await createStages(c, [table]);
    await stageRows(c, table, rows);
    return statements(c);
  });
}

const query = async (sql: string) => (await pool.query(sql)).rows;

describe('staging', () => {
  it('stages a change delivered twice once', async () => {
    const change = row({ design_id: 1, design_name: 'A' }, 'u', '0/10');
    const n = await staged(
      'dim_design',
      [change, change, { ...change, source_pos: 1 }],
      async (c) => (await c.query('SELECT count(*)::int AS n FROM stage_dim_design')).rows[0].n,
    );
    expect(n).toBe(2);
  });

  it('stages text exactly, whatever it holds, and tells a null from the text \\N', async () => {
    const names = ['tab\there', 'new\nline', 'back\\slash', 'cr\rlf\r\n', '\\N', '', null, 'naïve ✓'];
    const rows = names.map((design_name, i) => row({ design_id: i, design_name, file_location: null, file_name: null }, 'c', '0/10'));
    const stagedNames = await staged('dim_design', rows, async (c) => (await c.query('SELECT design_name FROM stage_dim_design ORDER BY design_id')).rows);
    expect(stagedNames.map((r) => r.design_name)).toEqual(names);
  });
});

describe('mergeDimensionSql', () => {
  const merge = (schema: string, rows: LoadRow[]) =>
    staged('dim_design', rows, async (c) => {
      for (const sql of mergeDimensionSql('dim_design', schema, false)) await c.query(sql);
    });
  const designs = (schema: string) =>
    query(`SELECT design_id, design_name, file_location, source_lsn::text, source_pos, is_deleted FROM ${schema}.dim_design ORDER BY design_id`);

  it('keeps the latest change per key, and only ever moves forward in (source_lsn, source_pos)', async () => {
    const s = await warehouse();
    await merge(s, [
      row({ design_id: 1, design_name: 'B' }, 'u', '0/20'),
      row({ design_id: 1, design_name: 'A' }, 'c', '0/10'),
      row({ design_id: 2, design_name: 'X' }, 'c', '0/10', 1),
    ]);
    expect((await designs(s)).map((d) => [d.design_id, d.design_name, d.source_lsn])).toEqual([
      [1, 'B', '0/20'],
      [2, 'X', '0/10'],
    ]);
    // late and re-delivered changes take nothing back; a later position in the same commit does move on
    await merge(s, [row({ design_id: 1, design_name: 'late' }, 'u', '0/15'), row({ design_id: 1, design_name: 'again' }, 'u', '0/20')]);
    expect((await designs(s))[0]).toMatchObject({ design_name: 'B', source_lsn: '0/20' });
    await merge(s, [row({ design_id: 1, design_name: 'C' }, 'u', '0/20', 1)]);
    expect((await designs(s))[0]).toMatchObject({ design_name: 'C', source_pos: 1 });
  });

  it('keeps a deleted row as a tombstone with its last values, and a later insert brings it back', async () => {
    const s = await warehouse();
    await merge(s, [row({ design_id: 2, design_name: 'X', file_location: '/x' }, 'c', '0/10')]);
    await merge(s, [row({ design_id: 2 }, 'd', '0/30')]);
    expect((await designs(s))[0]).toMatchObject({ design_name: 'X', file_location: '/x', is_deleted: true, source_lsn: '0/30' });
    await merge(s, [row({ design_id: 2, design_name: 'Back' }, 'c', '0/40')]);
    expect((await designs(s))[0]).toMatchObject({ design_name: 'Back', is_deleted: false });
  });

  it('keeps an unchanged TOAST value, also one set earlier in the same load (in waves)', async () => {
    const s = await warehouse();
    const toasted = row({ design_id: 3, design_name: 'Renamed', file_location: null }, 'u', '0/20', 0, ',file_location,');
    const rows = [row({ design_id: 3, design_name: 'Big', file_location: 'x'.repeat(5000) }, 'c', '0/10'), toasted];
    await staged('dim_design', rows, async (c) => {
      const [update, insert] = mergeDimensionSql('dim_design', s, true);
      for (const wave of [1, 2]) {
        await c.query(update, [wave]);
        await c.query(insert, [wave]);
      }
    });
    const [d] = await designs(s);
    expect([d.design_name, d.file_location.length, d.source_lsn]).toEqual(['Renamed', 5000, '0/20']);
    // and across loads, without waves
    await merge(s, [row({ design_id: 3, design_name: 'Again', file_location: null }, 'u', '0/30', 0, ',file_location,')]);
    expect((await designs(s))[0].file_location).toHaveLength(5000);
  });
});

describe('appendFactSql', () => {
  const order = (values: Record<string, unknown> = {}) => ({
    sales_order_id: 1,
    created_date: '2024-05-01',
    created_time: '09:15:02.123',
    last_updated_date: '2024-05-01',
    last_updated_time: '09:15:02',
    units_sold: 1000,
    unit_price: '3.99',
    agreed_payment_date: '2024-05-04',
    ...values,
  });
  /** Stage, add the dates the rows reference, append the independent rows, then the dependent ones in `waves`. */
  const append = (schema: string, rows: LoadRow[], waves = 1) =>
    staged('fact_sales_order', rows, async (c) => {
      await c.query(datesSql(schema), [referencedKeys(new Map([['fact_sales_order', rows]])).dates]);
      const sql = appendFactSql('fact_sales_order', schema);
      await c.query(sql.independent);
      for (let wave = 1; wave <= waves; wave++) await c.query(sql.dependent, [wave]);
    });
  const versions = (schema: string) =>
    query(`SELECT source_op, source_lsn::text, units_sold, unit_price::text, is_deleted FROM ${schema}.fact_sales_order ORDER BY source_lsn, source_pos`);
  const current = async (schema: string) => (await query(`SELECT source_lsn::text, units_sold FROM ${schema}.fact_sales_order_current`))[0];

  it('appends one version per change, however often it is delivered', async () => {
    const s = await warehouse();
    const rows = [row(order(), 'c', '0/10'), row(order({ units_sold: 2000 }), 'u', '0/20')];
    await append(s, [...rows, rows[1]]);
    await append(s, rows);
    expect((await versions(s)).map((v) => [v.source_op, v.source_lsn, v.units_sold])).toEqual([
      ['c', '0/10', 1000],
      ['u', '0/20', 2000],
    ]);
  });

  it('appends a delete carrying the values of the version it ends', async () => {
    const s = await warehouse();
    await append(s, [row(order(), 'c', '0/10'), row(order({ units_sold: 2000, unit_price: '99999999.99' }), 'u', '0/20')]);
    await append(s, [row({ sales_order_id: 1 }, 'd', '0/30')]);
    expect((await versions(s))[2]).toEqual({ source_op: 'd', source_lsn: '0/30', units_sold: 2000, unit_price: '99999999.99', is_deleted: true });
    expect(await current(s)).toBeUndefined(); // deleted orders leave the current view
  });

  it('appends a snapshot read only where it differs from the version before it, ordered by position, not arrival', async () => {
    const s = await warehouse();
    await append(s, [row(order(), 'c', '0/10'), row(order({ units_sold: 2000 }), 'u', '0/20')]);
    await append(s, [row(order({ units_sold: 2000 }), 'r', '0/25')]); // the same as 0/20: nothing new
    expect(await versions(s)).toHaveLength(2);
    await append(s, [row(order({ units_sold: 1500 }), 'r', '0/15')]); // arrives late, differs from 0/10: appended, but not current
    expect((await versions(s)).map((v) => [v.source_op, v.source_lsn])).toEqual([
      ['c', '0/10'],
      ['r', '0/15'],
      ['u', '0/20'],
    ]);
    expect(await current(s)).toEqual({ source_lsn: '0/20', units_sold: 2000 });
  });

  it('brings a deleted order back with a snapshot read, and chains dependent versions of one key in one load', async () => {
    const s = await warehouse();
    await append(s, [row(order(), 'c', '0/10'), row({ sales_order_id: 1 }, 'd', '0/20'), row(order(), 'r', '0/30')], 2);
    expect((await versions(s)).map((v) => [v.source_op, v.units_sold, v.is_deleted])).toEqual([
      ['c', 1000, false],
      ['d', 1000, true],
      ['r', 1000, false],
    ]);
    expect(await current(s)).toEqual({ source_lsn: '0/30', units_sold: 1000 });
  });

  it('keeps an unchanged TOAST value from the version before', async () => {
    const s = await warehouse();
    const purchase = (values: Record<string, unknown>) => ({ purchase_order_id: 5, item_quantity: 3, ...values });
    await staged(
      'fact_purchase_order',
      [row(purchase({ item_code: 'ZDOI5EA' }), 'c', '0/10'), row(purchase({ item_code: null, item_quantity: 4 }), 'u', '0/20', 0, ',item_code,')],
      async (c) => {
        const sql = appendFactSql('fact_purchase_order', s);
        await c.query(sql.independent);
        await c.query(sql.dependent, [1]);
      },
    );
    expect(await query(`SELECT item_code, item_quantity FROM ${s}.fact_purchase_order ORDER BY source_lsn`)).toEqual([
      { item_code: 'ZDOI5EA', item_quantity: 3 },
      { item_code: 'ZDOI5EA', item_quantity: 4 },
    ]);
  });

  it('stores the commit time in UTC, whatever the session time zone', async () => {
    const s = await warehouse();
    await staged('fact_sales_order', [row(order(), 'c', '0/10')], async (c) => {
      await c.query(`SET LOCAL TIME ZONE 'Asia/Kolkata'`);
      await c.query(datesSql(s), [referencedKeys(new Map([['fact_sales_order', [row(order(), 'c', '0/10')]]])).dates]);
      await c.query(appendFactSql('fact_sales_order', s).independent);
    });
    expect(await query(`SELECT source_commit_time::text, created_time::text FROM ${s}.fact_sales_order`)).toEqual([
      { source_commit_time: '2024-05-01 09:15:02.456789', created_time: '09:15:02.123' },
    ]);
  });
});

describe('referencedKeys, inferredMembersSql and datesSql', () => {
  it('inserts placeholder dimension rows for keys a fact references, leaving existing rows alone', async () => {
    const s = await warehouse();
    await pool.query(`INSERT INTO ${s}.dim_staff (staff_id, first_name, source_lsn) VALUES (3, 'Jeanette', '0/5')`);
    const fact = row(
      { sales_order_id: 1, sales_staff_id: 3, counterparty_id: 4, currency_id: 1, design_id: 8, agreed_delivery_location_id: null },
      'c',
      '0/10',
    );
    const named = referencedKeys(new Map([['fact_sales_order', [fact, { ...fact, sales_order_id: 2, sales_staff_id: 5, source_pos: 1 }]]]));
    expect([...named.members.keys()].sort()).toEqual(['dim_counterparty', 'dim_currency', 'dim_design', 'dim_location', 'dim_staff']);
    expect(named.members.get('dim_staff')).toEqual([3, 5]);
    for (const [dim, keys] of named.members) await pool.query(inferredMembersSql(dim, s), [keys]);
    expect(await query(`SELECT staff_id, first_name, source_lsn::text FROM ${s}.dim_staff ORDER BY staff_id`)).toEqual([
      { staff_id: 3, first_name: 'Jeanette', source_lsn: '0/5' },
      { staff_id: 5, first_name: null, source_lsn: '0/0' },
    ]);
    for (const [table, key, id] of [
      ['dim_counterparty', 'counterparty_id', 4],
      ['dim_currency', 'currency_id', 1],
      ['dim_design', 'design_id', 8],
    ] as const) {
      expect(await query(`SELECT ${key} AS id, source_lsn::text FROM ${s}.${table}`)).toEqual([{ id, source_lsn: '0/0' }]);
    }
    expect(await query(`SELECT * FROM ${s}.dim_location`)).toEqual([]); // a null reference needs no member
    // the real row, when it arrives, fills the placeholder
    await staged('dim_staff', [row({ staff_id: 5, first_name: 'Later' }, 'c', '0/1')], async (c) => {
      for (const sql of mergeDimensionSql('dim_staff', s, false)) await c.query(sql);
    });
    expect((await query(`SELECT first_name FROM ${s}.dim_staff WHERE staff_id = 5`))[0].first_name).toBe('Later');
  });

  it('adds a dim_date row for every date a fact holds, ISO weekday, English names, once', async () => {
    const s = await warehouse();
    const payment = (id: number, created: string, paid: string | null) =>
      row({ payment_id: id, created_date: created, last_updated_date: created, payment_date: paid }, 'c', '0/10', id);
    const rows = [payment(1, '2024-02-29', '2024-12-29'), payment(2, '2024-04-01', null), payment(3, '2024-04-01', '1999-12-31')];
    const { dates } = referencedKeys(new Map([['fact_payment', rows]]));
    expect(dates).toEqual(['1999-12-31', '2024-02-29', '2024-04-01', '2024-12-29']);
    for (let i = 0; i < 2; i++) await pool.query(datesSql(s), [dates]);
    expect(await query(`SELECT date_id::text, year, month, day, day_of_week, day_name, month_name, quarter FROM ${s}.dim_date ORDER BY date_id`)).toEqual([
      { date_id: '1999-12-31', year: 1999, month: 12, day: 31, day_of_week: 5, day_name: 'Friday', month_name: 'December', quarter: 4 },
      { date_id: '2024-02-29', year: 2024, month: 2, day: 29, day_of_week: 4, day_name: 'Thursday', month_name: 'February', quarter: 1 },
      { date_id: '2024-04-01', year: 2024, month: 4, day: 1, day_of_week: 1, day_name: 'Monday', month_name: 'April', quarter: 2 },
      { date_id: '2024-12-29', year: 2024, month: 12, day: 29, day_of_week: 7, day_name: 'Sunday', month_name: 'December', quarter: 4 },
    ]);
    expect(referencedKeys(new Map([['dim_design', [row({ design_id: 1 }, 'c', '0/10')]]])).dates).toEqual([]);
  });
});

describe('propagationSql', () => {
  it("re-derives a staff member's department and a counterparty's legal address for the keys touched", async () => {
    const s = await warehouse();
    await pool.query(`
      INSERT INTO ${s}.totes_department (department_id, department_name, location) VALUES (1, 'Sales', 'Manchester'), (2, 'Purchasing', 'Leds');
      INSERT INTO ${s}.dim_staff (staff_id, first_name, department_id) VALUES (10, 'A', 1), (11, 'B', 1), (12, 'C', 2);
      INSERT INTO ${s}.dim_location (location_id, address_line_1, city, phone) VALUES (15, '1 High St', 'Leeds', '0113 496 0000');
      INSERT INTO ${s}.dim_counterparty (counterparty_id, counterparty_legal_name, legal_address_id) VALUES (4, 'Fahey and Sons', 15), (5, 'Other', 99);`);
    const run = (sql: string, params: number[][]) => pool.query(sql, params);
    const sql = propagationSql(s);
    const staff = () => query(`SELECT staff_id, department_name, location FROM ${s}.dim_staff ORDER BY staff_id`);

    await run(sql.dim_staff, [[10], []]); // one staff member changed
    expect(await staff()).toEqual([
      { staff_id: 10, department_name: 'Sales', location: 'Manchester' },
      { staff_id: 11, department_name: null, location: null },
      { staff_id: 12, department_name: null, location: null },
    ]);
    await pool.query(`UPDATE ${s}.totes_department SET location = 'Leeds' WHERE department_id = 1`);
    await run(sql.dim_staff, [[], [1]]); // a department changed: every member of it
    expect((await staff()).map((r) => r.location)).toEqual(['Leeds', 'Leeds', null]);
    await pool.query(`UPDATE ${s}.totes_department SET is_deleted = true WHERE department_id = 1`);
    await run(sql.dim_staff, [[], [1]]);
    expect((await staff()).map((r) => r.department_name)).toEqual([null, null, null]);

    await run(sql.dim_counterparty, [[], [15]]);
    expect(
      await query(
        `SELECT counterparty_id, counterparty_legal_address_line_1, counterparty_legal_city, counterparty_legal_phone_number FROM ${s}.dim_counterparty ORDER BY 1`,
      ),
    ).toEqual([
      {
        counterparty_id: 4,
        counterparty_legal_address_line_1: '1 High St',
        counterparty_legal_city: 'Leeds',
        counterparty_legal_phone_number: '0113 496 0000',
      },
      { counterparty_id: 5, counterparty_legal_address_line_1: null, counterparty_legal_city: null, counterparty_legal_phone_number: null },
    ]);
  });
});
