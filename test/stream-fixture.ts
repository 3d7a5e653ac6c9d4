/**
 * Test helper: change events put on a real (local) Kinesis stream by the capture's producer
 * (partitioned by row, heartbeats on every shard), each shard's records read back with their
 * real sequence numbers, and Lambda events cut from them as an event source mapping would.
 */
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  MergeShardsCommand,
  SplitShardCommand,
  type KinesisClient,
  type _Record,
} from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import { KinesisSink, type KinesisSinkOptions } from '../capture/kinesis-sink.ts';
import { isBroadcast, type HeartbeatEvent, type StreamEvent } from '../formats/change-event.ts';
import { sleep } from '../lib/retry.ts';
import { toLambdaRecord } from '../local/kinesis-poller.ts';

/** A new stream, once active. */
export async function createStream(client: KinesisClient, streamName: string, shards: number): Promise<void> {
  await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: shards }));
  await untilActive(client, streamName);
}

async function untilActive(client: KinesisClient, streamName: string): Promise<void> {
  while ((await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE') await sleep(20);
}

/** Split an open shard in the middle of its hash keys; resolves once the stream is active again. */
export async function splitShard(client: KinesisClient, streamName: string, shardId: string): Promise<void> {
  const shard = (await client.send(new ListShardsCommand({ StreamName: streamName }))).Shards!.find((s) => s.ShardId === shardId)!;
  const middle = (BigInt(shard.HashKeyRange!.StartingHashKey!) + BigInt(shard.HashKeyRange!.EndingHashKey!)) / 2n;
  await client.send(new SplitShardCommand({ StreamName: streamName, ShardToSplit: shardId, NewStartingHashKey: middle.toString() }));
  await untilActive(client, streamName);
}

/** Merge two open shards with adjacent hash keys; resolves once the stream is active again. */
export async function mergeShards(client: KinesisClient, streamName: string, shardId: string, adjacentShardId: string): Promise<void> {
  await client.send(new MergeShardsCommand({ StreamName: streamName, ShardToMerge: shardId, AdjacentShardToMerge: adjacentShardId }));
  await untilActive(client, streamName);
}

/** The open shards, in hash key order. */
export async function openShards(client: KinesisClient, streamName: string): Promise<string[]> {
  const shards = (await client.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? [];
  return shards
    .filter((s) => !s.SequenceNumberRange?.EndingSequenceNumber)
    .sort((a, b) => (BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1))
    .map((s) => s.ShardId!);
}

/**
 * Put `events` on the stream in order, as capture does, but each record holding one row's
 * changes unless told (`hashBuckets`: rows of a bucket share records; `maxEventsPerRecord: 1`: one event a record).
 */
export async function putOnStream(
  client: KinesisClient,
  streamName: string,
  events: StreamEvent[],
  opts: Pick<KinesisSinkOptions, 'maxEventsPerRecord' | 'hashBuckets'> = {},
): Promise<void> {
  const sink = new KinesisSink({ client, streamName, hashBuckets: 0, ...opts });
  for (const e of events) {
    if (isBroadcast(e)) await sink.broadcast(e);
    else if (e.kind === 'change') await sink.write(e);
  }
  await sink.flush();
}

/** Every record of every shard, in sequence order. */
export async function readShards(client: KinesisClient, streamName: string): Promise<Map<string, _Record[]>> {
  const out = new Map<string, _Record[]>();
  for (const shard of (await client.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? []) {
    const records: _Record[] = [];
    let iterator = (await client.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
      .ShardIterator;
    while (iterator) {
      const page = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      records.push(...(page.Records ?? []));
      if (!page.Records?.length) break;
      iterator = page.NextShardIterator;
    }
    out.set(shard.ShardId!, records);
  }
  return out;
}

/** A Lambda Kinesis event of these records of `shard`. */
export function lambdaEvent(records: _Record[], shard: string, streamName: string): KinesisStreamEvent {
  return { Records: records.map((r) => toLambdaRecord(r, shard, streamName)) };
}

let heartbeatLsn = 0x8000_0000;

/** A heartbeat with the next LSN of this helper's own sequence. */
export function heartbeatAt(lsn?: string): HeartbeatEvent {
  return {
    v: 1,
    kind: 'heartbeat',
    source: { lsn: lsn ?? `0/${(heartbeatLsn += 0x10).toString(16).toUpperCase()}`, pos: 0, xid: null, commitTime: new Date().toISOString() },
  };
}
