/**
 * The local stand-in for a Lambda event source mapping: reads every shard of a stream with
 * GetRecords and hands batches, in the Lambda Kinesis event shape, to a consumer. A reported
 * failure replays from the failed record (ReportBatchItemFailures semantics); progress moves
 * only past batches that succeeded. Checkpoints live in memory: the local stack starts fresh.
 */
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, type KinesisClient, type _Record } from '@aws-sdk/client-kinesis';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { log } from '../lib/log.ts';
import { backoffMs, sleep } from '../lib/retry.ts';

/** Records per invocation: the processor's event source mapping batch size locally. */
export const PROCESSOR_BATCH_SIZE = 5_000;
/** GetRecords' own maximum: the archiver buffers by size and time, not by batch. */
export const ARCHIVER_BATCH_SIZE = 10_000;

export type BatchConsumer = (event: KinesisStreamEvent) => Promise<KinesisStreamBatchResponse | void>;

export interface PollerOptions {
  client: KinesisClient;
  streamName: string;
  consumer: BatchConsumer;
  batchSize?: number;
  idlePollMs?: number;
  name: string;
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

export class KinesisPoller {
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  /** Records fetched but not yet acknowledged by the consumer. */
  behind = 0;

  constructor(private readonly opts: PollerOptions) {}

  async start(): Promise<void> {
    const out = await this.opts.client.send(new ListShardsCommand({ StreamName: this.opts.streamName }));
    this.loops = (out.Shards ?? []).map((s) => this.pollShard(s.ShardId!));
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

  private async pollShard(shardId: string): Promise<void> {
    const signal = this.abort.signal;
    let checkpoint: string | undefined;
    let iterator: string | undefined;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        iterator ??= await this.iterator(shardId, checkpoint);
        const out = await this.opts.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: this.opts.batchSize ?? 1000 }));
        const records = out.Records ?? [];
        this.behind = Number(out.MillisBehindLatest ?? 0);
        iterator = out.NextShardIterator;
        if (records.length === 0) {
          await sleep(this.opts.idlePollMs ?? 200, signal);
          continue;
        }
        const event: KinesisStreamEvent = { Records: records.map((r) => toLambdaRecord(r, shardId, this.opts.streamName)) };
        const result = await this.opts.consumer(event);
        const failedAt = result?.batchItemFailures?.[0]?.itemIdentifier;
        if (failedAt) {
          // replay from the failed record, as the event source mapping does
          iterator = await this.iterator(shardId, undefined, failedAt);
          await sleep(backoffMs(++attempt, 200, 5_000), signal);
          continue;
        }
        attempt = 0;
        checkpoint = records[records.length - 1].SequenceNumber;
      } catch (err) {
        log.warn({ poller: this.opts.name, shardId, err: (err as Error).message }, 'poll failed; retrying');
        iterator = undefined;
        await sleep(backoffMs(++attempt, 200, 5_000), signal);
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }
}
