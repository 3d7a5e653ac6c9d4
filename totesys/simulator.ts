/**
 * Writes to totesys the way the business does: a new order together with its transaction and
 * payment in one database transaction, payments flipping to paid, occasional dimension edits,
 * new designs, rare order amendments and deletions.
 */
import type pg from 'pg';
import type { Row } from '../formats/change-event.ts';
import { addressRow, designRow, insertRows, multiplyMoney, purchaseOrderRows, salesOrderRows, type Universe } from './business.ts';
import { sleep } from '../lib/retry.ts';
import { Random, timestampText } from './random.ts';

export interface SimulatorStats {
  transactions: number;
  changes: number;
}

export class Simulator {
  readonly stats: SimulatorStats = { transactions: 0, changes: 0 };
  private readonly rng: Random;
  private universe?: Universe;

  constructor(
    private readonly pool: pg.Pool,
    seed = 42,
  ) {
    this.rng = new Random(seed);
  }

  /** Write until `changes` row changes are done (or forever), at `rate` changes/s (0 = as fast as possible). */
  async run(opts: { changes?: number; rate?: number; signal?: AbortSignal }): Promise<SimulatorStats> {
    const start = Date.now();
    const target = opts.changes ?? Infinity;
    while (this.stats.changes < target && !opts.signal?.aborted) {
      await this.step();
      if (opts.rate && opts.rate > 0) {
        const due = start + (this.stats.changes / opts.rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait, opts.signal);
      }
    }
    return this.stats;
  }

  /** One business transaction; returns the number of rows it changed. */
  async step(): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const u = (this.universe ??= await loadUniverse(client));
      const changed = await this.oneTransaction(client, u);
      await client.query('COMMIT');
      this.stats.transactions++;
      this.stats.changes += changed;
      return changed;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  private async oneTransaction(db: pg.PoolClient, u: Universe): Promise<number> {
    const rng = this.rng;
    const now = Date.now();
    const stamp = timestampText(now);
    const roll = rng.next();
    if (roll < 0.6) {
      const isSale = roll < 0.45;
      const prefix = isSale ? 'sales_order' : 'purchase_order';
      const { rows } = await db.query(
        `SELECT nextval('${prefix}_${prefix}_id_seq')::int a, nextval('transaction_transaction_id_seq')::int b, nextval('payment_payment_id_seq')::int c`,
      );
      const ids: [number, number, number] = [rows[0].a, rows[0].b, rows[0].c];
      const made = isSale ? salesOrderRows(rng, u, ids, now) : purchaseOrderRows(rng, u, ids, now);
      await insertRows(db, prefix, [made.order]);
      await insertRows(db, 'transaction', [made.transaction]);
      await insertRows(db, 'payment', [made.payment]);
      return 3;
    }
    if (roll < 0.85) {
      const r = await db.query(
        `UPDATE payment SET paid = true, last_updated = $1 WHERE payment_id = (
           SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT 1 OFFSET $2)`,
        [stamp, rng.int(0, 20)],
      );
      return r.rowCount ?? 0;
    }
    if (roll < 0.9) return this.editDimension(db, u, stamp, now);
    if (roll < 0.93) {
      const { rows } = await db.query(`SELECT nextval('design_design_id_seq')::int id`);
      await insertRows(db, 'design', [designRow(rng, rows[0].id, now)]);
      u.design = Math.max(u.design, rows[0].id);
      return 1;
    }
    if (roll < 0.98) return this.amendOrder(db, stamp);
    return this.deleteOrder(db);
  }

  private async editDimension(db: pg.PoolClient, u: Universe, stamp: string, now: number): Promise<number> {
    const rng = this.rng;
    const which = rng.int(0, 4);
    let r: pg.QueryResult;
    if (which === 0) {
      const fresh: Row = addressRow(rng, 0, now);
      r = await db.query('UPDATE address SET phone = $1, last_updated = $2 WHERE address_id = $3', [fresh.phone, stamp, rng.int(1, u.address)]);
    } else if (which === 1) {
      const fresh: Row = addressRow(rng, 0, now);
      r = await db.query('UPDATE address SET city = $1, district = $2, country = $3, last_updated = $4 WHERE address_id = $5', [
        fresh.city,
        fresh.district,
        fresh.country,
        stamp,
        rng.int(1, u.address),
      ]);
    } else if (which === 2) {
      r = await db.query('UPDATE department SET location = $1, last_updated = $2 WHERE department_id = $3', [
        rng.pick(['Manchester', 'Leeds', 'Leds', 'Sheffield']),
        stamp,
        rng.int(1, u.department),
      ]);
    } else if (which === 3) {
      r = await db.query('UPDATE staff SET department_id = $1, last_updated = $2 WHERE staff_id = $3', [rng.int(1, u.department), stamp, rng.int(1, u.staff)]);
    } else {
      r = await db.query('UPDATE counterparty SET legal_address_id = $1, delivery_contact = $2, last_updated = $3 WHERE counterparty_id = $4', [
        rng.int(1, u.address),
        `Contact ${rng.int(1, 999)}`,
        stamp,
        rng.int(1, u.counterparty),
      ]);
    }
    return r.rowCount ?? 0;
  }

  /** An amended order and its payment, updated together. */
  private async amendOrder(db: pg.PoolClient, stamp: string): Promise<number> {
    const units = this.rng.int(1_000, 100_000);
    const { rows } = await db.query(
      `UPDATE sales_order SET units_sold = $1, last_updated = $2
        WHERE sales_order_id = (SELECT max(sales_order_id) - $3 FROM sales_order)
        RETURNING sales_order_id, unit_price`,
      [units, stamp, this.rng.int(0, 50)],
    );
    if (rows.length === 0) return 0;
    const p = await db.query(
      `UPDATE payment SET payment_amount = $1, last_updated = $2
        WHERE transaction_id = (SELECT transaction_id FROM transaction WHERE sales_order_id = $3)`,
      [multiplyMoney(units, rows[0].unit_price), stamp, rows[0].sales_order_id],
    );
    return 1 + (p.rowCount ?? 0);
  }

  /** A cancelled order: the delete also nulls the transaction's order id (ON DELETE SET NULL). */
  private async deleteOrder(db: pg.PoolClient): Promise<number> {
    const r = await db.query(`DELETE FROM sales_order WHERE sales_order_id = (SELECT max(sales_order_id) - $1 FROM sales_order) RETURNING sales_order_id`, [
      this.rng.int(0, 100),
    ]);
    return (r.rowCount ?? 0) * 2;
  }
}

async function loadUniverse(db: pg.PoolClient): Promise<Universe> {
  const { rows } = await db.query(`SELECT
    (SELECT max(address_id) FROM address)::int AS address, (SELECT max(counterparty_id) FROM counterparty)::int AS counterparty,
    (SELECT max(department_id) FROM department)::int AS department, (SELECT max(design_id) FROM design)::int AS design,
    (SELECT max(staff_id) FROM staff)::int AS staff`);
  return rows[0];
}
