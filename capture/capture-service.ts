/**
 * The capture service: owns the publication and slot, the initial snapshot, the stream and the
 * acknowledgements. One instance per slot; the same class runs as the Fargate task and in the
 * local stack.
 *
 * What happens if the process dies:
 * - during a snapshot: progress is kept per table once a chunk is accepted by the stream, so
 *   the next start continues at the next chunk; a chunk re-sent is idempotent downstream
 *   (snapshot reads only append a fact version when it differs from the one before it);
 * - while streaming: the slot was confirmed only past commits the stream accepted, so the next
 *   start replays from there; changes re-sent are identified by (commit LSN, position) and the
 *   warehouse loads each once.
 */
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { SOURCE_TABLE_NAMES, SOURCE_TABLES, primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import { bigIntToLsn, lsnToBigInt, type ChangeEvent, type EventSource } from '../formats/change-event.ts';
import { log } from '../lib/log.ts';
import type pg from '../lib/pg.ts';
import { connectionConfig, poolFor } from '../lib/pg.ts';
import { Acker } from './acker.ts';
import { createPublicationSql } from './source-setup.ts';
import { ChunkedSnapshot, requestSnapshot, SNAPSHOT_HIGH_PREFIX, SNAPSHOT_LOW_PREFIX, SNAPSHOT_PROGRESS_DDL } from './chunked-snapshot.ts';
import { HEARTBEAT_PREFIX } from '../formats/source-signals.ts';
import { PgoutputDecoder, type Decoded } from './pgoutput-decoder.ts';
import type { ChangeSink } from './sink.ts';
import { WAL2JSON_OPTIONS, Wal2JsonDecoder } from './wal2json-decoder.ts';
import { Wal2JsonTextPlugin } from './wal2json-plugin.ts';

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
  /** Logical decoding plugin: pgoutput (built into Postgres) or wal2json (format-version 2; installed on the server). */
  plugin: 'pgoutput' | 'wal2json';
}

export const DEFAULT_CAPTURE_CONFIG: Omit<CaptureConfig, 'sourceUrl'> = {
  slotName: 'totes_cdc',
  publicationName: 'totes_cdc',
  heartbeatMs: 10_000,
  statusIntervalMs: 10_000,
  snapshotChunkRows: 5_000,
  createPrerequisites: false,
  plugin: 'pgoutput',
};

export interface CaptureMetrics {
  changes: number;
  /** Snapshot rows read by this process. */
  snapshotRows: number;
  transactions: number;
  heartbeats: number;
  /** Tables truncated in the source (one per table a TRUNCATE reached). */
  truncates: number;
  lastCommitTime: string | null;
  /** Commit time of the newest heartbeat the stream accepted: lag in seconds is now minus this. */
  lastHeartbeatCommitTime: string | null;
  /** Commit → capture latency of the newest heartbeat, in seconds. */
  heartbeatLatencySeconds: number | null;
  confirmedLsn: string;
  /** Source schema changes that break what the warehouse maps (dropped or retyped columns). */
  schemaIssues: string[];
  state: 'starting' | 'streaming' | 'stopped';
}

type Item = { kind: 'data'; msg: Pgoutput.Message | string } | { kind: 'keepalive'; lsn: string };

/** A decoder takes the messages of the plugin it was chosen with (streamFormat): pgoutput's parsed messages, wal2json's text. */
interface StreamDecoder {
  decode(msg: Pgoutput.Message | string): Decoded[];
  readonly inTransaction: boolean;
  nextSource(): EventSource;
}

function streamFormat(config: CaptureConfig): { plugin: PgoutputPlugin | Wal2JsonTextPlugin; decoder: StreamDecoder } {
  return config.plugin === 'wal2json'
    ? { plugin: new Wal2JsonTextPlugin(WAL2JSON_OPTIONS), decoder: new Wal2JsonDecoder() }
    : { plugin: new PgoutputPlugin({ protoVersion: 1, publicationNames: [config.publicationName], messages: true }), decoder: new PgoutputDecoder() };
}

const HIGH_WATER = 2_000;

