/**
 * `totes forget` on a running pipeline with keys: afterwards no byte the stack keeps (both
 * buckets' objects with gzip opened and Parquet decoded, the stream's records, the key store, a
 * dump of every warehouse table, the services' logs) shows the staff member's name or e-mail
 * readable; their sealed copies open as erased; a later change of theirs arrives erased; verify
 * passes, and a replay equals the live warehouse for them. The same for a counterparty's contacts.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.ts';
import { ERASED } from '../formats/personal-data.ts';
import { log } from '../lib/log.ts';
import { poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { replayArchive } from '../replay/replay.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { SubjectKeys } from '../stores/subject-keys.ts';
import { bucketText } from '../test/bucket-text.ts';
import { archiveEverything, startTestPipeline, type TestPipeline } from '../test/pipeline-harness.ts';
import { readShards } from '../test/stream-fixture.ts';
import { until } from '../test/until.ts';
import { verifyAsOf } from '../verify/as-of.ts';
import { formatDifferences, verify } from '../verify/verify.ts';

const NAME = { first_name: 'Zebulon', last_name: 'Quartermaine', email_address: 'zebulon.quartermaine@terrifictotes.com' };
const CONTACT = 'Philippa Marchbanks';

/** Every line the services log from now on (pino writes to its own stream, not process.stdout.write). */
function captureLogs(): string[] {
  const lines: string[] = [];
  const stream = (log as unknown as Record<symbol, { write(s: string): boolean }>)[pino.symbols.streamSym];
  const write = stream.write.bind(stream);
  stream.write = (s: string) => {
    lines.push(s);
    return write(s);
  };
  return lines;
}

/** What `totes <args>` prints, and its exit status. */
async function totes(args: string[]): Promise<{ status: number; out: string }> {
  let out = '';
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    return { status: await main(args), out };
  } finally {
    process.stderr.write = write;
  }
}

/** Every row of every table of the warehouse database, as text. */
async function dump(db: pg.Pool): Promise<string> {
  const { rows } = await db.query(
    `SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`,
  );
  let text = '';
  for (const t of rows) text += JSON.stringify((await db.query(`SELECT * FROM "${t.table_schema}"."${t.table_name}"`)).rows);
  return text;
}

