/**
 * The producer across reshards of a live stream (kinesalite's SplitShard and MergeShards, what
 * an ON_DEMAND stream does by itself): heartbeats reach the shards a split or merge created,
 * at the latest on the broadcast after a record landed on a shard the producer did not know,
 * each copy naming the shard it lies on and the shards open.
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

  /** The heartbeats each shard holds: "<lsn> <shard it names> [<shards it names open>]". */
  const heartbeatsPerShard = async (stream: string) => {
    const out: Record<string, string[]> = {};
    for (const [shard, records] of await readShards(client, stream)) {
      out[shard] = records
        .flatMap((r) => decodeRecord(Buffer.from(r.Data!).toString()))
        .flatMap((e) => (e.kind === 'heartbeat' ? [`${e.source.lsn} ${e.shard} [${e.openShards?.join(',')}]`] : []));
    }
    return out;
  };
  const lsns = (heartbeats: string[] | undefined) => heartbeats?.map((h) => h.split(' ')[0]);

  it('sends heartbeats to the children of a split and of a merge, named, again at once when a reshard moved a copy', async () => {
    const stream = 'reshard';
    await createStream(client, stream, 1);
    const sink = new KinesisSink({ client, streamName: stream });
    const [parent] = await openShards(client, stream);
    await sink.broadcast(heartbeatAt('0/100'));

    await splitShard(client, stream, parent);
    const [left, right] = await openShards(client, stream);
    // the producer still knows only the parent: its copy lands on the child that holds the parent's hash key,
    // and PutRecords says so: the heartbeat goes again to both children, named from the shards open now
    await sink.broadcast(heartbeatAt('0/150'));
    for (let id = 1; id <= 20; id++) await sink.write(salesOrderChange(id));
    await sink.flush();
    await sink.broadcast(heartbeatAt('0/200'));

    await mergeShards(client, stream, left, right);
    const [merged] = await openShards(client, stream);
    // both copies land on the merged shard: sent again, named
    await sink.broadcast(heartbeatAt('0/300'));
    for (let id = 21; id <= 25; id++) await sink.write(salesOrderChange(id));
    await sink.flush();
    await sink.broadcast(heartbeatAt('0/400'));
    await sink.flush();

    const seen = await heartbeatsPerShard(stream);
    const children = `[${left},${right}]`;
    expect(seen[parent]).toEqual([`0/100 ${parent} [${parent}]`]);
    expect(seen[left]).toEqual([`0/150 ${parent} [${parent}]`, `0/150 ${left} ${children}`, `0/200 ${left} ${children}`]);
    expect(seen[right]).toEqual([`0/150 ${right} ${children}`, `0/200 ${right} ${children}`]);
    expect(seen[merged]).toEqual([`0/300 ${left} ${children}`, `0/300 ${right} ${children}`, `0/300 ${merged} [${merged}]`, `0/400 ${merged} [${merged}]`]);
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
    expect([lsns(seen[left]), lsns(seen[right])]).toEqual([['0/200'], ['0/200']]);
  });
});
