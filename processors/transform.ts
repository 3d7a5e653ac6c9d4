/**
 * Change events → load rows (data-model.md §2 derivations). Pure and stateless: joins that
 * need another table (staff ⋈ department, counterparty ⋈ address) are resolved by the loader
 * in the warehouse, where every shard's changes meet in one transaction. A stateless processor
 * can run on any number of shards at once with nothing to keep consistent between them.
 */
import type { ChangeEvent, Row, RowsEndEvent, Value } from '../formats/change-event.ts';
import { isNotNull, primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import { LOAD_TABLES, type ColumnType, type LoadRow, type LoadTableName, type Provenance, type RowsEnd } from '../formats/load-tables.ts';
import { refusal } from '../formats/parquet.ts';

/** A change that cannot become a load row; `column` and `value` name the source value at fault, where one is. */
export class MappingError extends Error {
  override name = 'MappingError';
  constructor(
    message: string,
    readonly column: string | null = null,
    readonly value: Value = null,
  ) {
    super(message);
  }
}

export type LoadRows = Partial<Record<LoadTableName, LoadRow[]>>;

const currencyNames = new Intl.DisplayNames(['en'], { type: 'currency' });

/** English name of an ISO 4217 code ("GBP" → "British Pound"). */
export function currencyName(code: string): string {
  const name = currencyNames.of(code.toUpperCase());
  if (!name || name.toUpperCase() === code.toUpperCase())
    throw new MappingError(`unknown ISO 4217 currency code ${JSON.stringify(code)}`, 'currency_code', code);
  return name;
}

const TIMESTAMP = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)$/;
const DATE = /^(?!0000)\d{4}-\d{2}-\d{2}$/; // Postgres has no year 0

/** "2024-05-01 09:15:02.123" → ["2024-05-01", "09:15:02.123"], exactly, no time zone involved. */
export function splitTimestamp(value: Value, column: string): [string, string] {
  const m = typeof value === 'string' ? TIMESTAMP.exec(value) : null;
  if (!m) throw new MappingError(`${column}: not a timestamp: ${JSON.stringify(value)}`, column, value);
  return [m[1], m[2]];
}

/** Dates already checked: a batch's dates repeat, so each is parsed once (cleared when large). */
const checkedDates = new Set<string>();

export function parseDate(value: Value, column: string): string {
  if (typeof value === 'string' && checkedDates.has(value)) return value;
  const day = typeof value === 'string' && DATE.test(value) ? Date.parse(`${value}T00:00:00Z`) : Number.NaN;
  // Date.parse rolls 2024-02-30 over to 1 March, which Postgres would refuse in the load: a day must print back as itself
  if (Number.isNaN(day) || new Date(day).toISOString().slice(0, 10) !== value) {
    throw new MappingError(`${column}: not a YYYY-MM-DD date: ${JSON.stringify(value)}`, column, value);
  }
  if (checkedDates.size >= 10_000) checkedDates.clear();
  checkedDates.add(value);
  return value;
}

function stamps(row: Row): Record<string, string> {
  const [created_date, created_time] = splitTimestamp(row.created_at, 'created_at');
  const [last_updated_date, last_updated_time] = splitTimestamp(row.last_updated, 'last_updated');
  return { created_date, created_time, last_updated_date, last_updated_time };
}

type Mapper = (row: Row) => Record<string, Value>;

