/**
 * A micro-batch's manifest and a dead letter: what the processor writes and the loader reads,
 * as JSON objects in the processed bucket (stores/microbatch-store.ts names and keeps them).
 */
import type { LoadTableName, RowsEnd } from './load-tables.ts';

export interface Manifest {
  batchId: string;
  shard: string;
  /** The batch is every record of the shard from firstSequence to lastSequence: a contiguous read. */
  firstSequence: string;
  lastSequence: string;
  /**
   * The last record of an earlier batch that this batch's first record immediately follows on
   * the shard, as the processor read it from the stream when the records were fresh; absent
   * when it could not tell. What proves two batches contiguous once the stream has aged out.
   */
  follows?: string | null;
  events: number;
  tables: { table: LoadTableName; key: string; rows: number }[];
  /** Highest heartbeat in the batch: everything on this shard up to its LSN is in this or an earlier batch. */
  heartbeat: { lsn: string; commitTime: string } | null;
  /** Truncates and snapshot ranges in the batch (absent in manifests written before they existed). */
  ends?: RowsEnd[];
  maxCommitTime: string | null;
  deadLetters: number;
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
