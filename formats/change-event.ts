/**
 * The change-event contract: the only thing that crosses from capture to processors.
 *
 * Debezium-style envelope. Values are exactly what Postgres prints for them:
 *   integers and booleans as JSON numbers/booleans, numeric and int8 as strings,
 *   timestamp(3) as its text form ("2024-05-01 09:15:02.123", or no fraction on a whole
 *   second), enums as their label, dates as "YYYY-MM-DD". No value is ever shifted by a
 *   time zone or passed through a float.
 *
 * Every event is identified by (source.lsn, source.pos): the commit LSN of its transaction
 * and its position inside that transaction. Snapshot reads carry the position of the
 * high-watermark message their chunk was emitted at (see capture/chunked-snapshot.ts).
 * LSNs are written as pg-logical-replication prints them ("00000000/016B3748" from the
 * stream); compare them with lsnToBigInt, never as text.
 *
 * On the wire an event is one JSON object followed by "\n" (Firehose concatenates records
 * verbatim, so the newline is what keeps the archive valid NDJSON).
 *
 * A Kinesis record holds one or more events (a bundle): consecutive changes of the rows that
 * share its route (capture routes rows by hash bucket, so a row's changes are always on one shard),
 * each its own line, in the order they happened (encodeRecord, recordLines). Bundling is how a hot
 * row (a thousand updates in one transaction) costs one PutRecords round trip and not a thousand.
 * Each event keeps its own (lsn, pos), so whatever identifies a change downstream (the loader's
 * de-duplication, fact versions) is the same bundled or not; a record's Kinesis sequence number
 * names the record, so a bundle is accepted, read, retried and checkpointed whole. The archive is
 * the records concatenated, so it stays one event per line.
 */
import { isSourceTable, primaryKeyOf, type SourceTable } from './source-tables.ts';

export type Op = 'c' | 'u' | 'd' | 'r';
export type Value = string | number | boolean | null;
export type Row = Record<string, Value>;

export interface EventSource {
  /** Commit LSN of the source transaction ("00000016/B374D848"). */
  lsn: string;
  /** Position of this change inside its transaction, from 0. */
  pos: number;
  /** Source transaction id; null for snapshot reads. */
  xid: number | null;
  /** Commit time of the source transaction, ISO 8601 UTC with microseconds. */
  commitTime: string;
}

export interface ChangeEvent {
  v: 1;
  kind: 'change';
  op: Op;
  table: SourceTable;
  /** Primary key of the row ({ "<table>_id": n }). For an update that moved the key, the new key. */
  key: Row;
  /** Old values: the old key for deletes and key-changing updates (replica identity default). */
  before: Row | null;
  /** New values; null for deletes. */
  after: Row | null;
  /**
   * Columns whose value was not sent because it is an unchanged TOASTed value.
   * They are absent from `after` and mean "keep what you have", never NULL.
   */
  unchanged?: string[];
  /**
   * A key change's unchanged TOASTed values travel with neither half (the old tuple is the key
   * alone): the insert of the new key names the old key, whose values it keeps, and the delete
   * of the old key names the new one. Absent otherwise.
   */
  movedFrom?: Row;
  movedTo?: Row;
  source: EventSource;
}

/**
 * Emitted on every shard when a heartbeat message comes back through the WAL: everything
 * committed before `source.lsn` has already been accepted by the stream on that shard.
 * Downstream uses it as a per-shard watermark.
 */
export interface HeartbeatEvent {
  v: 1;
  kind: 'heartbeat';
  source: EventSource;
}

/**
 * A change too large for one Kinesis record (1 MiB): the event itself is stored as an object in
 * the ingestion bucket, immutable under a name derived from (lsn, pos), and this pointer travels
 * in its place, on the same partition key. Processors and replay read the object back.
 */
export interface PointerEvent {
  v: 1;
  kind: 'pointer';
  table: SourceTable;
  key: Row;
  object: { bucket: string; key: string; bytes: number };
  source: EventSource;
}

