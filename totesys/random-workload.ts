/**
 * Random workloads over all 11 tables for property tests: inserts, updates (including
 * primary-key changes that cascade), deletes and dimension edits, each in its own transaction.
 * Operations the source refuses (a delete blocked by a foreign key) are skipped, as the
 * application would see them fail; the count of committed ones is returned.
 */
import type pg from '../lib/pg.ts';
import { SQLSTATE } from '../lib/sqlstate.ts';
import type { Row } from '../formats/change-event.ts';
import { primaryKeyOf, SOURCE_TABLES, SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { addressRow, designRow, insertRows, purchaseOrderRows, salesOrderRows, type Universe } from './business.ts';
import { Random, timestampText } from './random.ts';

const CURRENCY_CODES = ['JPY', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN', 'CAD', 'AUD'];
/** What the source refuses of a random operation, as it would the app's: a foreign key (restrict_violation for a RESTRICT key from Postgres 18), a unique key, a not-null column. */
const REFUSED = new Set<string>([SQLSTATE.foreign_key_violation, SQLSTATE.restrict_violation, SQLSTATE.unique_violation, SQLSTATE.not_null_violation]);

async function maxId(db: pg.PoolClient, table: SourceTable): Promise<number> {
  const { rows } = await db.query(`SELECT coalesce(max(${primaryKeyOf(table)}), 0)::int AS m FROM "${table}"`);
  return rows[0].m;
}

async function randomId(db: pg.PoolClient, rng: Random, table: SourceTable): Promise<number | null> {
  const { rows } = await db.query(`SELECT ${primaryKeyOf(table)} AS id FROM "${table}" ORDER BY ${primaryKeyOf(table)} OFFSET $1 LIMIT 1`, [
    rng.int(0, Math.max(0, (await maxId(db, table)) - 1)),
  ]);
  if (rows[0]) return rows[0].id;
  const any = await db.query(`SELECT ${primaryKeyOf(table)} AS id FROM "${table}" ORDER BY random() LIMIT 1`);
  return any.rows[0]?.id ?? null;
}

async function nextIds(db: pg.PoolClient, ...tables: SourceTable[]): Promise<number[]> {
  const ids: number[] = [];
  for (const t of tables) ids.push((await db.query(`SELECT nextval(pg_get_serial_sequence('"${t}"', '${primaryKeyOf(t)}'))::int AS id`)).rows[0].id);
  return ids;
}

/** A changed value for a non-key column, shaped like the column. */
function changedValue(rng: Random, column: string): unknown {
  if (column === 'last_updated' || column === 'created_at')
    return timestampText(Date.UTC(2024, rng.int(0, 11), rng.int(1, 28), rng.int(0, 23), rng.int(0, 59), rng.int(0, 59), rng.chance(0.2) ? 0 : rng.int(0, 999)));
  if (column.endsWith('_date')) return `2024-${String(rng.int(1, 12)).padStart(2, '0')}-${String(rng.int(1, 28)).padStart(2, '0')}`;
  if (column === 'unit_price' || column === 'item_unit_price' || column === 'payment_amount') return rng.money(0, 99_999_999);
  if (column === 'units_sold' || column === 'item_quantity') return rng.int(1, 100_000);
  if (column === 'paid') return rng.chance(0.5);
  if (column === 'payment_type_name') return rng.pick(['SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND']);
  if (column === 'transaction_type') return rng.pick(['SALE', 'PURCHASE']);
  if (column === 'currency_code') return rng.pick(CURRENCY_CODES);
  if (column.endsWith('_id') || column.endsWith('_number')) return null; // foreign keys and account numbers: left alone
  return rng.pick([`edited ${rng.int(1, 9999)}`, 'O\'Brien "quoted" \\ back', 'Straße 東京 🧵', 'two\nlines', null]);
}

export class RandomWorkload {
  private readonly rng: Random;
  committed = 0;
  skipped = 0;

  constructor(
    private readonly pool: pg.Pool,
    seed: number,
  ) {
    this.rng = new Random(seed);
  }

  async run(operations: number): Promise<void> {
    for (let i = 0; i < operations; i++) await this.step();
  }

  /** Steps at `rate` committed operations a second until `stop` (which waits for the step under way). */
  runPaced(rate: number): { stop: () => Promise<void> } {
    let working = true;
    const started = Date.now();
    const running = (async () => {
      while (working) {
        await this.step();
        const wait = started + (this.committed / rate) * 1000 - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    })();
    return {
      stop: async () => {
        working = false;
        await running;
      },
    };
  }

  async step(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await this.operation(client);
      await client.query('COMMIT');
      this.committed++;
    } catch (err) {
      await client.query('ROLLBACK');
      // the source refused, as it would the app
      if (REFUSED.has((err as { code?: string }).code ?? '')) this.skipped++;
      else throw err;
    } finally {
      client.release();
    }
  }

  private async operation(db: pg.PoolClient): Promise<void> {
    const rng = this.rng;
    const roll = rng.next();
    const now = Date.now();
    const u: Universe = {
      address: await maxId(db, 'address'),
      counterparty: await maxId(db, 'counterparty'),
      department: await maxId(db, 'department'),
      design: await maxId(db, 'design'),
      staff: await maxId(db, 'staff'),
    };
    if (roll < 0.25) {
      const isSale = rng.chance(0.6);
      const [order, transaction, payment] = await nextIds(db, isSale ? 'sales_order' : 'purchase_order', 'transaction', 'payment');
      const made = (isSale ? salesOrderRows : purchaseOrderRows)(rng, u, [order, transaction, payment], now);
      await insertRows(db, isSale ? 'sales_order' : 'purchase_order', [made.order]);
      await insertRows(db, 'transaction', [made.transaction]);
      await insertRows(db, 'payment', [made.payment]);
      return;
    }
    if (roll < 0.35) {
      const table = rng.pick(['address', 'design', 'department', 'staff', 'counterparty', 'currency', 'payment_type'] as const);
      const [id] = await nextIds(db, table);
      const t = timestampText(now);
      const rows: Record<typeof table, () => Row> = {
        address: () => addressRow(rng, id, now),
        design: () => designRow(rng, id, now),
        department: () => ({
          department_id: id,
          department_name: `Dept ${id}`,
          location: rng.pick(['Leeds', 'Leds', null]),
          manager: null,
          created_at: t,
          last_updated: t,
        }),
        staff: () => ({
          staff_id: id,
          first_name: 'New',
          last_name: `Starter ${id}`,
          department_id: rng.int(1, Math.max(1, u.department)),
          email_address: `new.${id}@terrifictotes.com`,
          created_at: t,
          last_updated: t,
        }),
        counterparty: () => ({
          counterparty_id: id,
          counterparty_legal_name: `Counterparty ${id}`,
          legal_address_id: rng.int(1, Math.max(1, u.address)),
          commercial_contact: null,
          delivery_contact: null,
          created_at: t,
          last_updated: t,
        }),
        currency: () => ({ currency_id: id, currency_code: rng.pick(CURRENCY_CODES), created_at: t, last_updated: t }),
        payment_type: () => ({ payment_type_id: id, payment_type_name: rng.pick(['SALES_REFUND', 'PURCHASE_REFUND']), created_at: t, last_updated: t }),
      };
      await insertRows(db, table, [rows[table]()]);
      return;
    }
    const table = rng.pick(SOURCE_TABLE_NAMES);
    const id = await randomId(db, rng, table);
    if (id === null) return;
    const pk = primaryKeyOf(table);
    if (roll < 0.8) {
      const columns = SOURCE_TABLES[table].filter((c) => c !== pk);
      const sets: string[] = [];
      const params: unknown[] = [];
      for (const c of columns) {
        if (!rng.chance(0.4)) continue;
        const v = changedValue(rng, c);
        if (v === null && (c.endsWith('_id') || c.endsWith('_number'))) continue;
        params.push(v);
        sets.push(`"${c}" = $${params.length}`);
      }
      if (sets.length === 0) sets.push(`last_updated = '${timestampText(now)}'`);
      params.push(id);
      await db.query(`UPDATE "${table}" SET ${sets.join(', ')} WHERE ${pk} = $${params.length}`, params);
      return;
    }
    if (roll < 0.83) {
      // a primary-key change: ON UPDATE CASCADE rewrites every referencing row too
      const [newId] = await nextIds(db, table);
      await db.query(`UPDATE "${table}" SET ${pk} = $1 WHERE ${pk} = $2`, [newId, id]);
      return;
    }
    await db.query(`DELETE FROM "${table}" WHERE ${pk} = $1`, [id]);
  }
}