/** For each source table: the load table it feeds and how a row maps onto it. */
const MAPPERS: Record<SourceTable, [LoadTableName, Mapper]> = {
  address: [
    'dim_location',
    (r) => ({
      location_id: r.address_id,
      address_line_1: r.address_line_1,
      address_line_2: r.address_line_2,
      district: r.district,
      city: r.city,
      postal_code: r.postal_code,
      country: r.country,
      phone: r.phone,
    }),
  ],
  department: ['totes_department', (r) => ({ department_id: r.department_id, department_name: r.department_name, location: r.location })],
  staff: [
    'dim_staff',
    (r) => ({ staff_id: r.staff_id, first_name: r.first_name, last_name: r.last_name, email_address: r.email_address, department_id: r.department_id }),
  ],
  counterparty: [
    'dim_counterparty',
    (r) => ({ counterparty_id: r.counterparty_id, counterparty_legal_name: r.counterparty_legal_name, legal_address_id: r.legal_address_id }),
  ],
  currency: ['dim_currency', (r) => ({ currency_id: r.currency_id, currency_code: r.currency_code, currency_name: currencyName(String(r.currency_code)) })],
  design: ['dim_design', (r) => ({ design_id: r.design_id, design_name: r.design_name, file_location: r.file_location, file_name: r.file_name })],
  payment_type: ['dim_payment_type', (r) => ({ payment_type_id: r.payment_type_id, payment_type_name: r.payment_type_name })],
  transaction: [
    'dim_transaction',
    (r) => ({
      transaction_id: r.transaction_id,
      transaction_type: r.transaction_type,
      sales_order_id: r.sales_order_id,
      purchase_order_id: r.purchase_order_id,
    }),
  ],
  sales_order: [
    'fact_sales_order',
    (r) => ({
      sales_order_id: r.sales_order_id,
      ...stamps(r),
      sales_staff_id: r.staff_id,
      counterparty_id: r.counterparty_id,
      units_sold: r.units_sold,
      unit_price: r.unit_price,
      currency_id: r.currency_id,
      design_id: r.design_id,
      agreed_payment_date: parseDate(r.agreed_payment_date, 'agreed_payment_date'),
      agreed_delivery_date: parseDate(r.agreed_delivery_date, 'agreed_delivery_date'),
      agreed_delivery_location_id: r.agreed_delivery_location_id,
    }),
  ],
  purchase_order: [
    'fact_purchase_order',
    (r) => ({
      purchase_order_id: r.purchase_order_id,
      ...stamps(r),
      staff_id: r.staff_id,
      counterparty_id: r.counterparty_id,
      item_code: r.item_code,
      item_quantity: r.item_quantity,
      item_unit_price: r.item_unit_price,
      currency_id: r.currency_id,
      agreed_delivery_date: parseDate(r.agreed_delivery_date, 'agreed_delivery_date'),
      agreed_payment_date: parseDate(r.agreed_payment_date, 'agreed_payment_date'),
      agreed_delivery_location_id: r.agreed_delivery_location_id,
    }),
  ],
  payment: [
    'fact_payment',
    (r) => ({
      payment_id: r.payment_id,
      ...stamps(r),
      transaction_id: r.transaction_id,
      counterparty_id: r.counterparty_id,
      payment_amount: r.payment_amount,
      currency_id: r.currency_id,
      payment_type_id: r.payment_type_id,
      paid: r.paid,
      payment_date: parseDate(r.payment_date, 'payment_date'),
    }),
  ],
};

/** Source column → load column, where the name changes (for unchanged-TOAST markers). */
const RENAMES: Partial<Record<string, string>> = { address_id: 'location_id', staff_id: 'sales_staff_id' };
const SOURCE_NAMES: Partial<Record<string, string>> = Object.fromEntries(Object.entries(RENAMES).map(([source, load]) => [load, source]));

/** Per load table, the columns whose values are copied from the source: dates and times are derived, and checked as they are. */
const COPIED = Object.fromEntries(
  Object.entries(LOAD_TABLES).map(([table, { columns }]) => [table, Object.entries(columns).filter(([, type]) => type !== 'date' && type !== 'time')]),
) as Record<LoadTableName, [string, ColumnType][]>;

export function targetOf(table: SourceTable): LoadTableName {
  return MAPPERS[table][0];
}

/**
 * The load row for one change. Unchanged TOAST columns are filled with null and listed in
 * `unchanged` so the loader keeps what it has. (Key-changing updates arrive from capture as a
 * delete of the old key and an insert of the new one, each naming the other key in `moved_key`
 * when the new one keeps the old one's unchanged TOAST columns.)
 */