export class CaptureService {
  readonly metrics: CaptureMetrics = {
    changes: 0,
    snapshotRows: 0,
    transactions: 0,
    heartbeats: 0,
    truncates: 0,
    lastCommitTime: null,
    lastHeartbeatCommitTime: null,
    heartbeatLatencySeconds: null,
    confirmedLsn: '0/0',
    schemaIssues: [],
    state: 'starting',
  };
  private readonly pool: pg.Pool;
  private readonly plugin: PgoutputPlugin | Wal2JsonTextPlugin;
  private readonly decoder: StreamDecoder;
  private readonly acker: Acker;
  readonly snapshot: ChunkedSnapshot;
  private readonly abort = new AbortController();
  private readonly columnTypes = new Map<SourceTable, Map<string, number>>();
  private snapshots: Promise<void> = Promise.resolve();
  private replication: LogicalReplicationService | null = null;
  private queue: Item[] = [];
  private draining: Promise<void> | null = null;
  private paused = false;
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private fatal: ((err: Error) => void) | null = null;

  constructor(
    private readonly config: CaptureConfig,
    private readonly sink: ChangeSink,
  ) {
    this.pool = poolFor(config.sourceUrl, 2);
    ({ plugin: this.plugin, decoder: this.decoder } = streamFormat(config));
    this.snapshot = new ChunkedSnapshot(
      this.pool,
      config.slotName,
      config.snapshotChunkRows,
      async (prefix, content) => {
        await this.emitMessage(prefix, content);
      },
      () => sink.flush(),
    );
    this.acker = new Acker((lsn) => {
      this.metrics.confirmedLsn = lsn;
      void this.sendStatus();
    });
    sink.onAccepted((through) => this.acker.accept(through));
  }

  /** Runs until stop() or a fatal error (rejects). */
  async run(): Promise<void> {
    await this.checkPrerequisites();
    await this.ensureSlot();
    this.snapshots = this.snapshot.run(this.abort.signal).catch((err) => {
      if (!this.stopping) this.fatal?.(err);
    });
    try {
      await this.stream();
    } finally {
      this.abort.abort();
      await this.snapshots;
    }
  }

