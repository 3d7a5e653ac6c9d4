/**
 * What the Kinesis producer sends next, with several PutRecords calls in flight and every row's
 * changes kept in order. Pure: no I/O, no timers (kinesis-sink.ts drives it).
 *
 * Records are ordered by a key: a row's hash bucket (routeOf), or a broadcast copy's shard.
 * - Bundling: a change joins the last unsent record of its key while that record stays within
 *   the record limit, so a hot row travels as a few large records, its changes in order, and
 *   rows of one bucket share records while their bucket waits for a call.
 * - Order: a key is in at most one call at a time. A batch takes a key's earliest unsent record
 *   only when no record of that key is in flight (a record whose call failed stays in flight until
 *   its retry is accepted), so a retried record is never overtaken by a later change of its row.
 *   Keys not in flight go on in other calls meanwhile.
 * - Acceptance: every event has an index; `acceptedThrough` is the highest index such that it and
 *   every index before it are in accepted records. It never passes an event Kinesis has not
 *   taken, whichever calls finish first.
 * - Memory: a record is held as its event lines while it waits, and as its data alone once taken
 *   (the lines are let go), until accepted. `bytesHeld` counts both, which is what the producer
 *   bounds its writers by.
 */
import { createHash } from 'node:crypto';
import { encodeRecord } from '../formats/change-event.ts';

const HASH_SPACE = 1n << 128n;

/**
 * Where a row's records go: the row's hash bucket, one of `buckets` equal slices of Kinesis's
 * 128-bit hash space (the MD5 of its partition key, as Kinesis hashes it), sent with the
 * bucket's midpoint as ExplicitHashKey. A bucket is one point of the hash space, so it is on
 * exactly one shard at any time, before and after a reshard, and every record of a row carries
 * the same point: a row's changes stay on one shard, in order, as with its own partition key.
 * The changes of rows sharing a bucket can then travel in one record. `buckets` 0: each row is
 * routed by its own partition key and records hold one row's changes.
 */
export function routeOf(rowKey: string, buckets: number): { partitionKey: string; explicitHashKey?: string } {
  if (buckets === 0) return { partitionKey: rowKey };
  const hash = BigInt(`0x${createHash('md5').update(rowKey).digest('hex')}`);
  const bucket = (hash * BigInt(buckets)) / HASH_SPACE;
  const midpoint = ((2n * bucket + 1n) * HASH_SPACE) / (2n * BigInt(buckets));
  return { partitionKey: `rows-${bucket}`, explicitHashKey: midpoint.toString() };
}

interface RecordRoute {
  /** What orders it against other records: the partition key, or the explicit hash key. */
  readonly orderKey: string;
  readonly partitionKey: string;
  readonly explicitHashKey?: string;
}

/** A record not yet in a call: its event lines, which later events of its key may join. */
interface OpenRecord extends RecordRoute {
  /** The event lines, in order, and their indices. */
  readonly lines: string[];
  readonly indices: number[];
  /** Data and partition key, as Kinesis counts a record against its limits. */
  bytes: number;
  /** When its first event was queued (the caller's clock). */
  readonly at: number;
}

/** A record taken into a call: its data, encoded once (its lines are no longer held), until Kinesis accepts it. */
export interface SentRecord extends RecordRoute {
  /** encodeRecord of its event lines. */
  readonly data: Buffer;
  /** The indices of its events, in order. */
  readonly indices: readonly number[];
  /** Data and partition key, as Kinesis counts a record against its limits. */
  readonly bytes: number;
}

export interface QueueLimits {
  recordBytes: number;
  batchRecords: number;
  batchBytes: number;
  /** Most events in one record (1: no bundling, as the producer was before). */
  recordEvents: number;
}

export class RecordQueue {
  writtenThrough = -1;
  acceptedThrough = -1;
  /** Records not yet handed to a call, in the order their first event was written. */
  private pending: OpenRecord[] = [];
  private pendingBytes = 0;
  /** Bytes of records taken into calls and not yet accepted (retries included). */
  private inFlightBytes = 0;
  /** The newest unsent record of each key, while it can take more events. */
  private open = new Map<string, OpenRecord>();
  /** Keys with a record in a call not yet fully accepted. */
  private inFlight = new Set<string>();
  /** Accepted indices above acceptedThrough (a later call finished first). */
  private acceptedAhead = new Set<number>();

