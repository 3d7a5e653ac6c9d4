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
import * as v from '@badrap/valita';
import { check } from './schema.ts';
import { isSourceTable, primaryKeyOf } from './source-tables.ts';

// Each shape is declared once, as the schema decodeEvent checks it with; its type is inferred.

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;
const integer = v.number().assert(Number.isInteger, 'must be an integer');
export type Value = string | number | boolean | null;
export type Row = Record<string, Value>;
// a loop, not v.record(v.union(...)): rows are most of an event, and this is the processor's hot path
const row = v.record().chain((r) => {
  for (const column in r) {
    const x = r[column];
    if (x !== null && typeof x !== 'string' && typeof x !== 'number' && typeof x !== 'boolean')
      return v.err({ message: 'must be text, a number, a boolean or null', path: [column] });
  }
  return v.ok(r as Row);
});
const sourceTable = v.string().assert(isSourceTable, 'is not a captured table');

const op = v.union(v.literal('c'), v.literal('u'), v.literal('d'), v.literal('r'));
export type Op = v.Infer<typeof op>;

const eventSource = v.object({
  /** Commit LSN of the source transaction ("00000016/B374D848"). */
  lsn: v.string().assert((s) => LSN.test(s), 'must be an LSN, hex "X/Y"'),
  /** Position of this change inside its transaction, from 0. */
  pos: v.number().assert((n) => Number.isInteger(n) && n >= 0, 'must be an integer from 0'),
  /** Source transaction id; null for snapshot reads. */
  xid: v.number().nullable(),
  /** Commit time of the source transaction, ISO 8601 UTC with microseconds. */
  commitTime: v.string().assert((s) => !Number.isNaN(Date.parse(s)), 'must be a time'),
});
export type EventSource = v.Infer<typeof eventSource>;

const changeEvent = v
  .object({
    v: v.literal(1),
    kind: v.literal('change'),
    op,
    table: sourceTable,
    /** Primary key of the row ({ "<table>_id": n }). For an update that moved the key, the new key. */
    key: row,
    /** Old values: the old key for deletes and key-changing updates (replica identity default). */
    before: row.nullable(),
    /** New values; null for deletes. */
    after: row.nullable(),
    /**
     * Columns whose value was not sent because it is an unchanged TOASTed value.
     * They are absent from `after` and mean "keep what you have", never NULL.
     */
    unchanged: v.array(v.string()).optional(),
    /**
     * A key change's unchanged TOASTed values travel with neither half (the old tuple is the key
     * alone): the insert of the new key names the old key, whose values it keeps, and the delete
     * of the old key names the new one. Absent otherwise.
     */
    movedFrom: row.optional(),
    movedTo: row.optional(),
    source: eventSource,
  })
  .chain((e) => {
    const pk = primaryKeyOf(e.table);
    if (!Number.isInteger(e.key[pk])) return v.err({ message: `must be an integer (the primary key of ${e.table})`, path: ['key', pk] });
    for (const moved of ['movedFrom', 'movedTo'] as const) {
      const other = e[moved];
      if (other !== undefined && !Number.isInteger(other[pk]))
        return v.err({ message: `must be an integer (the primary key of ${e.table})`, path: [moved, pk] });
    }
    if ((e.op === 'd') !== (e.after === null))
      return v.err({ message: e.op === 'd' ? 'must be null in a delete' : `must be the new row in op ${e.op}`, path: ['after'] });
    return v.ok(e);
  });
export type ChangeEvent = v.Infer<typeof changeEvent>;

/**
 * Emitted on every shard when a heartbeat message comes back through the WAL: everything
 * committed before `source.lsn` has already been accepted by the stream on that shard.
 * Downstream uses it as a per-shard watermark.
 *
 * The producer names the shard each copy was sent to and every shard open when it was sent, so
 * the archive (which keeps no shard ids) can tell which shards it holds up to which heartbeat
 * (replay/archive-completeness.ts). Both or neither: heartbeats archived before they were named
 * have neither.
 */
