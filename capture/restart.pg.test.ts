/**
 * Crash safety of the capture process: `totes run capture` is killed with SIGKILL three times
 * at seeded random moments of a live workload (once during its initial snapshot) and started
 * again each time, while the processor and loader run here. The warehouse must still end equal
 * to the truth (verify), with no change missing and no fact version doubled: per fact row, the
 * warehouse holds exactly the insert/update/delete versions that a reference capture, running
 * uninterrupted on a second slot over the same WAL, saw.
 */
import { CAPTURE_STATE_DDL, createPublicationSql } from './source-setup.ts';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeRecord, lsnToBigInt } from '../formats/change-event.ts';
import { primaryKeyOf } from '../formats/source-tables.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg, { inTransaction, poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { KinesisPoller } from '../local/kinesis-poller.ts';
import { freePort } from '../local/servers.ts';
import { LOAD_TABLES } from '../formats/load-tables.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { targetOf } from '../processors/transform.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Random } from '../totesys/random.ts';
import { RandomWorkload } from '../totesys/random-workload.ts';
import { Simulator } from '../totesys/simulator.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { createDatabase, startLocalAws, type LocalAws } from '../test/harness.ts';
import { MemorySink } from '../test/memory-sink.ts';
import { ServiceProcess } from '../test/process.ts';
import { until } from '../test/until.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from './capture-service.ts';

const STREAM = 'changes';
const BUCKET = 'processed';
const FACTS = ['fact_sales_order', 'fact_purchase_order', 'fact_payment'] as const;

/** `totes run capture` as a child process, as ECS runs it: started again whenever it dies. */
class CaptureProcess extends ServiceProcess {
  private healthPort = 0;

  constructor(
    env: Record<string, string>,
    private readonly slots: pg.Pool,
    readonly slotName: string,
  ) {
    super('capture', env);
  }

  protected override async beforeStart(): Promise<Record<string, string>> {
    // a killed process's walsender may hold the slot a moment longer
    await until('the slot to be released', async () => !(await this.slotActive()), 30_000, 50);
    this.healthPort = await freePort();
    return { TOTES_HEALTH_PORT: String(this.healthPort) };
  }

