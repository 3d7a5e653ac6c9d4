/**
 * What both decoders must give for the same changes: capture/pgoutput-decoder.test.ts and
 * capture/wal2json-decoder.test.ts feed each its own wire format and expect these events.
 */
import type { ChangeEvent, EventSource, Row } from '../formats/change-event.ts';

/** The transaction the changes are in: commit LSN as pg-logical-replication prints it, commit time in UTC with microseconds. */
export const COMMIT = { lsn: '00000000/016B3748', xid: 771, commitTime: '2024-05-01T09:15:02.456789Z' } as const;
export const at = (pos: number): EventSource => ({ ...COMMIT, pos });

/** sales_order 1000 as inserted, every value as Postgres prints it (numeric exact, timestamps as text). */
export const SALES_ORDER_1000: Row = {
  sales_order_id: 1000,
  created_at: '2024-05-01 09:15:02',
  last_updated: '2024-05-01 09:15:02.1',
  design_id: 1,
  staff_id: 2,
  counterparty_id: 3,
  units_sold: 7,
  unit_price: '99999999.99',
  currency_id: 1,
  agreed_delivery_date: '2024-05-10',
  agreed_payment_date: '2024-05-11',
  agreed_delivery_location_id: 4,
};

export const salesOrderInsert = (pos: number): ChangeEvent => ({
  v: 1,
  kind: 'change',
  op: 'c',
  table: 'sales_order',
  key: { sales_order_id: 1000 },
  before: null,
  after: SALES_ORDER_1000,
  source: at(pos),
});

export const currencyRow = (id: number): Row => ({
  currency_id: id,
  currency_code: 'EUR',
  created_at: '2024-05-01 09:00:00',
  last_updated: '2024-05-01 09:15:02.5',
});

/** UPDATE currency SET currency_id = 99 WHERE currency_id = 3: a delete of the old key, then an insert of the new one. */
export const currencyKeyChange = (pos: number): ChangeEvent[] => [
  { v: 1, kind: 'change', op: 'd', table: 'currency', key: { currency_id: 3 }, before: { currency_id: 3 }, after: null, source: at(pos) },
  { v: 1, kind: 'change', op: 'c', table: 'currency', key: { currency_id: 99 }, before: null, after: currencyRow(99), source: at(pos + 1) },
];
