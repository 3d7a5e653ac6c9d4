/**
 * `totes start --source URL` as a data engineer uses it on their own totesys: a Postgres this
 * test starts on its own, holding rows the project did not seed. The start refuses an unprepared
 * source without changing it; --apply-setup creates what is missing; the warehouse ends equal to
 * the truth (`totes verify`); nothing is written to the business tables; Ctrl-C leaves only
 * the slot and says how to drop it, and a second run on that slot (dropped on exit) snapshots
 * into its new warehouse and leaves nothing of its own. `totes demo --source` refuses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../lib/pg.ts';
import { freePort, type EmbeddedPg } from '../local/servers.ts';
import { PROCESSED_BUCKET } from '../local/stack.ts';
import { createDatabase, quiesce, startOwnPostgres } from '../test/harness.ts';
import { runTotes, startTotes, type TotesProcess } from '../test/totes-process.ts';
import { until } from '../test/until.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { TOTESYS_DDL } from '../totesys/schema.ts';

/** A small totesys of our own making: not the project's seed or simulator. */
const OWN_ROWS = `
INSERT INTO currency (currency_code, created_at, last_updated) VALUES ('GBP', '2022-11-03 14:20:51.563', '2022-11-03 14:20:51.563'), ('EUR', '2022-11-03 14:20:51.563', '2022-11-03 14:20:51.563');
INSERT INTO address (address_line_1, address_line_2, district, city, postal_code, country, phone, created_at, last_updated) VALUES
  ('1 Mill Lane', NULL, NULL, 'Leeds', 'LS1 1AA', 'United Kingdom', '0113 496 0001', '2022-11-03 14:20:49.962', '2022-11-03 14:20:49.962'),
  ('4 Quay Street', 'Unit 2', 'Salford', 'Manchester', 'M3 3AB', 'United Kingdom', '0161 496 0002', '2022-11-03 14:20:49.962', '2023-02-01 08:00:00.001'),
  ('Rue de la Paix 9', NULL, NULL, 'Paris', '75002', 'France', '+33 1 00 00 00 03', '2022-11-03 14:20:49.962', '2022-11-03 14:20:49.962');
INSERT INTO department (department_name, location, manager, created_at, last_updated) VALUES ('Sales', 'Manchester', 'Rosa Nandi', '2022-11-03 14:20:49.962', '2022-11-03 14:20:49.962');
INSERT INTO staff (first_name, last_name, department_id, email_address, created_at, last_updated) VALUES
  ('Ada', 'Okafor', 1, 'ada.okafor@terrifictotes.com', '2022-11-03 14:20:51.563', '2022-11-03 14:20:51.563'),
  ('Tom', 'Reyes', 1, 'tom.reyes@terrifictotes.com', '2022-11-03 14:20:51.563', '2022-11-03 14:20:51.563');
INSERT INTO counterparty (counterparty_legal_name, legal_address_id, commercial_contact, delivery_contact, created_at, last_updated) VALUES
  ('Hollow Reed Bags Ltd', 2, 'Ian Pell', 'Mo Daly', '2022-11-03 14:20:51.563', '2022-11-03 14:20:51.563'),
  ('Maison Sac SARL', 3, NULL, 'Lea Roux', '2022-11-03 14:20:51.563', '2022-11-03 14:20:51.563');
INSERT INTO design (design_name, file_location, file_name, created_at, last_updated) VALUES
  ('Canvas Weave', '/usr/share/designs', 'canvas-weave.jpg', '2022-11-03 14:20:49.962', '2022-11-03 14:20:49.962'),
  ('Jute', '/private', 'jute-20230114.json', '2023-01-14 10:01:12.400', '2023-01-14 10:01:12.400');
INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id) VALUES
  ('2023-03-14 10:15:00.250', '2023-03-14 10:15:00.250', 1, 1, 1, 1200, 2.99, 1, '2023-03-20', '2023-04-14', 2),
  ('2023-07-01 16:40:12.007', '2023-07-02 09:00:00.999', 2, 2, 2, 350, 4.50, 2, '2023-07-09', '2023-08-01', 3);
INSERT INTO purchase_order (created_at, last_updated, staff_id, counterparty_id, item_code, item_quantity, item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id) VALUES
  ('2023-02-02 11:11:11.111', '2023-02-02 11:11:11.111', 2, 1, 'ZDOI5EA', 800, 0.75, 1, '2023-02-10', '2023-03-01', 1);
INSERT INTO payment_type (payment_type_name, created_at, last_updated) VALUES ('SALES_RECEIPT', '2022-11-03 14:20:49.962', '2022-11-03 14:20:49.962'), ('PURCHASE_PAYMENT', '2022-11-03 14:20:49.962', '2022-11-03 14:20:49.962');
INSERT INTO transaction (transaction_type, sales_order_id, purchase_order_id, created_at, last_updated) VALUES
  ('SALE', 1, NULL, '2023-03-14 10:15:00.250', '2023-03-14 10:15:00.250'), ('PURCHASE', NULL, 1, '2023-02-02 11:11:11.111', '2023-02-02 11:11:11.111');
INSERT INTO payment (created_at, last_updated, transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date, company_ac_number, counterparty_ac_number) VALUES
  ('2023-03-14 10:15:00.250', '2023-03-14 10:15:00.250', 1, 1, 3588.00, 1, 1, false, '2023-04-14', 67305075, 31622269),
  ('2023-02-02 11:11:11.111', '2023-02-02 11:11:11.111', 2, 1, 600.00, 1, 2, true, '2023-03-01', 67305075, 31622269);
`;

