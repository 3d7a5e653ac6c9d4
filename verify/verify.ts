/**
 * `totes verify`: the correctness oracle. Computes the star schema from the source by SQL, as
 * a batch ETL would, and compares it with the warehouse: every dimension row, the current
 * version of every fact (taken from the versions, and the `_current` views checked against
 * it), and dim_date (a row for every date a fact references, its derived columns recomputed).
 * Values are compared as the text Postgres prints, so numeric and time(3) are compared exactly.
 *
 * "At the point the warehouse has reached": verify first writes a heartbeat into the source
 * WAL (by the carrier the server's version takes: formats/source-signals.ts) and waits until
 * the warehouse watermark passes it. Rows that still differ are checked
 * again after another heartbeat, so a row that was merely in flight under live writes is not
 * reported; what still differs then is a real difference.
 *
 * It shares no code with what it checks: every derivation (data-model.md §2) is written here
 * again, from the spec, so a mistake in the processor or the loader shows up as a difference.
 *
 * A source row holding a value the warehouse cannot hold (warehouse-values.ts: a date text like
 * "TBC", a numeric NaN) is not compared: the pipeline sets its whole change aside, so the
 * warehouse keeps the row's previous version, or none. It is listed as set aside with its
 * reason, and counts as correct only when a dead letter in the processed bucket names it.
 *
 * Tombstones (tombstones.ts): every fact version recording an end holds the values of the
 * version before it, and with the raw archive every deleted dimension row holds the values its
 * source row had before it ended.
 */
import pg, { connectionConfig } from '../lib/pg.ts';
import { s3Client } from '../lib/aws.ts';
import { lsnToBigInt } from '../formats/change-event.ts';
import { HEARTBEAT_PREFIX, signalCarrier, signalStatement } from '../formats/source-signals.ts';
import { FatalError } from '../lib/fatal.ts';
import { sleep } from '../lib/retry.ts';
import { DeadLetters } from './dead-letters.ts';
import type { KeyStoreAt } from './sealed-values.ts';
import { checkTombstones } from './tombstones.ts';
import { erasedStaffIn, expectErased } from './erasures.ts';
import { type Check, currencyCode, currencyName, money, splitTimestamp, timestamp, yyyyMmDd } from './warehouse-values.ts';

export interface Difference {
  table: string;
  key: string;
  column: string;
  expected: string | null;
  found: string | null;
}
/** A source value the warehouse cannot hold: its row is not compared. */
export interface SetAside {
  /** The warehouse table the row would be in. */
  table: StarTable;
  /** Where the value is: the source table, the row's key and the column. */
  sourceTable: string;
  key: string;
  column: string;
  value: string | null;
  reason: string;
  /** The dead letter that names the row, or null when the pipeline did not account for it. */
  deadLetter: string | null;
}
export interface TableResult {
  table: StarTable;
  rows: number;
  versions?: number;
  differences: number;
  /** Source rows not compared, set aside for a value the warehouse cannot hold. */
  setAside: number;
}
export interface VerifyResult {
  /** Every compared row equal, and every row set aside named by a dead letter. */
  ok: boolean;
  tables: TableResult[];
  differences: Difference[];
  setAside: SetAside[];
  watermarkLsn: string | null;
}

type SourceRow = Record<string, string | null>;
export type Side = Map<string, SourceRow>;

/** The 11 warehouse tables, as data-model.md §2 names them. */
export const STAR_TABLES = [
  'dim_date',
  'dim_staff',
  'dim_location',
  'dim_counterparty',
  'dim_currency',
  'dim_design',
  'dim_payment_type',
  'dim_transaction',
  'fact_sales_order',
  'fact_purchase_order',
  'fact_payment',
] as const;
export type StarTable = (typeof STAR_TABLES)[number];

/** A fact's created_at and last_updated, split into the warehouse's *_date and *_time (data-model.md §2). */
function splitStamps(row: SourceRow): void {
  for (const [column, name] of [
    ['created_at', 'created'],
    ['last_updated', 'last_updated'],
  ]) {
    const [date, time] = splitTimestamp(row[column] as string) as [string, string];
    row[`${name}_date`] = date;
    row[`${name}_time`] = time;
    delete row[column];
  }
}

