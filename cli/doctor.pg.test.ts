/**
 * `totes doctor` as a deployer runs it, its own process, against the local stack's pieces: a
 * source set up as `totes source-setup` prints (on a cluster of its own, since the test changes
 * server settings), a warehouse, kinesalite, s3rver and Secrets Manager's GetSecretValue. A
 * healthy setup passes with exit 0; a broken source fails with exit 1 and a fix per problem.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sourceSetupSql } from '../capture/source-setup.ts';
import { s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import { PostgresWarehouse } from '../loader/warehouse.ts';
import { freePort, startPostgres, type EmbeddedPg } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { startFakeSecretsManager } from '../test/fake-secrets-manager.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { startNode } from '../test/process.ts';
import { SECRET_PLACEHOLDER_HOST } from './doctor-aws.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ARN = (name: string) => `arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/${name}-AbCdEf`;

describe('totes doctor', () => {
  let source: EmbeddedPg;
  let admin: pg.Pool;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let warehousePool: pg.Pool;
  let aws: LocalAws;
  let secrets: Awaited<ReturnType<typeof startFakeSecretsManager>>;
  let env: Record<string, string>;

  beforeAll(async () => {
    [source, warehouse, aws] = await Promise.all([
      freePort().then((port) => startPostgres({ port, databases: ['totesys'], label: 'doctor' })),
      createDatabase('doctor_wh'),
      startLocalAws({ stream: 'changes', shards: 1, buckets: ['ingestion', 'processed'] }),
    ]);
    admin = poolFor(source.url('totesys'), 2);
    await admin.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'`);
    await admin.query('SELECT pg_reload_conf()');
    await inTransaction(admin, async (db) => {
      await createTotesys(db, { seed: 3, sizes: scaledSizes(0.002) });
      await db.query(sourceSetupSql({ publication: 'totes_cdc', role: 'totes_cdc' }));
      await db.query('ALTER ROLE totes_cdc WITH REPLICATION');
    });
    // buckets with objects in them, as after a while of running
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    for (const [bucket, key] of [
      ['ingestion', 'raw/2026/12/01/09/a.gz'],
      ['ingestion', 'raw/2026/12/01/10/b.gz'],
      ['processed', 'manifests/shardId-000000000000/1-2.json'],
      ['processed', 'manifests/shardId-000000000000/3-4.json'],
    ])
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '{}' }));
    s3.destroy();
    warehousePool = poolFor(warehouse.url, 1);
    await new PostgresWarehouse(warehousePool).ensureSchema();
    await warehousePool.query(
      `INSERT INTO totes_shard_progress (shard, last_manifest_key, watermark_lsn, watermark_commit_time) VALUES ('shardId-000000000000', 'manifests/x', '0/16', now())`,
    );
    const sourceUrl = new URL(source.url('totesys'));
    const good = (username: string, password: string, port: string, dbname: string) =>
      JSON.stringify({ host: '127.0.0.1', port: Number(port), username, password, dbname });
    const wh = new URL(warehouse.url);
    secrets = await startFakeSecretsManager({
      [ARN('source')]: good('totes_cdc', 'change-me', sourceUrl.port, 'totesys'),
      [ARN('warehouse')]: good('postgres', 'postgres', wh.port, wh.pathname.slice(1)),
      [ARN('placeholder')]: JSON.stringify({ host: SECRET_PLACEHOLDER_HOST, port: 5432, username: 'totes_loader', password: 'x', dbname: 'warehouse' }),
      [ARN('rds-managed')]: JSON.stringify({ username: 'postgres', password: 'postgres' }),
    });
    env = {
      TOTES_SOURCE_SECRET_ARN: ARN('source'),
      TOTES_WAREHOUSE_SECRET_ARN: ARN('warehouse'),
      TOTES_STREAM_NAME: 'changes',
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_INGESTION_BUCKET: 'ingestion',
      TOTES_PROCESSED_BUCKET: 'processed',
      TOTES_S3_ENDPOINT: aws.s3Endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_REGION: 'eu-west-2',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    };
  });
  afterAll(async () => {
    await secrets?.stop();
    await warehousePool?.end();
    await admin?.end();
    await aws?.stop();
    await warehouse?.drop();
    await source?.stop();
  });

  const doctor = async (args: string[] = [], overrides: Record<string, string> = {}) => {
    const proc = startNode([join(ROOT, 'bin', 'totes.mjs'), 'doctor', ...args], { cwd: ROOT, env: { ...env, ...overrides } });
    const { code } = await proc.exited;
    return { code, out: proc.out.stdout, failures: proc.out.stdout.split('\n').filter((l) => l.includes(' ✗ ')) };
  };

  it('passes a source set up as `totes source-setup` prints, with its secrets, stream, buckets and a fresh warehouse (exit 0)', async () => {
    const { code, out, failures } = await doctor();
    expect(failures, out).toEqual([]);
    expect(code, out).toBe(0);
    for (const line of [
      /secrets +✓ source secret totes\/source-AbCdEf: totes_cdc@127\.0\.0\.1/,
      /source +✓ connected to totes_cdc@127\.0\.0\.1/,
      /source +✓ wal_level is logical/,
      /source +✓ role totes_cdc may stream replication/,
      /source +✓ max_slot_wal_keep_size is 10240 MB/,
      /source +✓ slot totes_cdc does not exist yet \(capture creates it\)/,
      /source +✓ publication totes_cdc has the 11 totesys tables/,
      /source +✓ publication totes_cdc has no other tables/,
      /source +✓ every table has replica identity by its primary key/,
      /source +✓ totes_cdc.snapshot_progress: readable and writable by totes_cdc/,
      /stream +✓ changes: ACTIVE, 1 open shards/,
      /buckets +- ingestion bucket versioning and Object Lock: not implemented by this S3 endpoint/,
      /buckets +✓ processed bucket processed exists and lists/,
      /warehouse +✓ schema public: the 11 star tables/,
      /warehouse +✓ fresh: reflects every source commit up to \d+ s ago/,
    ])
      expect(out).toMatch(line);
  });

  it('fails a broken source and a stale warehouse with exit 1, naming the fix for each', async () => {
    await admin.query(`ALTER PUBLICATION totes_cdc DROP TABLE public.payment`);
    await admin.query(`CREATE TABLE public.audit_log (id int PRIMARY KEY); ALTER PUBLICATION totes_cdc ADD TABLE public.audit_log`);
    await admin.query(`ALTER TABLE public.address REPLICA IDENTITY NOTHING`);
    await admin.query(`REVOKE SELECT ON public.sales_order FROM totes_cdc`);
    await admin.query(`ALTER SYSTEM RESET max_slot_wal_keep_size`);
    await admin.query('SELECT pg_reload_conf()');
    await warehousePool.query(`UPDATE totes_shard_progress SET watermark_commit_time = now() - interval '1 hour'`);
    const { code, out, failures } = await doctor();
    expect(code, out).toBe(1);
    const fixes = failures.map((f) => out.split('\n')[out.split('\n').indexOf(f) + 1].trim());
    expect(failures.map((f) => f.replace(/^\S+ +✗ /, ''))).toEqual([
      'max_slot_wal_keep_size is unlimited (-1)',
      'publication totes_cdc lacks payment',
      'publication totes_cdc also has public.audit_log',
      'replica identity without the primary key: address (n)',
      'role totes_cdc may not read sales_order',
      expect.stringMatching(/^stale: reflects source commits only up to 3\d{3} s ago \(limit 600 s\)$/),
    ]);
    expect(fixes).toEqual([
      expect.stringContaining('max_slot_wal_keep_size = 10GB'),
      'fix: ALTER PUBLICATION totes_cdc ADD TABLE public."payment";',
      'fix: ALTER PUBLICATION totes_cdc DROP TABLE public."audit_log";',
      'fix: ALTER TABLE public."address" REPLICA IDENTITY DEFAULT;',
      'fix: GRANT SELECT ON public."sales_order" TO totes_cdc;',
      expect.stringContaining('alarms'),
    ]);
    expect(out).not.toMatch(/totes_cdc\.signal/);
  });

  it('--only secrets: refuses a secret that still holds the placeholder, and names the command that fills it', async () => {
    expect((await doctor(['--only', 'secrets'])).code).toBe(0);
    const { code, out } = await doctor(['--only', 'secrets'], { TOTES_WAREHOUSE_SECRET_ARN: ARN('placeholder') });
    expect(code, out).toBe(1);
    expect(out).toContain(`warehouse secret totes/placeholder-AbCdEf still holds the placeholder host ${SECRET_PLACEHOLDER_HOST}`);
    expect(out).toContain(`fix: aws secretsmanager put-secret-value --secret-id ${ARN('placeholder')} --secret-string file://warehouse.json`);
    expect(out).not.toMatch(/^source/m);
  });

  it('--only secrets: takes an RDS-managed secret (no host) with the host setting, and without it names what is missing', async () => {
    const rds = { TOTES_WAREHOUSE_SECRET_ARN: ARN('rds-managed') };
    const without = await doctor(['--only', 'secrets'], rds);
    expect(without.code, without.out).toBe(1);
    expect(without.out).toContain('warehouse secret totes/rds-managed-AbCdEf has no host');
    const withHost = await doctor(['--only', 'secrets'], { ...rds, TOTES_WAREHOUSE_HOST: '127.0.0.1' });
    expect(withHost.code, withHost.out).toBe(0);
    expect(withHost.out).toContain('warehouse secret totes/rds-managed-AbCdEf: postgres@127.0.0.1');
  });
});
