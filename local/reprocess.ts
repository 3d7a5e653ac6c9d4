/**
 * `totes reprocess`: run the processor again over a range of one shard, read from the stream,
 * so a range the event source mapping gave up on (its on-failure queue names the shard and the
 * sequence numbers) is written as micro-batches after all. Until then the loader holds that
 * shard's watermark at the gap; it loads the new batches on its next pass and moves on. A
 * range processed before is written again under the same names or overlaps batches the loader
 * already has: both load once.
 */
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { compareSequences } from '../formats/manifest.ts';
import { FatalError } from '../lib/fatal.ts';
import { toLambdaRecord } from './kinesis-poller.ts';

export interface ReprocessRange {
  client: KinesisClient;
  streamName: string;
  shard: string;
  /** The first record to process. */
  from: string;
  /** The last (inclusive); undefined: up to the shard's newest record. */
  to?: string;
  /** The processor's handler. */
  consumer: (event: KinesisStreamEvent) => Promise<KinesisStreamBatchResponse>;
  batchSize: number;
}

export interface Reprocessed {
  batches: number;
  records: number;
  /** The last record processed (null: none in the range). */
  last: string | null;
}

export async function reprocessRange(r: ReprocessRange): Promise<Reprocessed> {
  const out: Reprocessed = { batches: 0, records: 0, last: null };
  let iterator: string | undefined;
  try {
    iterator = (
      await r.client.send(
        new GetShardIteratorCommand({ StreamName: r.streamName, ShardId: r.shard, ShardIteratorType: 'AT_SEQUENCE_NUMBER', StartingSequenceNumber: r.from }),
      )
    ).ShardIterator;
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'ResourceNotFoundException' || name === 'InvalidArgumentException')
      throw new FatalError(`cannot read shard ${r.shard} of stream "${r.streamName}" at ${r.from}: ${(err as Error).message}`);
    throw err;
  }
  while (iterator) {
    const page = await r.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: r.batchSize }));
    const records = (page.Records ?? []).filter((rec) => r.to === undefined || compareSequences(rec.SequenceNumber!, r.to) <= 0);
    if (records.length > 0) {
      const response = await r.consumer({ Records: records.map((rec) => toLambdaRecord(rec, r.shard, r.streamName)) });
      if (response.batchItemFailures.length > 0)
        throw new Error(`the processor failed the batch from ${records[0].SequenceNumber} (its log says why); nothing after it was processed`);
      out.batches++;
      out.records += records.length;
      out.last = records.at(-1)!.SequenceNumber!;
    }
    const pastEnd = records.length < (page.Records ?? []).length;
    const atTip = (page.Records ?? []).length === 0 && (page.MillisBehindLatest ?? 0) === 0;
    if (pastEnd || atTip) break;
    iterator = page.NextShardIterator;
  }
  return out;
}