/** What a fact's source row must hold: finite timestamps, an amount, and YYYY-MM-DD dates. */
const factChecks = (amount: string, dates: string[]): Record<string, Check> => ({
  created_at: timestamp,
  last_updated: timestamp,
  [amount]: money,
  ...Object.fromEntries(dates.map((d) => [d, yyyyMmDd])),
});

type FactTable = 'fact_sales_order' | 'fact_purchase_order' | 'fact_payment';
/** Each fact's natural id and record id (data-model.md §2). */
const FACTS: Record<FactTable, { key: string; recordId: string }> = {
  fact_sales_order: { key: 'sales_order_id', recordId: 'sales_record_id' },
  fact_purchase_order: { key: 'purchase_order_id', recordId: 'purchase_record_id' },
  fact_payment: { key: 'payment_id', recordId: 'payment_record_id' },
};
const isFact = (table: string): table is FactTable => Object.hasOwn(FACTS, table);

/**
 * The current version of each order or payment, derived here from its versions rather than read
 * from the loader's `_current` views: the version no other comes after in (source_lsn,
 * source_pos), unless it records a delete. The views are then checked against it.
 */
function currentVersions(table: FactTable): string {
  const { key } = FACTS[table];
  return `(SELECT * FROM ${table} f WHERE NOT f.is_deleted AND NOT EXISTS (
             SELECT 1 FROM ${table} later WHERE later.${key} = f.${key} AND (later.source_lsn, later.source_pos) > (f.source_lsn, f.source_pos))) current_version`;
}

/**
 * Per table: the truth query on the source and the query on the warehouse, both keyed by column
 * `k`, the key of a row of the `source` table. The truth's `checked` columns must hold a value
 * the warehouse can (a row that does not is set aside); `derive` then finishes the row in JS.
 */
