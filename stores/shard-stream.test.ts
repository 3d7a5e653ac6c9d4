/** What the loader asks the stream, against kinesalite: which record follows which, where a closed shard ends, and pacing per shard. */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kinesisClient } from '../lib/aws.ts';
import { freePort, startKinesis, type LocalKinesis } from '../local/servers.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { createStream, putOnStream, readShards, splitShard } from '../test/stream-fixture.ts';
import { ShardStream } from './shard-stream.ts';

describe('ShardStream', () => {
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

  it('answers the record after another, none at the tip, the end of a closed shard, and the lineage', async () => {
    await createStream(client, 'asked', 1);
    await putOnStream(client, 'asked', [salesOrderChange(1), salesOrderChange(2), salesOrderChange(3)]);
    const [[shard, records]] = [...(await readShards(client, 'asked'))];
    const seqs = records.map((r) => r.SequenceNumber!);
    const stream = new ShardStream(client, 'asked');
    expect(await stream.next(shard, null)).toMatchObject({ kind: 'record', sequence: seqs[0] });
    expect(await stream.next(shard, seqs[0])).toMatchObject({ kind: 'record', sequence: seqs[1] });
    expect(await stream.next(shard, seqs[2])).toEqual({ kind: 'none' });
    await splitShard(client, 'asked', shard);
    expect(await stream.next(shard, seqs[2])).toEqual({ kind: 'end' });
    const shards = await stream.shards();
    expect(shards.find((s) => s.id === shard)).toEqual({ id: shard, parents: [], closed: true });
    expect(shards.filter((s) => s.parents.includes(shard))).toHaveLength(2);
  });

  it('asks about one shard at most once per interval', async () => {
    await createStream(client, 'paced', 1);
    await putOnStream(client, 'paced', [salesOrderChange(1)]);
    const [shard] = (await readShards(client, 'paced')).keys();
    const stream = new ShardStream(client, 'paced', 150);
    const started = Date.now();
    await Promise.all([stream.next(shard, null), stream.next(shard, null), stream.next(shard, null)]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});