describe('totes forget', () => {
  let t: TestPipeline;
  let warehouse: pg.Pool;
  let logs: string[];
  let flags: string[];
  let keys: () => SubjectKeys;
  beforeAll(async () => {
    logs = captureLogs();
    t = await startTestPipeline({ personalData: true });
    warehouse = poolFor(t.warehouseUrl, 2);
    const masterKeyFile = t.pipeline.config.keys!.masterKeyFile;
    process.env.TOTES_MASTER_KEY_FILE = masterKeyFile;
    flags = ['--warehouse', t.warehouseUrl, '--keys-bucket', 'keys', '--s3-endpoint', t.s3Endpoint];
    keys = () => new SubjectKeys(t.pipeline.s3, 'keys', LocalMasterKey.fromFile(masterKeyFile));
  });
  afterAll(async () => {
    delete process.env.TOTES_MASTER_KEY_FILE;
    await warehouse?.end();
    await t?.stop();
  });

  it('leaves no readable copy of a staff member’s name or e-mail, keeps them erased, and verify and a replay agree', async () => {
    const before = (await t.sourcePool.query(`SELECT email_address FROM staff WHERE staff_id = 1`)).rows[0].email_address as string;
    // two versions of staff 1 besides the snapshot's (history), and a contact of counterparty 1
    await t.sourcePool.query(`UPDATE staff SET first_name = $1, last_name = $2, email_address = $3, last_updated = now() WHERE staff_id = 1`, [
      NAME.first_name,
      NAME.last_name,
      NAME.email_address,
    ]);
    await t.sourcePool.query(`UPDATE staff SET department_id = 1 + department_id % 2, last_updated = now() WHERE staff_id = 1`);
    await t.sourcePool.query(`UPDATE counterparty SET commercial_contact = $1, last_updated = now() WHERE counterparty_id = 1`, [CONTACT]);
    const department = async () => (await t.sourcePool.query(`SELECT department_id FROM staff WHERE staff_id = 1`)).rows[0].department_id;
    const arrived = async (id: number) =>
      (await warehouse.query(`SELECT department_id FROM dim_staff WHERE staff_id = 1`).catch(() => ({ rows: [] }))).rows[0]?.department_id === id;
    const dept = await department();
    await until('staff 1 renamed and moved in the warehouse', () => arrived(dept), 120_000);
    expect(
      (await warehouse.query(`SELECT count(*)::int AS n FROM dim_staff_history WHERE staff_id = 1 AND first_name = $1`, [NAME.first_name])).rows[0].n,
    ).toBeGreaterThan(0);
    const original = (await t.sourcePool.query(`SELECT email_address FROM staff WHERE staff_id = 2`)).rows[0].email_address as string;

    // a table an analyst derived, in a schema of its own: found by its columns
    await warehouse.query(`CREATE SCHEMA analyst; CREATE TABLE analyst.staff_copy AS SELECT staff_id, first_name, email_address FROM dim_staff`);

    const dry = await totes(['forget', '--staff', '1', '--dry-run', ...flags]);
    expect(dry.status).toBe(0);
    expect(dry.out).toMatch(/public\.dim_staff\s+1 rows to erase/);
    expect(dry.out).toMatch(/public\.dim_staff_history\s+\d+ rows to erase/);
    expect(dry.out).toMatch(/analyst\.staff_copy\s+1 rows to erase/);
    expect((await warehouse.query(`SELECT first_name FROM dim_staff WHERE staff_id = 1`)).rows[0].first_name).toBe(NAME.first_name);
    expect(await keys().record({ kind: 'staff', id: 1 })).toMatchObject({ erasedAt: null });

    const done = await totes(['forget', '--staff', '1', ...flags]);
    expect(done.status).toBe(0);
    expect(done.out).toContain('staff 1: key destroyed');
    expect(done.out).toMatch(/waiting \d+ s/);
    expect(done.out).toMatch(/public\.dim_staff\s+1 rows erased/);
    expect(done.out).toMatch(/analyst\.staff_copy\s+1 rows erased/);
    const again = await totes(['forget', '--staff', '1', ...flags]);
    expect(again.out).toContain('already erased');
    expect(again.out).not.toContain('waiting');
    expect(again.out).toMatch(/public\.dim_staff\s+0 rows erased/);

    // a later change of theirs arrives erased: no new key brings their values back
    await t.sourcePool.query(
      `UPDATE staff SET last_name = 'Quartermaine-Smythe', department_id = 1 + department_id % 2, last_updated = now() WHERE staff_id = 1`,
    );
    await until('staff 1 moved again in the warehouse', async () => arrived(await department()), 120_000);
    expect((await warehouse.query(`SELECT first_name, last_name, email_address FROM dim_staff WHERE staff_id = 1`)).rows[0]).toEqual({
      first_name: ERASED,
      last_name: ERASED,
      email_address: ERASED,
    });

    const checked = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000, keys: { bucket: 'keys', s3Endpoint: t.s3Endpoint } });
    expect(formatDifferences(checked.differences)).toBe('');
    const asOf = await verifyAsOf({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000, keys: { bucket: 'keys', s3Endpoint: t.s3Endpoint } });
    expect(formatDifferences(asOf.differences)).toBe('');
    const unaware = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000, rechecks: 0 });
    expect(unaware.differences.map((d) => d.column).sort()).toEqual(['email_address', 'first_name', 'last_name']);

    expect((await totes(['forget', '--counterparty', '1', ...flags])).out).toContain('counterparty 1: key destroyed');
    await archiveEverything(t.pipeline);

    const kept = new Map([
      ...(await bucketText(t.pipeline.s3, 'ingestion')),
      ...(await bucketText(t.pipeline.s3, 'processed')),
      ...(await bucketText(t.pipeline.s3, 'keys')),
    ]);
    for (const [shard, records] of await readShards(t.pipeline.kinesis, 'changes'))
      kept.set(`stream/${shard}`, records.map((r) => Buffer.from(r.Data!).toString('utf8')).join(''));
    await replayArchive({ s3: t.pipeline.s3, bucket: 'ingestion', pool: warehouse, schema: 'replayed', freshSchema: true, keys: keys() });
    kept.set('warehouse', await dump(warehouse));
    kept.set('logs', logs.join(''));
    const person = [...Object.values(NAME), before, 'Quartermaine-Smythe', CONTACT];
    const readable = [...kept].flatMap(([where, text]) => person.filter((v) => text.includes(v)).map((v) => `${where}: ${v}`));
    expect(readable).toEqual([]);
    // the search can find: another staff member's e-mail is in the warehouse in the clear
    expect(kept.get('warehouse')).toContain(original);
    // the sealed copies are still there, locked, and open as erased with the one key store
    for (const kind of ['staff', 'counterparty']) {
      const sealed = [...kept.values()].join('\n').match(new RegExp(`pd1:${kind}:1:1:[A-Za-z0-9+/=]+`, 'g')) ?? [];
      expect(sealed.length).toBeGreaterThan(0);
      for (const s of new Set(sealed)) expect(await keys().open(s)).toBe(ERASED);
    }

    const staffOf = (schema: string) =>
      warehouse.query(`SELECT staff_id, first_name, last_name, email_address, department_id FROM ${schema}.dim_staff WHERE staff_id = 1`).then((r) => r.rows);
    const historyOf = (schema: string) =>
      warehouse
        .query(
          `SELECT first_name, last_name, email_address, department_id, source_lsn FROM ${schema}.dim_staff_history WHERE staff_id = 1 ORDER BY source_lsn, source_pos`,
        )
        .then((r) => r.rows);
    expect(await staffOf('replayed')).toEqual(await staffOf('public'));
    expect(await historyOf('replayed')).toEqual(await historyOf('public'));
  }, 360_000); // two real waits of the 60 s key cache, and a replay
});
