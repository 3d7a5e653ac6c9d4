/**
 * The local stand-in for a Lambda event source mapping: reads every shard of a stream with
 * GetRecords and hands batches, in the Lambda Kinesis event shape, to a consumer. A reported
 * failure replays from the failed record (ReportBatchItemFailures semantics); progress moves
 * only past batches that succeeded, and with `checkpoints` it is kept durably, written only
 * after the consumer succeeded, so a restarted process resumes there: it neither reads the
 * stream again from the start nor skips a record.
 *
 * Resharding: new shards are looked for every `discoverMs`; a child shard is read only once
 * each parent has been read to its end (and that end checkpointed), as the mapping does. A
 * consumer that buffers (the Firehose stand-in) is told to deliver once a parent is read to its
 * end, so the children are not held back by its buffer interval.
 */
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, type KinesisClient, type _Record } from '@aws-sdk/client-kinesis';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { log } from '../lib/log.ts';
import { Retry, type RetryPolicy, sleep } from '../lib/retry.ts';
import type { Checkpoint, PollerCheckpoints, ShardIdentity } from './poller-checkpoints.ts';

/** Records per invocation: the processor's event source mapping batch size locally. */
export const PROCESSOR_BATCH_SIZE = 5_000;
/** GetRecords' own maximum: the archiver buffers by size and time, not by batch. */
export const ARCHIVER_BATCH_SIZE = 10_000;
/** Reading a shard, or a batch its consumer failed: every failure, waits from 0.4 s up to 5 s, for ever. */
const POLL_RETRY = { firstMs: 400, capMs: 5_000 } satisfies RetryPolicy;

export type BatchConsumer = (event: KinesisStreamEvent) => Promise<KinesisStreamBatchResponse | void>;

export interface PollerOptions {
  client: KinesisClient;
  streamName: string;
  consumer: BatchConsumer;
  batchSize?: number;
  idlePollMs?: number;
  /**
   * The deployed mapping's batching window (MaximumBatchingWindowInSeconds): records are
   * buffered until `batchSize` of them or this long since the first, polling every `idlePollMs`
   * while the shard is not behind. Without it, each poll's records go to the consumer at once.
   */
  batchingWindowMs?: number;
  name: string;
  /** Durable progress; without it every start reads each shard from TRIM_HORIZON. */
  checkpoints?: PollerCheckpoints;
  /**
   * For a consumer that still holds records after it returns (the Firehose stand-in buffers
   * them): the last record of a shard it has made durable. Checkpoints never pass it.
   */
  durableThrough?: (shardId: string) => string | undefined;
  /**
   * Make durable now what the consumer holds: called when a closed shard has been read to its
   * end, so its children start without waiting for the consumer's own buffering to run out.
   */
  makeDurable?: () => Promise<void>;
  /** How often to look for shards a reshard created. */
  discoverMs?: number;
}

export function toLambdaRecord(r: _Record, shardId: string, streamName: string): KinesisStreamRecord {
  return {
    kinesis: {
      kinesisSchemaVersion: '1.0',
      partitionKey: r.PartitionKey!,
      sequenceNumber: r.SequenceNumber!,
      data: Buffer.from(r.Data!).toString('base64'),
      approximateArrivalTimestamp: (r.ApproximateArrivalTimestamp?.getTime() ?? Date.now()) / 1000,
    },
    eventSource: 'aws:kinesis',
    eventVersion: '1.0',
    eventID: `${shardId}:${r.SequenceNumber}`,
    eventName: 'aws:kinesis:record',
    invokeIdentityArn: 'arn:aws:iam::000000000000:role/local',
    awsRegion: 'local',
    eventSourceARN: `arn:aws:kinesis:local:000000000000:stream/${streamName}`,
  };
}

interface Shard extends ShardIdentity {
  parents: string[];
}

export class KinesisPoller {
  private readonly abort = new AbortController();
  private readonly loops = new Map<string, Promise<void>>();
  /** Shards read to their end (and so checkpointed). */
  private readonly finished = new Set<string>();
  private discovery: NodeJS.Timeout | null = null;
  private discovering: Promise<void> = Promise.resolve();
  /** Records fetched but not yet acknowledged by the consumer. */
  behind = 0;

  constructor(private readonly opts: PollerOptions) {}

  async start(): Promise<void> {
    await this.discover();
    this.discovery = setInterval(() => void this.discover().catch(() => undefined), this.opts.discoverMs ?? 2_000);
  }

  /** Shards currently being read. */
  get reading(): string[] {
    return [...this.loops.keys()].filter((s) => !this.finished.has(s));
  }

