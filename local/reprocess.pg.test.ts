/**
 * `totes reprocess` against kinesalite and s3rver: a range the event source mapping gave up on
 * holds the loader at a gap; the command, run as its own process, processes that range from the
 * stream, and the loader's next pass fills the gap and moves the watermark on. Run again, it
 * changes nothing.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { Processor } from '../processors/processor.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { heartbeatAt, lambdaEvent, putOnStream, readShards } from '../test/stream-fixture.ts';
import { runTotes } from '../test/totes-process.ts';

const STREAM = 'changes';
const BUCKET = 'processed';
const SHARD = 'shardId-000000000000';

describe('totes reprocess', () => {
  let aws: LocalAws;
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  const kinesis = () => kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
  beforeAll(async () => {
    [aws, db] = await Promise.all([startLocalAws({ stream: STREAM, shards: 1, buckets: [] }), createDatabase('reprocess')]);
    pool = poolFor(db.url, 2);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
    await aws?.stop();
  });

  it('fills a range the mapping gave up on: the gap closes, the watermark moves on, and again it adds nothing', async () => {
    const client = kinesis();
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const store = new MicroBatchStore(s3, BUCKET);
    await putOnStream(client, STREAM, [...Array.from({ length: 30 }, (_, i) => salesOrderChange(100 + i)), heartbeatAt('0/FFFFFF0')]);
    const records = (await readShards(client, STREAM)).get(SHARD)!;
    expect(records).toHaveLength(31);
    const seq = (i: number) => records[i].SequenceNumber!;

    // the mapping processed 0-9 and 20-30; it gave 10-19 up (their on-failure message names them)
    const mapping = new Processor(store);
    await mapping.handler(lambdaEvent(records.slice(0, 10), SHARD, STREAM));
    await mapping.handler(lambdaEvent(records.slice(20), SHARD, STREAM));
    const loader = new Loader(pool, store, new ShardStream(client, STREAM));
    await loader.ensureSchema();
    await loader.loadAvailable();
    const orders = async () => (await pool.query('SELECT count(DISTINCT sales_order_id)::int AS n FROM fact_sales_order')).rows[0].n;
    expect(await orders()).toBe(10);
    expect(loader.status.gaps).toEqual([expect.objectContaining({ shard: SHARD, missing: seq(10), resumesAt: seq(20) })]);
    expect(await loader.freshness()).toMatchObject({ gapShards: 1 });

    const env = { TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint, TOTES_S3_ENDPOINT: aws.s3Endpoint, TOTES_STREAM_NAME: STREAM, TOTES_PROCESSED_BUCKET: BUCKET };
    const reprocess = () => runTotes(['reprocess', '--shard', SHARD, '--from', seq(10), '--to', seq(19), '--batch', '4'], env);
    const run = await reprocess();
    expect(run.stderr).toContain(`reprocess: 10 records of ${SHARD}, ${seq(10)} to ${seq(19)}, in 3 micro-batches`);
    expect(run.code).toBe(0);
    await loader.loadAvailable();
    expect(loader.status.gaps).toEqual([]);
    expect(await orders()).toBe(30);
    expect(await loader.freshness()).toMatchObject({ watermarkLsn: '0/FFFFFF0', gapShards: 0 });

    const versions = async () => (await pool.query('SELECT count(*)::int AS n FROM fact_sales_order')).rows[0].n;
    expect(await versions()).toBe(30);
    expect((await reprocess()).code).toBe(0);
    await loader.loadAvailable();
    expect(await versions()).toBe(30);

    // a shard the stream does not have: one line, non-zero
    const wrong = await runTotes(['reprocess', '--shard', 'shardId-000000000009', '--from', seq(10)], env);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toMatch(/shardId-000000000009/);
    client.destroy();
    s3.destroy();
  });
});
