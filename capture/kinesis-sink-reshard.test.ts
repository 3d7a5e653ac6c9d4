/**
 * The producer across reshards of a live stream (kinesalite's SplitShard and MergeShards, what
 * an ON_DEMAND stream does by itself): heartbeats reach the shards a split or merge created,
 * at the latest on the broadcast after a record landed on a shard the producer did not know.
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRecord } from '../formats/change-event.ts';
import { kinesisClient } from '../lib/aws.ts';
import { freePort, startKinesis, type LocalKinesis } from '../local/servers.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { createStream, heartbeatAt, mergeShards, openShards, readShards, splitShard } from '../test/stream-fixture.ts';
import { KinesisSink } from './kinesis-sink.ts';

describe('KinesisSink across reshards', () => {
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  beforeAll(async () => {
    kinesis = await startKinesis({ port: await freePort(), streams: [] });
    client = kinesisClient({ kinesisEndpoint: kinesis.endpoint });
  });
  afterAll(async () => {
    client?.destroy();
    await kinesis?.stop();
  });

  /** Which heartbeat LSNs each shard holds. */
  const heartbeatsPerShard = async (stream: string) => {
    const out: Record<string, string[]> = {};
    for (const [shard, records] of await readShards(client, stream)) {
      out[shard] = records
        .flatMap((r) => decodeRecord(Buffer.from(r.Data!).toString()))
        .filter((e) => e.kind === 'heartbeat')
        .map((e) => e.source.lsn);
    }
    return out;
  };

  it('sends heartbeats to the children of a split and of a merge once a record shows the stream changed', async () => {
    const stream = 'reshard';
    await createStream(client, stream, 1);
    const sink = new KinesisSink({ client, streamName: stream });
    const [parent] = await openShards(client, stream);
    await sink.broadcast(heartbeatAt('0/100'));

    await splitShard(client, stream, parent);
    const [left, right] = await openShards(client, stream);
    // the producer still knows only the parent: the parent's hash key now belongs to one child
    await sink.broadcast(heartbeatAt('0/150'));
    // changes of many rows land on both children, shards it does not know
    for (let id = 1; id <= 20; id++) await sink.write(salesOrderChange(id));
    await sink.flush();
    await sink.broadcast(heartbeatAt('0/200'));

    await mergeShards(client, stream, left, right);
    const [merged] = await openShards(client, stream);
    for (let id = 21; id <= 25; id++) await sink.write(salesOrderChange(id));
    await sink.flush();
    await sink.broadcast(heartbeatAt('0/400'));
    await sink.flush();

    const seen = await heartbeatsPerShard(stream);
    expect(seen[parent]).toEqual(['0/100']);
    expect(seen[left]).toEqual(['0/150', '0/200']);
    expect(seen[right]).toEqual(['0/200']);
    expect(seen[merged]).toEqual(['0/400']);
  });

  it('learns new shards after shardMapMs even when no record showed them', async () => {
    const stream = 'reshard-quiet';
    await createStream(client, stream, 1);
    const sink = new KinesisSink({ client, streamName: stream, shardMapMs: 0 });
    const [parent] = await openShards(client, stream);
    await sink.broadcast(heartbeatAt('0/100'));
    await splitShard(client, stream, parent);
    await sink.broadcast(heartbeatAt('0/200'));
    await sink.flush();
    const seen = await heartbeatsPerShard(stream);
    const [left, right] = await openShards(client, stream);
    expect([seen[left], seen[right]]).toEqual([['0/200'], ['0/200']]);
  });
});
