/**
 * docker compose's init step as compose runs it (`tsx infra/compose-init.ts`), against a real
 * Postgres and kinesalite: it sets the source up, runs again without complaint, and finishes
 * the job when an earlier run left the role but not the publication (which failed with
 * `role "totes_cdc" already exists`); an unreachable source ends it with one line.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import pg from '../lib/pg.ts';
import { freePort } from '../local/servers.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { ROOT, runTotes } from '../test/totes-process.ts';
import { TOTESYS_DDL } from '../totesys/schema.ts';

const COMPOSE_INIT = [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(ROOT, 'infra', 'compose-init.ts')];

describe('compose-init', () => {
  let aws: LocalAws;
  let source: Awaited<ReturnType<typeof createDatabase>>;
  let db: pg.Client;
  const init = (env: Record<string, string> = {}) =>
    runTotes(
      [],
      { TOTES_SOURCE_URL: source.url, TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint, TOTES_STREAM_NAME: 'totes-changes', ...env },
      60_000,
      COMPOSE_INIT,
    );
  const published = async () =>
    Number((await db.query(`SELECT count(*) FROM pg_publication_tables WHERE pubname = 'totes_cdc' AND schemaname = 'public'`)).rows[0].count);

  beforeAll(async () => {
    [aws, source] = await Promise.all([startLocalAws({ stream: 'unused', shards: 1, buckets: [] }), createDatabase('compose_init')]);
    db = new pg.Client({ connectionString: source.url });
    await db.connect();
    await db.query(TOTESYS_DDL);
  });
  afterAll(async () => {
    await db?.end();
    await aws?.stop();
    await source?.drop();
  });

  it('sets up the source and the stream, and runs again without complaint', async () => {
    const first = await init();
    expect(first.code, first.stderr + first.stdout).toBe(0);
    expect(await published()).toBe(SOURCE_TABLE_NAMES.length);
    expect((await db.query(`SELECT to_regclass('totes_cdc.snapshot_progress') AS t`)).rows[0].t).not.toBeNull();
    expect(first.stdout).toContain('stream totes-changes active');
    const again = await init();
    expect(again.code, again.stderr + again.stdout).toBe(0);
    expect(again.stdout).toMatch(/already there: CREATE PUBLICATION/);
  });

  it('writes the local master key once (mode 0600) and keeps it on the next run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'compose-keys-'));
    try {
      const file = join(dir, 'master.key');
      const first = await init({ TOTES_MASTER_KEY_FILE: file });
      expect(first.code, first.stderr + first.stdout).toBe(0);
      const key = readFileSync(file);
      expect(key).toHaveLength(32);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const again = await init({ TOTES_MASTER_KEY_FILE: file });
      expect(again.code, again.stderr + again.stdout).toBe(0);
      expect(readFileSync(file)).toEqual(key);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finishes a setup that left the role but not the publication', async () => {
    await db.query('DROP PUBLICATION totes_cdc');
    expect((await db.query(`SELECT 1 FROM pg_roles WHERE rolname = 'totes_cdc'`)).rowCount).toBe(1);
    const r = await init();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/already there: CREATE ROLE totes_cdc/);
    expect(r.stdout).toMatch(/applied: CREATE PUBLICATION "totes_cdc"/);
    expect(await published()).toBe(SOURCE_TABLE_NAMES.length);
  });

  it('ends with one line when the source cannot be reached', async () => {
    const r = await init({ TOTES_SOURCE_URL: `postgres://postgres:postgres@127.0.0.1:${await freePort()}/totesys` });
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^compose-init: cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\), the address in TOTES_SOURCE_URL/),
    ]);
  });
});