interface TableQueries {
  source: string;
  truth: string;
  warehouse: string;
  checked?: Record<string, Check>;
  derive?: (row: SourceRow) => void;
}
const QUERIES: Record<Exclude<StarTable, 'dim_date'>, TableQueries> = {
  dim_location: {
    source: 'address',
    truth: `SELECT address_id AS k, address_line_1, address_line_2, district, city, postal_code, country, phone FROM address`,
    warehouse: `SELECT location_id AS k, address_line_1, address_line_2, district, city, postal_code, country, phone FROM dim_location WHERE NOT is_deleted`,
  },
  dim_staff: {
    source: 'staff',
    truth: `SELECT s.staff_id AS k, s.first_name, s.last_name, d.department_name, d.location, s.email_address FROM staff s LEFT JOIN department d USING (department_id)`,
    warehouse: `SELECT staff_id AS k, first_name, last_name, department_name, location, email_address FROM dim_staff WHERE NOT is_deleted`,
  },
  dim_counterparty: {
    source: 'counterparty',
    truth: `SELECT c.counterparty_id AS k, c.counterparty_legal_name, a.address_line_1 AS counterparty_legal_address_line_1,
              a.address_line_2 AS counterparty_legal_address_line_2, a.district AS counterparty_legal_district, a.city AS counterparty_legal_city,
              a.postal_code AS counterparty_legal_postal_code, a.country AS counterparty_legal_country, a.phone AS counterparty_legal_phone_number
            FROM counterparty c LEFT JOIN address a ON a.address_id = c.legal_address_id`,
    warehouse: `SELECT counterparty_id AS k, counterparty_legal_name, counterparty_legal_address_line_1, counterparty_legal_address_line_2,
              counterparty_legal_district, counterparty_legal_city, counterparty_legal_postal_code, counterparty_legal_country,
              counterparty_legal_phone_number FROM dim_counterparty WHERE NOT is_deleted`,
  },
  dim_currency: {
    source: 'currency',
    truth: `SELECT currency_id AS k, currency_code FROM currency`,
    warehouse: `SELECT currency_id AS k, currency_code, currency_name FROM dim_currency WHERE NOT is_deleted`,
    checked: { currency_code: currencyCode },
    derive: (r) => {
      r.currency_name = currencyName(r.currency_code as string);
    },
  },
  dim_design: {
    source: 'design',
    truth: `SELECT design_id AS k, design_name, file_location, file_name FROM design`,
    warehouse: `SELECT design_id AS k, design_name, file_location, file_name FROM dim_design WHERE NOT is_deleted`,
  },
  dim_payment_type: {
    source: 'payment_type',
    truth: `SELECT payment_type_id AS k, payment_type_name::text FROM payment_type`,
    warehouse: `SELECT payment_type_id AS k, payment_type_name FROM dim_payment_type WHERE NOT is_deleted`,
  },
  dim_transaction: {
    source: 'transaction',
    truth: `SELECT transaction_id AS k, transaction_type::text, sales_order_id::text, purchase_order_id::text FROM transaction`,
    warehouse: `SELECT transaction_id AS k, transaction_type, sales_order_id::text, purchase_order_id::text FROM dim_transaction WHERE NOT is_deleted`,
  },
  fact_sales_order: {
    source: 'sales_order',
    truth: `SELECT sales_order_id AS k, created_at::text, last_updated::text, staff_id::text AS sales_staff_id,
              counterparty_id::text, units_sold::text, unit_price::text, currency_id::text, design_id::text,
              agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id::text FROM sales_order`,
    warehouse: `SELECT sales_order_id AS k, created_date::text, created_time::text, last_updated_date::text, last_updated_time::text,
              sales_staff_id::text, counterparty_id::text, units_sold::text, unit_price::text, currency_id::text, design_id::text,
              agreed_payment_date::text, agreed_delivery_date::text, agreed_delivery_location_id::text FROM ${currentVersions('fact_sales_order')}`,
    checked: factChecks('unit_price', ['agreed_payment_date', 'agreed_delivery_date']),
    derive: splitStamps,
  },
  fact_purchase_order: {
    source: 'purchase_order',
    truth: `SELECT purchase_order_id AS k, created_at::text, last_updated::text, staff_id::text,
              counterparty_id::text, item_code, item_quantity::text, item_unit_price::text, currency_id::text,
              agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id::text FROM purchase_order`,
    warehouse: `SELECT purchase_order_id AS k, created_date::text, created_time::text, last_updated_date::text, last_updated_time::text,
              staff_id::text, counterparty_id::text, item_code, item_quantity::text, item_unit_price::text, currency_id::text,
              agreed_delivery_date::text, agreed_payment_date::text, agreed_delivery_location_id::text FROM ${currentVersions('fact_purchase_order')}`,
    checked: factChecks('item_unit_price', ['agreed_delivery_date', 'agreed_payment_date']),
    derive: splitStamps,
  },
  fact_payment: {
    source: 'payment',
    truth: `SELECT payment_id AS k, created_at::text, last_updated::text, transaction_id::text,
              counterparty_id::text, payment_amount::text, currency_id::text, payment_type_id::text, paid::text,
              payment_date FROM payment`,
    warehouse: `SELECT payment_id AS k, created_date::text, created_time::text, last_updated_date::text, last_updated_time::text,
              transaction_id::text, counterparty_id::text, payment_amount::text, currency_id::text, payment_type_id::text, paid::text,
              payment_date::text FROM ${currentVersions('fact_payment')}`,
    checked: factChecks('payment_amount', ['payment_date']),
    derive: splitStamps,
  },
};

async function fetchSide(db: pg.ClientBase, sql: string): Promise<Side> {
  const { rows } = await db.query(sql);
  const side: Side = new Map();
  for (const r of rows) {
    const { k, ...rest } = r;
    for (const c of Object.keys(rest)) rest[c] = rest[c] === null ? null : String(rest[c]);
    side.set(String(k), rest);
  }
  return side;
}

export type Found = Omit<SetAside, 'deadLetter'>;

/**
 * Takes the rows holding a value the warehouse cannot hold out of the truth (one entry per such
 * value) and finishes the others with the table's derivation.
 */
