/**
 * The loader against a real warehouse and a real stream: each micro-batch loads once, however
 * often it is offered; batches that arrive out of order, overlap or were cut anew load to what
 * in-order loading gives (a delete version carries the values it ends); records no batch holds
 * are a gap that holds the watermark back, visibly, until they arrive; and a warehouse that goes
 * away is waited for, then caught up with nothing lost.
 */
import type { KinesisClient, _Record } from '@aws-sdk/client-kinesis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg, { poolFor } from '../lib/pg.ts';
import { startKinesis, freePort, type LocalKinesis } from '../local/servers.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { createStream, heartbeatAt, lambdaEvent, putOnStream, readShards } from '../test/stream-fixture.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { Loader } from './loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { KeyMoveNotLoadedError } from './key-moves.ts';
import { PostgresWarehouse, type Warehouse } from './warehouse.ts';

const SHARD = 'shardId-000000000000';

const versions = async (url: string) => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const { rows } = await c.query(`SELECT sales_order_id, source_op, source_lsn::text, units_sold FROM fact_sales_order ORDER BY source_lsn, sales_order_id`);
  await c.end();
  return rows.map((r) => [r.sales_order_id, r.source_op, r.units_sold]);
};

describe('loader', () => {
  let aws: LocalAws;
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  let streams = 0;
  const cleanups: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [] });
    kinesis = await startKinesis({ port: await freePort(), streams: [] });
    client = kinesisClient({ kinesisEndpoint: kinesis.endpoint });
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });
  afterAll(async () => {
    client?.destroy();
    await kinesis?.stop();
    await aws?.stop();
  });

  /** A one-shard stream holding `events`, a bucket, a warehouse, a processor and a loader over them. */
  async function setup(events: Parameters<typeof putOnStream>[2], warehouseUrl?: (url: string) => Promise<string>) {
    const name = `loader-${++streams}`;
    await createStream(client, name, 1);
    await putOnStream(client, name, events, { maxEventsPerRecord: 1 }); // batches are cut by the record here
    const records = (await readShards(client, name)).get(SHARD)!;
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
    await s3.send(new CreateBucketCommand({ Bucket: name }));
    const wh = await createDatabase('loader');
    const pool = poolFor(warehouseUrl ? await warehouseUrl(wh.url) : wh.url, 2);
    pool.on('error', () => undefined); // connections a proxy cuts
    cleanups.push(
      () => wh.drop(),
      () => pool.end(),
      async () => s3.destroy(),
    );
    const store = new MicroBatchStore(s3, name);
    const newLoader = (warehouse: Warehouse | pg.Pool = pool) => new Loader(warehouse, store, new ShardStream(client, name));
    const loader = newLoader();
    await loader.ensureSchema();
    const processor = new Processor(store);
    /** The processor over records[from..to] (inclusive), as one invocation. */
    const process = async (from: number, to: number) => {
      expect((await processor.handler(lambdaEvent(records.slice(from, to + 1), SHARD, name))).batchItemFailures).toEqual([]);
    };
    /** Overwrite an object, as nothing in the pipeline does (putOnce never replaces one). */
    const overwrite = async (key: string, body: string) => {
      const { PutObjectCommand } = await import('@aws-sdk/client-s3');
      await s3.send(new PutObjectCommand({ Bucket: name, Key: key, Body: body }));
    };
    return { url: wh.url, pool, records, loader, newLoader, process, store, overwrite };
  }

  it('loads through the warehouse it is given, and reads and moves the shards only through it', async () => {
    const { url, pool, newLoader, process } = await setup([salesOrderChange(5), salesOrderChange(5, 'u', { units_sold: 7 })]);
    const postgres = new PostgresWarehouse(pool);
    const calls: string[] = [];
    const through =
      <A extends unknown[], R>(name: string, fn: (...args: A) => R) =>
      (...args: A) => {
        calls.push(name);
        return fn(...args);
      };
    // a warehouse of another kind, as the loader sees it: the port's methods and nothing else
    const port: Warehouse = {
      schema: postgres.schema,
      metrics: postgres.metrics,
      ensureSchema: through('ensureSchema', (o) => postgres.ensureSchema(o)),
      addForeignKeys: through('addForeignKeys', () => postgres.addForeignKeys()),
      trustsReferences: through('trustsReferences', () => postgres.trustsReferences()),
      loadTables: through('loadTables', (b, t) => postgres.loadTables(b, t)),
      loadBatches: through('loadBatches', (i, a) => postgres.loadBatches(i, a)),
      shardStates: through('shardStates', (s) => postgres.shardStates(s)),
      settleShards: through('settleShards', (s) => postgres.settleShards(s)),
      freshness: through('freshness', () => postgres.freshness()),
    };
    await process(0, 1);
    const loader = newLoader(port);
    expect(await loader.loadAvailable()).toBe(1);
    expect(await versions(url)).toEqual([
      [5, 'c', 1000],
      [5, 'u', 7],
    ]);
    expect(calls).toEqual(['shardStates', 'loadBatches', 'settleShards']);
    expect(loader.metrics).toMatchObject({ batches: 1, rows: 2 });
  });

  it('loads a transaction whose moved key waits on the next one together with it, not failing every pass', async () => {
    const { url, pool, newLoader, process } = await setup([salesOrderChange(8), salesOrderChange(9), salesOrderChange(10)]);
    const postgres = new PostgresWarehouse(pool);
    const batchesPerLoad: number[] = [];
    // the middle batch holds a new key whose old key's delete is in the last batch (on another shard, in the stream)
    const port: Warehouse = Object.assign(Object.create(postgres), {
      loadBatches: (items: Parameters<Warehouse['loadBatches']>[0], advances: Parameters<Warehouse['loadBatches']>[1]) => {
        batchesPerLoad.push(items.length);
        if (batchesPerLoad.length === 2) throw new KeyMoveNotLoadedError('the old key is not loaded yet');
        return postgres.loadBatches(items, advances);
      },
    });
    for (const i of [0, 1, 2]) await process(i, i);
    // one batch a transaction
    expect(await newLoader(port).loadAvailable(1)).toBe(3);
    expect(batchesPerLoad).toEqual([1, 1, 2]);
    expect((await versions(url)).map(([id]) => id)).toEqual([8, 9, 10]);
  });

  it('loads a micro-batch once, however often it is offered, and overlapping batches once', async () => {
    const { url, loader, process } = await setup([salesOrderChange(1), salesOrderChange(1, 'u', { units_sold: 2000 }), salesOrderChange(2)]);
    await process(0, 1);
    // the same change again inside a different, overlapping batch
    await process(1, 2);
    expect(await loader.loadAvailable()).toBe(2);
    const loaded = await versions(url);
    expect(loaded).toEqual([
      [1, 'c', 1000],
      [1, 'u', 2000],
      [2, 'c', 1000],
    ]);
    await process(0, 1);
    await process(0, 2);
    expect(await loader.loadAvailable()).toBe(0);
    expect(await versions(url)).toEqual(loaded);
  });

  it('does not load a batch whose Parquet holds other rows than its manifest counts, and says which file', async () => {
    const { url, loader, newLoader, process, store, overwrite } = await setup([salesOrderChange(3), salesOrderChange(4)]);
    await process(0, 1);
    const [key] = await store.listManifests(SHARD);
    const manifest = await store.getManifest(key);
    const facts = manifest.tables.find((t) => t.table === 'fact_sales_order')!;
    await overwrite(key, JSON.stringify({ ...manifest, tables: manifest.tables.map((t) => (t === facts ? { ...t, rows: t.rows + 1 } : t)) }));
    await expect(loader.loadAvailable()).rejects.toThrow(`${facts.key} holds 2 rows; its manifest says 3`);
    expect(await versions(url)).toEqual([]);
    await overwrite(key, JSON.stringify(manifest));
    // manifests are immutable: a loader keeps one it has read, so a new one reads the mended manifest
    expect(await newLoader().loadAvailable()).toBe(1);
    expect(await versions(url)).toEqual([
      [3, 'c', 1000],
      [4, 'c', 1000],
    ]);
  });

  it('loads batches that arrive out of order as in order, and holds a gap back until it is filled', async () => {
    const c = salesOrderChange(7);
    const u = salesOrderChange(7, 'u', { units_sold: 2000 });
    const d = salesOrderChange(7, 'd');
    const { url, records, loader, process } = await setup([heartbeatAt('0/10'), c, u, heartbeatAt('0/FFFF0'), d, heartbeatAt('0/FFFFF0')]);
    const heartbeats = (r: _Record) => JSON.parse(Buffer.from(r.Data!).toString()).kind === 'heartbeat';
    expect(records.map(heartbeats)).toEqual([true, false, false, true, false, true]);

    // the delete's batch first, with the update's batch still missing: a gap after the first batch
    await process(0, 1);
    await process(3, 5);
    expect(await loader.loadAvailable()).toBe(1);
    expect(await versions(url)).toEqual([[7, 'c', 1000]]);
    expect(loader.status.gaps).toEqual([
      expect.objectContaining({ shard: SHARD, after: records[1].SequenceNumber, missing: records[2].SequenceNumber, resumesAt: records[3].SequenceNumber }),
    ]);
    const held = await loader.freshness();
    expect(held).toMatchObject({ watermarkLsn: '0/10', gapShards: 1 });
    expect(held.gapSeconds).toBeGreaterThanOrEqual(0);

    // the missing record arrives in a batch that also repeats what was loaded: all of it loads, in order
    await process(1, 3);
    expect(await loader.loadAvailable()).toBe(2);
    expect(await versions(url)).toEqual([
      [7, 'c', 1000],
      [7, 'u', 2000],
      [7, 'd', 2000],
    ]);
    expect(loader.status.gaps).toEqual([]);
    expect(await loader.freshness()).toMatchObject({ watermarkLsn: '0/FFFFF0', gapShards: 0, gapSeconds: null });
  });

  it('brings a warehouse from before frontiers up to date without losing its watermarks', async () => {
    const wh = await createDatabase('loader_upgrade');
    const pool = poolFor(wh.url, 2);
    cleanups.push(
      () => wh.drop(),
      () => pool.end(),
    );
    await pool.query(`CREATE TABLE totes_shard_progress (shard text PRIMARY KEY, last_manifest_key text NOT NULL, watermark_lsn pg_lsn NOT NULL DEFAULT '0/0',
      watermark_commit_time timestamptz, updated_at timestamptz NOT NULL DEFAULT now());
      INSERT INTO totes_shard_progress VALUES ('shardId-000000000000', 'manifests/x', '0/500', now() - interval '5 seconds', now());
      CREATE VIEW totes_freshness AS SELECT min(watermark_lsn) AS watermark_lsn, min(watermark_commit_time) AS watermark_commit_time,
        extract(epoch FROM now() - min(watermark_commit_time)) AS lag_seconds FROM totes_shard_progress;`);
    const loader = new Loader(pool, new MicroBatchStore(s3Client({ s3Endpoint: aws.s3Endpoint }), 'unused'), new ShardStream(client, 'unused'));
    await loader.ensureSchema();
    await loader.ensureSchema();
    expect(await loader.freshness()).toMatchObject({ watermarkLsn: '0/500', gapShards: 0, gapSeconds: null });
    const { rows } = await pool.query(`SELECT frontier_seq, parents, ended FROM totes_shard_progress`);
    expect(rows).toEqual([{ frontier_seq: null, parents: [], ended: false }]);
  });

  it('waits out an unreachable warehouse and catches up, losing and doubling nothing', async () => {
    let proxy: Awaited<ReturnType<typeof startProxy>> | null = null;
    const { url, loader, process } = await setup(
      [salesOrderChange(10), salesOrderChange(11), salesOrderChange(10, 'u', { units_sold: 5 }), salesOrderChange(12)],
      async (direct) => {
        const target = new URL(direct);
        proxy = await startProxy({ host: target.hostname, port: Number(target.port) });
        await proxy.open();
        const via = new URL(direct);
        via.host = `127.0.0.1:${proxy.port}`;
        return via.toString();
      },
    );
    cleanups.push(async () => proxy!.close());
    const abort = new AbortController();
    await process(0, 1);
    await proxy!.close();
    const loop = loader.runLoop(abort.signal, 50);
    await process(2, 3);
    await new Promise((r) => setTimeout(r, 1500));
    expect(loader.metrics.batches).toBe(0);
    expect(loader.status.error).toBeTruthy();
    await proxy!.open();
    const deadline = Date.now() + 30_000;
    while (loader.metrics.batches < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    await loop;
    expect(await versions(url)).toEqual([
      [10, 'c', 1000],
      [11, 'c', 1000],
      [10, 'u', 5],
      [12, 'c', 1000],
    ]);
  });
});