/**
 * A TRUNCATE of one captured table (a statement naming several tables, or reaching them by
 * CASCADE, gives one event per table, in consecutive positions). Every row of the table that
 * exists before (source.lsn, source.pos) ends there; changes after it, in the same transaction
 * or later, are new rows. Sent on every shard, after everything written before it, since the
 * table's rows are spread over all of them.
 */
export interface TruncateEvent {
  v: 1;
  kind: 'truncate';
  table: SourceTable;
  source: EventSource;
}

/** Inclusive runs of integer keys, ascending: [[1, 4], [7, 7]] is 1, 2, 3, 4 and 7. */
export type KeyRuns = [number, number][];

/**
 * What one snapshot chunk saw of a key range: at (source.lsn, source.pos), the keys of `table`
 * in (after, through] (null: unbounded) are exactly `present`; any other key in that range no
 * longer exists and ends there. This is how a re-snapshot (after a lost slot, or
 * `totes resnapshot`) ends rows deleted while nothing was streaming. `present` also holds the
 * keys the stream changed while the chunk was read, so a streamed change is never ended. Sent
 * on every shard, after the chunk's rows, like a truncate.
 */
export interface SnapshotRangeEvent {
  v: 1;
  kind: 'snapshot-range';
  table: SourceTable;
  after: number | null;
  through: number | null;
  present: KeyRuns;
  source: EventSource;
}

/** Events that end rows of a table at their position. */
export type RowsEndEvent = TruncateEvent | SnapshotRangeEvent;
/** Events sent on every shard, each after everything written before it. */
export type BroadcastEvent = HeartbeatEvent | RowsEndEvent;

export type StreamEvent = ChangeEvent | HeartbeatEvent | PointerEvent | RowsEndEvent;

export function isBroadcast(event: StreamEvent): event is BroadcastEvent {
  return event.kind === 'heartbeat' || event.kind === 'truncate' || event.kind === 'snapshot-range';
}

/** Sorted distinct integer keys → inclusive runs. */
export function keyRuns(sortedKeys: readonly number[]): KeyRuns {
  const runs: KeyRuns = [];
  for (const k of sortedKeys) {
    const last = runs.at(-1);
    if (last && k <= last[1] + 1) last[1] = Math.max(last[1], k);
    else runs.push([k, k]);
  }
  return runs;
}

export class InvalidEventError extends Error {
  override name = 'InvalidEventError';
}

export function encodeEvent(event: StreamEvent): string {
  return `${JSON.stringify(event)}\n`;
}

/** Event lines → the data of one record, in order. */
export function encodeRecord(lines: readonly string[]): string {
  return lines.join('');
}