function setAsideFrom(table: StarTable, q: TableQueries, truth: Side): Found[] {
  const found: Found[] = [];
  for (const [key, row] of truth) {
    const before = found.length;
    for (const [column, check] of Object.entries(q.checked ?? {})) {
      const reason = check(row[column]);
      if (reason) found.push({ table, sourceTable: q.source, key, column, value: row[column], reason });
    }
    if (found.length > before) truth.delete(key);
    else q.derive?.(row);
  }
  return found;
}

function diff(table: string, truth: Side, found: Side, only?: Set<string>): Difference[] {
  const out: Difference[] = [];
  for (const [k, expected] of truth) {
    if (only && !only.has(k)) continue;
    const got = found.get(k);
    if (!got) {
      out.push({ table, key: k, column: '(row)', expected: 'present', found: 'missing' });
      continue;
    }
    for (const c of Object.keys(expected)) if (expected[c] !== got[c]) out.push({ table, key: k, column: c, expected: expected[c], found: got[c] });
  }
  for (const k of found.keys()) {
    if (only && !only.has(k)) continue;
    if (!truth.has(k)) out.push({ table, key: k, column: '(row)', expected: 'absent', found: 'present' });
  }
  return out;
}

export interface VerifyOptions {
  sourceUrl: string;
  warehouseUrl: string;
  schema?: string;
  /** How long to wait for the warehouse to pass the marker (0: do not wait, compare as is). */
  waitMs?: number;
  /** Re-checks of differing rows before they are reported. */
  rechecks?: number;
  /** The processed bucket, whose dead letters account for the rows set aside (without it, none is accounted for). */
  deadLetters?: { bucket: string; s3Endpoint?: string };
  /** The raw archive's bucket, which the deleted dimension rows are checked against (tombstones.ts; without it, they are not). */
  archive?: { bucket: string; s3Endpoint?: string };
  /**
   * The key store: its bucket, whose erased subjects are expected erased in the warehouse
   * (erasures.ts; without it, an erased value is a difference), and the master key that opens
   * the personal values the archive holds sealed (sealed-values.ts; without it, one ends verify).
   */
  keys?: KeyStoreAt;
}

/**
 * Accounts for rows set aside by the dead letters in the processed bucket (none without it).
 * `close` releases the S3 client.
 */
export function deadLetterAccount(where: VerifyOptions['deadLetters']): { account: (found: Found[]) => Promise<SetAside[]>; close: () => void } {
  const s3 = where ? s3Client({ s3Endpoint: where.s3Endpoint }) : null;
  const deadLetters = s3 && where ? new DeadLetters(s3, where.bucket) : null;
  const account = async (found: Found[]): Promise<SetAside[]> => {
    if (found.length > 0)
      await deadLetters?.refresh().catch((err: Error) => {
        throw new FatalError(
          `could not read the dead letters in bucket "${where?.bucket}" (${err.message}), which account for the ${found.length} source values set aside: give the processed bucket with --bucket (and --s3-endpoint locally)`,
        );
      });
    return found.map((f) => ({ ...f, deadLetter: deadLetters?.naming(f.sourceTable, f.key) ?? null }));
  };
  return { account, close: () => s3?.destroy() };
}

/** A line per table: its rows (a fact's current versions, and all of them) as search_path finds it, and what was found. */
export async function tableResults(warehouse: pg.Client, differences: Difference[], setAside: SetAside[]): Promise<TableResult[]> {
  const tables: TableResult[] = [];
  for (const table of STAR_TABLES) {
    const { rows } = await warehouse.query(`SELECT count(*)::int AS n FROM ${table}`);
    const versions = isFact(table) ? rows[0].n : undefined;
    const current = isFact(table) ? (await warehouse.query(`SELECT count(*)::int AS n FROM ${currentVersions(table)}`)).rows[0].n : rows[0].n;
    const setAsideRows = new Set(setAside.filter((s) => s.table === table).map((s) => s.key)).size;
    tables.push({ table, rows: current, versions, differences: differences.filter((d) => d.table === table).length, setAside: setAsideRows });
  }
  return tables;
}

