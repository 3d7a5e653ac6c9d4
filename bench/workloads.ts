/**
 * The source workloads, generated inside Postgres so the writer never limits what is measured:
 *   bulk: one transaction inserting N sales_order rows;
 *   oltp: N transactions shaped like the business, an order with its transaction and payment
 *         (three rows each; three sales for every purchase, as the simulator writes them);
 *   hotkey: one transaction updating one sales_order row N times (a hot row).
 */
import { CAPTURE_STATE_DDL, createPublicationSql } from '../capture/source-setup.ts';
import type pg from 'pg';
import { createTotesys, scaledSizes } from '../totesys/business.ts';

export type WorkloadName = 'bulk' | 'oltp' | 'hotkey';

/** The tiny seed every bench database starts from: enough dimension rows for the workloads' foreign keys. */
export const BENCH_SIZES = scaledSizes(0.001);

export const PUBLICATION = 'totes_cdc';

/** totesys schema, a seed (tiny unless told), the capture state tables and the publication (which holds the signal table). */
export async function prepareSource(db: pg.Client, opts: { seedScale?: number } = {}): Promise<void> {
  await db.query('BEGIN');
  await createTotesys(db, { seed: 42, sizes: opts.seedScale ? scaledSizes(opts.seedScale) : BENCH_SIZES });
  await db.query(CAPTURE_STATE_DDL);
  await db.query(createPublicationSql(PUBLICATION));
  await db.query('COMMIT');
}

const u = BENCH_SIZES;
const SALES_ORDER_COLUMNS =
  'created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id';

/** One transaction of `rows` sales_order inserts. */
export function bulkSql(rows: number): string {
  return `INSERT INTO sales_order (${SALES_ORDER_COLUMNS})
    SELECT localtimestamp(3), localtimestamp(3), 1 + g % ${u.design}, 1 + g % ${u.staff}, 1 + g % ${u.counterparty},
           1000 + g % 99000, (2 + (g % 200) / 100.0)::numeric(10,2), 1 + g % 3,
           to_char(current_date + g % 7, 'YYYY-MM-DD'), to_char(current_date + g % 5, 'YYYY-MM-DD'), 1 + g % ${u.address}
      FROM generate_series(1, ${rows}) g`;
}

/** `transactions` committed transactions of an order, its transaction and its payment. */
export function oltpSql(transactions: number): string {
  return `DO $$
DECLARE order_id int; transaction_id int; stamp timestamp(3);
BEGIN
  FOR i IN 1..${transactions} LOOP
    stamp := clock_timestamp()::timestamp(3);
    IF i % 4 <> 0 THEN
      INSERT INTO sales_order (${SALES_ORDER_COLUMNS})
        VALUES (stamp, stamp, 1 + i % ${u.design}, 1 + i % ${u.staff}, 1 + i % ${u.counterparty}, 1000 + i % 99000,
                (2 + (i % 200) / 100.0)::numeric(10,2), 1 + i % 3, to_char(current_date + i % 7, 'YYYY-MM-DD'),
                to_char(current_date + i % 5, 'YYYY-MM-DD'), 1 + i % ${u.address})
        RETURNING sales_order_id INTO order_id;
      INSERT INTO transaction (transaction_type, sales_order_id, created_at, last_updated)
        VALUES ('SALE', order_id, stamp, stamp) RETURNING transaction.transaction_id INTO transaction_id;
    ELSE
      INSERT INTO purchase_order (created_at, last_updated, staff_id, counterparty_id, item_code, item_quantity, item_unit_price,
                                  currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)
        VALUES (stamp, stamp, 1 + i % ${u.staff}, 1 + i % ${u.counterparty}, upper(substr(md5(i::text), 1, 7)), 1 + i % 1000,
                (3 + (i % 99700) / 100.0)::numeric(10,2), 1 + i % 3, to_char(current_date + i % 7, 'YYYY-MM-DD'),
                to_char(current_date + i % 5, 'YYYY-MM-DD'), 1 + i % ${u.address})
        RETURNING purchase_order_id INTO order_id;
      INSERT INTO transaction (transaction_type, purchase_order_id, created_at, last_updated)
        VALUES ('PURCHASE', order_id, stamp, stamp) RETURNING transaction.transaction_id INTO transaction_id;
    END IF;
    INSERT INTO payment (created_at, last_updated, transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id,
                         paid, payment_date, company_ac_number, counterparty_ac_number)
      VALUES (stamp, stamp, transaction_id, 1 + i % ${u.counterparty}, (1000 + i % 100000)::numeric(10,2), 1 + i % 3,
              CASE WHEN i % 4 <> 0 THEN 1 ELSE 3 END, false, to_char(current_date + i % 5, 'YYYY-MM-DD'),
              10000000 + i % 89999999, 20000000 + i % 79999999);
    COMMIT;
  END LOOP;
END $$`;
}

/** One transaction of `updates` updates of one sales_order row. */
export function hotKeySql(updates: number): string {
  return `DO $$
BEGIN
  FOR i IN 1..${updates} LOOP
    UPDATE sales_order SET units_sold = 1000 + i, last_updated = clock_timestamp()::timestamp(3) WHERE sales_order_id = 1;
  END LOOP;
END $$`;
}

export interface Workload {
  name: WorkloadName;
  sql: string;
  changes: number;
  transactions: number;
}

export function workload(name: WorkloadName, size: number): Workload {
  if (name === 'bulk') return { name, sql: bulkSql(size), changes: size, transactions: 1 };
  if (name === 'hotkey') return { name, sql: hotKeySql(size), changes: size, transactions: 1 };
  return { name, sql: oltpSql(size), changes: 3 * size, transactions: size };
}
