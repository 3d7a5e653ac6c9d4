/**
 * The loader against a real warehouse: each micro-batch loads once, however often it is
 * offered, and a warehouse that goes away is waited for, then caught up with nothing lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import pg, { poolFor } from '../lib/pg.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { kinesisEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { until } from '../test/until.ts';
import { Loader } from './loader.ts';

const versions = async (url: string) => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const { rows } = await c.query(`SELECT sales_order_id, source_op, source_lsn::text, units_sold FROM fact_sales_order ORDER BY source_lsn, sales_order_id`);
  await c.end();
  return rows;
};

describe('loader', () => {
  let aws: LocalAws;
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: ['processed-a', 'processed-b'] });
  });
  afterAll(async () => {
    await aws?.stop();
  });

  it('loads a micro-batch once, however often it is offered', async () => {
    const wh = await createDatabase('loader_once');
    const pool = poolFor(wh.url, 2);
    const store = new MicroBatchStore(s3Client({ s3Endpoint: aws.s3Endpoint }), 'processed-a');
    try {
      const loader = new Loader(pool, store);
      await loader.ensureSchema();
      const first = salesOrderChange(1),
        update = salesOrderChange(1, 'u', { units_sold: 2000 });
      const processor = new Processor(store);
      await processor.handler(kinesisEvent([first, update], 'shardId-000000000000', 1));
      // the same changes again inside a different (overlapping) batch
      await processor.handler(kinesisEvent([update, salesOrderChange(2)], 'shardId-000000000000', 2));
      expect(await loader.loadAvailable()).toBe(2);
      const loaded = await versions(wh.url);
      expect(loaded.map((r) => [r.sales_order_id, r.source_op, r.units_sold])).toEqual([
        [1, 'c', 1000],
        [1, 'u', 2000],
        [2, 'c', 1000],
      ]);
      const [key] = await store.listManifests('shardId-000000000000');
      expect(await loader.loadBatch(await store.getManifest(key), key)).toBe(false);
      expect(await loader.loadAvailable()).toBe(0);
      expect(await versions(wh.url)).toEqual(loaded);
    } finally {
      await pool.end();
      await wh.drop();
    }
  });

  it('waits out an unreachable warehouse and catches up, losing and doubling nothing', async () => {
    const wh = await createDatabase('loader_outage');
    const target = new URL(wh.url);
    const proxy = await startProxy({ host: target.hostname, port: Number(target.port) });
    await proxy.open();
    const viaProxy = new URL(wh.url);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const pool = poolFor(viaProxy.toString(), 2);
    pool.on('error', () => undefined); // connections cut by the proxy
    const store = new MicroBatchStore(s3Client({ s3Endpoint: aws.s3Endpoint }), 'processed-b');
    const abort = new AbortController();
    try {
      const loader = new Loader(pool, store);
      await loader.ensureSchema();
      const processor = new Processor(store);
      await processor.handler(kinesisEvent([salesOrderChange(10), salesOrderChange(11)], 'shardId-000000000000', 1));
      await proxy.close();
      const loop = loader.runLoop(abort.signal, 50);
      await processor.handler(kinesisEvent([salesOrderChange(10, 'u', { units_sold: 5 }), salesOrderChange(12)], 'shardId-000000000000', 3));
      await new Promise((r) => setTimeout(r, 1500));
      expect(loader.metrics.batches).toBe(0);
      await proxy.open();
      await until('both batches loaded after the outage', () => loader.metrics.batches >= 2, 30_000, 100);
      abort.abort();
      await loop;
      expect((await versions(wh.url)).map((r) => [r.sales_order_id, r.source_op, r.units_sold])).toEqual([
        [10, 'c', 1000],
        [11, 'c', 1000],
        [10, 'u', 5],
        [12, 'c', 1000],
      ]);
    } finally {
      abort.abort();
      await pool.end();
      await proxy.close();
      await wh.drop();
    }
  });
});