const heartbeatEvent = v
  .object({
    v: v.literal(1),
    kind: v.literal('heartbeat'),
    /** The shard this copy was sent to ("shardId-000000000001"). */
    shard: v.string().optional(),
    /** Every shard open when it was sent, this one among them. */
    openShards: v.array(v.string()).optional(),
    source: eventSource,
  })
  .chain((e) => {
    if ((e.shard === undefined) !== (e.openShards === undefined)) {
      const [missing, given] = e.shard === undefined ? ['shard', 'openShards'] : ['openShards', 'shard'];
      return v.err({ message: `must be given with ${given}`, path: [missing] });
    }
    if (e.shard !== undefined && !e.openShards!.includes(e.shard)) return v.err({ message: 'must be one of openShards', path: ['shard'] });
    return v.ok(e);
  });
export type HeartbeatEvent = v.Infer<typeof heartbeatEvent>;

/**
 * A change too large for one Kinesis record (1 MiB): the event itself is stored as an object in
 * the ingestion bucket, immutable under a name derived from (lsn, pos), and this pointer travels
 * in its place, on the same partition key. Processors and replay read the object back.
 */
const pointerEvent = v.object({
  v: v.literal(1),
  kind: v.literal('pointer'),
  table: sourceTable,
  key: row,
  object: v.object({ bucket: v.string(), key: v.string(), bytes: v.number() }),
  source: eventSource,
});
export type PointerEvent = v.Infer<typeof pointerEvent>;

/**
 * A TRUNCATE of one captured table (a statement naming several tables, or reaching them by
 * CASCADE, gives one event per table, in consecutive positions). Every row of the table that
 * exists before (source.lsn, source.pos) ends there; changes after it, in the same transaction
 * or later, are new rows. Sent on every shard, after everything written before it, since the
 * table's rows are spread over all of them.
 */
const truncateEvent = v.object({ v: v.literal(1), kind: v.literal('truncate'), table: sourceTable, source: eventSource });
export type TruncateEvent = v.Infer<typeof truncateEvent>;

/** Inclusive runs of integer keys, ascending: [[1, 4], [7, 7]] is 1, 2, 3, 4 and 7. */
const keyRunList = v
  .array(v.tuple([integer, integer]))
  .assert((runs) => runs.every(([first, last], i) => first <= last && (i === 0 || first > runs[i - 1][1])), 'must be ascending, disjoint [first, last] runs');
export type KeyRuns = v.Infer<typeof keyRunList>;

/**
 * What one snapshot chunk saw of a key range: at (source.lsn, source.pos), the keys of `table`
 * in (after, through] (null: unbounded) are exactly `present`; any other key in that range no
 * longer exists and ends there. This is how a re-snapshot (after a lost slot, or
 * `totes resnapshot`) ends rows deleted while nothing was streaming. `present` also holds the
 * keys the stream changed while the chunk was read, so a streamed change is never ended. Sent
 * on every shard, after the chunk's rows, like a truncate.
 */
const snapshotRangeEvent = v.object({
  v: v.literal(1),
  kind: v.literal('snapshot-range'),
  table: sourceTable,
  after: integer.nullable(),
  through: integer.nullable(),
  present: keyRunList,
  source: eventSource,
});
export type SnapshotRangeEvent = v.Infer<typeof snapshotRangeEvent>;

/** Events that end rows of a table at their position. */
export type RowsEndEvent = TruncateEvent | SnapshotRangeEvent;
/** Events sent on every shard, each after everything written before it. */
export type BroadcastEvent = HeartbeatEvent | RowsEndEvent;

const streamEvent = v.union(changeEvent, heartbeatEvent, pointerEvent, truncateEvent, snapshotRangeEvent);
export type StreamEvent = v.Infer<typeof streamEvent>;

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

/** Parse and check one event; throws InvalidEventError naming each field that is wrong. */
export function decodeEvent(text: string): StreamEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidEventError(`not JSON: ${(err as Error).message}`);
  }
  return check(streamEvent, raw, (message) => new InvalidEventError(message));
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
export function compareEventIds(a: Pick<EventSource, 'lsn' | 'pos'>, b: Pick<EventSource, 'lsn' | 'pos'>): number {
  return compareLsn(a.lsn, b.lsn) || a.pos - b.pos;
}