/** Sorts the rows set aside by source table, key and column. */
export const bySourceRow = (a: SetAside, b: SetAside) =>
  `${a.sourceTable} ${a.key} ${a.column}`.localeCompare(`${b.sourceTable} ${b.key} ${b.column}`, 'en', { numeric: true });

export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  const source = new pg.Client(connectionConfig(opts.sourceUrl));
  const warehouse = new pg.Client(connectionConfig(opts.warehouseUrl));
  const schema = opts.schema ?? 'public';
  const { account, close } = deadLetterAccount(opts.deadLetters);
  try {
    await source.connect();
    await warehouse.connect();
    // dates and timestamps are compared as text, so both sides print them alike
    await source.query(`SET DateStyle TO ISO`);
    await warehouse.query(`SET DateStyle TO ISO; SET search_path TO "${schema}"`);
    await expectLoaderState(warehouse, schema);
    const waitMs = opts.waitMs ?? 60_000;
    let watermarkLsn: string | null = null;
    const catchUp = async () => {
      if (waitMs > 0) watermarkLsn = await waitForWatermark(source, warehouse, waitMs);
    };
    await catchUp();
    const erased = await erasedStaffIn(warehouse, opts.keys);
    const first = await compareAll(source, warehouse, erased);
    let differences = first.differences;
    let setAside = await account(first.setAside);
    // a row set aside with no dead letter yet may be in flight like a difference: both are checked again
    const unsettled = () => [...differences, ...setAside.filter((s) => !s.deadLetter)];
    for (let i = 0; i < (opts.rechecks ?? 2) && unsettled().length > 0 && waitMs > 0; i++) {
      await catchUp();
      const recheck = unsettled();
      const rechecked = new Set(recheck.map(rowOf));
      const again = await compareAll(source, warehouse, erased, recheck);
      differences = again.differences;
      setAside = [...setAside.filter((s) => !rechecked.has(rowOf(s))), ...(await account(again.setAside))];
    }
    differences.push(...(await checkTombstones(warehouse, opts.archive, opts.keys)));
    setAside.sort(bySourceRow);
    const tables = await tableResults(warehouse, differences, setAside);
    const ok = differences.length === 0 && setAside.every((s) => s.deadLetter !== null);
    return { ok, tables, differences, setAside, watermarkLsn };
  } finally {
    await source.end().catch(() => undefined);
    await warehouse.end().catch(() => undefined);
    close();
  }
}

/** The warehouse schema must hold the loader's state, or it is not a warehouse the pipeline loads. */
export async function expectLoaderState(warehouse: pg.Client, schema: string): Promise<void> {
  const fresh = await warehouse.query(`SELECT to_regclass(format('%I.totes_freshness', $1::text)) AS v`, [schema]);
  if (!fresh.rows[0].v)
    throw new FatalError(`schema "${schema}" of the warehouse has no loader state (totes_freshness): is that the warehouse, and has the loader run?`);
}

/** Wait for the snapshot, then write a heartbeat into the source WAL and wait until every shard's watermark has passed it. */
async function waitForWatermark(source: pg.Client, warehouse: pg.Client, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs;
  await waitForCaptureSnapshot(source, deadline, waitMs);
  return waitForWatermarkPast(warehouse, 'totes_freshness', await writeHeartbeat(source), deadline, waitMs, 'or compare as is with --wait 0');
}

/** A snapshot still running means rows not yet sent at all: wait for it to finish. */
export async function waitForCaptureSnapshot(source: pg.Client, deadline: number, waitMs: number): Promise<void> {
  const progress = `SELECT count(*)::int AS n FROM totes_cdc.snapshot_progress WHERE NOT done`;
  const hasProgress = (await source.query(`SELECT to_regclass('totes_cdc.snapshot_progress') AS t`)).rows[0].t;
  while (hasProgress && (await source.query(progress)).rows[0].n > 0) {
    if (Date.now() > deadline)
      throw new FatalError(
        `the capture service's snapshot did not finish within ${waitMs / 1000}s (see totes_cdc.snapshot_progress): is capture running? Or give it longer with --wait`,
      );
    await sleep(200);
  }
}

