/**
 * The production bundle of the capture service, run as the image runs it: its own process,
 * from a folder holding only the bundle, against Postgres and Kinesis (kinesalite). It
 * snapshots, streams a change, answers /health, and drains and exits 0 on SIGTERM. .ci/run also
 * runs this file under Node 22, the image's runtime.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURE_STATE_DDL, createPublicationSql } from '../capture/source-setup.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { inTransaction, poolFor, type Pool } from '../lib/pg.ts';
import { freePort } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { readStream, startNode, type RunningProcess } from '../test/process.ts';
import { until } from '../test/until.ts';
import { IMAGE } from '../infra/image.ts';
import { buildService, serviceBundle } from './bundle.ts';

const STREAM = 'changes';
const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe(`the capture service bundle on Node ${process.versions.node}`, () => {
  let outDir: string;
  let aws: LocalAws;
  let source: Awaited<ReturnType<typeof createDatabase>>;
  let pool: Pool;
  let proc: RunningProcess | undefined;

  beforeAll(async () => {
    outDir = mkdtempSync(join(tmpdir(), 'totes-service-'));
    [source, aws] = await Promise.all([createDatabase('service'), startLocalAws({ stream: STREAM, shards: 2, buckets: [] }), buildService(outDir)]);
    pool = poolFor(source.url, 2);
    await inTransaction(pool, async (db) => {
      await createTotesys(db, { seed: 5, sizes: scaledSizes(0.002) });
      // what the DBA prepares: the production service creates neither
      await db.query(CAPTURE_STATE_DDL);
      await db.query(createPublicationSql('totes_cdc'));
    });
  });
  afterAll(async () => {
    if (proc?.running()) {
      proc.kill('SIGKILL');
      await proc.exited;
    }
    await pool?.end();
    await aws?.stop();
    await source?.drop();
    rmSync(outDir, { recursive: true, force: true });
  });

  it('snapshots every table, streams a change, is healthy, and on SIGTERM drains and exits 0', async () => {
    const port = await freePort();
    const slot = `svc_${source.name}`;
    const running = startNode([serviceBundle('capture')], {
      cwd: outDir,
      env: {
        TOTES_SOURCE_URL: source.url,
        TOTES_STREAM_NAME: STREAM,
        TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
        TOTES_SLOT_NAME: slot,
        TOTES_HEALTH_PORT: String(port),
        TOTES_HEARTBEAT_SECONDS: '1',
      },
    });
    proc = running;
    const alive = () => {
      if (!running.running()) throw new Error(`capture exited:\n${running.out.stdout.slice(-3000)}\n${running.out.stderr.slice(-3000)}`);
      return true;
    };
    const health = async () =>
      fetch(`http://127.0.0.1:${port}/health`)
        .then(async (r) => ({ status: r.status, body: (await r.json()) as { healthy: boolean; heartbeats: number; snapshotPending: boolean } }))
        .catch(() => null);
    await until('a healthy service that has seen a heartbeat', async () => alive() && ((await health())?.body.heartbeats ?? 0) > 0, 60_000, 100);
    expect((await health())?.status).toBe(200);
    // its first metrics line at start, not a minute in: a restarted task's figures resume at once (the alarms rely on it)
    const emf = running.out.stdout.split('\n').filter((l) => l.includes('"_aws"'));
    expect(emf.length, running.out.stdout.slice(-2000)).toBeGreaterThan(0);
    expect(JSON.parse(emf[0])).toMatchObject({ Service: 'capture', SourceUnreachable: 0 });

    await pool.query(`UPDATE address SET phone = '0161 555 0100', last_updated = now() WHERE address_id = 1`);
    await until(
      'the update in the stream',
      async () =>
        alive() &&
        (await readStream(aws.kinesisEndpoint, STREAM)).some(
          (e) => e.kind === 'change' && e.op === 'u' && e.table === 'address' && e.after?.phone === '0161 555 0100',
        ),
      20_000,
      200,
    );
    // the snapshot runs beside the stream: the update can arrive before its last table
    await until('the snapshot done', async () => alive() && (await health())?.body.snapshotPending === false, 30_000, 200);
    const events = await readStream(aws.kinesisEndpoint, STREAM);
    const snapshotted = new Set(events.flatMap((e) => (e.kind === 'change' && e.op === 'r' ? [e.table] : [])));
    const empty = await pool.query(`SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public' AND n_live_tup = 0`);
    expect([...snapshotted].sort()).toEqual(SOURCE_TABLE_NAMES.filter((t) => !empty.rows.some((r) => r.relname === t)).sort());

    running.kill('SIGTERM');
    expect(await running.exited).toEqual({ code: 0, signal: null });
    console.info(`the capture service bundle ran on Node ${process.versions.node}`);
  });

  it('reads the CA bundle where the image has it and then accepts only verified TLS: a source without TLS is refused, in one line, exit 1', async () => {
    // as the Dockerfile's runtime stage lays it out: the bundle in the working directory, infra/certs/ as certs/
    cpSync(join(ROOT, 'infra/certs'), join(outDir, 'certs'), { recursive: true });
    const caFile = join(outDir, 'certs', 'rds-ca-bundle.pem');
    expect(IMAGE.certsDir).toBe('/app/certs/');
    const env = {
      TOTES_SOURCE_URL: source.url,
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_HEALTH_PORT: String(await freePort()),
    };
    const refused = startNode([serviceBundle('capture')], { cwd: outDir, env: { ...env, TOTES_DB_CA_FILE: caFile } });
    expect((await refused.exited).code).toBe(1);
    const lines = refused.out.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ level: 60, msg: 'capture stopped: The server does not support SSL connections' });
    const missing = startNode([serviceBundle('capture')], { cwd: outDir, env: { ...env, TOTES_DB_CA_FILE: join(outDir, 'certs', 'absent.pem') } });
    expect((await missing.exited).code).toBe(1);
    expect(missing.out.stdout).toContain('ENOENT');
  });
});
