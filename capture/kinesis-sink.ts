/**
 * PutRecords producer. Batches of up to 500 records and 5 MiB, one batch in flight; partial
 * failures and throttling are retried with jittered backoff.
 *
 * Order: a batch never holds two records with the same partition key, and the next batch is
 * not sent until the one in flight has been fully accepted. So a retried record can never be
 * overtaken by a later change of the same row.
 *
 * Heartbeats go to every open shard. The shard map is learnt again when a record lands on a
 * shard it does not know (a reshard: ON_DEMAND streams reshard by themselves) and at least every
 * `shardMapMs`, so heartbeats reach the shards a split or merge created.
 */
import { ListShardsCommand, PutRecordsCommand, type KinesisClient, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { encodeEvent, partitionKeyOf, type BroadcastEvent, type ChangeEvent } from '../formats/change-event.ts';
import { log } from '../lib/log.ts';
import { backoffMs, sleep } from '../lib/retry.ts';
import type { ChangeSink } from './sink.ts';
import type { OversizeStore } from '../stores/oversize-store.ts';

const MAX_RECORDS = 500;
const MAX_BATCH_BYTES = 5 * 1024 * 1024;
export const MAX_RECORD_BYTES = 1024 * 1024;

const PERMANENT_ERRORS = new Set(['ValidationException', 'InvalidArgumentException', 'ResourceNotFoundException', 'SerializationException']);

interface Entry {
  index: number;
  request: PutRecordsRequestEntry;
  bytes: number;
}

export interface KinesisSinkOptions {
  client: KinesisClient;
  streamName: string;
  /** How long a partly filled batch may wait for more records. */
  lingerMs?: number;
  /** Where changes over the record limit are stored; without it they are refused. */
  oversize?: OversizeStore;
  /** The longest the open shards are taken as known without asking again. */
  shardMapMs?: number;
}

export interface ProducerMetrics {
  records: number;
  bytes: number;
  putCalls: number;
  retries: number;
  putLatencyMsTotal: number;
}

export class KinesisSink implements ChangeSink {
  writtenThrough = -1;
  acceptedThrough = -1;
  readonly metrics: ProducerMetrics = { records: 0, bytes: 0, putCalls: 0, retries: 0, putLatencyMsTotal: 0 };
  private batch: Entry[] = [];
  private batchBytes = 0;
  private batchKeys = new Set<string>();
  private inflight: Promise<void> = Promise.resolve();
  private lingerTimer: NodeJS.Timeout | null = null;
  private listeners: ((through: number) => void)[] = [];
  private shardMap: { at: number; open: Set<string>; hashKeys: string[] } | null = null;
  private failure: Error | null = null;

  constructor(private readonly opts: KinesisSinkOptions) {}

  async write(event: ChangeEvent): Promise<number> {
    const data = encodeEvent(event);
    const partitionKey = partitionKeyOf(event);
    if (Buffer.byteLength(data) + Buffer.byteLength(partitionKey) > MAX_RECORD_BYTES && this.opts.oversize) {
      return this.enqueue(encodeEvent(await this.opts.oversize.put(event, data)), partitionKey);
    }
    return this.enqueue(data, partitionKey);
  }

  async broadcast(event: BroadcastEvent): Promise<number> {
    await this.sendBatch();
    const keys = await this.hashKeys();
    const data = encodeEvent(event);
    let index = -1;
    for (const hashKey of keys) index = await this.enqueue(data, event.kind, hashKey);
    await this.sendBatch();
    return index;
  }

  private async enqueue(data: string, partitionKey: string, explicitHashKey?: string): Promise<number> {
    if (this.failure) throw this.failure;
    const bytes = Buffer.byteLength(data) + Buffer.byteLength(partitionKey);
    if (bytes > MAX_RECORD_BYTES) {
      throw new Error(
        `record of ${bytes} bytes for ${partitionKey} exceeds the Kinesis limit of ${MAX_RECORD_BYTES}: set ${'TOTES_INGESTION_BUCKET'} so such changes travel by claim check`,
      );
    }
    const dedupeKey = explicitHashKey ?? partitionKey;
    // re-checked after every wait: a flush or the linger timer may have run meanwhile
    while (this.batch.length >= MAX_RECORDS || this.batchBytes + bytes > MAX_BATCH_BYTES || this.batchKeys.has(dedupeKey)) {
      await this.sendBatch();
    }
    const index = ++this.writtenThrough;
    this.batch.push({
      index,
      bytes,
      request: { Data: Buffer.from(data), PartitionKey: partitionKey, ...(explicitHashKey ? { ExplicitHashKey: explicitHashKey } : {}) },
    });
    this.batchBytes += bytes;
    this.batchKeys.add(dedupeKey);
    if (this.batch.length >= MAX_RECORDS) await this.sendBatch();
    else
      this.lingerTimer ??= setTimeout(() => {
        this.lingerTimer = null;
        void this.sendBatch().catch(() => undefined);
      }, this.opts.lingerMs ?? 20);
    return index;
  }

  /** Hand the current batch to the sender; resolves when the previous batch is accepted. */
  private async sendBatch(): Promise<void> {
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    const previous = this.inflight;
    if (this.batch.length > 0) {
      const batch = this.batch;
      this.batch = [];
      this.batchBytes = 0;
      this.batchKeys = new Set();
      this.inflight = previous.then(() => this.put(batch));
      this.inflight.catch((err) => {
        this.failure = err;
      });
    }
    await previous;
    if (this.failure) throw this.failure;
  }

  private async put(batch: Entry[]): Promise<void> {
    let pending = batch;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) {
        this.metrics.retries++;
        await sleep(backoffMs(attempt, 100, 5_000));
      }
      const started = Date.now();
      try {
        this.metrics.putCalls++;
        const out = await this.opts.client.send(new PutRecordsCommand({ StreamName: this.opts.streamName, Records: pending.map((e) => e.request) }));
        this.metrics.putLatencyMsTotal += Date.now() - started;
        const failed: Entry[] = [];
        out.Records?.forEach((r, i) => {
          if (r.ErrorCode) failed.push(pending[i]);
          // a shard we do not know: the stream was resharded, learn its shards again
          else if (r.ShardId && this.shardMap && !this.shardMap.open.has(r.ShardId)) this.shardMap = null;
        });
        const ok = pending.length - failed.length;
        this.metrics.records += ok;
        this.metrics.bytes += pending.reduce((n, e) => n + e.bytes, 0) - failed.reduce((n, e) => n + e.bytes, 0);
        if (failed.length > 0)
          log.warn(
            { failed: failed.length, of: pending.length, code: out.Records?.find((r) => r.ErrorCode)?.ErrorCode },
            'PutRecords partial failure; retrying the failed records',
          );
        pending = failed;
      } catch (err) {
        // a request Kinesis refuses as malformed will be refused forever: fail loudly instead of spinning
        if (PERMANENT_ERRORS.has((err as Error).name)) throw new Error(`PutRecords refused (${(err as Error).name}): ${(err as Error).message}`);
        log.warn({ err: (err as Error).message, records: pending.length, attempt }, 'PutRecords failed; retrying');
      }
    }
    this.acceptedThrough = batch[batch.length - 1].index;
    for (const l of this.listeners) l(this.acceptedThrough);
  }

  /** A hash key of each open shard. */
  private async hashKeys(): Promise<string[]> {
    if (!this.shardMap || Date.now() - this.shardMap.at > (this.opts.shardMapMs ?? 30_000)) {
      const open = new Set<string>();
      const hashKeys: string[] = [];
      let token: string | undefined;
      do {
        const out = await this.opts.client.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.opts.streamName }));
        for (const s of out.Shards ?? []) {
          if (s.SequenceNumberRange?.EndingSequenceNumber) continue;
          open.add(s.ShardId!);
          hashKeys.push(s.HashKeyRange!.StartingHashKey!);
        }
        token = out.NextToken;
      } while (token);
      this.shardMap = { at: Date.now(), open, hashKeys };
    }
    return this.shardMap.hashKeys;
  }

  onAccepted(listener: (through: number) => void): void {
    this.listeners.push(listener);
  }

  async flush(): Promise<void> {
    await this.sendBatch();
    await this.inflight;
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