/** Writes a heartbeat into the source WAL; returns a position at or before its commit. */
export async function writeHeartbeat(source: pg.Client): Promise<string> {
  const { rows } = await source.query(await heartbeatStatement(source));
  return rows[0].lsn;
}

/** Waits until the warehouse's watermark (read from `freshness`) is at or past `lsn`; returns it. */
export async function waitForWatermarkPast(
  warehouse: pg.Client,
  freshness: string,
  lsn: string,
  deadline: number,
  waitMs: number,
  orElse: string,
): Promise<string> {
  const marker = lsnToBigInt(lsn);
  for (;;) {
    const w = await warehouse.query(`SELECT watermark_lsn::text AS lsn FROM ${freshness}`);
    const watermark: string | null = w.rows[0]?.lsn ?? null;
    if (watermark && lsnToBigInt(watermark) >= marker) return watermark;
    if (Date.now() > deadline)
      throw new FatalError(
        `the warehouse did not reach source LSN ${lsn} within ${waitMs / 1000}s (its watermark: ${watermark ?? 'none'}), so nothing was compared: is the pipeline running? Or give it longer with --wait, ${orElse}`,
      );
    await sleep(200);
  }
}

/** A heartbeat by the carrier this server's pgoutput decodes: a logical message on 14+, a signal-table row on 13. */
async function heartbeatStatement(source: pg.Client): Promise<{ text: string; values: string[] }> {
  const { rows } = await source.query(`SELECT current_setting('server_version_num')::int AS v`);
  return signalStatement(signalCarrier(rows[0].v), 'verify', { kind: HEARTBEAT_PREFIX, content: 'verify' });
}

const rowOf = (r: { table: string; key: string }) => `${r.table} ${r.key}`;

type Rows = { table: string; key: string }[];
/** The keys of `table` among `only`, or undefined when every row is compared. */
const keysIn = (only: Rows | undefined) => (table: string) => (only ? new Set(only.filter((d) => d.table === table).map((d) => d.key)) : undefined);

/** The star computed from the source: each table's rows (derived), the rows set aside, and every date the facts reference. */
export interface Truth {
  tables: Partial<Record<StarTable, Side>>;
  setAside: Found[];
  referencedDates: Set<string>;
}

/** The truth in `source`'s current snapshot: of every table, or with `only` just those rows (and dim_date when it is among them). */
export async function readTruth(source: pg.ClientBase, only?: Rows): Promise<Truth> {
  const keysOf = keysIn(only);
  const checkingDates = keysOf('dim_date')?.size !== 0;
  const truth: Truth = { tables: {}, setAside: [], referencedDates: new Set() };
  for (const [table, q] of Object.entries(QUERIES) as [StarTable, TableQueries][]) {
    const keys = keysOf(table);
    if (keys?.size === 0 && !(checkingDates && isFact(table))) continue;
    const rows = await fetchSide(source, q.truth);
    const aside = setAsideFrom(table, q, rows);
    // dim_date must hold every date a true fact references (data-model.md §2)
    if (isFact(table))
      for (const r of rows.values()) for (const [c, v] of Object.entries(r)) if (c.endsWith('_date') && v !== null) truth.referencedDates.add(v);
    if (keys?.size === 0) continue;
    truth.setAside.push(...aside.filter((s) => !keys || keys.has(s.key)));
    truth.tables[table] = rows;
  }
  return truth;
}

/** The warehouse (as search_path finds its tables) against `truth`, row by row. */
export async function compareWith(warehouse: pg.Client, truth: Truth, only?: Rows): Promise<Difference[]> {
  const keysOf = keysIn(only);
  const differences: Difference[] = [];
  for (const [table, rows] of Object.entries(truth.tables) as [Exclude<StarTable, 'dim_date'>, Side][]) {
    const found = await fetchSide(warehouse, QUERIES[table].warehouse);
    // what the warehouse holds for a row set aside is its previous version, or none: not compared
    for (const s of truth.setAside) if (s.table === table) found.delete(s.key);
    differences.push(...diff(table, rows, found, keysOf(table)));
  }
  if (keysOf('dim_date')?.size !== 0) differences.push(...(await checkDates(warehouse, truth.referencedDates)));
  return differences;
}