describe('totes start --source on a totesys the project did not create', () => {
  let source: EmbeddedPg;
  let url: string;
  let admin: pg.Pool;
  let ports: Record<'warehouse' | 'kinesis' | 's3', number>;
  let running: TotesProcess | null = null;

  const sql = async (text: string, params: unknown[] = []) => (await admin.query(text, params)).rows;
  /** Every business row, as text: what totes must never change. */
  const businessRows = async () =>
    Object.fromEntries(
      await Promise.all(SOURCE_TABLE_NAMES.map(async (t) => [t, (await sql(`SELECT t::text AS r FROM public."${t}" t ORDER BY 1`)).map((x) => x.r)] as const)),
    );
  /** What capture may leave: slots, publications, its schema and its rows there. */
  const captureState = async () => ({
    slots: (await sql('SELECT slot_name FROM pg_replication_slots ORDER BY 1')).map((r) => r.slot_name),
    publications: (await sql('SELECT pubname FROM pg_publication ORDER BY 1')).map((r) => r.pubname),
    schema: (await sql(`SELECT to_regnamespace('totes_cdc') IS NOT NULL AS present`))[0].present,
    progress: (await sql(`SELECT to_regclass('totes_cdc.snapshot_progress') IS NOT NULL AS present`))[0].present
      ? (await sql('SELECT slot_name, table_name FROM totes_cdc.snapshot_progress ORDER BY 1, 2')).length
      : null,
  });
  const stackFlags = () => [
    '--warehouse-port',
    String(ports.warehouse),
    '--kinesis-port',
    String(ports.kinesis),
    '--s3-port',
    String(ports.s3),
    '--dashboard-port',
    '0',
  ];
  /** The embedded warehouse, unless a run is given one (--warehouse). */
  let warehouseUrl = () => `postgres://postgres:postgres@127.0.0.1:${ports.warehouse}/warehouse`;

  async function start(flags: string[]): Promise<TotesProcess> {
    const proc = startTotes(['start', '--source', url, ...flags, ...stackFlags()], {});
    running = proc;
    await until('totes start to say it is running', async () => proc.out.stderr.includes('totes-cdc is running') || !proc.running(), 120_000, 100);
    expect(proc.running(), proc.out.stderr).toBe(true);
    return proc;
  }

  async function stop(proc: TotesProcess): Promise<string> {
    proc.child.kill('SIGINT');
    const exit = await proc.exited;
    running = null;
    expect(exit.code, proc.out.stderr).toBe(0);
    return proc.out.stderr;
  }

  async function verifyPasses(): Promise<void> {
    const r = await runTotes(
      ['verify', '--source', url, '--warehouse', warehouseUrl(), '--bucket', PROCESSED_BUCKET, '--s3-endpoint', `http://127.0.0.1:${ports.s3}`, '--wait', '60'],
      {},
      120_000,
    );
    expect(r.stderr, r.stderr).toMatch(/verify: PASSED/);
    expect(r.code).toBe(0);
  }

  beforeAll(async () => {
    source = await startOwnPostgres({ label: 'own-totesys', databases: ['totesys'] });
    url = source.url('totesys');
    admin = new pg.Pool({ connectionString: url, max: 2 });
    await admin.query(TOTESYS_DDL);
    await admin.query(OWN_ROWS);
    ports = { warehouse: await freePort(), kinesis: await freePort(), s3: await freePort() };
  }, 60_000);

  afterAll(async () => {
    if (running?.running()) {
      running.child.kill('SIGKILL');
      await running.exited;
    }
    await admin?.end();
    if (source) await quiesce(url); // the pool's connections closed before the server stops
    await source?.stop();
  });

  it('refuses an unprepared source, printing the setup, and changes nothing on it', async () => {
    const before = { rows: await businessRows(), state: await captureState() };
    const r = await runTotes(['start', '--source', url, ...stackFlags()], {}, 60_000);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^totes start: the source postgres:\/\/postgres@127\.0\.0\.1:\d+\/totesys is not ready for capture \(\d+ of the checks above fail\); nothing was changed on it: .* or add --apply-setup/,
    );
    expect(r.stdout).toMatch(/source +✗ publication totes_cdc does not exist/);
    expect(r.stdout).toMatch(/source +✗ totes_cdc\.snapshot_progress does not exist/);
    expect(r.stdout).toContain('What `totes source-setup` has a DBA run on totesys (none of it was run):');
    expect(r.stdout).toContain('CREATE PUBLICATION "totes_cdc" FOR TABLE');
    expect({ rows: await businessRows(), state: await captureState() }).toEqual(before);
    expect(before.state).toEqual({ slots: [], publications: [], schema: false, progress: null });
  });

  it('demo refuses a source of its own: it writes simulated changes', async () => {
    const r = await runTotes(['demo', '--source', url], {});
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toMatch(/^totes demo: demo writes simulated changes .* use: totes start --source URL$/);
    expect(await captureState()).toEqual({ slots: [], publications: [], schema: false, progress: null });
  });

  it('with --apply-setup snapshots and streams it into the warehouse, verify passes, and Ctrl-C leaves only the slot', async () => {
    const proc = await start(['--apply-setup']);
    const banner = proc.out.stderr;
    expect(banner).toContain('· created on the source, as --apply-setup asked: schema totes_cdc (tables snapshot_progress and signal)');
    expect(banner).toContain('· created on the source, as --apply-setup asked: publication totes_cdc');
    expect(banner).toMatch(/! source: max_slot_wal_keep_size is unlimited \(-1\): cap the WAL/);
    expect(banner).toMatch(/totesys \(source\): {2}psql 'postgres:\/\/postgres@127\.0\.0\.1:\d+\/totesys' {3}\(yours: not seeded, no simulator;/);
    expect(banner).not.toMatch(/creating and seeding|simulated/);

    // the business goes on while it streams
    await sql(`UPDATE address SET phone = '0161 496 0999', last_updated = '2024-05-05 12:00:00.500' WHERE address_id = 2`);
    await sql(`INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
      agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id) VALUES ('2024-05-05 12:00:01.000', '2024-05-05 12:00:01.000', 2, 1, 2, 75, 12.34, 2, '2024-05-10', '2024-06-05', 3)`);
    const rows = await businessRows();
    await verifyPasses();
    expect((await sql('SELECT count(*)::int AS n FROM sales_order'))[0].n).toBe(3);

    const said = await stop(proc);
    expect(said).toContain(`The source postgres://postgres@127.0.0.1:${source.port}/totesys is as totes found it, except:`);
    expect(said).toContain(
      `psql 'postgres://postgres@127.0.0.1:${source.port}/totesys' -c "SELECT pg_drop_replication_slot('totes_cdc')" -c "DELETE FROM totes_cdc.snapshot_progress WHERE slot_name = 'totes_cdc'" -c "DELETE FROM totes_cdc.signal WHERE writer = 'totes_cdc'"`,
    );
    expect(said).toContain(`-c 'DROP PUBLICATION "totes_cdc"' -c "DROP SCHEMA totes_cdc CASCADE"`);
    expect(await businessRows()).toEqual(rows); // no seed, no simulator: not a row written
    expect(await captureState()).toEqual({ slots: ['totes_cdc'], publications: ['totes_cdc'], schema: true, progress: SOURCE_TABLE_NAMES.length });
  });

  it('a second run, into a warehouse database of your own, resumes the slot (every table read again) and drops it on exit', async () => {
    const own = await createDatabase('own_wh');
    warehouseUrl = () => own.url;
    const proc = await start(['--drop-slot-on-exit', '--warehouse', own.url]);
    expect(proc.out.stderr).toContain('· starting Kinesis and S3');
    expect(proc.out.stderr).toContain('slot totes_cdc exists (an earlier run): every table will be read again into the new warehouse');
    expect(proc.out.stderr).not.toContain('created on the source');
    const rows = await businessRows();
    await verifyPasses();
    const said = await stop(proc);
    expect(said).toContain("nothing of this run's: its replication slot totes_cdc was dropped, with capture's rows for it");
    expect(await businessRows()).toEqual(rows);
    expect(await captureState()).toEqual({ slots: [], publications: ['totes_cdc'], schema: true, progress: 0 });

    // that warehouse is loaded now: the next run's stream starts empty, so it is refused
    const again = await runTotes(['start', '--source', url, '--warehouse', own.url, ...stackFlags()], {});
    expect(again.code).toBe(2);
    expect(again.stderr.trimEnd()).toMatch(/^totes start: configuration error: the warehouse postgres:\/\/postgres@[^ ]+ already holds a loaded warehouse/);
    await own.drop();
  });
});
