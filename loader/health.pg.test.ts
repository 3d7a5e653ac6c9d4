/**
 * `totes run loader` as a process with its warehouse behind a TCP proxy that black-holes (no
 * bytes, no FIN, no RST): /health answers 503 within 2 s instead of hanging, the metrics line
 * keeps going out (WarehouseUnreachable = 1), and the load resumes, nothing lost, when the path
 * comes back.
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { freePort } from '../local/servers.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { lambdaEvent, putOnStream, readShards } from '../test/stream-fixture.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { startTotes, type TotesProcess } from '../test/totes-process.ts';
import { until } from '../test/until.ts';

const STREAM = 'changes';
const BUCKET = 'processed';
const SHARD = 'shardId-000000000000';

describe('totes run loader, when the warehouse goes silent', () => {
  let aws: LocalAws;
  let kinesis: KinesisClient;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let loader: TotesProcess | null = null;

  beforeAll(async () => {
    [aws, warehouse] = await Promise.all([startLocalAws({ stream: STREAM, shards: 1, buckets: [] }), createDatabase('loaderhealth')]);
    kinesis = kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
    pool = poolFor(warehouse.url, 1);
    const url = new URL(warehouse.url);
    proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.open();
  });
  afterAll(async () => {
    if (loader?.running()) {
      loader.child.kill('SIGKILL');
      await loader.exited;
    }
    await proxy?.close();
    kinesis?.destroy();
    await pool?.end();
    await warehouse?.drop();
    await aws?.stop();
  });

  it('answers /health 503 within 2 s, keeps emitting its metrics line, and loads what waited once the path returns', async () => {
    await putOnStream(kinesis, STREAM, [salesOrderChange(1), salesOrderChange(2), salesOrderChange(1, 'u', { units_sold: 7 }), salesOrderChange(3)], {
      maxEventsPerRecord: 1,
    });
    const records = (await readShards(kinesis, STREAM)).get(SHARD)!;
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const processor = new Processor(new MicroBatchStore(s3, BUCKET));
    const process = async (from: number, to: number) => {
      expect((await processor.handler(lambdaEvent(records.slice(from, to + 1), SHARD, STREAM))).batchItemFailures).toEqual([]);
    };
    const loaded = async () => (await pool.query('SELECT count(*)::int AS n FROM fact_sales_order').catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n;

    const via = new URL(warehouse.url);
    via.port = String(proxy.port);
    const port = await freePort();
    loader = startTotes(['run', 'loader'], {
      TOTES_WAREHOUSE_URL: via.toString(),
      TOTES_PROCESSED_BUCKET: BUCKET,
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_S3_ENDPOINT: aws.s3Endpoint,
      TOTES_HEALTH_PORT: String(port),
      TOTES_METRICS_SECONDS: '1',
    });
    const proc = loader;
    const health = async () => {
      if (!proc.running()) throw new Error(`the loader exited:\n${proc.out.stderr.slice(-3000)}\n${proc.out.stdout.slice(-3000)}`);
      const from = Date.now();
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(10_000) });
      return { status: res.status, ms: Date.now() - from, body: (await res.json()) as { warehouse?: string } };
    };
    const metricsLines = () =>
      proc.out.stdout
        .split('\n')
        .filter((l) => l.includes('"_aws"'))
        .map((l) => JSON.parse(l) as { WarehouseUnreachable?: number });

    await process(0, 1);
    await until('the first batch to load', async () => (await loaded()) === 2, 30_000, 100);
    await until(
      '/health to say 200',
      async () => (await health().catch((e) => (/exited/.test(e.message) ? Promise.reject(e) : null)))?.status === 200,
      30_000,
      100,
    );

    proxy.blackHole();
    await process(2, 3); // waits in the bucket
    const linesBefore = metricsLines().length;
    const answers: { status: number; ms: number }[] = [];
    for (let i = 0; i < 4; i++) {
      answers.push(await health());
      await sleep(500);
    }
    await sleep(1_500);
    const silentLines = metricsLines().slice(linesBefore);
    expect(answers.map((a) => a.status)).toEqual([503, 503, 503, 503]);
    for (const a of answers) expect(a.ms, 'a health check answers within 2 s').toBeLessThan(2_000);
    expect(silentLines.length, 'metrics lines while the warehouse is silent').toBeGreaterThanOrEqual(2);
    expect(silentLines.every((l) => l.WarehouseUnreachable === 1)).toBe(true);

    proxy.restore();
    await until('the batch that waited to load', async () => (await loaded()) === 4, 60_000, 100);
    await until('/health to say 200 again', async () => (await health()).status === 200, 30_000, 100);
    const { rows } = await pool.query('SELECT sales_order_id, source_op, units_sold FROM fact_sales_order ORDER BY source_lsn, sales_order_id');
    expect(rows.map((r) => [r.sales_order_id, r.source_op, r.units_sold])).toEqual([
      [1, 'c', 1000],
      [2, 'c', 1000],
      [1, 'u', 7],
      [3, 'c', 1000],
    ]);
    await until('a metrics line with the warehouse answering', () => metricsLines().at(-1)?.WarehouseUnreachable === 0, 10_000, 100);
    s3.destroy();
  });
});
