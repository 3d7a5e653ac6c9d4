/**
 * The capture service against a real Postgres: acknowledgements, heartbeats, resumable
 * snapshots, backpressure and schema changes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../formats/change-event.ts';
import { lsnToBigInt } from '../formats/change-event.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Simulator } from '../totesys/simulator.ts';
import { createDatabase, serverMajor } from '../test/harness.ts';
import { SIGNAL_TABLE_NAME } from '../formats/source-signals.ts';
import { isSourceTable } from '../formats/source-tables.ts';
import { MemorySink } from '../test/memory-sink.ts';
import { until } from '../test/until.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG, type CaptureConfig } from './capture-service.ts';

describe('capture service', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  const services: CaptureService[] = [];

  beforeEach(async () => {
    db = await createDatabase('capture');
    pool = poolFor(db.url, 3);
    await inTransaction(pool, async (c) => {
      await createTotesys(c, { seed: 5, sizes: scaledSizes(0.005) });
      await c.query('CREATE TABLE not_captured (id serial PRIMARY KEY, note text)');
    });
  });
  afterEach(async () => {
    for (const s of services.splice(0)) await s.stop().catch(() => undefined);
    await pool.end();
    await db.drop();
  });

  function start(sink: MemorySink, config: Partial<CaptureConfig> = {}): { service: CaptureService; running: Promise<void> } {
    const service = new CaptureService(
      { ...DEFAULT_CAPTURE_CONFIG, sourceUrl: db.url, slotName: `s_${db.name}`, createPrerequisites: true, heartbeatMs: 0, statusIntervalMs: 200, ...config },
      sink,
    );
    services.push(service);
    const running = service.run();
    running.catch(() => undefined); // a test that stops the service early need not await it
    return { service, running };
  }

  const confirmedFlush = async () => {
    const { rows } = await pool.query('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [`s_${db.name}`]);
    return lsnToBigInt(rows[0].lsn);
  };
  const currentLsn = async () => lsnToBigInt((await pool.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn);

  it('confirms the slot only past changes the stream accepted, and moves an idle slot on keepalives', async () => {
    const sink = new MemorySink();
    const { service } = start(sink);
    await until('snapshot', () => service.metrics.state === 'streaming' && !service.snapshotPending);
    await until('snapshot acknowledged', async () => (await confirmedFlush()) > 0n);
    sink.stalled = true;
    const stalledAt = await confirmedFlush();
    const before = await currentLsn();
    await new Simulator(pool, 1).run({ changes: 60 });
    await until('changes received', () => service.metrics.changes >= 60);
    await new Promise((r) => setTimeout(r, 600)); // several status intervals
    expect(await confirmedFlush()).toBeLessThanOrEqual(before > stalledAt ? before : stalledAt);
    sink.stalled = false;
    sink.acceptAll();
    const after = await currentLsn();
    await until('confirmed past the accepted changes', async () => (await confirmedFlush()) >= after);
    // only uncaptured tables write now: keepalives carry the slot forward
    for (let i = 0; i < 20; i++) await pool.query(`INSERT INTO not_captured (note) VALUES ('x')`);
    const idleTarget = await currentLsn();
    await until('idle slot moved on', async () => (await confirmedFlush()) >= idleTarget, 30_000);
  });

  it('measures heartbeats that come back through the stream, by the carrier the server decodes', async () => {
    const sink = new MemorySink();
    const { service } = start(sink, { heartbeatMs: 100, snapshotChunkRows: 20 });
    await until('heartbeats and the snapshot', () => service.metrics.heartbeats >= 10 && !service.snapshotPending);
    const hb = sink.events.filter((e) => e.kind === 'heartbeat');
    expect(hb.length).toBeGreaterThanOrEqual(10);
    expect(service.metrics.heartbeatLatencySeconds).toBeGreaterThanOrEqual(0);
    expect(service.metrics.heartbeatLatencySeconds).toBeLessThan(5);
    expect(service.lagSeconds()).toBeLessThan(5);
    // heartbeats and watermarks are never change events, whichever way they travelled
    expect(sink.events.filter((e) => e.kind === 'change' && !isSourceTable(e.table))).toEqual([]);
    // on 13 they were rows of the signal table: one row per writer, however many were written
    const { rows } = await pool.query(`SELECT writer FROM ${SIGNAL_TABLE_NAME}`);
    expect(rows).toEqual(serverMajor() === 13 ? [{ writer: `s_${db.name}` }] : []);
  });

  it('resumes a snapshot at the next chunk after a restart, and reads every row once', async () => {
    const sink = new MemorySink();
    const first = start(sink, { snapshotChunkRows: 10 });
    await until('some chunks', async () => {
      const { rows } = await pool
        .query(`SELECT count(*)::int AS n FROM totes_cdc.snapshot_progress WHERE last_key IS NOT NULL AND NOT done`)
        .catch(() => ({ rows: [{ n: 0 }] }));
      return rows[0].n > 0 || first.service.metrics.snapshotRows > 100;
    });
    await first.service.stop();
    await first.running.catch(() => undefined);
    const readBefore = first.service.metrics.snapshotRows;
    const { rows: progress } = await pool.query(`SELECT table_name, last_key, done FROM totes_cdc.snapshot_progress ORDER BY table_name`);
    expect(progress.some((p) => p.done || p.last_key !== null)).toBe(true);

    const second = start(sink, { snapshotChunkRows: 10 });
    await until('snapshot complete', () => !second.service.snapshotPending && second.service.metrics.state === 'streaming');
    const { rows: counts } = await pool.query(`SELECT (SELECT count(*) FROM address) + (SELECT count(*) FROM counterparty) + (SELECT count(*) FROM currency)
      + (SELECT count(*) FROM department) + (SELECT count(*) FROM design) + (SELECT count(*) FROM staff) + (SELECT count(*) FROM sales_order)
      + (SELECT count(*) FROM purchase_order) + (SELECT count(*) FROM payment_type) + (SELECT count(*) FROM transaction) + (SELECT count(*) FROM payment) AS n`);
    const total = Number(counts[0].n);
    // the second run did not start from zero; together they read every row, and at most one
    // chunk (the one in flight when the first stopped) twice
    expect(second.service.metrics.snapshotRows).toBeLessThan(total);
    expect(readBefore + second.service.metrics.snapshotRows).toBeGreaterThanOrEqual(total);
    expect(readBefore + second.service.metrics.snapshotRows).toBeLessThanOrEqual(total + 10);
    const reads = sink.events.filter((e): e is ChangeEvent => e.kind === 'change' && e.op === 'r');
    expect(new Set(reads.map((e) => `${e.table}:${JSON.stringify(e.key)}`)).size).toBe(total);
  });

  // a small queue, so that 3,000 changes (over 6,000 messages, over 1 MB) overflow it many times
  // over; what was received stays near its bound (one socket read, up to 64 KiB, past it)
  it.each([
    { bound: 'messages', config: { maxQueuedMessages: 200 }, queued: (s: CaptureService) => s.queuedMessages, least: 200, most: 1_500 },
    {
      bound: 'bytes',
      config: { maxQueuedMessages: 1_000_000, maxQueuedBytes: 64 * 1024 },
      queued: (s: CaptureService) => s.queuedBytes,
      least: 64 * 1024,
      most: 256 * 1024,
    },
  ])(
    'stops reading the WAL while the stream is down, its queue bounded in $bound, keeps the connection alive, and catches up',
    async ({ config, queued, least, most }) => {
      const sink = new MemorySink();
      // a 1 s wal_sender_timeout: without status updates while paused, Postgres would end the stream
      const { service, running } = start(sink, { sourceUrl: `${db.url}?options=${encodeURIComponent('-c wal_sender_timeout=1s')}`, ...config });
      await until('snapshot', () => service.metrics.state === 'streaming' && !service.snapshotPending);
      let failed: unknown = null;
      running.catch((err) => {
        failed = err;
      });
      let mostQueued = 0;
      const sampler = setInterval(() => {
        mostQueued = Math.max(mostQueued, queued(service));
      }, 5);
      try {
        sink.blocked = true;
        await new Simulator(pool, 2).run({ changes: 3000 });
        await new Promise((r) => setTimeout(r, 500));
        const whileDown = sink.events.length;
        await new Promise((r) => setTimeout(r, 2500));
        expect(sink.events.length).toBe(whileDown); // nothing handled while the stream is down
        expect(mostQueued).toBeGreaterThanOrEqual(least);
        expect(mostQueued).toBeLessThan(most);
        expect(failed).toBeNull();
        sink.blocked = false;
        await until('caught up', () => service.metrics.changes >= 3000, 30_000);
      } finally {
        clearInterval(sampler);
        sink.blocked = false; // a failed expectation must not leave the stop waiting on the sink
      }
      expect(failed).toBeNull();
      expect(service.metrics.state).toBe('streaming');
      expect(service.queuedBytes).toBe(0);
    },
  );

  it('carries added columns and reports dropped or retyped ones', async () => {
    const sink = new MemorySink();
    const { service } = start(sink);
    await until('snapshot', () => service.metrics.state === 'streaming' && !service.snapshotPending);
    await pool.query(`ALTER TABLE address ADD COLUMN note text`);
    await pool.query(`UPDATE address SET note = 'new column', last_updated = now() WHERE address_id = 1`);
    await until('update captured', () => sink.events.some((e) => e.kind === 'change' && e.table === 'address' && e.op === 'u'));
    const update = sink.events.find((e): e is ChangeEvent => e.kind === 'change' && e.table === 'address' && e.op === 'u')!;
    expect(update.after?.note).toBe('new column');
    await pool.query(`ALTER TABLE department DROP COLUMN manager`);
    await pool.query(`ALTER TABLE design ALTER COLUMN design_name TYPE varchar(200)`);
    await pool.query(`UPDATE department SET location = 'Leeds', last_updated = now() WHERE department_id = 1`);
    await pool.query(`UPDATE design SET design_name = 'Retyped', last_updated = now() WHERE design_id = 1`);
    await until('schema issues', () => service.metrics.schemaIssues.length >= 2);
    expect(service.metrics.schemaIssues).toEqual(
      expect.arrayContaining(['department.manager was dropped', expect.stringMatching(/^design\.design_name changed type/)]),
    );
    expect(service.metrics.state).toBe('streaming');
  });
});