  constructor(private readonly limits: QueueLimits) {}

  get pendingRecords(): number {
    return this.pending.length;
  }
  get bytesPending(): number {
    return this.pendingBytes;
  }
  /** Bytes unsent and in calls not yet accepted: what the producer holds. */
  get bytesHeld(): number {
    return this.pendingBytes + this.inFlightBytes;
  }
  get keysInFlight(): number {
    return this.inFlight.size;
  }
  /** When the longest-waiting unsent record was queued (undefined: none). */
  get oldestPendingAt(): number | undefined {
    return this.pending[0]?.at;
  }

  /**
   * Queue one event line under its key; returns its index. `alone`: a record of its own that
   * takes nothing after it (a broadcast copy). Throws when the line cannot fit any record.
   */
  add(line: string, partitionKey: string, opts: { explicitHashKey?: string; alone?: boolean; at?: number } = {}): number {
    const lineBytes = Buffer.byteLength(line);
    const orderKey = opts.explicitHashKey ?? partitionKey;
    const index = ++this.writtenThrough;
    const open = opts.alone ? undefined : this.open.get(orderKey);
    if (open && open.bytes + lineBytes <= this.limits.recordBytes && open.lines.length < this.limits.recordEvents) {
      open.lines.push(line);
      open.indices.push(index);
      open.bytes += lineBytes;
      this.pendingBytes += lineBytes;
      return index;
    }
    const bytes = lineBytes + Buffer.byteLength(partitionKey);
    if (bytes > this.limits.recordBytes) {
      this.writtenThrough--;
      throw new RangeError(`record of ${bytes} bytes for ${partitionKey} exceeds the Kinesis limit of ${this.limits.recordBytes}`);
    }
    const record: OpenRecord = {
      orderKey,
      partitionKey,
      ...(opts.explicitHashKey ? { explicitHashKey: opts.explicitHashKey } : {}),
      lines: [line],
      indices: [index],
      bytes,
      at: opts.at ?? 0,
    };
    this.pending.push(record);
    this.pendingBytes += bytes;
    if (opts.alone) this.open.delete(orderKey);
    else this.open.set(orderKey, record);
    return index;
  }

  /**
   * The next call's records: the earliest unsent record of each key not in flight, in order,
   * within the batch limits, each encoded into its data. Their keys are in flight until
   * accepted() reports them.
   */
  take(): SentRecord[] {
    const batch: SentRecord[] = [];
    const rest: OpenRecord[] = [];
    let bytes = 0;
    const taken = new Set<string>();
    for (const r of this.pending) {
      const fits = batch.length < this.limits.batchRecords && bytes + r.bytes <= this.limits.batchBytes;
      if (!fits || this.inFlight.has(r.orderKey) || taken.has(r.orderKey)) {
        rest.push(r);
        continue;
      }
      taken.add(r.orderKey);
      batch.push(sent(r));
      bytes += r.bytes;
      if (this.open.get(r.orderKey) === r) this.open.delete(r.orderKey);
    }
    for (const key of taken) this.inFlight.add(key);
    this.pending = rest;
    this.pendingBytes -= bytes;
    this.inFlightBytes += bytes;
    return batch;
  }

  /** Records of a call that Kinesis accepted: their keys free, their events accepted. Returns whether acceptedThrough moved. */
  accepted(records: readonly SentRecord[]): boolean {
    for (const r of records) {
      this.inFlight.delete(r.orderKey);
      this.inFlightBytes -= r.bytes;
      for (const i of r.indices) this.acceptedAhead.add(i);
    }
    const before = this.acceptedThrough;
    while (this.acceptedAhead.delete(this.acceptedThrough + 1)) this.acceptedThrough++;
    return this.acceptedThrough !== before;
  }

  /** Nothing unsent and nothing in flight. */
  get idle(): boolean {
    return this.pending.length === 0 && this.inFlight.size === 0;
  }
}

/** The record as a call sends it: a new object, so that nothing holds its lines once it is taken. */
function sent(r: OpenRecord): SentRecord {
  return {
    orderKey: r.orderKey,
    partitionKey: r.partitionKey,
    ...(r.explicitHashKey ? { explicitHashKey: r.explicitHashKey } : {}),
    data: Buffer.from(encodeRecord(r.lines)),
    indices: r.indices,
    bytes: r.bytes,
  };
}
