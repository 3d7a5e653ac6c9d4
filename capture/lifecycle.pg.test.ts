/**
 * The capture service's lifecycle, beyond what capture.pg.test.ts covers:
 * - a lost replication slot (its WAL removed past max_slot_wal_keep_size) is reported, dropped,
 *   created again and every table is snapshotted again, without manual surgery;
 * - `totes run capture` as a process: /health, a configuration error fails at start naming the
 *   variable, and SIGTERM under load drains, acknowledges what the stream accepted and exits 0
 *   within its bound. (Sources that are not ready: startup-failures.pg.test.ts.)
 */
import { CAPTURE_STATE_DDL, createPublicationSql } from './source-setup.ts';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { lsnToBigInt, type ChangeEvent } from '../formats/change-event.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { log } from '../lib/log.ts';
import type pg from '../lib/pg.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { freePort, type EmbeddedPg } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Simulator } from '../totesys/simulator.ts';
import { createDatabase, quiesce, startLocalAws, type LocalAws } from '../test/harness.ts';
import { loseSlot, startFragileSlotsPostgres } from '../test/lost-slot.ts';
import { MemorySink } from '../test/memory-sink.ts';
import { runCapture, type CaptureChild } from '../test/capture-process.ts';
import { readStream } from '../test/process.ts';
import { until } from '../test/until.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from './capture-service.ts';

const STREAM = 'changes';
const PUBLICATION_SQL = createPublicationSql('totes_cdc');

