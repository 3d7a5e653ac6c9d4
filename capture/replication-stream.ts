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
 */
import type { Duplex } from 'node:stream';
import pg, { connectionConfig } from '../lib/pg.ts';

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

export class ReplicationStream {
  private client: pg.Client | null = null;
  private connection: CopyBothConnection | null = null;
  private stopping = false;
  /** Settles when the stream ends: resolves after stop(), rejects with whatever else ended it. */
  ended: Promise<void> = Promise.resolve();

  constructor(private readonly url: string) {}

  /**
   * Connects, sends `statement` (START_REPLICATION …) and resolves once the server has accepted
   * it and sent its first message: a keepalive is asked for as soon as the server switches to
   * streaming. Rejects with the server's error when it refuses, or when the connection ends first.
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
    await client.connect();
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
      firstMessage();
      if (chunk[0] === XLOG_DATA) handlers.data(chunk.subarray(25));
      else if (chunk[0] === KEEPALIVE) handlers.keepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
    });
    const replicating = client.query(statement).catch((err) => {
      throw streaming ? err : new StartReplicationRefused(err);
    });
    this.ended = Promise.race([replicating, connectionLost]).then(
      () => {
        if (!this.stopping) throw new Error('the server ended replication');
      },
      (err) => {
        if (!this.stopping) throw err;
      },
    );
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

  /** Stop reading the socket (backpressure); writes, such as status updates, still go out. */
  pause(): void {
    this.connection?.stream.pause();
  }

  resume(): void {
    this.connection?.stream.resume();
  }

  /** Close the connection; nothing more is handed on. */
  async stop(): Promise<void> {
    this.stopping = true;
    const client = this.client;
    this.client = null;
    if (!client) return;
    this.connection?.stream.resume(); // a paused socket would never read the server's close
    this.connection = null;
    await client.end().catch(() => undefined);
    await this.ended.catch(() => undefined);
  }
}
