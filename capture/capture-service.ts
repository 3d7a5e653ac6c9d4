/**
 * The capture service: owns the checks, the slot, the stream and the acknowledgements, and
 * runs the snapshot (ChunkedSnapshot owns that protocol; the stream reports to it). One
 * instance per slot; the same class runs as the Fargate task and in the local stack.
 *
 * It says `streaming` only once the server has accepted START_REPLICATION and sent its first
 * message. A condition a person must fix stops it at once (SourceNotReady); a transient one is
 * retried while starting (source-errors.ts).
 *
 * Liveness: every status update asks the server for a reply, at least four times per silence
 * bound, so a live connection is never silent for the bound; one that is (a half-open path:
 * no FIN, no RST) is taken as dead. It says `reconnecting` at once (the health endpoint's 503),
 * drops the connection and takes the slot again in-process, waiting while the server still
 * holds it for the dead connection's walsender (SQLSTATE 55006), as after any other lost
 * connection. What the lost connection delivered past the confirmed position is sent again.
 *
 * What happens if the process dies:
 * - during a snapshot: progress is kept per table once a chunk is accepted by the stream, so
 *   the next start continues at the next chunk; a chunk re-sent is idempotent downstream
 *   (snapshot reads only append a fact version when it differs from the one before it);
 * - while streaming: the slot was confirmed only past commits the stream accepted, so the next
 *   start replays from there; changes re-sent are identified by (commit LSN, position) and the
 *   warehouse loads each once.
 */
import type { Pgoutput } from 'pg-logical-replication';
import { bigIntToLsn, lsnToBigInt } from '../formats/change-event.ts';
import { HEARTBEAT_PREFIX, type SignalCarrier } from '../formats/source-signals.ts';
import { primaryKeyOf } from '../formats/source-tables.ts';
import { log } from '../lib/log.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { Retry, sleep } from '../lib/retry.ts';
import { Acker } from './acker.ts';
import { ChunkedSnapshot } from './chunked-snapshot.ts';
import type { Decoded } from './decoding.ts';
import { ensureSlot } from './replication-slot.ts';
import { ReplicationStream } from './replication-stream.ts';
import { SchemaWatch } from './schema-watch.ts';
import { SignalWriter } from './signal-writer.ts';
import type { ChangeSink } from './sink.ts';
import { checkSource } from './source-checks.ts';
import { explainSourceError, isTransient, START_RETRY } from './source-errors.ts';
import { type Plugin, streamFormat, type StreamFormat } from './stream-format.ts';

export interface CaptureConfig {
  sourceUrl: string;
  slotName: string;
  publicationName: string;
  /** How often to write a heartbeat through the WAL (0 = never). */
  heartbeatMs: number;
  /** How often to send a standby status update even when nothing changes. */
  statusIntervalMs: number;
  /** Silence from the server (no message, no keepalive) after which the connection is taken as dead and opened again (0 = never). */
  silenceMs: number;
  snapshotChunkRows: number;
  /** Create the publication and state schema when missing (local mode); production expects the DBA to. */
  createPrerequisites: boolean;
  /** Logical decoding plugin: pgoutput (built into Postgres) or wal2json (format-version 2; installed on the server). */
  plugin: Plugin;
  /** Messages received but not yet handled at which the socket stops being read (backpressure). */
  maxQueuedMessages: number;
  /** Bytes of those messages at which it stops too, whichever comes first: a queue of wide rows stays as small as one of narrow ones. */
  maxQueuedBytes: number;
}

export const DEFAULT_CAPTURE_CONFIG: Omit<CaptureConfig, 'sourceUrl'> = {
  slotName: 'totes_cdc',
  publicationName: 'totes_cdc',
  heartbeatMs: 10_000,
  statusIntervalMs: 10_000,
  // above wal_sender_timeout / 2 (30 s by default), within which a walsender too busy to read our updates still pings
  silenceMs: 40_000,
  snapshotChunkRows: 5_000,
  createPrerequisites: false,
  plugin: 'pgoutput',
  maxQueuedMessages: 2_000,
  maxQueuedBytes: 16 * 1024 * 1024,
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
  /** Replication connections opened again in-process after one was lost or went silent. */
  reconnects: number;
  state: 'starting' | 'streaming' | 'reconnecting' | 'stopped';
}

