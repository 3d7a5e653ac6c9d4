/**
 * The loader's Lambda entry across invocations of one container: a first run that cannot reach
 * the warehouse leaves nothing half-built (the next run creates the schema), and a warehouse
 * that drops the idle connections between runs does not end the container.
 */
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { handler } from './lambda.ts';

const BUCKET = 'processed';
const context = (ms = 90_000) => ({ getRemainingTimeInMillis: () => ms }) as unknown as Context;

describe('loader Lambda entry', () => {
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let aws: LocalAws;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let admin: pg.Client;
  const saved = { ...process.env };

  beforeAll(async () => {
    [warehouse, aws] = await Promise.all([createDatabase('loader_lambda'), startLocalAws({ stream: 'unused', shards: 1, buckets: [BUCKET] })]);
    const url = new URL(warehouse.url);
    proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
    url.port = String(proxy.port);
    Object.assign(process.env, {
      TOTES_WAREHOUSE_URL: url.toString(),
      TOTES_PROCESSED_BUCKET: BUCKET,
      TOTES_S3_ENDPOINT: aws.s3Endpoint,
      TOTES_STREAM_NAME: 'unused',
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
    });
    admin = new pg.Client({ connectionString: warehouse.url });
    await admin.connect();
  });
  afterAll(async () => {
    process.env = saved;
    await admin?.end();
    await proxy?.close();
    await aws?.stop();
    await warehouse?.drop();
  });

  const tables = async () =>
    (await admin.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('totes_load_log', 'fact_sales_order')`)).rows[0]
      .n;

  it('tries the schema again on the run after a first run that could not reach the warehouse', async () => {
    await expect(handler({}, context())).rejects.toThrow(/ECONNREFUSED/);
    expect(await tables()).toBe(0);
    await proxy.open();
    expect(await handler({}, context())).toEqual({ batches: 0, lagSeconds: null, gapSeconds: null });
    expect(await tables()).toBe(2);
  });

  it('survives the warehouse dropping its idle connections between runs, and runs again', async () => {
    const ended = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    );
    expect(ended.rowCount).toBeGreaterThan(0);
    await sleep(200); // the idle clients see the termination
    expect(await handler({}, context())).toEqual({ batches: 0, lagSeconds: null, gapSeconds: null });
  });
});
