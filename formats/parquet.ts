/**
 * Load rows ⇄ Parquet, with real logical types: DECIMAL(10,2) from exact unscaled integers,
 * DATE, TIME(millis). hyparquet-writer/hyparquet replace parquetjs-lite, which has no DECIMAL
 * and cannot read its own TIMESTAMP_MILLIS (measurement in the README).
 */
import { parquetReadObjects } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { LOAD_TABLES, PROVENANCE_COLUMNS, type ColumnType, type LoadRow, type LoadTableName, type LoadValue } from './load-tables.ts';

type SchemaElement = NonNullable<Parameters<typeof parquetWriteBuffer>[0]['schema']>[number];

const DAY_MS = 86_400_000;

/** A column's schema element; REQUIRED when this file holds no null in it, which spares a reader its definition levels. */
function element(name: string, type: ColumnType, nullable: boolean): SchemaElement {
  const base = { name, repetition_type: nullable ? ('OPTIONAL' as const) : ('REQUIRED' as const) };
  switch (type) {
    case 'int':
      return { ...base, type: 'INT32' };
    case 'text':
      return { ...base, type: 'BYTE_ARRAY', converted_type: 'UTF8' };
    case 'money':
      return { ...base, type: 'INT64', converted_type: 'DECIMAL', precision: 10, scale: 2 };
    case 'date':
      return { ...base, type: 'INT32', converted_type: 'DATE' };
    case 'time':
      return { ...base, type: 'INT32', converted_type: 'TIME_MILLIS' };
    case 'bool':
      return { ...base, type: 'BOOLEAN' };
  }
}

/** Every column of a load table with its type: business columns, then provenance. */
export function loadColumns(table: LoadTableName): [string, ColumnType][] {
  return [...Object.entries(LOAD_TABLES[table].columns), ...Object.entries(PROVENANCE_COLUMNS)] as [string, ColumnType][];
}

const MONEY = /^(-?)(\d+)(?:\.(\d{1,2}))?$/;
/** Integer digits a float64 holds exactly after scaling by 100 (2^53 > 10^15). */
const EXACT_MONEY_DIGITS = 13;

/** "1234.50" → 123450n, exactly. */
export function moneyToUnscaled(text: string): bigint {
  const m = MONEY.exec(text);
  if (!m) throw new Error(`not a numeric(10,2): ${JSON.stringify(text)}`);
  const fraction = m[3] === undefined ? 0 : m[3].length === 1 ? +m[3] * 10 : +m[3];
  // Below 10^13 the cents fit a float64 exactly; one BigInt instead of three.
  const cents = m[2].length <= EXACT_MONEY_DIGITS ? BigInt(+m[2] * 100 + fraction) : BigInt(m[2]) * 100n + BigInt(fraction);
  return m[1] ? -cents : cents;
}

/** numeric(10,2) holds magnitudes below 10^8, that is 10^10 cents. */
const NUMERIC_10_2_LIMIT = 10_000_000_000n;

/** "1234.50" → 123450n, refusing what the warehouse's numeric(10,2) cannot hold: NaN, ±Infinity, 8 integer digits or more. */
function warehouseMoney(text: string): bigint {
  const cents = moneyToUnscaled(text);
  if (cents >= NUMERIC_10_2_LIMIT || cents <= -NUMERIC_10_2_LIMIT) throw new Error(`out of numeric(10,2) range: ${JSON.stringify(text)}`);
  return cents;
}

export function unscaledToMoney(cents: bigint): string {
  const negative = cents < 0n;
  const s = (negative ? -cents : cents).toString().padStart(3, '0');
  return `${negative ? '-' : ''}${s.slice(0, -2)}.${s.slice(-2)}`;
}

const TIME = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

/** "09:15:02.123" → milliseconds since midnight (digits past the millisecond are dropped, not rounded). */
export function timeToMillis(text: string): number {
  const m = TIME.exec(text);
  if (!m) throw new Error(`not a time: ${JSON.stringify(text)}`);
  const f = m[4];
  const millis = f === undefined ? 0 : f.length >= 3 ? +f.slice(0, 3) : f.length === 2 ? +f * 10 : +f * 100;
  return ((+m[1] * 60 + +m[2]) * 60 + +m[3]) * 1000 + millis;
}

