/**
 * One logical replication connection, spoken over node-postgres: START_REPLICATION, then
 * XLogData and keepalives in, standby status updates out. Reading pauses while the consumer is
 * behind: the socket is not read, TCP pushes back and the walsender waits, Postgres keeps the
 * WAL, and status updates still go out so wal_sender_timeout does not end the stream.
 *
 * Ours rather than pg-logical-replication's LogicalReplicationService, which offers
 * backpressure only through a private field, always sends pgoutput's `messages` option (which
 * Postgres 13 rejects) and adds 1 to every LSN it confirms. We use node-postgres's connection
 * (`client.connection`, `connection.stream`: typed in @types/pg) and its `copyData` event and
 * `sendCopyFromChunk`, which COPY clients such as pg-copy-streams build on; `copyBoth` checks
 * that they are there, so a node-postgres that drops them fails at once, by name.
 *
 * Liveness: a path that drops packets without a FIN or RST (a NAT idle timeout, a failover)
 * leaves the socket open and silent, and TCP takes many minutes to notice. So the stream counts
 * silence while it reads: nothing from the server for `silenceMs` (while the socket is read, from
 * the connect on, START_REPLICATION included) ends it with SourceSilent and destroys the socket.
 * The caller keeps the server talking by asking for a reply in its status updates (the walsender
 * answers a reply request with a keepalive at once).
 */
import type { Duplex } from 'node:stream';
import pg, { connectionConfig } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';

const XLOG_DATA = 0x77; // 'w'
const KEEPALIVE = 0x6b; // 'k'
const STATUS_UPDATE = 0x72; // 'r'
/** µs from the Unix epoch to Postgres's (2000-01-01). */
const POSTGRES_EPOCH_US = 946_684_800_000_000n;

export interface ReplicationHandlers {
  /** One XLogData message: the output plugin's payload, valid only during the call (node-postgres reuses its buffer). */
  data(payload: Buffer): void;
  /** A primary keepalive: the server's end of WAL, and whether it wants a status update now. */
  keepalive(walEnd: bigint, replyRequested: boolean): void;
}

/** What a COPY BOTH exchange needs from node-postgres's connection. */
interface CopyBothConnection {
  stream: Duplex;
  on(event: 'copyData', listener: (msg: { chunk: Buffer }) => void): unknown;
  once(event: 'replicationStart', listener: () => void): unknown;
  sendCopyFromChunk(chunk: Buffer): void;
}

export function copyBoth(client: pg.Client): CopyBothConnection {
  const connection = client.connection as unknown as Partial<CopyBothConnection> | undefined;
  if (typeof connection?.sendCopyFromChunk !== 'function' || typeof connection.on !== 'function' || typeof connection.stream?.pause !== 'function')
    throw new Error(
      'node-postgres no longer offers connection.sendCopyFromChunk, connection.stream.pause and copyData events, which the replication stream needs',
    );
  return connection as CopyBothConnection;
}

/** The server refused the START_REPLICATION statement itself (its error, with its SQLSTATE, is the cause). */
export class StartReplicationRefused extends Error {
  override name = 'StartReplicationRefused';
  readonly code: string | undefined;
  constructor(cause: Error & { code?: string }) {
    super(cause.message, { cause });
    this.code = cause.code;
  }
}

/** Nothing came from the server within the bound: the connection is taken as dead (transient: connect again). */
export class SourceSilent extends Error {
  override name = 'SourceSilent';
  readonly code = 'ETIMEDOUT';
}

/** How long stop() waits for the server to acknowledge the close before cutting the socket. */
const CLOSE_WAIT_MS = 1_000;

export class ReplicationStream {
  private client: pg.Client | null = null;
  private connection: CopyBothConnection | null = null;
  private stopping = false;
  private paused = false;
  /** When the server last sent anything (or reading resumed): silence is counted from here. */
  private lastHeard = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  /** Settles when the stream ends: resolves after stop(), rejects with whatever else ended it. */
  ended: Promise<void> = Promise.resolve();

  /** `silenceMs`: the bound on silence from the server (0: no bound). */
  constructor(
    private readonly url: string,
    private readonly silenceMs = 0,
  ) {}

