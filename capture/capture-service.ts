/**
 * The capture service: owns the publication and slot, the initial snapshot, the stream and the
 * acknowledgements. One instance per slot; the same class runs as the Fargate task and in the
 * local stack.
 *
 * What happens if the process dies:
 * - during the snapshot: the state table does not say "done", so the next start drops the slot
 *   and snapshots again from zero (re-sent rows are idempotent downstream: snapshot reads only
 *   append a fact version when it differs from the latest one);
 * - while streaming: the slot was confirmed only past commits the stream accepted, so the next
 *   start replays from there; changes re-sent are identified by (commit LSN, position) and the
 *   warehouse loads each once.
 */
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { SOURCE_TABLE_NAMES, primaryKeyOf } from '../contract/source-tables.ts';
import type { ChangeEvent } from '../contract/change-event.ts';
import { log } from '../lib/log.ts';
import pg, { connectionConfig, poolFor } from '../lib/pg.ts';
import { Acker } from './acker.ts';
import { HEARTBEAT_PREFIX, PgoutputDecoder, type Decoded } from './pgoutput-decoder.ts';
import type { ChangeSink } from './sink.ts';

export interface CaptureConfig {
  sourceUrl: string;
  slotName: string;
  publicationName: string;
  /** How often to emit a heartbeat message through the WAL (0 = never). */
  heartbeatMs: number;
  /** How often to send a standby status update even when nothing changes. */
  statusIntervalMs: number;
  snapshotChunkRows: number;
  /** Create the publication and state schema when missing (local mode); production expects the DBA to. */
  createPrerequisites: boolean;
}

export const DEFAULT_CAPTURE_CONFIG: Omit<CaptureConfig, 'sourceUrl'> = {
  slotName: 'totes_cdc', publicationName: 'totes_cdc', heartbeatMs: 10_000, statusIntervalMs: 10_000,
  snapshotChunkRows: 5_000, createPrerequisites: false,
};

export interface CaptureMetrics {
  changes: number;
  snapshotRows: number;
  transactions: number;
  heartbeats: number;
  lastCommitTime: string | null;
  /** Commit time of the newest heartbeat the stream accepted: lag in seconds is now minus this. */
  lastHeartbeatCommitTime: string | null;
  /** Commit → capture latency of the newest heartbeat, in seconds. */
  heartbeatLatencySeconds: number | null;
  confirmedLsn: string;
  state: 'starting' | 'snapshot' | 'streaming' | 'stopped';
}

type Item = { kind: 'data'; msg: Pgoutput.Message } | { kind: 'keepalive'; lsn: string };
const HIGH_WATER = 2_000;

export class CaptureService {
  readonly metrics: CaptureMetrics = { changes: 0, snapshotRows: 0, transactions: 0, heartbeats: 0, lastCommitTime: null, lastHeartbeatCommitTime: null, heartbeatLatencySeconds: null, confirmedLsn: '0/0', state: 'starting' };
  private readonly pool: pg.Pool;
  private readonly decoder = new PgoutputDecoder();
  private readonly acker: Acker;
  private replication: LogicalReplicationService | null = null;
  private queue: Item[] = [];
  private draining: Promise<void> | null = null;
  private paused = false;
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private fatal: ((err: Error) => void) | null = null;

  constructor(private readonly config: CaptureConfig, private readonly sink: ChangeSink) {
    this.pool = poolFor(config.sourceUrl, 2);
    this.acker = new Acker((lsn) => {
      this.metrics.confirmedLsn = lsn;
      void this.replication?.acknowledge(lsn);
    });
    sink.onAccepted((through) => this.acker.accept(through));
  }

  /** Runs until stop() or a fatal error (rejects). */
  async run(): Promise<void> {
    await this.checkPrerequisites();
    if (!(await this.snapshotDone())) await this.snapshot();
    await this.stream();
  }