/** Compares every table, or with `only` just those rows, and each fact's `_current` view against its versions. */
async function compareAll(
  source: pg.Client,
  warehouse: pg.Client,
  erased: Set<string>,
  only?: Rows,
): Promise<{ differences: Difference[]; setAside: Found[] }> {
  await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const truth = await readTruth(source, only).finally(() => source.query('COMMIT'));
  expectErased(truth.tables.dim_staff, erased);
  const differences = await compareWith(warehouse, truth, only);
  const keysOf = keysIn(only);
  // each view against the versions in one snapshot, so a load committing in between is no difference
  await warehouse.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    for (const [table, { key, recordId }] of Object.entries(FACTS)) {
      const view = `${table}_current`;
      const keys = keysOf(view);
      if (keys?.size === 0) continue;
      const derived = await fetchSide(warehouse, `SELECT ${key} AS k, ${recordId}::text FROM ${currentVersions(table as FactTable)}`);
      differences.push(...diff(view, derived, await fetchSide(warehouse, `SELECT ${key} AS k, ${recordId}::text FROM ${view}`), keys));
    }
  } finally {
    await warehouse.query('COMMIT');
  }
  return { differences, setAside: truth.setAside };
}

/** dim_date: a row for every referenced date, and the derived columns recomputed independently in JS (ISO weekday, English names). */
async function checkDates(warehouse: pg.Client, referenced: Set<string>): Promise<Difference[]> {
  const { rows } = await warehouse.query(`SELECT date_id::text AS d, year, month, day, day_of_week, day_name, month_name, quarter FROM dim_date`);
  const present = new Set(rows.map((r) => r.d as string));
  const out: Difference[] = [...referenced]
    .filter((d) => !present.has(d))
    .sort()
    .map((d) => ({ table: 'dim_date', key: d, column: '(row)', expected: 'present', found: 'missing' }));
  for (const r of rows) {
    const date = new Date(`${r.d}T00:00:00Z`);
    const expected: Record<string, string> = {
      year: String(date.getUTCFullYear()),
      month: String(date.getUTCMonth() + 1),
      day: String(date.getUTCDate()),
      day_of_week: String(((date.getUTCDay() + 6) % 7) + 1),
      day_name: date.toLocaleDateString('en-GB', { weekday: 'long', timeZone: 'UTC' }),
      month_name: date.toLocaleDateString('en-GB', { month: 'long', timeZone: 'UTC' }),
      quarter: String(Math.floor(date.getUTCMonth() / 3) + 1),
    };
    for (const [c, v] of Object.entries(expected))
      if (String(r[c]) !== v) out.push({ table: 'dim_date', key: r.d, column: c, expected: v, found: String(r[c]) });
  }
  return out;
}

/** At most `max` lines, then how many more there are. */
function listed(lines: string[], max: number): string {
  return [...lines.slice(0, max), ...(lines.length > max ? [`  … and ${lines.length - max} more`] : [])].join('\n');
}

export function formatDifferences(diffs: Difference[], max = 50): string {
  return listed(
    diffs.map((d) => `  ${d.table}  key=${d.key}  ${d.column}: expected ${JSON.stringify(d.expected)}, found ${JSON.stringify(d.found)}`),
    max,
  );
}

/**
 * The rows set aside, one value a line: where it is, what it holds, why, and the dead letter
 * that accounts for it; those with none first, so no limit hides them.
 */
export function formatSetAside(rows: SetAside[], max = 50): string {
  const accounted = (s: SetAside) => (s.deadLetter ? 1 : 0);
  return listed(
    [...rows]
      .sort((a, b) => accounted(a) - accounted(b))
      .map(
        (s) =>
          `  ${s.sourceTable}  key=${s.key}  ${s.column}: ${JSON.stringify(s.value)}, ${s.reason}; ${s.deadLetter ? `dead letter ${s.deadLetter}` : 'NO DEAD LETTER'}`,
      ),
    max,
  );
}