  /**
   * Connects, sends `statement` (START_REPLICATION …) and resolves once the server has accepted
   * it and sent its first message: a keepalive is asked for as soon as the server switches to
   * streaming. Rejects with the server's error when it refuses, when the connection ends first,
   * or with SourceSilent when the server does not answer within the silence bound.
   */
  async start(statement: string, handlers: ReplicationHandlers): Promise<void> {
    const client = new pg.Client({ ...connectionConfig(this.url), replication: 'database' } as pg.ClientConfig);
    this.client = client;
    let lost!: (err: Error) => void;
    const connectionLost = new Promise<never>((_, reject) => {
      lost = reject;
    });
    connectionLost.catch(() => undefined); // seen through `ended`, once connected
    client.on('error', (err) => lost(err));
    this.watchSilence(client, (err) => lost(err));
    // the watchdog ends with the stream, or here when the connect fails
    await Promise.race([client.connect(), connectionLost]).catch((err) => {
      clearInterval(this.watchdog);
      throw err;
    });
    const connection = copyBoth(client);
    this.connection = connection;
    let streaming = false;
    let firstMessage!: () => void;
    const started = new Promise<void>((resolve) => {
      firstMessage = () => {
        streaming = true;
        resolve();
      };
    });
    connection.once('replicationStart', () => this.status(0n, true));
    connection.on('copyData', ({ chunk }) => {
      if (this.stopping) return;
      this.lastHeard = Date.now();
      firstMessage();
      if (chunk[0] === XLOG_DATA) handlers.data(chunk.subarray(25));
      else if (chunk[0] === KEEPALIVE) handlers.keepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
    });
    const replicating = client.query(statement).catch((err) => {
      throw streaming ? err : new StartReplicationRefused(err);
    });
    this.ended = Promise.race([replicating, connectionLost])
      .then(
        () => {
          if (!this.stopping) throw new Error('the server ended replication');
        },
        (err) => {
          if (!this.stopping) throw err;
        },
      )
      .finally(() => clearInterval(this.watchdog));
    await Promise.race([started, this.ended.then(() => Promise.reject(new Error('replication ended before it started')))]);
  }

  /**
   * A standby status update: everything before `confirmed` (a commit's end LSN, or a keepalive's
   * end of WAL) is processed and need not be sent again. Postgres then skips, on a restart, only
   * transactions whose commit record starts before it.
   */
  status(confirmed: bigint, replyRequested = false): void {
    if (!this.connection || this.stopping) return;
    const update = Buffer.alloc(34);
    update[0] = STATUS_UPDATE;
    update.writeBigUInt64BE(confirmed, 1); // written
    update.writeBigUInt64BE(confirmed, 9); // flushed
    update.writeBigUInt64BE(confirmed, 17); // applied
    update.writeBigUInt64BE(BigInt(Date.now()) * 1000n - POSTGRES_EPOCH_US, 25);
    update[33] = replyRequested ? 1 : 0;
    this.connection.sendCopyFromChunk(update);
  }

  /**
   * Silence while the socket is read ends the connection: `lost` first, so that is what `ended`
   * reports, then the socket is destroyed (a close sent into a black hole would wait forever).
   */
  private watchSilence(client: pg.Client, lost: (err: Error) => void): void {
    if (this.silenceMs <= 0) return;
    this.lastHeard = Date.now();
    this.watchdog = setInterval(
      () => {
        if (this.paused || this.stopping || Date.now() - this.lastHeard <= this.silenceMs) return;
        clearInterval(this.watchdog);
        lost(new SourceSilent(`nothing from the source for ${this.silenceMs / 1000} s: the connection is taken as dead`));
        client.connection.stream.destroy();
      },
      Math.max(20, this.silenceMs / 10),
    );
  }

  /** Stop reading the socket (backpressure); writes, such as status updates, still go out. Silence is not counted meanwhile. */
  pause(): void {
    this.paused = true;
    this.connection?.stream.pause();
  }

  resume(): void {
    this.paused = false;
    this.lastHeard = Date.now();
    this.connection?.stream.resume();
  }

  /** Close the connection; nothing more is handed on. A server that does not acknowledge the close soon has the socket cut. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    const client = this.client;
    this.client = null;
    if (!client) return;
    this.connection?.stream.resume(); // a paused socket would never read the server's close
    this.connection = null;
    const waited = new AbortController();
    await Promise.race([client.end().catch(() => undefined), sleep(CLOSE_WAIT_MS, waited.signal)]);
    waited.abort();
    client.connection.stream.destroy();
    await this.ended.catch(() => undefined);
  }
}
