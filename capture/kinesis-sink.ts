/**
 * PutRecords producer: several calls in flight (`maxCallsInFlight`), batches of up to 500
 * records and 5 MiB; partial failures and throttling are retried with jittered backoff.
 *
 * Routing: a row goes to its hash bucket (capture/record-queue.ts routeOf: one of 1,024 fixed
 * points of the hash space, so one shard at any time and the same one for every change of the
 * row), and the consecutive changes of the rows of a bucket travel bundled in one record
 * (formats/change-event.ts), each change its own line. Bundles grow while a bucket waits for a
 * call, so the slower Kinesis answers, the fewer records a change costs; a hot row costs a round
 * trip per MiB of changes, not per change.
 *
 * What goes in each call, and what counts as accepted, is capture/record-queue.ts: a bucket is in
 * at most one call at a time and a failed record blocks its bucket until its retry is accepted,
 * so a retried record is never overtaken by a later change of the same row; `acceptedThrough`
 * only moves over a contiguous run of accepted events, whichever calls finish first.
 *
 * A broadcast (heartbeat, truncate, snapshot range) is a barrier: it is sent once everything
 * before it is accepted, and accepted before anything after it is sent, so on every shard it lands
 * after the changes written before it and ahead of those after it (a change must never land ahead
 * of a truncate it survives). That costs two round trips a broadcast. The shard map is learnt
 * again when a record lands on a shard it does not know (a reshard: ON_DEMAND streams reshard by
 * themselves) and at least every `shardMapMs`, so heartbeats reach the shards a split or merge
 * created.
 *
 * Each copy of a heartbeat names the shard it is sent to and every shard open (formats/change-event.ts),
 * so the archive can tell how far each shard is delivered (replay/archive-completeness.ts). A reshard
 * after the map was learnt lands a copy on a child of the shard it names (the shard that holds its
 * hash key now); PutRecords says where it landed, and the heartbeat is sent again, named from the
 * shards open now, so every open shard gets a copy naming it. The copy that landed elsewhere claims
 * nothing false: it lies on a descendant of the shard it names, archived after all of that shard
 * (children are read after their parents), and a shard the map lacks holds no change written before
 * the heartbeat (a change that lands on a shard the map lacks makes the broadcast list them again).
 */