  async slotActive(): Promise<boolean> {
    const { rows } = await this.slots.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [this.slotName]);
    return rows[0]?.active === true;
  }

  /** Streaming: its walsender holds the slot. */
  async streaming(): Promise<void> {
    await until(
      'capture to stream',
      async () => {
        if (!this.running) throw new Error(`capture is not running: ${this.unexpectedExits.at(-1) ?? ''}`);
        return this.slotActive();
      },
      60_000,
      20,
    );
  }

  /** The service's own counters from its health endpoint (null while it is not answering). */
  async health(): Promise<{ changes: number; confirmedLsn: string } | null> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.healthPort}/health`);
      return (await res.json()) as { changes: number; confirmedLsn: string };
    } catch {
      return null;
    }
  }
}

/** Change records in the stream, and how many repeat an event (lsn, pos) already sent: re-sent after a kill. */
async function streamChanges(endpoint: string): Promise<{ records: number; distinct: number; resentCud: number }> {
  const client = kinesisClient({ kinesisEndpoint: endpoint });
  const seen = new Map<string, string>();
  let records = 0;
  let resentCud = 0;
  try {
    for (const shard of (await client.send(new ListShardsCommand({ StreamName: STREAM }))).Shards ?? []) {
      let iterator = (await client.send(new GetShardIteratorCommand({ StreamName: STREAM, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
        .ShardIterator;
      while (iterator) {
        const page = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
        for (const e of (page.Records ?? []).flatMap((r) => decodeRecord(Buffer.from(r.Data!).toString('utf8')))) {
          if (e.kind !== 'change') continue;
          records++;
          const id = `${e.table}:${lsnToBigInt(e.source.lsn)}:${e.source.pos}`;
          if (seen.has(id) && e.op !== 'r') resentCud++;
          seen.set(id, e.op);
        }
        if (!page.Records?.length) break;
        iterator = page.NextShardIterator;
      }
    }
  } finally {
    client.destroy();
  }
  return { records, distinct: seen.size, resentCud };
}

interface Environment {
  source: Awaited<ReturnType<typeof createDatabase>>;
  warehouse: Awaited<ReturnType<typeof createDatabase>>;
  aws: LocalAws;
  /** On the source database. */
  admin: pg.Pool;
  processor: Processor;
  /** `totes run capture` on slot `cap_<source database>`. */
  capture: CaptureProcess;
}

/**
 * A seeded totesys with what a DBA prepares (`totes source-setup`: the publication and the
 * state table, which `run capture` does not create), an empty warehouse, kinesalite and s3rver,
 * the processor and loader running here, and the capture process, not yet started.
 */
async function environment(cleanups: (() => Promise<unknown>)[], scale: number): Promise<Environment> {
  const [source, warehouse, aws] = await Promise.all([
    createDatabase('restart_src'),
    createDatabase('restart_wh'),
    startLocalAws({ stream: STREAM, shards: 2, buckets: [BUCKET] }),
  ]);
  cleanups.push(
    () => warehouse.drop(),
    () => source.drop(),
    () => aws.stop(),
  );
  const admin = poolFor(source.url, 3);
  cleanups.push(() => admin.end());
  // after everything else: drop the slots, once released, so the shared server keeps no WAL for them
  cleanups.push(async () => {
    await until(
      'the slots to be released',
      async () => (await admin.query(`SELECT 1 FROM pg_replication_slots WHERE database = $1 AND active`, [source.name])).rowCount === 0,
      30_000,
      50,
    );
    await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, [source.name]);
  });
  await inTransaction(admin, async (db) => {
    await createTotesys(db, { seed: 17, sizes: scaledSizes(scale) });
    await db.query(CAPTURE_STATE_DDL);
    await db.query(createPublicationSql('totes_cdc'));
  });

  const store = new MicroBatchStore(s3Client({ s3Endpoint: aws.s3Endpoint }), BUCKET);
  const processor = new Processor(store);
  const kinesis = kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
  const poller = new KinesisPoller({
    client: kinesis,
    streamName: STREAM,
    consumer: processor.handler,
    batchSize: 5_000,
    name: 'processor',
  });
  await poller.start();
  cleanups.push(() => poller.stop());
  const warehousePool = poolFor(warehouse.url, 2);
  cleanups.push(() => warehousePool.end());
  const loader = new Loader(warehousePool, store, new ShardStream(kinesis, STREAM));
  await loader.ensureSchema();
  const stopLoader = new AbortController();
  const loading = loader.runLoop(stopLoader.signal);
  cleanups.push(async () => {
    stopLoader.abort();
    await loading;
  });

  const slotName = `cap_${source.name}`;
  const capture = new CaptureProcess(
    {
      TOTES_SOURCE_URL: source.url,
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_SLOT_NAME: slotName,
      TOTES_HEARTBEAT_SECONDS: '1',
    },
    admin,
    slotName,
  );
  cleanups.push(async () => {
    if (capture.running) await capture.kill();
  });
  return { source, warehouse, aws, admin, processor, capture };
}

describe('capture killed with SIGKILL and restarted', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  it('ends equal to the truth, with every insert, update and delete version once', async () => {
    const { source, warehouse, aws, admin, processor, capture } = await environment(cleanups, 0.01);
    const slotName = capture.slotName;
    const rng = new Random(4242);

    // the reference: the same WAL through a second slot, never interrupted
    const reference = new MemorySink();
    const refCapture = new CaptureService(
      { ...DEFAULT_CAPTURE_CONFIG, sourceUrl: source.url, slotName: `ref_${source.name}`, heartbeatMs: 0, createPrerequisites: false },
      reference,
    );
    const refRunning = refCapture.run();
    refRunning.catch(() => undefined);
    cleanups.push(async () => {
      await refCapture.stop();
      await refRunning;
    });
    await until('the reference capture to stream', () => refCapture.metrics.state === 'streaming');

    await capture.start();
    // its slot exists from here: the workload's changes reach both slots
    await until(
      'the capture slot',
      async () => (await admin.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slotName])).rowCount === 1,
      60_000,
      20,
    );

    const snapshotProgress = async () =>
      (
        await admin.query(`SELECT count(*) FILTER (WHERE done)::int AS done, count(*)::int AS tables FROM totes_cdc.snapshot_progress WHERE slot_name = $1`, [
          slotName,
        ])
      ).rows[0] as { done: number; tables: number };

    // the workload, one writer at a time: the business simulator at ~300 changes/s; then, while
    // it pauses, one large transaction (every order, transaction and payment updated: ~2,500
    // changes, several PutRecords batches); then random inserts, updates, key changes and
    // deletes until the last kill is behind it
    const workPool = poolFor(source.url, 2);
    cleanups.push(() => workPool.end());
    const simulator = new Simulator(workPool, 23);
    const random = new RandomWorkload(workPool, 29);
    const phase = { stage: 'simulator' as 'simulator' | 'pause' | 'random', paused: false, killsDone: false, bulkRows: 0 };
    const workload = (async () => {
      const started = Date.now();
      while (phase.stage === 'simulator') {
        await simulator.step();
        const wait = started + (simulator.stats.changes / 300) * 1000 - Date.now();
        if (wait > 0) await sleep(wait);
      }
      phase.paused = true;
      while (phase.stage === 'pause') await sleep(5);
      while (random.committed < 300 || !phase.killsDone) {
        await random.step();
        await sleep(5);
      }
    })();
    workload.catch(() => undefined);
    const written = () => simulator.stats.changes + phase.bulkRows + random.committed;
    const confirmedFlush = async () =>
      lsnToBigInt((await admin.query('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slotName])).rows[0].lsn);
    const currentLsn = async () => lsnToBigInt((await admin.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn);

    const kills: { at: string; workloadChanges: number }[] = [];
    try {
      // kill 1: inside the initial snapshot, after a random number of its tables are done
      const target = rng.int(1, 5);
      await until(
        'the snapshot to be under way',
        async () => {
          const p = await snapshotProgress();
          if (p.tables > 0 && p.done === p.tables) throw new Error('the snapshot finished before the kill: no kill landed inside it');
          return p.done >= target;
        },
        60_000,
        5,
      );
      await capture.kill();
      const p1 = await snapshotProgress();
      kills.push({ at: `snapshot, ${p1.done}/${p1.tables} tables done`, workloadChanges: written() });
      expect(p1.done, 'the first kill landed inside the snapshot').toBeLessThan(p1.tables);

      // kill 2: at a random moment of the simulator's stream, a while after the restart
      await capture.start();
      await capture.streaming();
      await sleep(rng.int(800, 3_000));
      await capture.kill();
      kills.push({ at: 'stream', workloadChanges: written() });

      // kill 3: inside the large transaction, at a random point after at least one batch of it
      // was accepted by Kinesis and before the slot was confirmed past it: the restart must
      // send that part again, and the warehouse must load it once
      await capture.start();
      await capture.streaming();
      await until('the simulator to write 2,000 changes', () => simulator.stats.changes >= 2_000, 60_000);
      phase.stage = 'pause';
      await until('the simulator to pause', () => phase.paused, 10_000, 5);
      const caughtUp = await currentLsn();
      await until('capture to catch up', async () => (await confirmedFlush()) >= caughtUp, 60_000);
      const baseline = (await capture.health())?.changes;
      expect(baseline, 'the capture health endpoint answers').toBeTypeOf('number');
      await inTransaction(workPool, async (db) => {
        const stamp = new Date().toISOString().replace('T', ' ').replace('Z', '');
        for (const table of ['sales_order', 'purchase_order', 'transaction', 'payment'])
          phase.bulkRows += (await db.query(`UPDATE "${table}" SET last_updated = $1`, [stamp])).rowCount ?? 0;
      });
      const bulkEnd = await currentLsn();
      phase.stage = 'random';
      expect(phase.bulkRows, 'the large transaction spans several PutRecords batches').toBeGreaterThan(1_600);
      const into = rng.int(1_100, Math.min(1_800, phase.bulkRows - 400));
      await until(`capture ${into} changes into the large transaction`, async () => ((await capture.health())?.changes ?? 0) >= baseline! + into, 60_000, 5);
      await capture.kill();
      const confirmedAtKill = await confirmedFlush();
      kills.push({ at: `${into} changes into a transaction of ${phase.bulkRows}`, workloadChanges: written() });
      expect(confirmedAtKill, 'the third kill landed before the slot was confirmed past the large transaction').toBeLessThan(bulkEnd);
      phase.killsDone = true;
      await capture.start();
      await capture.streaming();
      await workload;
    } finally {
      if (phase.stage === 'pause') phase.stage = 'random';
      phase.killsDone = true;
    }
    const finalWritten = written();
    for (const k of kills) expect(k.workloadChanges, 'every kill landed while the workload ran').toBeLessThan(finalWritten);

    // the reference has seen every change once a heartbeat after the workload comes back
    await until('the reference snapshot', () => !refCapture.snapshotPending, 60_000);
    const marker = lsnToBigInt(await refCapture.emitHeartbeat());
    await until(
      'the reference to pass the workload',
      () => reference.events.some((e) => e.kind === 'heartbeat' && lsnToBigInt(e.source.lsn) >= marker),
      60_000,
    );
    await refCapture.stop();
    await refRunning;

    const result = await verify({ sourceUrl: source.url, warehouseUrl: warehouse.url, waitMs: 60_000 });
    expect(formatDifferences(result.differences)).toBe('');
    expect(result.ok).toBe(true);
    expect(processor.metrics.deadLetters).toBe(0);
    expect(capture.unexpectedExits).toEqual([]);

    // fact versions: per natural id, the warehouse's c/u/d versions are exactly the reference's
    // c/u/d events (snapshot reads are left out: the two captures read at different times)
    const expected = new Map<string, Set<string>>();
    const referenceIds = new Set<string>();
    for (const e of reference.events) {
      if (e.kind !== 'change') continue;
      const table = targetOf(e.table);
      if (LOAD_TABLES[table].kind !== 'fact') continue;
      const id = `${table}:${e.key[primaryKeyOf(e.table)]}`;
      referenceIds.add(id);
      if (e.op === 'r') continue;
      if (!expected.has(id)) expected.set(id, new Set());
      expected.get(id)!.add(`${lsnToBigInt(e.source.lsn)}:${e.source.pos}`);
    }
    const found = new Map<string, Set<string>>();
    const versions = new Map<string, number>();
    const wh = new pg.Client({ connectionString: warehouse.url });
    await wh.connect();
    try {
      for (const table of FACTS) {
        const key = LOAD_TABLES[table].key;
        const { rows } = await wh.query(`SELECT ${key} AS id, source_op, source_lsn::text AS lsn, source_pos FROM ${table}`);
        for (const r of rows) {
          const id = `${table}:${r.id}`;
          versions.set(id, (versions.get(id) ?? 0) + 1);
          if (r.source_op === 'r') continue;
          if (!found.has(id)) found.set(id, new Set());
          found.get(id)!.add(`${lsnToBigInt(r.lsn)}:${r.source_pos}`);
        }
      }
    } finally {
      await wh.end();
    }
    const ids = [...new Set([...expected.keys(), ...found.keys()])].sort();
    const counts = (m: Map<string, Set<string>>) => Object.fromEntries(ids.map((id) => [id, m.get(id)?.size ?? 0]));
    expect(counts(found), 'insert/update/delete versions per fact id').toEqual(counts(expected));
    const differing = ids.filter((id) => [...(expected.get(id) ?? [])].sort().join() !== [...(found.get(id) ?? [])].sort().join());
    expect(differing, 'fact ids whose (lsn, pos) versions differ from the reference').toEqual([]);
    // every fact row the reference saw has at least one version, and no other row has any
    expect(
      [...referenceIds].filter((id) => !versions.has(id)),
      'fact ids without a version',
    ).toEqual([]);
    expect(
      [...versions.keys()].filter((id) => !referenceIds.has(id)),
      'fact ids the reference never saw',
    ).toEqual([]);

    const cud = [...expected.values()].reduce((n, s) => n + s.size, 0);
    const stream = await streamChanges(aws.kinesisEndpoint);
    console.info(
      `restart: ${capture.starts.length} starts; kills ${JSON.stringify(kills)}; workload ${finalWritten} changes; ` +
        `${cud} fact c/u/d versions over ${expected.size} ids; ${versions.size} fact ids; stream: ${stream.records} change records, ` +
        `${stream.records - stream.distinct} sent again after a kill (${stream.resentCud} of them c/u/d)`,
    );
    // the kills made the capture send changes again (so the no-doubling check had something to catch)
    expect(stream.resentCud).toBeGreaterThan(0);
    expect(kills).toHaveLength(3);
    expect(cud).toBeGreaterThan(1_000);
  });

  // ensureSlot records the snapshot request before it creates the slot: a process that dies
  // between the two must not leave a slot that never snapshots.
  it('a crash while recording the snapshot request still snapshots every table', async () => {
    const { source, warehouse, admin, capture } = await environment(cleanups, 0.003);
    // the first start dies right after creating its slot: recording the snapshot request fails
    await admin.query(
      `CREATE FUNCTION totes_cdc.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated failure recording the snapshot request'; END $$`,
    );
    await admin.query('CREATE TRIGGER refuse BEFORE INSERT ON totes_cdc.snapshot_progress FOR EACH ROW EXECUTE FUNCTION totes_cdc.refuse()');
    await capture.start();
    await until('the first start to fail', () => !capture.running, 60_000);
    expect(capture.unexpectedExits.join('\n')).toMatch(/simulated failure recording the snapshot request/);
    await admin.query('DROP TRIGGER refuse ON totes_cdc.snapshot_progress');

    await capture.start();
    await capture.streaming();
    await new Simulator(admin, 5).run({ changes: 200, rate: 200 });
    const result = await verify({ sourceUrl: source.url, warehouseUrl: warehouse.url, waitMs: 60_000 });
    expect(formatDifferences(result.differences)).toBe('');
    expect(capture.unexpectedExits).toHaveLength(1);
  });
});
