/**
 * The two ways a load meets the foreign keys: a role that may set session_replication_role
 * loads with references trusted (the merge inserts what each fact names first), any other role
 * with Postgres checking each row. Both must build the same warehouse, every reference holding
 * and every constraint declared and valid, still enforced against any other writer.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, EventSource } from '../formats/change-event.ts';
import { LOAD_TABLES, type LoadRow, type LoadTableName } from '../formats/load-tables.ts';
import pg, { poolFor } from '../lib/pg.ts';
import { mapEvents } from '../processors/transform.ts';
import { createDatabase, serverUrl } from '../test/harness.ts';
import { changeEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { PostgresWarehouse, type Warehouse } from './warehouse.ts';
import { foreignKeys } from './warehouse-schema.ts';

const at = (lsn: string, pos = 0): EventSource => ({ lsn, pos, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' });

/** Two loads: facts naming dimensions and dates the warehouse lacks, their dimensions later, an update and a delete. */
function loads(): Map<LoadTableName, LoadRow[]>[] {
  const first: ChangeEvent[] = [
    salesOrderChange(1, 'c', { staff_id: 7, counterparty_id: 8, design_id: 9, currency_id: 2, agreed_delivery_location_id: 5 }, at('0/100')),
    salesOrderChange(2, 'c', { agreed_delivery_date: '2025-12-31', agreed_payment_date: '2026-01-02' }, at('0/100', 1)),
    changeEvent('currency', 'c', { currency_id: 2, currency_code: 'EUR', created_at: '2024-05-01 09:15:02', last_updated: '2024-05-01 09:15:02' }, at('0/110')),
  ];
  const second: ChangeEvent[] = [
    salesOrderChange(1, 'u', { staff_id: 7, counterparty_id: 8, design_id: 9, currency_id: 3, units_sold: 5, unit_price: '12345678.99' }, at('0/200')),
    salesOrderChange(2, 'd', {}, at('0/210')),
    changeEvent(
      'design',
      'c',
      { design_id: 9, design_name: 'Bag', file_location: '/d', file_name: 'b.png', created_at: '2024-05-01 09:15:02', last_updated: '2024-05-01 09:15:02' },
      at('0/220'),
    ),
  ];
  return [first, second].map((events) => {
    const { rows, failures } = mapEvents(events);
    if (failures.length) throw new Error(JSON.stringify(failures));
    return new Map(Object.entries(rows) as [LoadTableName, LoadRow[]][]);
  });
}