import { ListShardsCommand, PutRecordsCommand, type KinesisClient, type PutRecordsCommandOutput, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { encodeEvent, partitionKeyOf, type BroadcastEvent, type ChangeEvent, type HeartbeatEvent } from '../formats/change-event.ts';
import { log } from '../lib/log.ts';
import { Retry, type RetryPolicy, sleep } from '../lib/retry.ts';
import { RecordQueue, routeOf, type SentRecord } from './record-queue.ts';
import type { ChangeSink } from './sink.ts';
import type { OversizeStore } from '../stores/oversize-store.ts';
import type { EventSealer } from './event-sealer.ts';

const MAX_RECORDS = 500;
const MAX_BATCH_BYTES = 5 * 1024 * 1024;
export const MAX_RECORD_BYTES = 1024 * 1024;
/**
 * The bytes unsent and in flight together at which a writer waits (backpressure), however many
 * calls could still go. A byte in flight is held about three times over until its call ends (the
 * record's data, and the SDK's request body: base64, in a buffer grown by doubling), so bytes,
 * not calls, are what bound the producer's memory. Two full batches: as fast on kinesalite as
 * four full calls in flight and two batches unsent were (docs/performance.md), and at 50 ms a
 * round trip 200 MiB/s, far more than a stream's shards take (1 MiB/s each).
 */
const MAX_BYTES_HELD = 2 * MAX_BATCH_BYTES;
const HASH_BUCKETS = 1024;
/** Sends of one heartbeat while reshards keep moving its copies (each send lists the shards afresh). */
const HEARTBEAT_SENDS = 3;

const PERMANENT_ERRORS = new Set(['ValidationException', 'InvalidArgumentException', 'ResourceNotFoundException', 'SerializationException']);
/**
 * PutRecords: a call that fails, or records it refuses (throttled, an internal failure), are sent
 * again for ever, waits from 0.2 s up to 5 s; a request Kinesis refuses as malformed will be
 * refused for ever: it fails loudly instead of spinning.
 */
const PUT_RETRY = { firstMs: 200, capMs: 5_000, transient: (err: unknown) => !PERMANENT_ERRORS.has((err as Error).name) } satisfies RetryPolicy;

export interface KinesisSinkOptions {
  client: KinesisClient;
  streamName: string;
  /** How long a partly filled batch may wait for more records. */
  lingerMs?: number;
  /** Where changes over the record limit are stored; without it they are refused. */
  oversize?: OversizeStore;
  /** Seals personal values before anything is encoded (the stream, claim checks); without it they travel as they are. */
  sealer?: EventSealer;
  /** The longest the open shards are taken as known without asking again. */
  shardMapMs?: number;
  /** PutRecords calls at once (4). */
  maxCallsInFlight?: number;
  /** Most changes in one record (unbounded but for the 1 MiB limit; 1: none). */
  maxEventsPerRecord?: number;
  /** Hash buckets rows are routed by, whose rows share records (1024; record-queue.ts routeOf; 0: each row its own partition key). */
  hashBuckets?: number;
}

export interface ProducerMetrics {
  /** Kinesis records accepted (a bundle is one). */
  records: number;
  /** Events in them. */
  events: number;
  bytes: number;
  putCalls: number;
  retries: number;
  putLatencyMsTotal: number;
  /** The most calls that were in flight at once. */
  maxCallsInFlight: number;
}

export class KinesisSink implements ChangeSink {
  readonly metrics: ProducerMetrics = { records: 0, events: 0, bytes: 0, putCalls: 0, retries: 0, putLatencyMsTotal: 0, maxCallsInFlight: 0 };
  private readonly queue: RecordQueue;
  private readonly maxCalls: number;
  private readonly lingerMs: number;
  private calls = 0;
  private flushing = 0;
  private lingerTimer: NodeJS.Timeout | null = null;
  private listeners: ((through: number) => void)[] = [];
  private waiters: (() => void)[] = [];
  private shardMap: { at: number; open: Set<string>; shards: OpenShard[] } | null = null;
  /** While a heartbeat is in flight: the shard each of its copies names, by event index, and the copies that landed elsewhere. */
  private naming: { named: Map<number, string>; moved: string[] } | null = null;
  private failure: Error | null = null;

  constructor(private readonly opts: KinesisSinkOptions) {
    this.maxCalls = opts.maxCallsInFlight ?? 4;
    this.lingerMs = opts.lingerMs ?? 20;
    this.queue = new RecordQueue({
      recordBytes: MAX_RECORD_BYTES,
      batchRecords: MAX_RECORDS,
      batchBytes: MAX_BATCH_BYTES,
      recordEvents: opts.maxEventsPerRecord ?? Number.POSITIVE_INFINITY,
    });
  }

  get writtenThrough(): number {
    return this.queue.writtenThrough;
  }
  get acceptedThrough(): number {
    return this.queue.acceptedThrough;
  }

  async write(change: ChangeEvent): Promise<number> {
    const event = this.opts.sealer ? await this.opts.sealer.seal(change) : change;
    const data = encodeEvent(event);
    const route = routeOf(partitionKeyOf(event), this.opts.hashBuckets ?? HASH_BUCKETS);
    const claimCheck = Buffer.byteLength(data) + Buffer.byteLength(route.partitionKey) > MAX_RECORD_BYTES && this.opts.oversize;
    const line = claimCheck ? encodeEvent(await this.opts.oversize!.put(event, data)) : data;
    while (this.queue.bytesHeld >= MAX_BYTES_HELD) {
      this.throwIfFailed();
      await this.nextChange();
    }
    return this.add(line, route.partitionKey, route.explicitHashKey);
  }

  async broadcast(event: BroadcastEvent): Promise<number> {
    await this.flush();
    if (event.kind === 'heartbeat') return this.sendHeartbeat(event);
    const line = encodeEvent(event);
    let index = -1;
    for (const shard of await this.openShards()) index = this.add(line, event.kind, shard.hashKey, true);
    await this.flush();
    return index;
  }

  /** A copy on every open shard, each naming its shard and the open ones; again while a reshard moves copies elsewhere. */
  private async sendHeartbeat(event: HeartbeatEvent): Promise<number> {
    for (let send = 1; ; send++) {
      const shards = await this.openShards();
      const openShards = shards.map((s) => s.id);
      const naming = { named: new Map<number, string>(), moved: [] as string[] };
      let index = -1;
      this.naming = naming;
      try {
        for (const s of shards) {
          index = this.add(encodeEvent({ ...event, shard: s.id, openShards }), event.kind, s.hashKey, true);
          naming.named.set(index, s.id);
        }
        await this.flush();
      } finally {
        this.naming = null;
      }
      if (naming.moved.length === 0) return index;
      const said = { lsn: event.source.lsn, moved: naming.moved };
      if (send === HEARTBEAT_SENDS) {
        log.warn(said, 'reshards kept moving heartbeat copies off the shards they name; the next heartbeat names them again');
        return index;
      }
      log.info(said, 'a reshard moved heartbeat copies off the shards they name; sending again, named from the shards open now');
    }
  }

  private add(line: string, partitionKey: string, explicitHashKey?: string, alone = false): number {
    this.throwIfFailed();
    let index: number;
    try {
      index = this.queue.add(line, partitionKey, { explicitHashKey, alone, at: Date.now() });
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw new Error(`${err.message}: set ${'TOTES_INGESTION_BUCKET'} so such changes travel by claim check`);
    }
    this.dispatch();
    return index;
  }

  /**
   * Starts calls while there is room: for full batches at once; for partly filled ones once the
   * oldest unsent record has lingered, or when flushing.
   */
  private dispatch(): void {
    while (this.calls < this.maxCalls && !this.failure) {
      const oldest = this.queue.oldestPendingAt;
      if (oldest === undefined) break;
      const full = this.queue.pendingRecords >= MAX_RECORDS || this.queue.bytesPending >= MAX_BATCH_BYTES;
      if (!full && this.flushing === 0 && Date.now() - oldest < this.lingerMs) break;
      const batch = this.queue.take();
      if (batch.length === 0) break; // every unsent record waits for its row's call
      this.start(batch);
    }
    const oldest = this.queue.oldestPendingAt;
    if (oldest !== undefined && !this.lingerTimer && !this.failure) {
      this.lingerTimer = setTimeout(
        () => {
          this.lingerTimer = null;
          this.dispatch();
        },
        Math.max(1, this.lingerMs - (Date.now() - oldest)),
      );
    }
  }

  private start(batch: SentRecord[]): void {
    this.calls++;
    this.metrics.maxCallsInFlight = Math.max(this.metrics.maxCallsInFlight, this.calls);
    this.put(batch)
      .catch((err: Error) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.calls--;
        this.dispatch();
        this.wake();
      });
  }

  /** One call's records until every one is accepted; each accepted part is reported as it lands. */
  private async put(batch: SentRecord[]): Promise<void> {
    let pending = batch.map((record) => ({ record, request: requestOf(record) }));
    const retry = new Retry(PUT_RETRY);
    /** After a failure: wait as the policy says, or end with what Kinesis will refuse for ever. */
    const again = async (err: Error, said: object, message: string) => {
      const wait = retry.failed(err);
      if (wait === null) throw new Error(`PutRecords refused (${err.name}): ${err.message}`);
      log.warn({ ...said, attempt: retry.failures }, message);
      this.metrics.retries++;
      await sleep(wait);
    };
    while (pending.length > 0) {
      const started = Date.now();
      let out: PutRecordsCommandOutput;
      try {
        this.metrics.putCalls++;
        out = await this.opts.client.send(new PutRecordsCommand({ StreamName: this.opts.streamName, Records: pending.map((e) => e.request) }));
        this.metrics.putLatencyMsTotal += Date.now() - started;
      } catch (err) {
        await again(err as Error, { err: (err as Error).message, records: pending.length }, 'PutRecords failed; retrying');
        continue;
      }
      const failed: typeof pending = [];
      const ok: SentRecord[] = [];
      for (const [i, r] of (out.Records ?? []).entries()) {
        if (r.ErrorCode) {
          failed.push(pending[i]);
          continue;
        }
        ok.push(pending[i].record);
        const named = this.naming?.named.get(pending[i].record.indices[0]);
        if (named !== undefined && r.ShardId !== named) this.naming!.moved.push(`${named} → ${r.ShardId}`);
        // a shard we do not know: the stream was resharded, learn its shards again
        if (r.ShardId && this.shardMap && !this.shardMap.open.has(r.ShardId)) this.shardMap = null;
      }
      this.metrics.records += ok.length;
      for (const r of ok) {
        this.metrics.events += r.indices.length;
        this.metrics.bytes += r.bytes;
      }
      const sent = pending.length;
      pending = failed;
      if (this.queue.accepted(ok)) for (const l of this.listeners) l(this.queue.acceptedThrough);
      const refused = out.Records?.find((r) => r.ErrorCode);
      if (refused)
        await again(
          Object.assign(new Error(refused.ErrorMessage ?? ''), { name: refused.ErrorCode }),
          { failed: failed.length, of: sent, code: refused.ErrorCode },
          'PutRecords partial failure; retrying the failed records',
        );
    }
  }

  /** Each open shard, with a hash key it holds. */
  private async openShards(): Promise<OpenShard[]> {
    if (!this.shardMap || Date.now() - this.shardMap.at > (this.opts.shardMapMs ?? 30_000)) {
      const shards: OpenShard[] = [];
      let token: string | undefined;
      do {
        const out = await this.opts.client.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.opts.streamName }));
        for (const s of out.Shards ?? []) {
          if (!s.SequenceNumberRange?.EndingSequenceNumber) shards.push({ id: s.ShardId!, hashKey: s.HashKeyRange!.StartingHashKey! });
        }
        token = out.NextToken;
      } while (token);
      this.shardMap = { at: Date.now(), open: new Set(shards.map((s) => s.id)), shards };
    }
    return this.shardMap.shards;
  }

  onAccepted(listener: (through: number) => void): void {
    this.listeners.push(listener);
  }

  /** Resolves once everything written is accepted; rejects once a call has failed for good. */
  async flush(): Promise<void> {
    this.flushing++;
    try {
      this.dispatch();
      while (!this.queue.idle) {
        this.throwIfFailed();
        await this.nextChange();
      }
      this.throwIfFailed();
    } finally {
      this.flushing--;
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** Resolves when a call ends (its records accepted, or failed for good). */
  private nextChange(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }
}

interface OpenShard {
  id: string;
  hashKey: string;
}

function requestOf(r: SentRecord): PutRecordsRequestEntry {
  return { Data: r.data, PartitionKey: r.partitionKey, ...(r.explicitHashKey ? { ExplicitHashKey: r.explicitHashKey } : {}) };
}