/** The event lines of one record's data (one line for an unbundled record), in order. */
export function recordLines(data: string): string[] {
  const lines = data.split('\n');
  // every event ends in "\n", so the last piece is empty; text after the last newline is kept, to be refused
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/** Every event of one record, in order; throws InvalidEventError naming the line that is wrong. */
export function decodeRecord(data: string): StreamEvent[] {
  const lines = recordLines(data);
  return lines.map((line, i) => {
    try {
      return decodeEvent(line);
    } catch (err) {
      if (err instanceof InvalidEventError && lines.length > 1) throw new InvalidEventError(`event ${i + 1} of ${lines.length}: ${err.message}`);
      throw err;
    }
  });
}

/** Partition key that keeps every change of one row on one shard, in order. */
export function partitionKeyOf(event: Pick<ChangeEvent, 'table' | 'key'>): string {
  return `${event.table}:${event.key[primaryKeyOf(event.table)]}`;
}

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;
const OPS = new Set(['c', 'u', 'd', 'r']);
const KINDS = new Set(['change', 'pointer', 'truncate', 'snapshot-range']);

/** Parse and validate one event; throws InvalidEventError saying what is wrong. */
export function decodeEvent(text: string): StreamEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidEventError(`not JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new InvalidEventError('not a JSON object');
  if (raw.v !== 1) throw new InvalidEventError(`unsupported envelope version ${JSON.stringify(raw.v)}`);
  const source = raw.source;
  if (!isObject(source)) throw new InvalidEventError('missing source');
  if (typeof source.lsn !== 'string' || !LSN.test(source.lsn)) throw new InvalidEventError(`bad source.lsn ${JSON.stringify(source.lsn)}`);
  if (!Number.isInteger(source.pos) || (source.pos as number) < 0) throw new InvalidEventError('bad source.pos');
  if (typeof source.commitTime !== 'string' || Number.isNaN(Date.parse(source.commitTime))) throw new InvalidEventError('bad source.commitTime');
  if (raw.kind === 'heartbeat') return raw as unknown as HeartbeatEvent;
  if (!KINDS.has(raw.kind as string)) throw new InvalidEventError(`unknown kind ${JSON.stringify(raw.kind)}`);
  if (typeof raw.table !== 'string' || !isSourceTable(raw.table)) throw new InvalidEventError(`unknown table ${JSON.stringify(raw.table)}`);
  if (raw.kind === 'truncate') return raw as unknown as TruncateEvent;
  if (raw.kind === 'snapshot-range') return validRange(raw);
  if (raw.kind === 'pointer') {
    const o = raw.object;
    if (!isObject(o) || typeof o.bucket !== 'string' || typeof o.key !== 'string') throw new InvalidEventError('pointer without object.bucket and object.key');
    return raw as unknown as PointerEvent;
  }
  if (typeof raw.op !== 'string' || !OPS.has(raw.op)) throw new InvalidEventError(`bad op ${JSON.stringify(raw.op)}`);
  const pk = primaryKeyOf(raw.table);
  if (!isObject(raw.key) || !Number.isInteger(raw.key[pk])) throw new InvalidEventError(`key.${pk} missing or not an integer`);
  if (raw.op === 'd' ? raw.after !== null : !isObject(raw.after))
    throw new InvalidEventError(`op ${raw.op} with ${raw.after === null ? 'no' : 'an'} after image`);
  if (raw.before !== null && !isObject(raw.before)) throw new InvalidEventError('before is neither null nor an object');
  for (const moved of ['movedFrom', 'movedTo'] as const) {
    const other = raw[moved];
    if (other !== undefined && !(isObject(other) && Number.isInteger(other[pk]))) throw new InvalidEventError(`${moved}.${pk} missing or not an integer`);
  }
  return raw as unknown as ChangeEvent;
}

function validRange(raw: Record<string, unknown>): SnapshotRangeEvent {
  const bound = (b: unknown) => b === null || Number.isInteger(b);
  if (!bound(raw.after) || !bound(raw.through)) throw new InvalidEventError('snapshot-range: after and through must be integers or null');
  const present = raw.present;
  let previous = -Infinity;
  const ascending = (run: unknown) => {
    if (!Array.isArray(run) || run.length !== 2 || !Number.isInteger(run[0]) || !Number.isInteger(run[1])) return false;
    const ok = run[0] > previous && run[0] <= run[1];
    previous = run[1];
    return ok;
  };
  if (!Array.isArray(present) || !present.every(ascending))
    throw new InvalidEventError('snapshot-range: present must be ascending, disjoint [first, last] integer runs');
  return raw as unknown as SnapshotRangeEvent;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** LSN "X/Y" as a comparable bigint. */
export function lsnToBigInt(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

/**
 * Compare two LSNs, in either text form, without allocating: negative, 0 or positive. Each half
 * is at most 32 bits, so it reads to an exact number.
 */
export function compareLsn(a: string, b: string): number {
  if (a === b) return 0;
  const i = a.indexOf('/'),
    j = b.indexOf('/');
  return hexValue(a, 0, i) - hexValue(b, 0, j) || hexValue(a, i + 1, a.length) - hexValue(b, j + 1, b.length);
}

/** The hex digits of `s` from `start` to `end` as a number (of either case). */
function hexValue(s: string, start: number, end: number): number {
  let n = 0;
  for (let k = start; k < end; k++) {
    const c = s.charCodeAt(k);
    n = n * 16 + (c <= 57 ? c - 48 : (c | 32) - 87);
  }
  return n;
}

export function bigIntToLsn(n: bigint): string {
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Orders events by (commit LSN, position). */
export function compareEventIds(a: EventSource, b: EventSource): number {
  return compareLsn(a.lsn, b.lsn) || a.pos - b.pos;
}