describe('foreign keys in the load transaction', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  const role = `loader_${randomBytes(4).toString('hex')}`;
  let admin: pg.Pool;
  let unprivileged: pg.Pool;

  beforeAll(async () => {
    db = await createDatabase('references');
    admin = poolFor(db.url, 2);
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'loader'`);
    await admin.query(`ALTER DATABASE "${db.name}" OWNER TO ${role}`);
    const url = new URL(db.url);
    url.username = role;
    url.password = 'loader';
    unprivileged = poolFor(url.toString(), 2);
  });
  afterAll(async () => {
    await unprivileged?.end();
    await admin?.end();
    await db?.drop();
    const c = new pg.Client({ connectionString: serverUrl() });
    await c.connect();
    await c.query(`DROP ROLE IF EXISTS ${role}`);
    await c.end();
  });

  async function load(pool: pg.Pool, schema: string): Promise<Warehouse> {
    const warehouse = new PostgresWarehouse(pool, schema);
    await warehouse.ensureSchema();
    let n = 0;
    for (const tables of loads()) expect(await warehouse.loadTables({ batchKey: `b${++n}`, shard: 's', events: 3 }, tables)).toBe(true);
    return warehouse;
  }

  const dump = async (schema: string) =>
    (
      await admin.query(
        `SELECT (SELECT json_agg(f ORDER BY sales_record_id) FROM "${schema}".fact_sales_order f) AS facts,
                (SELECT json_agg(d ORDER BY date_id) FROM "${schema}".dim_date d) AS dates,
                (SELECT json_agg(d ORDER BY currency_id) FROM "${schema}".dim_currency d) AS currencies,
                (SELECT json_agg(d ORDER BY design_id) FROM "${schema}".dim_design d) AS designs,
                (SELECT json_agg(d ORDER BY staff_id) FROM "${schema}".dim_staff d) AS staff`,
      )
    ).rows[0];

  /** Fact rows whose reference finds no row, per foreign key that has any. */
  async function orphans(schema: string): Promise<string[]> {
    const out: string[] = [];
    for (const fk of foreignKeys()) {
      const pk = fk.references === 'dim_date' ? 'date_id' : LOAD_TABLES[fk.references as LoadTableName].key;
      const { rows } = await admin.query(
        `SELECT count(*)::int AS n FROM "${schema}".${fk.table} f WHERE f.${fk.column} IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM "${schema}".${fk.references} d WHERE d.${pk} = f.${fk.column})`,
      );
      if (rows[0].n > 0) out.push(`${fk.name}: ${rows[0].n}`);
    }
    return out;
  }

  const validConstraints = async (schema: string) =>
    (
      await admin.query(
        `SELECT c.conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
          WHERE n.nspname = $1 AND c.contype = 'f' AND c.convalidated ORDER BY 1`,
        [schema],
      )
    ).rows.map((r) => r.conname);

  it('trusts references for a role that may set session_replication_role, checks each row for one that may not, and builds the same warehouse', async () => {
    const trusted = await load(admin, 'trusted');
    const checked = await load(unprivileged, 'checked');
    expect(await trusted.trustsReferences()).toBe(true);
    expect(await checked.trustsReferences()).toBe(false);

    const built = await dump('trusted');
    expect(built.facts).toHaveLength(4); // two inserts, an update and a delete version
    const prices = await admin.query(`SELECT unit_price::text, source_commit_time::text FROM trusted.fact_sales_order WHERE source_lsn = '0/200'`);
    expect(prices.rows).toEqual([{ unit_price: '12345678.99', source_commit_time: '2024-05-01 09:15:02.123456' }]);
    expect(await dump('checked')).toEqual(built);

    // a later batch that carries a version already loaded beside a new one: the new one appends, the old one not again
    const [again] = loads();
    const repeated = new Map([['fact_sales_order', [...again.get('fact_sales_order')!, { ...again.get('fact_sales_order')![0], source_lsn: '0/300' }]]]) as Map<
      LoadTableName,
      LoadRow[]
    >;
    for (const w of [trusted, checked]) expect(await w.loadTables({ batchKey: 'b3', shard: 's', events: 3 }, repeated)).toBe(true);
    const versions = await admin.query(`SELECT source_lsn::text, count(*)::int AS n FROM trusted.fact_sales_order GROUP BY 1 ORDER BY 1`);
    expect(versions.rows).toEqual([
      { source_lsn: '0/100', n: 2 },
      { source_lsn: '0/200', n: 1 },
      { source_lsn: '0/210', n: 1 },
      { source_lsn: '0/300', n: 1 },
    ]);
    expect(await dump('checked')).toEqual(await dump('trusted'));

    for (const schema of ['trusted', 'checked']) {
      expect(await orphans(schema)).toEqual([]);
      expect(await validConstraints(schema)).toEqual(
        foreignKeys()
          .map((fk) => fk.name)
          .sort(),
      );
      // still enforced against any other writer
      await expect(
        admin.query(`INSERT INTO "${schema}".fact_sales_order (sales_order_id, currency_id, source_op, source_lsn, source_pos, source_commit_time)
                                VALUES (99, 12345, 'c', '0/1', 0, now())`),
      ).rejects.toMatchObject({ code: '23503' });
    }
  });

  it('appends large fact tables as they arrive, before what they name, and two batches of one load that share versions append them once', async () => {
    // past EARLY_APPEND_ROWS (warehouse.ts): each batch's fact table goes in by itself, the second's mostly versions the first brought
    const orders = (from: number, to: number, lsn: string) =>
      Array.from({ length: to - from }, (_, k) =>
        salesOrderChange(
          from + k,
          'c',
          { staff_id: 7, counterparty_id: 8, design_id: 9, currency_id: (from + k) % 5, units_sold: from + k },
          at(lsn, from + k),
        ),
      );
    const batch = (events: ChangeEvent[]) => new Map(Object.entries(mapEvents(events).rows) as [LoadTableName, LoadRow[]][]);
    const first = batch(orders(0, 3_000, '0/500'));
    const second = batch([...orders(1_000, 3_000, '0/500'), ...orders(3_000, 4_000, '0/600')]);
    const facts = async (schema: string) =>
      (await admin.query(`SELECT sales_order_id, source_lsn::text, source_pos, units_sold, currency_id FROM "${schema}".fact_sales_order ORDER BY 1, 2, 3`))
        .rows;
    for (const [schema, pool] of [
      ['trusted_large', admin],
      ['checked_large', unprivileged],
    ] as const) {
      const warehouse = new PostgresWarehouse(pool, schema);
      await warehouse.ensureSchema();
      const loaded = await warehouse.loadBatches([
        { batch: { batchKey: `${schema}-1`, shard: 's', events: 3_000 }, rows: 3_000, tables: first },
        { batch: { batchKey: `${schema}-2`, shard: 's', events: 3_000 }, rows: 3_000, tables: new Map([...second].map(([t, r]) => [t, Promise.resolve(r)])) },
      ]);
      expect(loaded).toBe(2);
      expect(await orphans(schema)).toEqual([]);
    }
    const built = await facts('trusted_large');
    expect(built).toHaveLength(4_000);
    expect(await facts('checked_large')).toEqual(built);
    const currencies = await admin.query(`SELECT currency_id, source_lsn::text FROM trusted_large.dim_currency ORDER BY 1`);
    expect(currencies.rows).toEqual([0, 1, 2, 3, 4].map((currency_id) => ({ currency_id, source_lsn: '0/0' }))); // named, so there
  });
});