type Item = { kind: 'data'; msg: Pgoutput.Message | string; bytes: number } | { kind: 'keepalive'; lsn: string };

/** How long a stop waits for the transaction being read to end, before cutting it (it is sent again after a restart). */
const BOUNDARY_WAIT_MS = 5_000;
/** Reply requests per silence bound: one lost or late reply does not end a live connection. */
const PINGS_PER_SILENCE = 4;

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
    reconnects: 0,
    state: 'starting',
  };
  private readonly pool: pg.Pool;
  private readonly acker: Acker;
  private readonly abort = new AbortController();
  /** Set once the source is checked; the stream, the snapshot and the heartbeats use them. */
  private started: { format: StreamFormat; signals: SignalWriter; snapshot: ChunkedSnapshot; schema: SchemaWatch; carrier: SignalCarrier } | null = null;
  private stream: ReplicationStream | null = null;
  private snapshots: Promise<void> = Promise.resolve();
  private queue: Item[] = [];
  /** Payload bytes of the data items in `queue`. */
  private queueBytes = 0;
  private draining: Promise<void> | null = null;
  private paused = false;
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** Set when a stop has stopped reading: nothing more is handled. */
  private inputClosed = false;
  private reachedBoundary: () => void = () => undefined;
  private fail: (err: unknown) => void = () => undefined;
  private readonly failure = new Promise<never>((_, reject) => {
    this.fail = reject;
  });

  constructor(
    private readonly config: CaptureConfig,
    private readonly sink: ChangeSink,
  ) {
    this.pool = poolFor(config.sourceUrl, 2);
    this.failure.catch(() => undefined); // seen by run()
    this.acker = new Acker((lsn) => {
      this.metrics.confirmedLsn = lsn;
      this.sendStatus();
    });
    sink.onAccepted((through) => this.acker.accept(through));
  }

  /** Runs until stop() (resolves) or a fatal error (rejects; a SourceNotReady says what to fix). */
  async run(): Promise<void> {
    await this.retryingStart('cannot start replication yet; retrying', () => this.start());
    if (this.stopping || !this.started || !this.stream) return;
    this.snapshots = this.started.snapshot.run(this.abort.signal).catch((err) => {
      if (!this.stopping) this.fail(err);
    });
    try {
      await this.follow();
    } finally {
      this.abort.abort();
      await this.snapshots;
    }
  }

  /** Checks, the slot, then the stream: resolves once the server has sent its first message. */
  private async start(): Promise<void> {
    const { plugin, publicationName, slotName } = this.config;
    const facts = await checkSource(this.pool, {
      publicationName,
      needsPublication: plugin === 'pgoutput',
      createPrerequisites: this.config.createPrerequisites,
    });
    const signals = new SignalWriter(this.pool, facts.carrier, slotName);
    const format = streamFormat(plugin, publicationName, facts.carrier);
    const snapshot = new ChunkedSnapshot({ pool: this.pool, slotName, chunkRows: this.config.snapshotChunkRows, signals, sink: this.sink });
    this.started = { format, signals, snapshot, schema: new SchemaWatch(facts.columnTypes), carrier: facts.carrier };
    await ensureSlot(this.pool, slotName, plugin);
    await this.openStream();
    log.info({ slot: slotName, plugin, serverVersion: facts.serverVersionNum, signals: facts.carrier }, 'streaming');
    const { statusIntervalMs, silenceMs } = this.config;
    const pingMs = silenceMs > 0 ? Math.min(statusIntervalMs, silenceMs / PINGS_PER_SILENCE) : statusIntervalMs;
    this.timers.push(setInterval(() => this.sendStatus(true), pingMs));
    if (this.config.heartbeatMs > 0)
      this.timers.push(
        setInterval(() => void this.emitHeartbeat().catch((err) => log.warn({ err: err.message }, 'heartbeat failed')), this.config.heartbeatMs),
      );
  }

  /** START_REPLICATION on a connection of its own: resolves once the server has sent its first message. */
  private async openStream(): Promise<void> {
    const { format } = this.started!;
    this.stream = new ReplicationStream(this.config.sourceUrl, this.config.silenceMs);
    await this.stream.start(format.statement(this.config.slotName), {
      // parsed on arrival: the payload is a view of node-postgres's read buffer, which the next read reuses
      data: (payload) => {
        try {
          this.enqueue({ kind: 'data', msg: format.parse(payload), bytes: payload.length });
        } catch (err) {
          this.fail(err);
        }
      },
      keepalive: (walEnd, replyRequested) => {
        this.enqueue({ kind: 'keepalive', lsn: bigIntToLsn(walEnd) });
        if (replyRequested) this.sendStatus();
      },
    });
    this.metrics.state = 'streaming';
  }

  /** Streams until stop() (resolves) or a fatal error; a connection lost or silent is opened again, here. */
  private async follow(): Promise<void> {
    while (!this.stopping) {
      const lost = await Promise.race([
        this.stream!.ended.then(
          () => null,
          (err: unknown) => err,
        ),
        this.failure,
      ]);
      if (lost === null || this.stopping) return;
      if (!isTransient(lost)) throw lost;
      await this.reconnect(lost);
    }
  }

  /**
   * Drops the lost connection and what it delivered but was not yet handled, with the decoder's
   * state (a transaction cut short comes again whole, from the confirmed position), then takes
   * the slot again, retrying what is transient (the server may hold the slot for the dead
   * connection's walsender until its wal_sender_timeout).
   */
  private async reconnect(cause: unknown): Promise<void> {
    this.metrics.state = 'reconnecting';
    log.warn({ err: (cause as Error).message }, 'the replication connection was lost; connecting again');
    await this.stream?.stop();
    this.queue = [];
    this.queueBytes = 0;
    this.paused = false;
    await this.draining;
    const { plugin, publicationName, slotName } = this.config;
    this.started!.format = streamFormat(plugin, publicationName, this.started!.carrier);
    const begun = Date.now();
    await this.retryingStart('cannot take the slot again yet; retrying', () => this.openStream());
    if (this.stopping) return;
    this.metrics.reconnects++;
    log.info({ slot: slotName, afterMs: Date.now() - begun }, 'streaming again');
  }

  /**
   * Starts replication (`attempt`) under START_RETRY: what is transient (the source restarting,
   * the slot still held by a dead connection's walsender) is tried again; anything else, or
   * the deadline, ends with the error explained (a SourceNotReady says what to fix).
   */
  private async retryingStart(retrying: string, attempt: () => Promise<void>): Promise<void> {
    const retry = new Retry(START_RETRY);
    while (!this.stopping) {
      try {
        await attempt();
        return;
      } catch (err) {
        const explained = explainSourceError(err, {
          role: new URL(this.config.sourceUrl).username || 'the capture role',
          slot: this.config.slotName,
          plugin: this.config.plugin,
        });
        await this.stream?.stop();
        if (this.stopping) return;
        const wait = retry.failed(explained);
        if (wait === null) throw explained;
        log.warn({ err: (explained as Error).message, attempt: retry.failures - 1 }, retrying);
        await sleep(wait, this.abort.signal);
      }
    }
  }

  /** A standby status update confirming `acker.confirmedLsn` (also keeps wal_sender_timeout from ending the stream); `replyRequested` asks the server to answer at once. */
  private sendStatus(replyRequested = false): void {
    this.stream?.status(lsnToBigInt(this.acker.confirmedLsn), replyRequested);
  }

  /** Writes a heartbeat into the WAL; it comes back through the stream. Returns a WAL position at or before its commit. */
  async emitHeartbeat(): Promise<string> {
    if (!this.started) throw new Error('the capture service has not started: no heartbeat can be written yet');
    return this.started.signals.write(HEARTBEAT_PREFIX);
  }

  private enqueue(item: Item): void {
    if (this.inputClosed) return;
    this.queue.push(item);
    if (item.kind === 'data') this.queueBytes += item.bytes;
    if ((this.queue.length >= this.config.maxQueuedMessages || this.queueBytes >= this.config.maxQueuedBytes) && !this.paused) {
      this.paused = true;
      this.stream?.pause(); // Postgres keeps the WAL; status updates keep flowing
    }
    if (!this.draining) this.startDraining();
  }

  private startDraining(): void {
    this.draining = this.drain()
      .catch((err) => this.fail(err))
      .finally(() => {
        this.draining = null;
        // an item that arrived after the loop saw the queue empty, but before this ran
        if (this.queue.length > 0) this.startDraining();
      });
  }

  private async drain(): Promise<void> {
    const { format } = this.started!;
    while (this.queue.length > 0) {
      const item = this.queue.shift()!;
      if (item.kind === 'keepalive') {
        this.acker.idle(item.lsn, !format.decoder.inTransaction && this.sink.acceptedThrough === this.sink.writtenThrough);
      } else {
        this.queueBytes -= item.bytes;
        for (const d of format.decoder.decode(item.msg)) await this.apply(d);
      }
      if (this.stopping && !format.decoder.inTransaction) this.closeInput();
      if (this.paused && this.queue.length < this.config.maxQueuedMessages / 4 && this.queueBytes < this.config.maxQueuedBytes / 4) {
        this.paused = false;
        this.stream?.resume();
      }
    }
  }

  private async apply(d: Decoded): Promise<void> {
    const { snapshot, schema, format } = this.started!;
    switch (d.type) {
      case 'change':
        snapshot.changed(d.event.table, d.event.key[primaryKeyOf(d.event.table)]);
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
        snapshot.truncated(d.event.table);
        await this.sink.broadcast(d.event);
        this.metrics.truncates++;
        break;
      case 'commit':
        this.metrics.transactions++;
        this.acker.committed(this.sink.writtenThrough, d.endLsn);
        break;
      case 'signal':
        this.metrics.snapshotRows += await snapshot.signal(d.kind, d.content, format.decoder);
        break;
      case 'schema':
        this.metrics.schemaIssues.push(...schema.relation(d.table, d.columns));
        break;
      case 'begin':
        break;
    }
  }

  /** Stop handling what the stream sends: what follows is read again after a restart. */
  private closeInput(): void {
    this.inputClosed = true;
    this.queue = [];
    this.queueBytes = 0;
    this.stream?.pause();
    this.reachedBoundary();
  }

  /** True while any table still has snapshot chunks to read. */
  get snapshotPending(): boolean {
    return this.started?.snapshot.pending ?? true;
  }

  /** Messages received and not yet handled. */
  get queuedMessages(): number {
    return this.queue.length;
  }

  /** Their payload bytes. */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  /** Seconds between now and the newest heartbeat commit the stream accepted (null before the first). */
  lagSeconds(now = Date.now()): number | null {
    return this.metrics.lastHeartbeatCommitTime ? (now - Date.parse(this.metrics.lastHeartbeatCommitTime)) / 1000 : null;
  }

  /**
   * Read on to the end of the transaction under way (so a clean stop leaves nothing to send
   * again), flush the sink, confirm, and close. A second call waits for the first.
   */
  stop(): Promise<void> {
    this.stopped ??= this.stopOnce();
    return this.stopped;
  }

  private async stopOnce(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (!this.inputClosed) {
      const boundary = new Promise<void>((resolve) => {
        this.reachedBoundary = resolve;
      });
      if (!this.draining && !this.started?.format.decoder.inTransaction) this.closeInput();
      const waited = new AbortController();
      await Promise.race([boundary, sleep(BOUNDARY_WAIT_MS, waited.signal)]);
      waited.abort();
      if (!this.inputClosed) this.closeInput();
    }
    await this.snapshots;
    await this.draining;
    await this.sink.flush().catch((err) => log.error({ err: err.message }, 'flush on stop failed'));
    this.sendStatus();
    await this.stream?.stop();
    await this.pool.end();
    this.metrics.state = 'stopped';
  }
}
