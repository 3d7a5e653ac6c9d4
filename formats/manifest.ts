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

export interface DeadLetter {
  shard: string;
  sequenceNumber: string;
  reason: string;
  payload: string;
  at: string;
}

/** Kinesis sequence numbers zero-padded, so names sort in stream order. */
export const padSequence = (seq: string) => seq.padStart(60, '0');

/** Orders Kinesis sequence numbers of one shard (decimal strings of up to 128 bits). */
export function compareSequences(a: string, b: string): number {
  const x = BigInt(a),
    y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