  private async checkPrerequisites(): Promise<void> {
    const { rows } = await this.pool.query(`SELECT current_setting('wal_level') AS wal_level, current_setting('server_version_num')::int AS version`);
    if (rows[0].wal_level !== 'logical') {
      throw new Error(
        `source wal_level is '${rows[0].wal_level}', needs 'logical' (on RDS set rds.logical_replication = 1 in the parameter group and reboot); see \`totes source-setup\``,
      );
    }
    if (rows[0].version < 140000 && this.config.heartbeatMs > 0 && this.config.plugin === 'pgoutput') {
      log.warn(
        { version: rows[0].version },
        'source is older than Postgres 14: pg_logical_emit_message heartbeats are not decoded by pgoutput; freshness advances only with captured changes',
      );
      this.config.heartbeatMs = 0;
    }
    // wal2json needs no publication: WAL2JSON_OPTIONS.addTables names the tables
    const needsPublication = this.config.plugin === 'pgoutput';
    if (this.config.createPrerequisites) {
      await this.pool.query(`CREATE SCHEMA IF NOT EXISTS totes_cdc`);
      await this.pool.query(SNAPSHOT_PROGRESS_DDL);
      const pub = await this.pool.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [this.config.publicationName]);
      if (needsPublication && pub.rowCount === 0) await this.pool.query(createPublicationSql(this.config.publicationName));
    }
    const pub =
      needsPublication &&
      (await this.pool.query(`SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'public' AND tablename = ANY($2)`, [
        this.config.publicationName,
        SOURCE_TABLE_NAMES,
      ]));
    if (pub && pub.rows[0].n !== SOURCE_TABLE_NAMES.length) {
      throw new Error(
        `publication "${this.config.publicationName}" covers ${pub.rows[0].n} of the ${SOURCE_TABLE_NAMES.length} totesys tables; create it with: ${createPublicationSql(this.config.publicationName)}; (see \`totes source-setup\`)`,
      );
    }
    // the column types at start: relation messages are compared with them to see a retyped column
    const columns = await this.pool.query(
      `SELECT c.relname AS table_name, a.attname AS column_name, a.atttypid::int AS type_oid
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [SOURCE_TABLE_NAMES],
    );
    for (const r of columns.rows) {
      const types = this.columnTypes.get(r.table_name) ?? new Map<string, number>();
      types.set(r.column_name, r.type_oid);
      this.columnTypes.set(r.table_name, types);
    }
    const state = await this.pool.query(`SELECT to_regclass('totes_cdc.snapshot_progress') AS t`);
    if (!state.rows[0].t) throw new Error('table totes_cdc.snapshot_progress is missing; create it as `totes source-setup` shows');
  }

  /**
   * The slot, created when missing. A lost slot (its WAL was removed, e.g. past
   * max_slot_wal_keep_size) cannot resume: it is dropped and created again, and every table is
   * snapshotted again so the warehouse converges: each chunk's snapshot range ends the rows
   * deleted while the slot was lost.
   */
  private async ensureSlot(): Promise<void> {
    const slot = this.config.slotName;
    const { rows } = await this.pool.query('SELECT wal_status, plugin FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (rows[0] && rows[0].plugin !== this.config.plugin) {
      throw new Error(
        `slot "${slot}" decodes with ${rows[0].plugin}, not ${this.config.plugin}: set TOTES_DECODER=${rows[0].plugin}, or use another TOTES_SLOT_NAME (a new slot snapshots every table again)`,
      );
    }
    if (rows[0]?.wal_status === 'lost') {
      log.error({ slot }, 'replication slot LOST: the WAL it needed was removed (max_slot_wal_keep_size). Recreating it and snapshotting every table again');
      await this.pool.query('SELECT pg_drop_replication_slot($1)', [slot]);
    }
    if (rows.length === 0 || rows[0].wal_status === 'lost') {
      // the request first: a process that dies between the two leaves no slot, so the next start does both again
      await requestSnapshot(this.pool, slot);
      await this.pool.query('SELECT pg_create_logical_replication_slot($1, $2)', [slot, this.config.plugin]);
      log.info({ slot }, 'slot created; every table will be snapshotted while streaming');
    }
  }

  private async stream(): Promise<void> {
    this.metrics.state = 'streaming';
    const service = new LogicalReplicationService(connectionConfig(this.config.sourceUrl), {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: false },
    });
    this.replication = service;
    const failed = new Promise<never>((_, reject) => {
      this.fatal = reject;
    });
    service.on('data', (_lsn: string, msg: Pgoutput.Message | string) => this.enqueue({ kind: 'data', msg }));
    service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
      this.enqueue({ kind: 'keepalive', lsn });
      if (shouldRespond) void this.sendStatus();
    });
    service.on('error', (err: Error) => {
      if (!this.stopping) this.fatal?.(err);
    });
    this.timers.push(setInterval(() => void this.sendStatus(), this.config.statusIntervalMs));
    if (this.config.heartbeatMs > 0) {
      this.timers.push(
        setInterval(() => void this.emitHeartbeat().catch((err) => log.warn({ err: err.message }, 'heartbeat failed')), this.config.heartbeatMs),
      );
    }
    log.info({ slot: this.config.slotName, plugin: this.config.plugin }, 'streaming');
    const subscribed = service.subscribe(this.plugin, this.config.slotName).catch((err) => {
      if (!this.stopping) throw err;
    });
    await Promise.race([subscribed, failed]);
  }

  /**
   * A relation message: the table's columns as the stream now sends them. Added columns travel
   * in events and processors ignore what they do not map; a dropped or retyped column that the
   * warehouse needs is reported loudly (log and metric), since its values stop arriving.
   */
  private checkSchema(table: SourceTable, columns: { name: string; typeOid: number }[]): void {
    const seen = this.columnTypes.get(table);
    const names = new Set(columns.map((c) => c.name));
    const issues: string[] = [];
    for (const expected of SOURCE_TABLES[table]) if (!names.has(expected)) issues.push(`${table}.${expected} was dropped`);
    for (const c of columns) {
      const before = seen?.get(c.name);
      if (before !== undefined && before !== c.typeOid) issues.push(`${table}.${c.name} changed type (oid ${before} → ${c.typeOid})`);
      if (!(SOURCE_TABLES[table] as readonly string[]).includes(c.name) && !seen?.has(c.name))
        log.info({ table, column: c.name }, 'new source column: carried in events, not mapped');
    }
    this.columnTypes.set(table, new Map(columns.map((c) => [c.name, c.typeOid])));
    for (const issue of issues) {
      this.metrics.schemaIssues.push(issue);
      log.error({ table, issue }, 'source schema change the warehouse depends on');
    }
  }

  /** Snapshot rows of a chunk, at the high watermark's position in the stream. */
  private async emitChunk(id: string): Promise<void> {
    const chunk = this.snapshot.closed(id);
    if (!chunk) return;
    const pk = primaryKeyOf(chunk.table);
    for (const row of chunk.rows) {
      const event: ChangeEvent = {
        v: 1,
        kind: 'change',
        op: 'r',
        table: chunk.table,
        key: { [pk]: row[pk] },
        before: null,
        after: row,
        source: this.decoder.nextSource(),
      };
      await this.sink.write(event);
    }
    const { after, through, present } = chunk.range;
    await this.sink.broadcast({ v: 1, kind: 'snapshot-range', table: chunk.table, after, through, present, source: this.decoder.nextSource() });
    chunk.done();
    this.metrics.snapshotRows += chunk.rows.length;
  }

  /**
   * A standby status update confirming `acker.confirmedLsn`. That LSN is already "last byte + 1"
   * (a commit's end, or a keepalive's WAL end), and pg-logical-replication's acknowledge() adds
   * 1 again: confirming one byte past a commit's end can skip a transaction whose commit record
   * starts exactly there (Postgres skips commits before confirmed_flush_lsn on restart). So the
   * library is handed one byte less.
   */
  private async sendStatus(): Promise<void> {
    const confirmed = lsnToBigInt(this.acker.confirmedLsn);
    if (confirmed > 0n) await this.replication?.acknowledge(bigIntToLsn(confirmed - 1n));
  }

  /** Writes a heartbeat into the WAL; it comes back through the stream. Returns its LSN. */
  async emitHeartbeat(): Promise<string> {
    return this.emitMessage(HEARTBEAT_PREFIX, '');
  }

  private async emitMessage(prefix: string, content: string): Promise<string> {
    const { rows } = await this.pool.query(`SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn`, [prefix, content]);
    return rows[0].lsn;
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    if (this.queue.length >= HIGH_WATER && !this.paused) {
      this.paused = true;
      // Stop reading the socket: Postgres keeps the WAL, we keep sending status updates.
      (this.replication as unknown as { _connection?: { stream?: { pause(): void } } })._connection?.stream?.pause();
    }
    this.draining ??= this.drain()
      .catch((err) => this.fatal?.(err))
      .finally(() => {
        this.draining = null;
      });
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

  private async handle(msg: Pgoutput.Message | string): Promise<void> {
    for (const d of this.decoder.decode(msg)) await this.apply(d);
  }

  private async apply(d: Decoded): Promise<void> {
    switch (d.type) {
      case 'change':
        this.snapshot.observe(d.event.table, d.event.key[primaryKeyOf(d.event.table)]);
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
      case 'truncate':
        log.warn({ table: d.event.table, lsn: d.event.source.lsn }, 'TRUNCATE captured: every row of the table ends in the warehouse');
        this.snapshot.truncated(d.event.table);
        await this.sink.broadcast(d.event);
        this.metrics.truncates++;
        break;
      case 'commit':
        this.metrics.transactions++;
        this.acker.committed(this.sink.writtenThrough, d.endLsn);
        break;
      case 'message':
        if (d.prefix === SNAPSHOT_LOW_PREFIX) this.snapshot.opened(d.content);
        if (d.prefix === SNAPSHOT_HIGH_PREFIX) await this.emitChunk(d.content);
        break;
      case 'schema':
        this.checkSchema(d.table, d.columns);
        break;
      case 'begin':
        break;
    }
  }

  /** True while any table still has snapshot chunks to read. */
  get snapshotPending(): boolean {
    return this.snapshot.pending;
  }

  /** Seconds between now and the newest heartbeat commit the stream accepted (null before the first). */
  lagSeconds(now = Date.now()): number | null {
    return this.metrics.lastHeartbeatCommitTime ? (now - Date.parse(this.metrics.lastHeartbeatCommitTime)) / 1000 : null;
  }

  /** Drain what was received, flush the sink, confirm, and close. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.snapshots;
    await this.draining;
    await this.sink.flush().catch((err) => log.error({ err: err.message }, 'flush on stop failed'));
    if (this.replication) {
      await this.sendStatus();
      await this.replication.stop();
    }
    await this.pool.end();
    this.metrics.state = 'stopped';
  }
}
