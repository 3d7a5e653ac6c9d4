/**
 * Every service and `totes verify`, as their own processes, ending a fatal error the same way:
 * one line on stderr saying what is wrong and what to do, no stack, a non-zero exit (2 for
 * configuration). Real endpoints throughout: a port nothing listens on, a stream and a bucket
 * that do not exist, a source without its publication, a warehouse no pipeline feeds.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURE_STATE_DDL } from '../capture/source-setup.ts';
import pg, { poolFor } from '../lib/pg.ts';
import { PostgresWarehouse } from '../loader/warehouse.ts';
import { freePort } from '../local/servers.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { runTotes } from '../test/totes-process.ts';
import { TOTESYS_DDL } from '../totesys/schema.ts';

type Result = Awaited<ReturnType<typeof runTotes>>;

/** Exactly one line on stderr, matching `line`; no stack frame anywhere; exit `code`. */
function expectOneLine(r: Result, code: number, line: RegExp): void {
  const output = `exit ${r.code}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout.slice(-2000)}`;
  expect(r.code, output).toBe(code);
  expect(r.stderr.trimEnd().split('\n'), output).toHaveLength(1);
  expect(r.stderr, output).toMatch(line);
  expect(`${r.stderr}${r.stdout}`, output).not.toMatch(/^\s+at /m);
}

describe('fatal errors end with one line and a non-zero exit', () => {
  let aws: LocalAws;
  let bare: Awaited<ReturnType<typeof createDatabase>>;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let closed: number;
  let aws_env: Record<string, string>;

  beforeAll(async () => {
    [aws, bare, warehouse, closed] = await Promise.all([
      startLocalAws({ stream: 'changes', shards: 1, buckets: ['processed', 'ingestion'] }),
      createDatabase('fatal_src'),
      createDatabase('fatal_wh'),
      freePort(),
    ]);
    aws_env = { TOTES_STREAM_NAME: 'changes', TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint, TOTES_S3_ENDPOINT: aws.s3Endpoint };
    // totesys and capture's state as a DBA would leave them, less the publication
    const c = new pg.Client({ connectionString: bare.url });
    await c.connect();
    await c.query(TOTESYS_DDL);
    await c.query(CAPTURE_STATE_DDL);
    await c.end();
    // a warehouse whose loader has never loaded anything
    const pool = poolFor(warehouse.url, 1);
    await new PostgresWarehouse(pool).ensureSchema();
    await pool.end();
  });
  afterAll(async () => {
    await aws?.stop();
    await bare?.drop();
    await warehouse?.drop();
  });

  const unreachable = (database: string) => `postgres://postgres:postgres@127.0.0.1:${closed}/${database}`;

  it('processor: Kinesis unreachable', async () => {
    const r = await runTotes(['run', 'processor'], { ...aws_env, TOTES_KINESIS_ENDPOINT: `http://127.0.0.1:${closed}`, TOTES_PROCESSED_BUCKET: 'processed' });
    expectOneLine(r, 1, /^totes run processor: cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\), the address in TOTES_KINESIS_ENDPOINT: start it/);
  });

  it('processor: the processed bucket does not exist', async () => {
    const r = await runTotes(['run', 'processor'], { ...aws_env, TOTES_PROCESSED_BUCKET: 'no-such-bucket' });
    expectOneLine(r, 1, /^totes run processor: bucket "no-such-bucket" does not exist: create it, or set TOTES_PROCESSED_BUCKET/);
  });

  it('archiver: the stream does not exist', async () => {
    const r = await runTotes(['run', 'archiver'], { ...aws_env, TOTES_STREAM_NAME: 'no-such-stream', TOTES_INGESTION_BUCKET: 'ingestion' });
    expectOneLine(r, 1, /^totes run archiver: Kinesis stream "no-such-stream" does not exist: create it/);
  });

  it('loader: the warehouse unreachable', async () => {
    const r = await runTotes(['run', 'loader'], { ...aws_env, TOTES_PROCESSED_BUCKET: 'processed', TOTES_WAREHOUSE_URL: unreachable('warehouse') });
    expectOneLine(r, 1, /^totes run loader: cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\), the address in TOTES_WAREHOUSE_URL/);
  });

  it('capture: no publication', async () => {
    const r = await runTotes(['run', 'capture'], { ...aws_env, TOTES_SOURCE_URL: bare.url, TOTES_HEALTH_PORT: String(await freePort()) });
    expectOneLine(r, 3, /^totes run capture: publication "totes_cdc" does not exist: create it with: CREATE PUBLICATION/);
  });

  it('capture: its health port taken (an error raised outside any await)', async () => {
    const taken = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, resolve));
    try {
      const r = await runTotes(['run', 'capture'], { ...aws_env, TOTES_SOURCE_URL: bare.url, TOTES_HEALTH_PORT: String(port) });
      expectOneLine(r, 1, new RegExp(`^totes run capture: listen EADDRINUSE: address already in use .*:${port}: stop what holds that port, or choose another`));
    } finally {
      taken.close();
    }
  });

  it('capture: bad configuration', async () => {
    const r = await runTotes(['run', 'capture'], { ...aws_env, TOTES_SOURCE_URL: bare.url, TOTES_DECODER: 'bogus' });
    expectOneLine(r, 2, /^totes run capture: configuration error: TOTES_DECODER="bogus": set it to pgoutput/);
  });

  it('verify: the warehouse never reaches the watermark', async () => {
    const r = await runTotes(['verify', '--source', bare.url, '--warehouse', warehouse.url, '--wait', '1'], {});
    expectOneLine(
      r,
      1,
      /^totes verify: the warehouse did not reach source LSN [0-9A-F/]+ within 1s \(its watermark: none\), so nothing was compared: is the pipeline running\?/,
    );
  });

  it('verify --as-of: the warehouse never loads past the pinned point', async () => {
    const r = await runTotes(['verify', '--as-of', '--source', bare.url, '--warehouse', warehouse.url, '--wait', '1'], {});
    // the point it pinned, then the one line that ends it
    const [pinned, ...rest] = r.stderr.trimEnd().split('\n');
    const lsn = /^pinned the source at LSN ([0-9A-F/]+) \(slot consistent point [0-9A-F/]+, /.exec(pinned)?.[1];
    expect(lsn, r.stderr).toBeDefined();
    expectOneLine(
      { ...r, stderr: rest.join('\n') },
      1,
      new RegExp(
        `^totes verify: the warehouse did not reach source LSN ${lsn} within 1s \\(its watermark: none\\), so nothing was compared: is the pipeline running\\? Or give it longer with --wait, or check that the loader is running$`,
      ),
    );
  });

  it('verify: the warehouse unreachable, or not a warehouse', async () => {
    const down = await runTotes(['verify', '--source', bare.url, '--warehouse', unreachable('warehouse'), '--wait', '1'], {});
    expectOneLine(down, 1, /^totes verify: cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\), the address in --warehouse/);
    const wrong = await runTotes(['verify', '--source', bare.url, '--warehouse', bare.url, '--wait', '1'], {});
    expectOneLine(wrong, 1, /^totes verify: schema "public" of the warehouse has no loader state \(totes_freshness\)/);
  });
});