  private async checkPrerequisites(): Promise<void> {
    const { rows } = await this.pool.query(`SELECT current_setting('wal_level') AS wal_level, current_setting('server_version_num')::int AS version`);
    if (rows[0].wal_level !== 'logical') {
      throw new Error(`source wal_level is '${rows[0].wal_level}', needs 'logical' (on RDS set rds.logical_replication = 1 in the parameter group and reboot); see \`totes source-setup\``);
    }
    if (rows[0].version < 140000 && this.config.heartbeatMs > 0) {
      log.warn({ version: rows[0].version }, 'source is older than Postgres 14: pg_logical_emit_message heartbeats are not decoded by pgoutput; freshness advances only with captured changes');
      this.config.heartbeatMs = 0;
    }
    const tables = SOURCE_TABLE_NAMES.map((t) => `public."${t}"`).join(', ');
    if (this.config.createPrerequisites) {
      await this.pool.query(`CREATE SCHEMA IF NOT EXISTS totes_cdc`);
      await this.pool.query(`CREATE TABLE IF NOT EXISTS totes_cdc.capture_state (slot_name text PRIMARY KEY, snapshot_lsn pg_lsn, snapshot_completed_at timestamptz)`);
      const pub = await this.pool.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [this.config.publicationName]);
      if (pub.rowCount === 0) await this.pool.query(`CREATE PUBLICATION "${this.config.publicationName}" FOR TABLE ${tables}`);
    }
    const pub = await this.pool.query(
      `SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'public' AND tablename = ANY($2)`,
      [this.config.publicationName, SOURCE_TABLE_NAMES]);
    if (pub.rows[0].n !== SOURCE_TABLE_NAMES.length) {
      throw new Error(`publication "${this.config.publicationName}" covers ${pub.rows[0].n} of the ${SOURCE_TABLE_NAMES.length} totesys tables; create it with: CREATE PUBLICATION "${this.config.publicationName}" FOR TABLE ${tables}; (see \`totes source-setup\`)`);
    }
    const state = await this.pool.query(`SELECT to_regclass('totes_cdc.capture_state') AS t`);
    if (!state.rows[0].t) throw new Error('table totes_cdc.capture_state is missing; create it as `totes source-setup` shows');
  }

  private async snapshotDone(): Promise<boolean> {
    const slot = await this.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [this.config.slotName]);
    const state = await this.pool.query('SELECT snapshot_completed_at FROM totes_cdc.capture_state WHERE slot_name = $1', [this.config.slotName]);
    const done = slot.rowCount === 1 && state.rows[0]?.snapshot_completed_at != null;
    if (slot.rowCount === 1 && !done) {
      log.warn({ slot: this.config.slotName }, 'slot exists but its snapshot never completed: dropping it and snapshotting again');
      await this.pool.query('SELECT pg_drop_replication_slot($1)', [this.config.slotName]);
    }
    return done;
  }

  /**
   * Creates the slot with an exported snapshot and reads every table inside that snapshot, so
   * the rows read and the changes streamed afterwards meet exactly at the slot's consistent point.
   */
  private async snapshot(): Promise<void> {
    this.metrics.state = 'snapshot';
    await this.pool.query('DELETE FROM totes_cdc.capture_state WHERE slot_name = $1', [this.config.slotName]);
    const repl = new pg.Client({ ...connectionConfig(this.config.sourceUrl), replication: 'database' } as pg.ClientConfig);
    await repl.connect();
    const reader = new pg.Client(connectionConfig(this.config.sourceUrl));
    await reader.connect();
    try {
      const created = await repl.query(`CREATE_REPLICATION_SLOT "${this.config.slotName}" LOGICAL pgoutput EXPORT_SNAPSHOT`);
      const { consistent_point: lsn, snapshot_name: snapshotName } = created.rows[0];
      log.info({ slot: this.config.slotName, lsn }, 'slot created; snapshot starting');
      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await reader.query(`SET TRANSACTION SNAPSHOT '${snapshotName}'`);
      const commitTime = new Date().toISOString().replace('Z', '000Z');
      let pos = 0;
      for (const table of SOURCE_TABLE_NAMES) {
        const pk = primaryKeyOf(table);
        let last = -2147483648;
        for (;;) {
          const { rows } = await reader.query(`SELECT * FROM public."${table}" WHERE ${pk} > $1 ORDER BY ${pk} LIMIT $2`, [last, this.config.snapshotChunkRows]);
          for (const row of rows) {
            const event: ChangeEvent = { v: 1, kind: 'change', op: 'r', table, key: { [pk]: row[pk] }, before: null, after: row, source: { lsn, pos: pos++, xid: null, commitTime } };
            await this.sink.write(event);
            this.metrics.snapshotRows++;
          }
          if (rows.length < this.config.snapshotChunkRows) break;
          last = rows[rows.length - 1][pk];
        }
        log.debug({ table, rows: pos }, 'table snapshotted');
      }
      await this.sink.flush();
      await reader.query('COMMIT');
      await this.pool.query(
        `INSERT INTO totes_cdc.capture_state (slot_name, snapshot_lsn, snapshot_completed_at) VALUES ($1, $2, now())
         ON CONFLICT (slot_name) DO UPDATE SET snapshot_lsn = excluded.snapshot_lsn, snapshot_completed_at = excluded.snapshot_completed_at`,
        [this.config.slotName, lsn]);
      log.info({ rows: this.metrics.snapshotRows, lsn }, 'snapshot complete');
    } finally {
      await reader.end().catch(() => undefined);
      await repl.end().catch(() => undefined);
    }
  }

  private async stream(): Promise<void> {
    this.metrics.state = 'streaming';
    const service = new LogicalReplicationService(
      connectionConfig(this.config.sourceUrl),
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.replication = service;
    const failed = new Promise<never>((_, reject) => { this.fatal = reject; });
    service.on('data', (_lsn: string, msg: Pgoutput.Message) => this.enqueue({ kind: 'data', msg }));
    service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
      this.enqueue({ kind: 'keepalive', lsn });
      if (shouldRespond) void service.acknowledge(this.acker.confirmedLsn);
    });
    service.on('error', (err: Error) => { if (!this.stopping) this.fatal?.(err); });
    this.timers.push(setInterval(() => void service.acknowledge(this.acker.confirmedLsn), this.config.statusIntervalMs));
    if (this.config.heartbeatMs > 0) {
      this.timers.push(setInterval(() => void this.emitHeartbeat().catch((err) => log.warn({ err: err.message }, 'heartbeat failed')), this.config.heartbeatMs));
    }
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [this.config.publicationName], messages: true });
    log.info({ slot: this.config.slotName }, 'streaming');
    const subscribed = service.subscribe(plugin, this.config.slotName).catch((err) => { if (!this.stopping) throw err; });
    await Promise.race([subscribed, failed]);
  }

  /** Writes a heartbeat into the WAL; it comes back through the stream. Returns its LSN. */
  async emitHeartbeat(): Promise<string> {
    const { rows } = await this.pool.query(`SELECT pg_logical_emit_message(true, $1, '')::text AS lsn`, [HEARTBEAT_PREFIX]);
    return rows[0].lsn;
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    if (this.queue.length >= HIGH_WATER && !this.paused) {
      this.paused = true;
      // Stop reading the socket: Postgres keeps the WAL, we keep sending status updates.
      (this.replication as unknown as { _connection?: { stream?: { pause(): void } } })._connection?.stream?.pause();
    }
    this.draining ??= this.drain().catch((err) => this.fatal?.(err)).finally(() => { this.draining = null; });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const item = this.queue.shift()!;
      if (item.kind === 'keepalive') {
        this.acker.idle(item.lsn, !this.decoder.inTransaction && this.sink.acceptedThrough === this.sink.writtenThrough);
      } else {
        await this.handle(item.msg);
      }
      if (this.paused && this.queue.length < HIGH_WATER / 4) {
        this.paused = false;
        (this.replication as unknown as { _connection?: { stream?: { resume(): void } } })._connection?.stream?.resume();
      }
    }
  }

  private async handle(msg: Pgoutput.Message): Promise<void> {
    for (const d of this.decoder.decode(msg)) await this.apply(d);
  }

  private async apply(d: Decoded): Promise<void> {
    switch (d.type) {
      case 'change':
        await this.sink.write(d.event);
        this.metrics.changes++;
        this.metrics.lastCommitTime = d.event.source.commitTime;
        break;
      case 'heartbeat':
        this.metrics.heartbeatLatencySeconds = (Date.now() - Date.parse(d.event.source.commitTime)) / 1000;
        await this.sink.broadcast(d.event);
        this.metrics.heartbeats++;
        this.metrics.lastHeartbeatCommitTime = d.event.source.commitTime;
        break;
      case 'commit':
        this.metrics.transactions++;
        this.acker.committed(this.sink.writtenThrough, d.endLsn);
        break;
      case 'schema':
        log.debug({ table: d.table, columns: d.columns }, 'relation');
        break;
      case 'begin':
        break;
    }
  }

  /** Seconds between now and the newest heartbeat commit the stream accepted (null before the first). */
  lagSeconds(now = Date.now()): number | null {
    return this.metrics.lastHeartbeatCommitTime ? (now - Date.parse(this.metrics.lastHeartbeatCommitTime)) / 1000 : null;
  }

  /** Drain what was received, flush the sink, confirm, and close. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.draining;
    await this.sink.flush().catch((err) => log.error({ err: err.message }, 'flush on stop failed'));
    if (this.replication) {
      await this.replication.acknowledge(this.acker.confirmedLsn);
      await this.replication.stop();
    }
    await this.pool.end();
    this.metrics.state = 'stopped';
  }
}