async function snapshotProgress(db: pg.Pool, slot: string): Promise<{ done: number; tables: number }> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE done)::int AS done, count(*)::int AS tables FROM totes_cdc.snapshot_progress WHERE slot_name = $1`,
    [slot],
  );
  return rows[0];
}

async function slotRow(db: pg.Pool, slot: string): Promise<{ wal_status: string | null; active: boolean; confirmed_flush_lsn: string | null } | undefined> {
  const { rows } = await db.query(
    'SELECT wal_status, active, confirmed_flush_lsn::text AS confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  return rows[0];
}

describe('a lost replication slot', () => {
  let server: EmbeddedPg;
  let pool: pg.Pool;
  const services: CaptureService[] = [];

  beforeAll(async () => {
    server = await startFragileSlotsPostgres('lostslot', ['totesys']);
    pool = poolFor(server.url('totesys'), 3);
    await inTransaction(pool, async (c) => {
      await createTotesys(c, { seed: 11, sizes: scaledSizes(0.003) });
    });
  });
  afterAll(async () => {
    for (const s of services.splice(0)) await s.stop().catch(() => undefined);
    await pool?.end();
    if (server) await quiesce(server.url('totesys')).catch(() => undefined);
    await server?.stop();
  });

  function start(slotName: string, sink: MemorySink): { service: CaptureService; running: Promise<void> } {
    const service = new CaptureService(
      { ...DEFAULT_CAPTURE_CONFIG, sourceUrl: server.url('totesys'), slotName, createPrerequisites: true, heartbeatMs: 0, statusIntervalMs: 200 },
      sink,
    );
    services.push(service);
    const running = service.run();
    running.catch(() => undefined);
    return { service, running };
  }

  it('is reported, created again and every table snapshotted again, then streams', async () => {
    const slot = 'lost_slot';
    const first = start(slot, new MemorySink());
    await until('the first snapshot', () => first.service.metrics.state === 'streaming' && !first.service.snapshotPending);
    expect(await snapshotProgress(pool, slot)).toEqual({ done: SOURCE_TABLE_NAMES.length, tables: SOURCE_TABLE_NAMES.length });
    await first.service.stop();
    await first.running;
    await until('the slot to be released', async () => (await slotRow(pool, slot))?.active === false, 10_000);

    // WAL the slot does not consume: once a checkpoint would remove what it still needs, it is lost
    const rounds = await loseSlot(pool, slot);
    const {
      rows: [{ n: ordersInDb }],
    } = await pool.query('SELECT count(*)::int AS n FROM sales_order');
    const { rows: orderIds } = await pool.query('SELECT sales_order_id AS id FROM sales_order ORDER BY 1');

    const errors = vi.spyOn(log, 'error');
    try {
      const sink = new MemorySink();
      const second = start(slot, sink);
      let failed: unknown = null;
      second.running.catch((err) => {
        failed = err;
      });
      await until('the new slot to stream', async () => {
        if (failed) throw failed;
        return (await slotRow(pool, slot))?.active === true;
      });
      expect(
        errors.mock.calls.some(([fields, msg]) => (fields as { slot?: string }).slot === slot && /replication slot LOST/.test(String(msg))),
        'the lost slot is logged as an error naming it',
      ).toBe(true);
      const recreated = await slotRow(pool, slot);
      expect(recreated?.wal_status).not.toBe('lost');
      expect(recreated?.wal_status).not.toBeNull();

      // every table is read again while streaming
      await until('the new snapshot', async () => {
        if (failed) throw failed;
        const p = await snapshotProgress(pool, slot);
        return p.tables === SOURCE_TABLE_NAMES.length && p.done === p.tables && !second.service.snapshotPending;
      });
      const reads = sink.events.filter((e): e is ChangeEvent => e.kind === 'change' && e.op === 'r');
      expect(new Set(reads.map((e) => e.table))).toEqual(new Set(SOURCE_TABLE_NAMES));
      const orderReads = new Set(reads.filter((e) => e.table === 'sales_order').map((e) => Number(e.key.sales_order_id)));
      expect(orderReads.size).toBe(ordersInDb);
      expect([...orderReads].sort((a, b) => a - b)).toEqual(orderIds.map((r) => Number(r.id)));
      const { rows: emitted } = await pool.query(
        `SELECT table_name, rows_emitted::int AS n FROM totes_cdc.snapshot_progress WHERE slot_name = $1 AND table_name = 'sales_order'`,
        [slot],
      );
      expect(emitted[0].n).toBe(ordersInDb);

      // and it streams what changes next
      const id = Number(orderIds[0].id);
      await pool.query(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() WHERE sales_order_id = $1`, [id]);
      await until('the update to be captured', () => {
        if (failed) throw failed;
        return sink.events.some((e) => e.kind === 'change' && e.table === 'sales_order' && e.op === 'u' && e.key.sales_order_id === id);
      });
      expect(second.service.metrics.state).toBe('streaming');
      expect(failed).toBeNull();
      console.info(`lost slot: lost after ${rounds} rounds of WAL; recreated as ${recreated?.wal_status}; ${reads.length} rows snapshotted again`);
    } finally {
      errors.mockRestore();
    }
  });
});

