/**
 * The dashboard's API on a small hand-made warehouse, read through a read-only role: answers
 * worked out by hand (history and deletes left out, days overdue, the date range), refused
 * parameters, and a warehouse that cannot be reached.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg, { inTransaction } from '../lib/pg.ts';
import { freePort } from '../local/servers.ts';
import { createDatabase, serverUrl } from '../test/harness.ts';
import { HISTORY_TABLES, historyColumns, historyName } from '../loader/history-sql.ts';
import { warehouseDdl } from '../loader/warehouse-schema.ts';
import { startDashboard, type Dashboard } from './server.ts';

const FIXTURE = `
INSERT INTO dim_date (date_id, year, month, day, day_of_week, day_name, month_name, quarter)
  SELECT d, extract(year FROM d), extract(month FROM d), extract(day FROM d), extract(isodow FROM d), to_char(d, 'FMDay'), to_char(d, 'FMMonth'), extract(quarter FROM d)
    FROM generate_series('2024-01-01'::date, (now() AT TIME ZONE 'UTC')::date + 30, interval '1 day') d;
INSERT INTO dim_currency (currency_id, currency_code, currency_name) VALUES (1, 'GBP', 'British Pound'), (2, 'USD', 'US Dollar');
INSERT INTO totes_department (department_id, department_name, location) VALUES (1, 'Sales', 'Leeds'), (2, 'Sales', 'Manchester');
INSERT INTO dim_staff (staff_id, first_name, last_name, department_id, department_name, location) VALUES (1, 'Ann', 'Lee', 1, 'Sales', 'Leeds'), (2, 'Bo', 'Ng', 2, 'Sales', 'Manchester');
INSERT INTO dim_location (location_id, country) VALUES (1, 'United Kingdom'), (2, 'France');
INSERT INTO dim_counterparty (counterparty_id, counterparty_legal_name) VALUES (1, 'Acme'), (2, 'Bolt & Co');
INSERT INTO dim_design (design_id, design_name) VALUES (1, 'Wooden'), (2, 'Steel');
INSERT INTO dim_payment_type (payment_type_id, payment_type_name) VALUES (1, 'SALES_RECEIPT'), (3, 'PURCHASE_PAYMENT');
INSERT INTO fact_sales_order (sales_order_id, created_date, sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id,
                              agreed_delivery_location_id, source_op, source_lsn, source_pos, source_commit_time, is_deleted) VALUES
  (1, '2024-01-10', 1, 1, 100, 2.50, 1, 1, 1, 'c', '0/10', 0, '2024-01-10', false),
  (1, '2024-01-10', 1, 1, 200, 2.50, 1, 1, 1, 'u', '0/20', 0, '2024-01-11', false),
  (2, '2024-01-20', 2, 2, 10, 3.00, 1, 2, 2, 'c', '0/30', 0, '2024-01-20', false),
  (3, '2024-02-05', 1, 2, 1000, 2.00, 2, 1, 2, 'c', '0/40', 0, '2024-02-05', false),
  (4, '2024-02-06', 2, 1, 50, 4.00, 1, 2, 1, 'c', '0/50', 0, '2024-02-06', false),
  (4, '2024-02-06', 2, 1, 50, 4.00, 1, 2, 1, 'd', '0/60', 0, '2024-02-07', true);
INSERT INTO fact_payment (payment_id, created_date, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date,
                          source_op, source_lsn, source_pos, source_commit_time) VALUES
  (1, '2024-01-10', 1, 500.00, 1, 1, false, (now() AT TIME ZONE 'UTC')::date - 5, 'c', '0/10', 1, '2024-01-10'),
  (2, '2024-01-20', 2, 30.00, 1, 1, true, '2024-01-25', 'c', '0/30', 1, '2024-01-20'),
  (3, '2024-02-05', 2, 2000.00, 2, 1, false, (now() AT TIME ZONE 'UTC')::date + 2, 'c', '0/40', 1, '2024-02-05'),
  (4, '2024-02-05', 1, 99.00, 1, 3, false, '2024-02-05', 'c', '0/45', 1, '2024-02-05');
INSERT INTO totes_shard_progress (shard, last_manifest_key, watermark_lsn, watermark_commit_time) VALUES ('shard-0', 'm', '0/60', now() - interval '3 seconds');
INSERT INTO totes_shard_progress (shard, last_manifest_key, watermark_lsn, watermark_commit_time, gap_missing_seq, gap_resumes_seq, gap_since)
  VALUES ('shard-1', 'n', '0/70', now() - interval '2 seconds', '123', '456', now() - interval '90 seconds');
INSERT INTO totes_shard_progress (shard, last_manifest_key, watermark_lsn, watermark_commit_time, ended) VALUES ('shard-2', 'o', '0/20', now() - interval '9 seconds', true);
INSERT INTO totes_commits (source_lsn, source_commit_time)
  SELECT DISTINCT source_lsn, source_commit_time FROM (SELECT source_lsn, source_commit_time FROM fact_sales_order UNION SELECT source_lsn, source_commit_time FROM fact_payment) v;
INSERT INTO totes_load_log (batch_key, shard, events, rows) VALUES ('a', 'shard-0', 10, 7), ('b', 'shard-0', 5, 4);
`;

describe('dashboard API on a read-only role', () => {
  const role = `dash_${randomBytes(4).toString('hex')}`;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let dashboard: Dashboard;

  beforeAll(async () => {
    warehouse = await createDatabase('warehouse');
    const owner = new pg.Pool({ connectionString: warehouse.url, max: 1 });
    await inTransaction(owner, async (db) => {
      await db.query(warehouseDdl());
      await db.query(FIXTURE);
      // each dimension row as it is: its one version, from before the first order
      for (const dim of HISTORY_TABLES) {
        const cols = historyColumns(dim).join(', ');
        await db.query(`INSERT INTO ${historyName(dim)} (${cols}, source_op, source_lsn, source_pos, source_commit_time)
          SELECT ${cols}, 'c', '0/1', 0, '2024-01-01' FROM ${dim}`);
      }
    });
    // The role docs/dashboard.md tells a DBA to create.
    await owner.query(`CREATE ROLE ${role} LOGIN PASSWORD 'dashboard-pw'`);
    await owner.query(`GRANT CONNECT ON DATABASE "${warehouse.name}" TO ${role}`);
    await owner.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
    await owner.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
    await owner.query(`GRANT USAGE ON SCHEMA as_of TO ${role}`);
    await owner.query(`GRANT SELECT ON ALL TABLES IN SCHEMA as_of TO ${role}`);
    await owner.query(`ALTER ROLE ${role} SET default_transaction_read_only = on`);
    await owner.end();
    const url = new URL(warehouse.url);
    url.username = role;
    url.password = 'dashboard-pw';
    dashboard = await startDashboard({ warehouseUrl: url.toString(), port: await freePort() });
  });

  afterAll(async () => {
    await dashboard?.stop();
    await warehouse?.drop();
    const admin = new pg.Client({ connectionString: serverUrl() });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
    await admin.end();
  });

  const get = async (path: string) => {
    const res = await fetch(new URL(path, dashboard.url));
    return { status: res.status, body: await res.json() };
  };

  it('answers every question on the current state of each fact', async () => {
    const { status, body } = await get('/api/business');
    expect(status).toBe(200);
    expect(body.filter).toEqual({ from: null, to: null, currencyId: 1, asOf: null });
    expect(body.asOf).toEqual({
      lsn: '0/60',
      commitTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      monthEnds: ['2024-02-29', '2024-01-31'],
    });
    expect(body.extent).toEqual({ first: '2024-01-10', last: '2024-02-05' });
    const r = body.results;
    expect(r.salesByMonth).toEqual([
      { month: '2024-01', currency: 'GBP', value: '530.00' },
      { month: '2024-02', currency: 'USD', value: '2000.00' },
    ]);
    expect(r.salesByCountry).toEqual([
      { country: 'United Kingdom', value: '500.00' },
      { country: 'France', value: '30.00' },
    ]);
    expect(r.topDesigns.map((d: { design: string; value: string }) => [d.design, d.value])).toEqual([
      ['Wooden', '500.00'],
      ['Steel', '30.00'],
    ]);
    expect(r.topCounterparties.map((c: { counterparty: string; value: string }) => [c.counterparty, c.value])).toEqual([
      ['Acme', '500.00'],
      ['Bolt & Co', '30.00'],
    ]);
    expect(r.salesByStaff).toEqual([
      { staff_id: 1, staff: 'Ann Lee', department: 'Sales', location: 'Leeds', units: '200', value: '500.00' },
      { staff_id: 2, staff: 'Bo Ng', department: 'Sales', location: 'Manchester', units: '10', value: '30.00' },
    ]);
    expect(r.unpaidReceivables).toEqual([
      { counterparty: 'Bolt & Co', currency: 'USD', payments: 1, amount: '2000.00', avg_days_overdue: '0.0', max_days_overdue: 0 },
      { counterparty: 'Acme', currency: 'GBP', payments: 1, amount: '500.00', avg_days_overdue: '5.0', max_days_overdue: 5 },
    ]);
    expect(r.topDesignsPerCountry).toEqual([
      { country: 'France', rank: 1, design: 'Steel', value: '30.00' },
      { country: 'United Kingdom', rank: 1, design: 'Wooden', value: '500.00' },
    ]);
    // February: Ann sold 1000 units, Bo nothing (his order 4 was deleted); Ann had 200 in January: +400%.
    expect(r.staffUnitsLatestMonth).toEqual([{ month: '2024-02', staff: 'Ann Lee', units: '1000', share_percent: '100.0', growth_percent: '400.0' }]);
    expect(r.revenueByQuarter).toEqual([{ label: 'Q1', value: '530.00' }]);
    expect(r.revenueByWeekday).toEqual([
      { label: 'Wednesday', value: '500.00' },
      { label: 'Saturday', value: '30.00' },
    ]);
  });

  it('filters by date range and currency', async () => {
    const { body } = await get('/api/business?from=2024-02-01&to=2024-02-29&currency=2');
    expect(body.filter).toEqual({ from: '2024-02-01', to: '2024-02-29', currencyId: 2, asOf: null });
    expect(body.results.salesByMonth).toEqual([{ month: '2024-02', currency: 'USD', value: '2000.00' }]);
    expect(body.results.salesByCountry).toEqual([{ country: 'France', value: '2000.00' }]);
    expect(body.results.unpaidReceivables.map((u: { counterparty: string }) => u.counterparty)).toEqual(['Bolt & Co']);
  });

  it('refuses malformed, unknown and repeated parameters', async () => {
    for (const query of [
      'from=2024-13-01',
      'from=2024-02-30',
      "from=2024-01-01'%20OR%201=1--",
      'to=yesterday',
      'currency=1;DROP%20TABLE%20dim_date',
      'currency=-1',
      'from=2024-03-01&to=2024-02-01',
      'sort=value',
      'from=2024-01-01&from=2024-01-02',
      'asOf=2024-02-30',
      'asOf=1/30',
    ]) {
      const { status, body } = await get(`/api/business?${query}`);
      expect(status, query).toBe(400);
      expect(body.error, query).toBeTypeOf('string');
    }
  });

  it('reports freshness and loads, and the pipeline as unavailable without pipelineStatus', async () => {
    const { body } = await get('/api/pipeline');
    expect(body.warehouse.ok).toBe(true);
    expect(body.warehouse.freshness.watermark_lsn).toBe('0/60');
    expect(body.warehouse.freshness.lag_seconds).toBeGreaterThanOrEqual(3);
    // a closed shard loaded to its end counts for nothing; a gap is listed with its age
    expect(body.warehouse.freshness.lag_seconds).toBeLessThan(9);
    expect(body.warehouse.gaps).toEqual([{ shard: 'shard-1', missing: '123', resumes_at: '456', age_seconds: expect.any(Number) }]);
    expect(body.warehouse.gaps[0].age_seconds).toBeGreaterThanOrEqual(90);
    expect(body.warehouse.loads).toMatchObject({ batches: 2, rows: 11, rows_last_minute: 11 });
    expect(body.warehouse.loadsPerInterval).toHaveLength(30);
    expect(body.warehouse.loadsPerInterval.reduce((n: number, b: { rows: number }) => n + b.rows, 0)).toBe(11);
    expect(body.pipeline).toBeNull();
  });

  it('serves the page, Chart.js and nothing else', async () => {
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/app.js', 'text/javascript'],
      ['/style.css', 'text/css'],
      ['/vendor/chart.umd.js', 'text/javascript'],
    ]) {
      const res = await fetch(new URL(path, dashboard.url));
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toContain(type);
      await res.arrayBuffer();
    }
    for (const path of ['/../package.json', '/public/app.js', '/%2e%2e/lib/pg.ts', '/vendor/chart.js']) {
      const res = await fetch(new URL(path, dashboard.url));
      expect(res.status, path).toBe(404);
      await res.arrayBuffer();
    }
    expect((await fetch(new URL('/api/business', dashboard.url), { method: 'POST' })).status).toBe(405);
  });

  it('reads as of the end of a past day: the figures as they stood then, whatever the warehouse loaded since', async () => {
    const asOf = async (day = '') => {
      const { status, body } = await get(`/api/business${day ? `?asOf=${day}` : ''}`);
      expect(status, body.error).toBe(200);
      return body;
    };
    const before = await asOf();
    const february = await asOf('2024-02-29');
    // the end of February is after every commit loaded: the point is the last of them, the figures are now's
    expect(february.filter.asOf).toBe('2024-02-29');
    expect(february.asOf).toEqual({ lsn: '0/60', commitTime: '2024-02-07T00:00:00.000Z', monthEnds: ['2024-02-29', '2024-01-31'] });
    expect(february.results.salesByStaff).toEqual(before.results.salesByStaff);
    expect(february.results.salesByMonth).toEqual(before.results.salesByMonth);

    // In March, one source transaction takes order 1 to 300 units and renames Ann's department; the warehouse loads it.
    const owner = new pg.Client({ connectionString: warehouse.url });
    await owner.connect();
    try {
      await owner.query(`
        INSERT INTO fact_sales_order (sales_order_id, created_date, sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id,
                                      agreed_delivery_location_id, source_op, source_lsn, source_pos, source_commit_time)
          VALUES (1, '2024-01-10', 1, 1, 300, 2.50, 1, 1, 1, 'u', '0/65', 0, '2024-03-10');
        INSERT INTO totes_department_history (department_id, department_name, location, source_op, source_lsn, source_pos, source_commit_time)
          VALUES (1, 'Retail', 'Leeds', 'u', '0/65', 1, '2024-03-10');
        UPDATE totes_department SET department_name = 'Retail' WHERE department_id = 1;
        UPDATE dim_staff SET department_name = 'Retail' WHERE staff_id = 1;
        INSERT INTO totes_commits (source_lsn, source_commit_time) VALUES ('0/65', '2024-03-10');
        UPDATE totes_shard_progress SET watermark_lsn = '0/70' WHERE shard = 'shard-0';`);
    } finally {
      await owner.end();
    }

    const after = await asOf();
    expect(after.asOf).toMatchObject({ lsn: '0/70', monthEnds: ['2024-03-31', '2024-02-29', '2024-01-31'] });
    expect(after.results.salesByStaff[0]).toEqual({ staff_id: 1, staff: 'Ann Lee', department: 'Retail', location: 'Leeds', units: '300', value: '750.00' });
    expect(after.results.salesByMonth[0]).toEqual({ month: '2024-01', currency: 'GBP', value: '780.00' });
    // as of the end of February: what it was, department and all
    const februaryAgain = await asOf('2024-02-29');
    expect(februaryAgain.asOf.lsn).toBe('0/60');
    expect(februaryAgain.results).toEqual(february.results);
    expect(februaryAgain.results.salesByStaff).toEqual(before.results.salesByStaff);
    expect(februaryAgain.results.salesByStaff[0]).toMatchObject({ department: 'Sales', units: '200', value: '500.00' });

    // as of January's end: orders 1 and 2 only, and the receivable not yet due then (days counted to that day)
    const january = await asOf('2024-01-31');
    expect(january.asOf).toMatchObject({ lsn: '0/30', commitTime: '2024-01-20T00:00:00.000Z' });
    expect(january.results.salesByMonth).toEqual([{ month: '2024-01', currency: 'GBP', value: '530.00' }]);
    expect(january.results.unpaidReceivables).toEqual([
      { counterparty: 'Acme', currency: 'GBP', payments: 1, amount: '500.00', avg_days_overdue: '0.0', max_days_overdue: 0 },
    ]);
    // a request as of a day leaves nothing on the pooled connection the next one gets
    expect((await asOf()).asOf.lsn).toBe('0/70');
    // before the first commit: an empty warehouse, not an error
    expect((await asOf('2023-12-31')).results.salesByMonth).toEqual([]);

    // a day past the watermark: the warehouse's message, as a 400
    const today = new Date().toISOString().slice(0, 10);
    const { status, body } = await get(`/api/business?asOf=${today}`);
    expect(status).toBe(400);
    expect(body.error).toMatch(
      new RegExp(`^totes\\.as_of = '${today} 23:59:59\\.999999' is past what the warehouse has loaded: every source transaction up to LSN 0/70 `),
    );
    expect(body.hint).toMatch(/^choose an earlier point/);
  });

  it('says the warehouse is unreachable, and keeps pipelineStatus working meanwhile', async () => {
    const closedPort = await freePort();
    const unreachable = await startDashboard({
      warehouseUrl: `postgres://nobody:nothing@127.0.0.1:${closedPort}/warehouse`,
      port: await freePort(),
      pipelineStatus: async () => ({ slotLagBytes: 2048, captured: 10, deadLetters: 1, errors: ['capture stopped: boom'] }),
    });
    try {
      const business = await fetch(new URL('/api/business', unreachable.url));
      expect(business.status).toBe(503);
      expect(await business.json()).toMatchObject({ reachable: false, error: expect.stringContaining('ECONNREFUSED') });
      const pipeline = await (await fetch(new URL('/api/pipeline', unreachable.url))).json();
      expect(pipeline.warehouse).toMatchObject({ ok: false, reachable: false });
      expect(pipeline.pipeline).toMatchObject({ slotLagBytes: 2048, captured: 10, deadLetters: 1, changesPerSecond: null });
      expect(pipeline.errors.map((e: { source: string; message: string }) => `${e.source}: ${e.message}`)).toEqual(
        expect.arrayContaining(['pipeline: capture stopped: boom', expect.stringMatching(/^dashboard: warehouse: .*ECONNREFUSED/)]),
      );
    } finally {
      await unreachable.stop();
    }
  });
});
