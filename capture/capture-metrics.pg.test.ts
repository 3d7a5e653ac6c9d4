/**
 * Capture's metrics line against a real source: slot health while the source answers, and a
 * line that says SourceUnreachable (with no slot figures) when it refuses connections or stops
 * answering, instead of no line at all.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../lib/pg.ts';
import { freePort } from '../local/servers.ts';
import { createDatabase } from '../test/harness.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { CaptureMetrics, captureMetrics, WAL_STATUS_CODE } from './capture-metrics.ts';
import type { CaptureService } from './capture-service.ts';
import type { KinesisSink } from './kinesis-sink.ts';

type Line = ReturnType<typeof captureMetrics>;
const service = { metrics: { changes: 0, schemaIssues: [] as string[] }, lagSeconds: () => 2.5 } as unknown as Pick<CaptureService, 'metrics' | 'lagSeconds'>;
const sink = { metrics: { bytes: 0, retries: 0, putCalls: 0, putLatencyMsTotal: 0 } } as unknown as Pick<KinesisSink, 'metrics'>;

describe('captureMetrics (one interval)', () => {
  const counters = { at: 60_000, changes: 120, bytes: 6_000, retries: 3 };
  const last = { at: 0, changes: 0, bytes: 0, retries: 1 };
  it('reports slot figures and wal_status as a number when the source answered', () => {
    const line = captureMetrics({
      slot: { lagBytes: 42, walStatus: 'extended', safeWalSize: 10 },
      lagSeconds: 1,
      schemaIssues: 0,
      putLatencyMs: 5,
      now: counters,
      last,
    });
    expect(line).toMatchObject({
      ChangesPerSecond: 2,
      PutRecordsRetries: 2,
      SlotLagBytes: 42,
      SlotWalStatus: 1,
      SourceUnreachable: 0,
    });
    expect(Object.entries(WAL_STATUS_CODE)).toEqual([
      ['reserved', 0],
      ['extended', 1],
      ['unreserved', 2],
      ['lost', 3],
      ['missing', 4],
    ]);
  });

  it('reports the source unreachable and no slot figures when it did not, and no lag before the first heartbeat', () => {
    const line = captureMetrics({ slot: null, lagSeconds: null, schemaIssues: 2, putLatencyMs: 0, now: counters, last });
    expect(line.SourceUnreachable).toBe(1);
    expect(line.SchemaIssues).toBe(2);
    for (const unknown of ['SlotLagBytes', 'SlotWalStatus', 'SafeWalSizeBytes', 'SlotLagSeconds'] as const) expect(line[unknown], unknown).toBeNull();
  });

  it('leaves SlotWalStatus out when Postgres does not report it', () => {
    expect(
      captureMetrics({ slot: { lagBytes: 0, walStatus: 'unknown', safeWalSize: null }, lagSeconds: 0, schemaIssues: 0, putLatencyMs: 0, now: counters, last })
        .SlotWalStatus,
    ).toBeNull();
  });
});

describe('CaptureMetrics against the source', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let silent: Server;
  let silentPort: number;
  const silentSockets = new Set<Socket>();
  const slot = `metrics_${Math.random().toString(16).slice(2, 10)}`;

  beforeAll(async () => {
    db = await createDatabase('capture_metrics');
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    await admin.end();
    const url = new URL(db.url);
    proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.open();
    // accepts connections and never answers: a source behind a black-holing network
    silentPort = await freePort();
    silent = createServer((socket) => silentSockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(silentPort, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    for (const s of silentSockets) s.destroy();
    await new Promise((resolve) => silent?.close(resolve));
    await proxy?.close();
    await db?.drop();
  });

  const metricsVia = (port: number, slotName = slot) => {
    const url = new URL(db.url);
    url.port = String(port);
    const lines: Line[] = [];
    return {
      lines,
      metrics: new CaptureMetrics({ service, sink, sourceUrl: url.toString(), slotName, slotQueryTimeoutMs: 1_000, write: (m) => lines.push(m) }),
    };
  };

  it('emits slot health while the source answers, and SourceUnreachable with no slot figures once it refuses connections', async () => {
    const { lines, metrics } = metricsVia(proxy.port);
    expect(await metrics.emit()).toMatchObject({ walStatus: 'reserved' });
    expect(lines[0]).toMatchObject({ SourceUnreachable: 0, SlotWalStatus: 0, SlotLagSeconds: 2.5 });
    expect(lines[0].SlotLagBytes).not.toBeNull();
    await proxy.close();
    expect(await metrics.emit()).toBeNull();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ SourceUnreachable: 1, SlotLagSeconds: 2.5, ChangesPerSecond: 0 });
    expect(lines[1].SlotLagBytes).toBeNull();
    await proxy.open();
    expect(await metrics.emit()).toMatchObject({ walStatus: 'reserved' });
    expect(lines[2].SourceUnreachable).toBe(0);
  });

  it('emits SourceUnreachable within its bound each minute when the source accepts a connection and never answers', async () => {
    const { lines, metrics } = metricsVia(silentPort);
    for (let minute = 0; minute < 2; minute++) {
      const started = Date.now();
      expect(await metrics.emit()).toBeNull();
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(lines[minute].SourceUnreachable).toBe(1);
    }
  });

  it('reports a slot that does not exist as wal_status missing (4)', async () => {
    const { lines, metrics } = metricsVia(proxy.port, 'no_such_slot');
    await metrics.emit();
    expect(lines[0].SlotWalStatus).toBe(4);
  });
});
