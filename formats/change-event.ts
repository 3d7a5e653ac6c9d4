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

export type StreamEvent = ChangeEvent | HeartbeatEvent | PointerEvent;

export class InvalidEventError extends Error {
  override name = 'InvalidEventError';
}

export function encodeEvent(event: StreamEvent): string {
  return `${JSON.stringify(event)}\n`;
}

/** Partition key that keeps every change of one row on one shard, in order. */
export function partitionKeyOf(event: Pick<ChangeEvent, 'table' | 'key'>): string {
  return `${event.table}:${event.key[primaryKeyOf(event.table)]}`;
}

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;
const OPS = new Set(['c', 'u', 'd', 'r']);

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
  if (raw.kind !== 'change' && raw.kind !== 'pointer') throw new InvalidEventError(`unknown kind ${JSON.stringify(raw.kind)}`);
  if (typeof raw.table !== 'string' || !isSourceTable(raw.table)) throw new InvalidEventError(`unknown table ${JSON.stringify(raw.table)}`);
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
  return raw as unknown as ChangeEvent;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** LSN "X/Y" as a comparable bigint. */
export function lsnToBigInt(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function bigIntToLsn(n: bigint): string {
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Orders events by (commit LSN, position). */
export function compareEventIds(a: EventSource, b: EventSource): number {
  const x = lsnToBigInt(a.lsn),
    y = lsnToBigInt(b.lsn);
  return x < y ? -1 : x > y ? 1 : a.pos - b.pos;
}