  /** Start reading every shard whose parents are done; one discovery at a time. */
  private discover(): Promise<void> {
    this.discovering = this.discovering.then(async () => {
      if (this.abort.signal.aborted) return;
      const shards: Shard[] = [];
      let token: string | undefined;
      do {
        const out = await this.opts.client.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.opts.streamName }));
        for (const s of out.Shards ?? [])
          shards.push({
            shardId: s.ShardId!,
            startingSequence: s.SequenceNumberRange!.StartingSequenceNumber!,
            parents: [s.ParentShardId, s.AdjacentParentShardId].filter((p): p is string => !!p),
          });
        token = out.NextToken;
      } while (token);
      const listed = new Set(shards.map((s) => s.shardId));
      for (const shard of shards) {
        if (this.loops.has(shard.shardId)) continue;
        const checkpoint = (await this.opts.checkpoints?.read(shard)) ?? null;
        if (checkpoint && 'ended' in checkpoint) {
          this.finished.add(shard.shardId);
          this.loops.set(shard.shardId, Promise.resolve());
          continue;
        }
        // a parent the stream no longer lists has aged out of it
        if (!shard.parents.every((p) => this.finished.has(p) || !listed.has(p))) continue;
        this.loops.set(shard.shardId, this.pollShard(shard, checkpoint));
      }
    });
    return this.discovering;
  }

  private async iterator(shardId: string, after?: string, at?: string): Promise<string> {
    const out = await this.opts.client.send(
      new GetShardIteratorCommand({
        StreamName: this.opts.streamName,
        ShardId: shardId,
        ...(at
          ? { ShardIteratorType: 'AT_SEQUENCE_NUMBER', StartingSequenceNumber: at }
          : after
            ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: after }
            : { ShardIteratorType: 'TRIM_HORIZON' }),
      }),
    );
    return out.ShardIterator!;
  }

  private async pollShard(shard: Shard, from: Checkpoint | null): Promise<void> {
    const { shardId } = shard;
    const signal = this.abort.signal;
    /** After the last record the consumer handled. */
    let position = from && 'after' in from ? from.after : undefined;
    let saved = position;
    const save = async (checkpoint: Checkpoint) => {
      await this.opts.checkpoints?.write(shard, checkpoint);
      if ('after' in checkpoint) saved = checkpoint.after;
    };
    /** Checkpoint as far as the consumer has made durable. */
    const keep = async () => {
      const durable = this.opts.durableThrough ? this.opts.durableThrough(shardId) : position;
      if (durable && durable !== saved) await save({ after: durable });
    };
    /** Records read but not yet handed over (batchingWindowMs), since the poll that read the first; a new iterator drops them. */
    let buffered: _Record[] = [];
    let bufferedSince = 0;
    let iterator: string | undefined;
    const retry = new Retry(POLL_RETRY);
    while (!signal.aborted) {
      try {
        if (!iterator) {
          buffered = [];
          iterator = await this.iterator(shardId, position);
        }
        const batchSize = this.opts.batchSize ?? 1000;
        if (buffered.length === 0) bufferedSince = Date.now();
        const out = await this.opts.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: batchSize - buffered.length }));
        const records = buffered.concat(out.Records ?? []);
        this.behind = Number(out.MillisBehindLatest ?? 0);
        iterator = out.NextShardIterator;
        if (records.length === 0) {
          await keep();
          if (!iterator) {
            // a closed shard read to its end: checkpoint that once the consumer holds nothing of it
            if (this.opts.durableThrough && position && this.opts.durableThrough(shardId) !== position) {
              await this.opts.makeDurable?.();
              await sleep(this.opts.idlePollMs ?? 200, signal);
              iterator = await this.iterator(shardId, position);
              continue;
            }
            await save({ ended: true });
            this.finished.add(shardId);
            await this.discover();
            return;
          }
          await sleep(this.opts.idlePollMs ?? 200, signal);
          continue;
        }
        const window = this.opts.batchingWindowMs;
        /** The mapping polls a shard that is not behind about once a second (idlePollMs), not at once. */
        const paced = () => (window !== undefined && !out.MillisBehindLatest ? sleep(this.opts.idlePollMs ?? 200, signal) : undefined);
        buffered = window !== undefined && iterator && records.length < batchSize && Date.now() - bufferedSince < window ? records : [];
        if (buffered.length > 0) {
          await paced();
          continue;
        }
        const event: KinesisStreamEvent = { Records: records.map((r) => toLambdaRecord(r, shardId, this.opts.streamName)) };
        const result = await this.opts.consumer(event);
        const failedAt = result?.batchItemFailures?.[0]?.itemIdentifier;
        if (failedAt) {
          // what came before the failed record succeeded; replay from it, as the event source mapping does
          const failed = records.findIndex((r) => r.SequenceNumber === failedAt);
          if (failed > 0) position = records[failed - 1].SequenceNumber;
          await keep();
          iterator = await this.iterator(shardId, undefined, failedAt);
          await sleep(retry.failed(new Error(`the consumer failed at record ${failedAt}`)), signal);
          continue;
        }
        retry.succeeded();
        position = records[records.length - 1].SequenceNumber;
        await keep();
        await paced();
      } catch (err) {
        log.warn({ poller: this.opts.name, shardId, err: (err as Error).message }, 'poll failed; retrying');
        iterator = undefined;
        await sleep(retry.failed(err), signal);
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.discovery) clearInterval(this.discovery);
    await this.discovering.catch(() => undefined);
    await Promise.allSettled(this.loops.values());
  }
}
