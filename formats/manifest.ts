/**
 * A micro-batch's manifest and a dead letter: what the processor writes and the loader reads,
 * as JSON objects in the processed bucket (stores/microbatch-store.ts names and keeps them).
 */
import * as v from '@badrap/valita';
import { LOAD_TABLES, type LoadTableName, type RowsEnd } from './load-tables.ts';
import { check } from './schema.ts';

const count = v.number().assert((n) => Number.isInteger(n) && n >= 0, 'must be a count');
/** A Kinesis sequence number: a decimal string. */
const sequence = v.string().assert((s) => /^\d+$/.test(s), 'must be a sequence number');
const loadTableName = v.string().assert((t): t is LoadTableName => Object.hasOwn(LOAD_TABLES, t), 'is not a load table');
// typed as RowsEnd: a field added there and not here fails the type check
const rowsEnd: v.Type<RowsEnd> = v.object({
  table: loadTableName,
  cause: v.union(v.literal('truncate'), v.literal('snapshot')),
  lsn: v.string(),
  pos: count,
  commitTime: v.string(),
  after: v.number().nullable(),
  through: v.number().nullable(),
  present: v.array(v.tuple([v.number(), v.number()])),
});

const manifest = v.object({
  batchId: v.string(),
  shard: v.string(),
  /** The batch is every record of the shard from firstSequence to lastSequence: a contiguous read. */
  firstSequence: sequence,
  lastSequence: sequence,
  /**
   * The last record of an earlier batch that this batch's first record immediately follows on
   * the shard, as the processor read it from the stream when the records were fresh; absent
   * when it could not tell. What proves two batches contiguous once the stream has aged out.
   */
  follows: sequence.nullable().optional(),
  events: count,
  tables: v.array(v.object({ table: loadTableName, key: v.string(), rows: count })),
  /** Highest heartbeat in the batch: everything on this shard up to its LSN is in this or an earlier batch. */
  heartbeat: v.object({ lsn: v.string(), commitTime: v.string() }).nullable(),
  /** Truncates and snapshot ranges in the batch (absent in manifests written before they existed). */
  ends: v.array(rowsEnd).optional(),
  maxCommitTime: v.string().nullable(),
  deadLetters: count,
});
export type Manifest = v.Infer<typeof manifest>;

/** The manifest stored as `text` under `name`; throws naming the object and each field that is wrong. */
export function decodeManifest(text: string, name: string): Manifest {
  const fail = (problem: string) => new Error(`manifest ${name}: ${problem}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw fail(`not JSON: ${(err as Error).message}`);
  }
  return check(manifest, raw, fail);
}

/** One record's events that could not become warehouse rows, set aside whole: the rest of its batch goes on. */
export interface DeadLetter {
  shard: string;
  sequenceNumber: string;
  /** Each set-aside event's reason, in order, joined by "; ". */
  reason: string;
  /** The set-aside events' lines, in order. */
  payload: string;
  /** The set-aside events, in order (absent in dead letters written before it existed). */
  setAside?: SetAside[];
  at: string;
}

/**
 * One event set aside: the source row it changes (null where a malformed event does not say),
 * the source column and value at fault (null where no one value is: a malformed event), and why.
 */
export interface SetAside {
  table: string | null;
  key: number | null;
  column: string | null;
  value: unknown;
  reason: string;
}

/** Kinesis sequence numbers zero-padded, so names sort in stream order. */
export const padSequence = (seq: string) => seq.padStart(60, '0');

/** Orders Kinesis sequence numbers of one shard (decimal strings of up to 128 bits). */
export function compareSequences(a: string, b: string): number {
  const x = BigInt(a),
    y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