export function mapEvent(event: ChangeEvent): { table: LoadTableName; row: LoadRow } {
  const [target, map] = MAPPERS[event.table];
  const pk = primaryKeyOf(event.table);
  const moved = event.movedFrom ?? event.movedTo;
  const provenance = (op: Provenance['source_op'], unchanged: string | null): Provenance => ({
    source_op: op,
    source_lsn: event.source.lsn,
    source_pos: event.source.pos,
    source_commit_time: event.source.commitTime,
    unchanged,
    moved_key: moved ? (moved[pk] as number) : null,
  });
  if (event.op === 'd') return { table: target, row: { [LOAD_TABLES[target].key]: event.before?.[pk] ?? event.key[pk], ...provenance('d', null) } as LoadRow };

  // wal2json prints a numeric NaN or ±Infinity as null: a null the source cannot hold is no value either
  for (const c in event.after) {
    if (event.after[c] === null && isNotNull(event.table, c))
      throw new MappingError(`${c}: null, but the source column is NOT NULL (as wal2json prints a numeric NaN or ±Infinity)`, c, null);
  }
  const unchangedCols = event.unchanged ?? [];
  const after = unchangedCols.length ? { ...event.after! } : event.after!; // copied only to be changed
  for (const c of unchangedCols) after[c] = null; // only text columns are TOASTed
  let mapped: Record<string, Value>;
  try {
    mapped = map(after);
  } catch (err) {
    if (err instanceof MappingError) throw err;
    throw new MappingError(`${event.table}: ${(err as Error).message}`);
  }
  // a value the warehouse column cannot hold (a numeric NaN, ±Infinity, 10^8 or more; a retyped source column's) is no value of it
  for (const [column, type] of COPIED[target]) {
    const why = refusal(type, mapped[column] ?? null);
    const source = SOURCE_NAMES[column] ?? column;
    if (why) throw new MappingError(`${source}: ${why}`, source, mapped[column]);
  }
  const unchanged = unchangedCols.length ? `,${unchangedCols.map((c) => RENAMES[c] ?? c).join(',')},` : null;
  return { table: target, row: Object.assign(mapped, provenance(event.op, unchanged)) as LoadRow }; // mapped is this row's own object
}

/** A truncate or snapshot range, as the rows of its load table it ends. */
export function mapRowsEnd(event: RowsEndEvent): RowsEnd {
  const { lsn, pos, commitTime } = event.source;
  const common = { table: targetOf(event.table), lsn, pos, commitTime };
  return event.kind === 'truncate'
    ? { ...common, cause: 'truncate', after: null, through: null, present: [] }
    : { ...common, cause: 'snapshot', after: event.after, through: event.through, present: event.present };
}

/** A change that cannot become a load row: why, and the source column and value at fault (null when no one value is). */
export interface MappingFailure {
  event: ChangeEvent;
  reason: string;
  column: string | null;
  value: Value;
}

/**
 * Group the load rows of many events by load table, and list the rows that truncates and
 * snapshot ranges end. Events that cannot be mapped are returned with the reason.
 */
export function mapEvents(events: (ChangeEvent | RowsEndEvent)[]): {
  rows: LoadRows;
  ends: RowsEnd[];
  failures: MappingFailure[];
} {
  const rows: LoadRows = {};
  const ends: RowsEnd[] = [];
  const failures: MappingFailure[] = [];
  for (const event of events) {
    if (event.kind !== 'change') {
      ends.push(mapRowsEnd(event));
      continue;
    }
    try {
      const m = mapEvent(event);
      (rows[m.table] ??= []).push(m.row);
    } catch (err) {
      if (!(err instanceof MappingError)) throw err;
      failures.push({ event, reason: err.message, column: err.column, value: err.value });
    }
  }
  return { rows, ends, failures };
}