describe('totes run capture, as a process', () => {
  let aws: LocalAws;
  let source: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  const children: CaptureChild[] = [];

  beforeAll(async () => {
    [source, aws] = await Promise.all([createDatabase('lifecycle'), startLocalAws({ stream: STREAM, shards: 2, buckets: [] })]);
    pool = poolFor(source.url, 3);
    await inTransaction(pool, async (db) => {
      await createTotesys(db, { seed: 13, sizes: scaledSizes(0.003) });
      // what a DBA prepares (`totes source-setup`): `run capture` does not create it
      await db.query(CAPTURE_STATE_DDL);
      await db.query(PUBLICATION_SQL);
    });
  });
  afterAll(async () => {
    for (const c of children)
      if (c.running()) {
        c.child.kill('SIGKILL');
        await c.exited;
      }
    await pool?.end();
    await aws?.stop();
    if (source) await quiesce(source.url).catch(() => undefined);
    await source?.drop();
  });

  it('answers /health while streaming; on SIGTERM under load drains, confirms what the stream accepted and exits 0 in time', async () => {
    const slot = `life_${source.name}`;
    const port = await freePort();
    const proc = runCapture({
      TOTES_SOURCE_URL: source.url,
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_SLOT_NAME: slot,
      TOTES_HEALTH_PORT: String(port),
      TOTES_HEARTBEAT_SECONDS: '1',
    });
    children.push(proc);
    const alive = () => {
      if (!proc.running()) throw new Error(`capture exited:\n${proc.out.stderr.slice(-3000)}\n${proc.out.stdout.slice(-3000)}`);
      return true;
    };
    await until('the slot to be streamed', async () => alive() && (await slotRow(pool, slot))?.active === true, 30_000, 50);
    await until('the snapshot', async () => alive() && (await snapshotProgress(pool, slot)).done === SOURCE_TABLE_NAMES.length, 30_000, 50);
    await until(
      'a heartbeat',
      async () => {
        alive();
        const body = await fetch(`http://127.0.0.1:${port}/health`)
          .then((r) => r.json() as Promise<{ heartbeats: number }>)
          .catch(() => null);
        return (body?.heartbeats ?? 0) > 0;
      },
      15_000,
      100,
    );
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    const body = (await health.json()) as { healthy: boolean; state: string; lagSeconds: number | null; snapshotPending: boolean };
    expect(health.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ healthy: true, state: 'streaming', snapshotPending: false });
    expect(body.lagSeconds).toBeLessThan(10);

    // a workload that keeps writing through the shutdown
    const workPool = poolFor(source.url, 2);
    const simulator = new Simulator(workPool, 31);
    const stopWorkload = new AbortController();
    const workload = simulator.run({ rate: 400, signal: stopWorkload.signal });
    let exit: Awaited<typeof proc.exited>;
    let termAt: number;
    try {
      await until('the workload to be under way', () => simulator.stats.changes >= 600, 20_000, 20);
      termAt = Date.now();
      proc.child.kill('SIGTERM');
      exit = await Promise.race([
        proc.exited,
        sleep(30_000).then(() => {
          throw new Error(`no exit 30 s after SIGTERM:\n${proc.out.stdout.slice(-3000)}`);
        }),
      ]);
    } finally {
      stopWorkload.abort();
      await workload.catch(() => undefined);
      await workPool.end();
    }
    const stopMs = exit.at - termAt;
    expect({ code: exit.code, signal: exit.signal }, `${proc.out.stderr.slice(-3000)}\n${proc.out.stdout.slice(-3000)}`).toEqual({ code: 0, signal: null });
    expect(stopMs).toBeLessThan(25_000);
    expect(proc.out.stdout).not.toMatch(/stop bound exceeded/);

    // what the stream accepted, the slot has confirmed
    await until('the walsender to let go of the slot', async () => (await slotRow(pool, slot))?.active === false, 10_000, 50);
    const confirmed = lsnToBigInt((await slotRow(pool, slot))!.confirmed_flush_lsn!);
    const changes = (await readStream(aws.kinesisEndpoint, STREAM)).filter((e): e is ChangeEvent => e.kind === 'change');
    const streamed = changes.filter((e) => e.op !== 'r');
    expect(streamed.length, 'workload changes reached the stream').toBeGreaterThan(100);
    const last = changes.reduce((max, e) => (lsnToBigInt(e.source.lsn) > max ? lsnToBigInt(e.source.lsn) : max), 0n);
    expect(confirmed, `confirmed_flush_lsn vs the last LSN in the stream`).toBeGreaterThanOrEqual(last);
    console.info(`lifecycle: SIGTERM to exit ${stopMs} ms; ${streamed.length} changes in the stream; ${simulator.stats.changes} written`);
  });

  it('exits 2 on a configuration error, naming the variable', async () => {
    const proc = runCapture({ TOTES_SOURCE_URL: source.url, TOTES_STREAM_NAME: undefined, TOTES_HEALTH_PORT: String(await freePort()) });
    children.push(proc);
    const exit = await proc.exitWithin(30_000);
    expect(exit?.code, proc.out.stderr).toBe(2);
    expect(proc.out.stderr).toMatch(/configuration error: TOTES_STREAM_NAME is not set/);
  });
});
