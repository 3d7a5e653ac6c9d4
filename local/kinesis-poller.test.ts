/**
 * The local event source mapping against kinesalite and s3rver: a poller started again resumes
 * from its durable checkpoint (nothing read twice after a clean stop, nothing skipped after a
 * failure); the archiver's checkpoint never passes what it has not delivered, so records lost
 * from its buffer with the process are read again; and across a split, the parent is read to
 * its end before its children, each child once, the archiver delivering the parent's end at once
 * so its children do not wait out its buffer. With a batching window, as the deployed mapping
 * has, records wait for a full batch or the window.
 */
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ListShardsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { startLocalAws, type LocalAws } from '../test/harness.ts';
import { until } from '../test/until.ts';
import { createStream, openShards, putOnStream, splitShard } from '../test/stream-fixture.ts';
import { archivedEvents } from '../test/fact-versions.ts';
import { KinesisPoller, type BatchConsumer } from './kinesis-poller.ts';
import { PollerCheckpoints } from './poller-checkpoints.ts';

describe('KinesisPoller', () => {
  let aws: LocalAws;
  let kinesis: KinesisClient;
  let s3: S3Client;
  let n = 0;
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [] });
    kinesis = kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
    s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
  });
  afterAll(async () => {
    kinesis?.destroy();
    s3?.destroy();
    await aws?.stop();
  });

  async function fresh(shards: number) {
    const name = `poll-${++n}`;
    await createStream(kinesis, name, shards);
    await s3.send(new CreateBucketCommand({ Bucket: name }));
    return { name, checkpoints: new PollerCheckpoints(s3, name, 'test', name) };
  }

  /** What a consumer saw: per shard, the sales_order ids in order. */
  function recording(fail?: (id: number) => boolean) {
    const seen = new Map<string, number[]>();
    const consumer: BatchConsumer = async (event: KinesisStreamEvent) => {
      for (const r of event.Records) {
        const id = JSON.parse(Buffer.from(r.kinesis.data, 'base64').toString()).key.sales_order_id as number;
        if (fail?.(id)) return { batchItemFailures: [{ itemIdentifier: r.kinesis.sequenceNumber }] };
        const shard = r.eventID.split(':')[0];
        seen.set(shard, [...(seen.get(shard) ?? []), id]);
      }
      return { batchItemFailures: [] };
    };
    return { seen, consumer, all: () => [...seen.values()].flat() };
  }

  const changes = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => salesOrderChange(from + i));

  it('resumes after what the consumer handled: nothing read again, nothing skipped after a failure', async () => {
    const { name, checkpoints } = await fresh(1);
    await putOnStream(kinesis, name, changes(1, 10));
    const first = recording((id) => id >= 8);
    const a = new KinesisPoller({ client: kinesis, streamName: name, consumer: first.consumer, name: 'a', checkpoints, idlePollMs: 20 });
    await a.start();
    await until('ids 1-7', () => first.all().length === 7);
    await a.stop();

    await putOnStream(kinesis, name, changes(11, 12));
    const second = recording();
    const b = new KinesisPoller({ client: kinesis, streamName: name, consumer: second.consumer, name: 'b', checkpoints, idlePollMs: 20 });
    await b.start();
    await until('ids 8-12', () => second.all().length >= 5);
    await new Promise((r) => setTimeout(r, 300));
    await b.stop();
    expect(second.all()).toEqual([8, 9, 10, 11, 12]);
  });

  it('reads a shard from its start when a killed writer left its checkpoint unreadable', async () => {
    const { name, checkpoints } = await fresh(1);
    await putOnStream(kinesis, name, changes(1, 3));
    const [shard] = (await kinesis.send(new ListShardsCommand({ StreamName: name }))).Shards!;
    const identity = { shardId: shard.ShardId!, startingSequence: shard.SequenceNumberRange!.StartingSequenceNumber! };
    await s3.send(new PutObjectCommand({ Bucket: name, Key: checkpoints.key(identity), Body: '{"after":"4968' }));
    const { consumer, all } = recording();
    const poller = new KinesisPoller({ client: kinesis, streamName: name, consumer, name: 'a', checkpoints, idlePollMs: 20 });
    await poller.start();
    await until('ids 1-3', () => all().length === 3);
    await poller.stop();
    expect(await checkpoints.read(identity)).toEqual({ after: expect.any(String) });
  });

  it('checkpoints the archiver only past what it delivered: a buffer lost with the process is read again', async () => {
    const { name, checkpoints } = await fresh(1);
    await putOnStream(kinesis, name, changes(1, 5));
    const lost = new FirehoseStandin({ s3, bucket: name, deliveryStreamName: name, bufferIntervalMs: 60_000 });
    const a = new KinesisPoller({
      client: kinesis,
      streamName: name,
      consumer: lost.consume,
      name: 'a',
      checkpoints,
      durableThrough: lost.deliveredThrough,
      idlePollMs: 20,
    });
    await a.start();
    await until('the buffer to hold 5 records', () => (lost as unknown as { buffer: unknown[] }).buffer.length === 5);
    await a.stop(); // the process dies: its buffer was never delivered

    const firehose = new FirehoseStandin({ s3, bucket: name, deliveryStreamName: name, bufferIntervalMs: 100 });
    firehose.start();
    const b = new KinesisPoller({
      client: kinesis,
      streamName: name,
      consumer: firehose.consume,
      name: 'b',
      checkpoints,
      durableThrough: firehose.deliveredThrough,
      idlePollMs: 20,
    });
    await b.start();
    await until('5 records archived', () => firehose.records === 5);
    await putOnStream(kinesis, name, changes(6, 7));
    await until('7 records archived', () => firehose.records === 7);
    await b.stop();
    await firehose.stop();
    // every record once; objects delivered within one moment need not list in delivery order
    const ids = (await archivedEvents(s3, name)).map((e) => (e.kind === 'change' ? Number(e.key.sales_order_id) : null));
    expect(ids.sort((x, y) => x! - y!)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const [shard] = await openShards(kinesis, name);
    const saved = (await s3.send(new ListObjectsV2Command({ Bucket: name, Prefix: 'checkpoints/' }))).Contents!.map((o) => o.Key);
    expect(saved).toEqual([expect.stringContaining(`checkpoints/test/${name}/${shard}-`)]);
  });

  it('with a batching window, invokes once a batch is full or the window has passed since the first record', async () => {
    const { name } = await fresh(1);
    const calls: { ids: number[]; at: number }[] = [];
    const consumer: BatchConsumer = async (event) => {
      calls.push({ ids: event.Records.map((r) => JSON.parse(Buffer.from(r.kinesis.data, 'base64').toString()).key.sales_order_id), at: Date.now() });
    };
    const poller = new KinesisPoller({ client: kinesis, streamName: name, consumer, name: 'a', batchSize: 5, batchingWindowMs: 1_500, idlePollMs: 50 });
    await poller.start();
    const start = Date.now();
    await putOnStream(kinesis, name, changes(1, 7));
    await new Promise((r) => setTimeout(r, 400));
    await putOnStream(kinesis, name, changes(8, 9));
    await until('every record handed over', () => calls.flatMap((c) => c.ids).length === 9, 5_000);
    await poller.stop();
    // a full batch at once; the rest, arrived in two puts, together once the window has passed
    expect(calls.map((c) => c.ids)).toEqual([
      [1, 2, 3, 4, 5],
      [6, 7, 8, 9],
    ]);
    expect(calls[0].at - start).toBeLessThan(1_000);
    expect(calls[1].at - calls[0].at).toBeGreaterThanOrEqual(1_400);
  });

  it('has the archiver deliver a split parent once it is read to its end: its children are read without waiting out the buffer interval', async () => {
    const { name, checkpoints } = await fresh(1);
    const [parent] = await openShards(kinesis, name);
    await putOnStream(kinesis, name, changes(1, 10));
    const firehose = new FirehoseStandin({ s3, bucket: name, deliveryStreamName: name, bufferIntervalMs: 60_000 });
    const held = () => (firehose as unknown as { buffer: unknown[] }).buffer.length;
    firehose.start();
    const poller = new KinesisPoller({
      client: kinesis,
      streamName: name,
      consumer: firehose.consume,
      name: 'a',
      checkpoints,
      durableThrough: firehose.deliveredThrough,
      makeDurable: firehose.deliverNow,
      idlePollMs: 20,
      discoverMs: 100,
    });
    await poller.start();
    try {
      await until('the parent buffered', () => held() === 10);
      await splitShard(kinesis, name, parent);
      await putOnStream(kinesis, name, changes(11, 20));
      // the children are read only once the parent's end is delivered; a 60 s buffer is not waited out
      await until('the parent delivered and the children buffered', () => firehose.records === 10 && held() === 10, 10_000);
    } finally {
      await poller.stop();
      await firehose.stop();
    }
    const ids = (await archivedEvents(s3, name)).map((e) => (e.kind === 'change' ? Number(e.key.sales_order_id) : null));
    expect(ids.sort((x, y) => x! - y!)).toEqual(changes(1, 20).map((c) => c.key.sales_order_id));
  });

  it('reads a split parent to its end before its children, and does not read it again after a restart', async () => {
    const { name, checkpoints } = await fresh(1);
    const [parent] = await openShards(kinesis, name);
    await putOnStream(kinesis, name, changes(1, 30));
    const { seen, consumer, all } = recording();
    const poller = new KinesisPoller({ client: kinesis, streamName: name, consumer, name: 'a', checkpoints, idlePollMs: 20, discoverMs: 100 });
    await poller.start();
    await until('the parent read', () => all().length === 30);
    await splitShard(kinesis, name, parent);
    const children = await openShards(kinesis, name);
    await putOnStream(kinesis, name, changes(31, 60));
    await until('the children read', () => all().length === 60, 10_000);
    await poller.stop();
    expect(seen.get(parent)).toEqual(changes(1, 30).map((c) => c.key.sales_order_id));
    expect(children.flatMap((c) => seen.get(c) ?? []).sort((a, b) => a - b)).toEqual(changes(31, 60).map((c) => c.key.sales_order_id));
    expect(children.every((c) => (seen.get(c)?.length ?? 0) > 0)).toBe(true);

    const again = recording();
    const restarted = new KinesisPoller({ client: kinesis, streamName: name, consumer: again.consumer, name: 'b', checkpoints, idlePollMs: 20 });
    await restarted.start();
    await putOnStream(kinesis, name, changes(61, 62));
    await until('the new changes', () => again.all().length === 2);
    expect(restarted.reading.sort()).toEqual([...children].sort());
    await restarted.stop();
  });
});