export function millisToTime(ms: number): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}.${pad(ms % 1000, 3)}`;
}

const dateToDays = (text: string) => Math.round(Date.parse(`${text}T00:00:00Z`) / DAY_MS);

const CONVERT: Partial<Record<ColumnType, (text: string) => unknown>> = { money: warehouseMoney, date: dateToDays, time: timeToMillis };

/** The types written as they are: which values each takes, and what to call them. */
const PLAIN: Partial<Record<ColumnType, [fits: (v: LoadValue) => boolean, expected: string]>> = {
  int: [(v) => typeof v === 'number' && (v | 0) === v, 'a 32-bit integer'],
  text: [(v) => typeof v === 'string', 'text'],
  bool: [(v) => typeof v === 'boolean', 'a boolean'],
};

/**
 * Why `value` cannot go into a column of `type`, or null when it can: what the writer below
 * takes, which is what the warehouse's columns hold (numeric(10,2) has no NaN or ±Infinity and
 * stays below 10^8; int is 32 bits). A row with such a value is set aside before it is written.
 */
export function refusal(type: ColumnType, value: LoadValue): string | null {
  if (value === null) return null;
  const plain = PLAIN[type];
  if (plain) return plain[0](value) ? null : `not ${plain[1]}: ${JSON.stringify(value)}`;
  try {
    CONVERT[type]!(String(value));
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The value cached under `key`, made once. */
function cached<K, V>(cache: Map<K, V>, key: K, make: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    cache.set(key, value);
  }
  return value;
}

/**
 * One column's values as the writer takes them. Converted types go through a cache: a batch's
 * dates and prices repeat, and each distinct text is parsed once.
 */
function columnValues(type: ColumnType, name: string, rows: LoadRow[]): unknown[] {
  const values = new Array(rows.length);
  const convert = CONVERT[type];
  if (!convert) {
    for (let i = 0; i < rows.length; i++) values[i] = rows[i][name] ?? null;
    return values;
  }
  const seen = new Map<string, unknown>();
  for (let i = 0; i < rows.length; i++) {
    const v = rows[i][name];
    if (v === null || v === undefined) {
      values[i] = null;
      continue;
    }
    const text = String(v);
    values[i] = cached(seen, text, () => convert(text));
  }
  return values;
}

export function encodeParquet(table: LoadTableName, rows: LoadRow[]): Uint8Array {
  const columns = loadColumns(table);
  const columnData = columns.map(([name, type]) => ({ name, data: columnValues(type, name, rows) }));
  const schema: SchemaElement[] = [
    { name: 'root', num_children: columns.length },
    ...columns.map(([n, t], i) => element(n, t, rows.length === 0 || columnData[i].data.includes(null))),
  ];
  return new Uint8Array(parquetWriteBuffer({ columnData: columnData as never, schema, kvMetadata: [{ key: 'totes.load_table', value: table }] }));
}

/** Files larger than this are decoded a column chunk per turn of the event loop. */
const DECODE_IN_TURNS_BYTES = 128 * 1024;

/**
 * A file's load rows. A large file's column chunks are each handed to the decoder on a turn of
 * the event loop of their own, so decoding never holds the loop for long: a COPY the loader is
 * streaming meanwhile keeps its socket fed. A small one decodes at once (a turn each would wait
 * behind whatever else the loop has to do, for no gain).
 */
export async function decodeParquet(table: LoadTableName, bytes: Uint8Array): Promise<LoadRow[]> {
  const whole = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let turn = Promise.resolve();
  const file =
    whole.byteLength <= DECODE_IN_TURNS_BYTES
      ? whole
      : {
          byteLength: whole.byteLength,
          slice: (start: number, end?: number) => {
            turn = turn.then(() => new Promise<void>((next) => setImmediate(next)));
            return turn.then(() => whole.slice(start, end));
          },
        };
  // a file's dates and times repeat: each distinct one is formatted once
  const dates = new Map<number, string>();
  const times = new Map<number, string>();
  const rows = (await parquetReadObjects({
    file,
    parsers: { dateFromDays: (days: number) => cached(dates, days, () => new Date(days * DAY_MS).toISOString().slice(0, 10)) } as never,
  })) as Record<string, unknown>[];
  const types = loadColumns(table);
  // a column a file does not have (written before it existed) is null; only money and time need converting
  const absent = rows.length > 0 ? types.filter(([name]) => !(name in rows[0])).map(([name]) => name) : [];
  const converted = types.filter(([, type]) => type === 'money' || type === 'time');
  for (const row of rows) {
    for (const name of absent) row[name] = null;
    for (const [name, type] of converted) {
      const v = row[name];
      if (v === null || v === undefined) {
        row[name] = null;
        continue;
      }
      // DECIMAL(10,2) arrives as a float of at most 10 significant digits: toFixed(2) recovers it exactly.
      if (type === 'money') row[name] = (v as number).toFixed(2);
      else if (type === 'time') {
        const ms = Number(v);
        row[name] = cached(times, ms, () => millisToTime(ms));
      }
    }
  }
  return rows as LoadRow[];
}
