/**
 * Snapshots that run while the stream runs: chunked, resumable, and never stale.
 *
 * Each chunk (keyset by primary key, `chunkRows` rows) is read between two watermark messages
 * written into the WAL (the DBLog method). Between the low and the high watermark the stream
 * notes every key of the table that changes; when the high watermark comes back through the
 * stream, the chunk's rows are emitted at the high watermark's position, minus the keys that
 * changed in between: for those the streamed change is the newer truth. So a snapshot row
 * never overwrites a newer change, and rows and changes meet with nothing missed or doubled.
 * The read waits for the transactions running at the low watermark to end: a commit is in the
 * WAL before it is visible, and the read must see every commit before the low watermark.
 *
 * Progress (the last key emitted, per table) is kept in totes_cdc.snapshot_progress once the
 * chunk is accepted by the stream: a restart continues at the next chunk, not from zero.
 * `totes resnapshot --table NAME` adds a table to it; the running service picks it up.
 *
 * Watermarks travel as our signals (formats/source-signals.ts): logical messages on Postgres
 * 14+, signal-table rows on 13; the protocol is the same.
 */
import { randomUUID } from 'node:crypto';
import { keyRuns, type ChangeEvent, type EventSource, type Row } from '../formats/change-event.ts';
import { MESSAGE_PREFIX } from '../formats/source-signals.ts';
import { primaryKeyOf, SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { log } from '../lib/log.ts';
import { sleep } from '../lib/retry.ts';
import type pg from '../lib/pg.ts';
import type { SignalWriter } from './signal-writer.ts';
import type { ChangeSink } from './sink.ts';

export const SNAPSHOT_LOW_PREFIX = `${MESSAGE_PREFIX}snapshot-low`;
export const SNAPSHOT_HIGH_PREFIX = `${MESSAGE_PREFIX}snapshot-high`;

export const SNAPSHOT_PROGRESS_DDL = `CREATE TABLE IF NOT EXISTS totes_cdc.snapshot_progress (
  slot_name text NOT NULL, table_name text NOT NULL, last_key bigint, done boolean NOT NULL DEFAULT false,
  rows_emitted bigint NOT NULL DEFAULT 0, requested_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (slot_name, table_name))`;

interface Window {
  table: SourceTable;
  recording: boolean;
  changed: Set<string>;
  /** The stream carried a TRUNCATE of the table inside the window: the rows read are gone. */
  truncated: boolean;
  rows: Row[] | null;
  /** The key range (after, through] the chunk read; through null: the rest of the key space. */
  after: number | null;
  through: number | null;
  emitted: () => void;
}

/** Ask for a table (or every table) to be snapshotted again by the service owning `slotName`. */
export async function requestSnapshot(db: Pick<pg.Pool, 'query'>, slotName: string, tables: readonly SourceTable[] = SOURCE_TABLE_NAMES): Promise<void> {
  await db.query(
    `INSERT INTO totes_cdc.snapshot_progress (slot_name, table_name) SELECT $1, unnest($2::text[])
     ON CONFLICT (slot_name, table_name) DO UPDATE SET last_key = NULL, done = false, rows_emitted = 0, requested_at = now()`,
    [slotName, tables],
  );
}

export interface SnapshotDeps {
  pool: pg.Pool;
  slotName: string;
  chunkRows: number;
  /** Writes the watermarks into the WAL, by this server's carrier. */
  signals: SignalWriter;
  /** Where a chunk's rows go, in stream order. */
  sink: ChangeSink;
}

/**
 * Owns the snapshot protocol end to end: it writes the watermarks, reads the chunks, hears
 * from the stream what changed and where its watermarks came back, writes the rows to the sink
 * there, and records progress once the sink has accepted them. The stream only reports to it.
 */
export class ChunkedSnapshot {
  private readonly windows = new Map<string, Window>();
  pending = true;

  constructor(private readonly deps: SnapshotDeps) {}

  /** The stream carries a change: if a window on its table is open, that key's row is the stream's now. */
  changed(table: SourceTable, key: unknown): void {
    for (const w of this.windows.values()) if (w.recording && w.table === table) w.changed.add(String(key));
  }

  /** The stream carries a TRUNCATE of `table`: open windows on it emit no rows. */
  truncated(table: SourceTable): void {
    for (const w of this.windows.values()) if (w.recording && w.table === table) w.truncated = true;
  }

  /**
   * The stream reached one of our signals at `position`. A low watermark opens its window; at a
   * high watermark the chunk's rows go to the sink there, less the keys that changed in the
   * window, then, on every shard, the range the chunk read and the keys of it that exist, so
   * the warehouse ends the rows the source no longer has (a lost slot's missed deletes).
   * Returns the rows written (0 for a signal that is not this process's).
   */
  async signal(kind: string, id: string, position: { nextSource(): EventSource }): Promise<number> {
    const w = this.windows.get(id);
    if (!w) return 0;
    if (kind === SNAPSHOT_LOW_PREFIX) w.recording = true;
    if (kind !== SNAPSHOT_HIGH_PREFIX || !w.rows) return 0;
    this.windows.delete(id);
    const pk = primaryKeyOf(w.table);
    const rows = w.truncated ? [] : w.rows.filter((r) => !w.changed.has(String(r[pk])));
    const inRange = (k: number) => (w.after === null || k > w.after) && (w.through === null || k <= w.through);
    // keys the stream changed in the window stay too: the streamed change is their truth
    const present = [...w.rows.map((r) => Number(r[pk])), ...[...w.changed].map(Number).filter(inRange)].sort((a, b) => a - b);
    for (const row of rows) {
      const event: ChangeEvent = {
        v: 1,
        kind: 'change',
        op: 'r',
        table: w.table,
        key: { [pk]: row[pk] },
        before: null,
        after: row,
        source: position.nextSource(),
      };
      await this.deps.sink.write(event);
    }
    const range = { after: w.after, through: w.through, present: keyRuns(present) };
    await this.deps.sink.broadcast({ v: 1, kind: 'snapshot-range', table: w.table, ...range, source: position.nextSource() });
    w.emitted();
    return rows.length;
  }

  /** Work through requested tables, chunk by chunk, until `signal` aborts; idle-polls for new requests. */
  async run(signal: AbortSignal): Promise<void> {
    const { pool, slotName } = this.deps;
    while (!signal.aborted) {
      const { rows } = await pool.query(
        `SELECT table_name, last_key FROM totes_cdc.snapshot_progress WHERE slot_name = $1 AND NOT done ORDER BY requested_at, table_name LIMIT 1`,
        [slotName],
      );
      if (rows.length === 0) {
        if (this.pending) log.info({ slot: slotName }, 'snapshot complete');
        this.pending = false;
        await sleep(1_000, signal);
        continue;
      }
      this.pending = true;
      await this.chunk(rows[0].table_name, rows[0].last_key === null ? null : Number(rows[0].last_key), signal);
    }
  }

  private async chunk(table: SourceTable, lastKey: number | null, signal: AbortSignal): Promise<void> {
    const { pool, slotName, chunkRows, signals, sink } = this.deps;
    const id = randomUUID();
    const pk = primaryKeyOf(table);
    let emitted!: () => void;
    const done = new Promise<void>((resolve) => {
      emitted = resolve;
    });
    const window: Window = { table, recording: false, changed: new Set(), truncated: false, rows: null, after: lastKey, through: null, emitted };
    this.windows.set(id, window);
    try {
      await signals.write(SNAPSHOT_LOW_PREFIX, id);
      await awaitRunningTransactions(pool, table, signal);
      if (signal.aborted) return;
      const { rows } = await pool.query(`SELECT * FROM public."${table}" WHERE $1::bigint IS NULL OR ${pk} > $1 ORDER BY ${pk} LIMIT $2`, [lastKey, chunkRows]);
      // a full chunk covers up to its last key; a short one, the rest of the key space
      window.through = rows.length === chunkRows ? Number(rows[rows.length - 1][pk]) : null;
      window.rows = rows;
      await signals.write(SNAPSHOT_HIGH_PREFIX, id);
      const onAbort = () => emitted();
      if (signal.aborted) return;
      signal.addEventListener('abort', onAbort, { once: true });
      await done.finally(() => signal.removeEventListener('abort', onAbort));
      if (signal.aborted) return;
      await sink.flush();
      const finished = rows.length < chunkRows;
      await pool.query(
        `UPDATE totes_cdc.snapshot_progress SET last_key = $3, done = $4, rows_emitted = rows_emitted + $5 WHERE slot_name = $1 AND table_name = $2`,
        [slotName, table, rows.length ? rows[rows.length - 1][pk] : lastKey, finished, rows.length],
      );
      if (finished) log.info({ table }, 'table snapshotted');
    } finally {
      this.windows.delete(id);
    }
  }
}

/**
 * Wait until the transactions running now have ended. A commit is written to the WAL before
 * other sessions see it: one that precedes the low watermark in the WAL may not be visible yet,
 * and the stream noted none of its keys in the window, so the chunk's read must see it, or it
 * would call that transaction's new rows absent and read its changed rows as they were.
 */
async function awaitRunningTransactions(pool: pg.Pool, table: SourceTable, signal: AbortSignal): Promise<void> {
  const running = `SELECT coalesce(array_agg(x::text), '{}') AS xids FROM pg_snapshot_xip(pg_current_snapshot()) x`;
  const xids: string[] = (await pool.query(running)).rows[0].xids;
  let warnAt: number | null = Date.now() + 30_000;
  while (xids.length > 0 && !signal.aborted) {
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM pg_snapshot_xip(pg_current_snapshot()) x WHERE x::text = ANY($1)`, [xids]);
    if (rows[0].n === 0) return;
    if (warnAt !== null && Date.now() > warnAt) {
      log.warn({ table, transactions: rows[0].n }, 'a snapshot chunk is waiting for long-running source transactions to end');
      warnAt = null;
    }
    await sleep(10, signal);
  }
}
