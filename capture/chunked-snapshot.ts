/**
 * Snapshots that run while the stream runs: chunked, resumable, and never stale.
 *
 * Each chunk (keyset by primary key, `chunkRows` rows) is read between two watermark messages
 * written into the WAL (the DBLog method). Between the low and the high watermark the stream
 * notes every key of the table that changes; when the high watermark comes back through the
 * stream, the chunk's rows are emitted at the high watermark's position, minus the keys that
 * changed in between: for those the streamed change is the newer truth. So a snapshot row
 * never overwrites a newer change, and rows and changes meet with nothing missed or doubled.
 *
 * After its rows, a chunk says which keys of its range exist (a snapshot-range event): keys the
 * warehouse holds there but the source no longer has were deleted while nothing streamed (a
 * lost slot), and end at that position. The chunks of a table cover all its keys, so a
 * re-snapshot ends the warehouse equal to the source. A TRUNCATE between the watermarks drops
 * the chunk's rows: every one of them is either gone or streamed after it.
 *
 * Progress (the last key emitted, per table) is kept in totes_cdc.snapshot_progress once the
 * chunk is accepted by the stream: a restart continues at the next chunk, not from zero.
 * `totes resnapshot --table NAME` adds a table to it; the running service picks it up.
 */
import { randomUUID } from 'node:crypto';
import { keyRuns, type KeyRuns, type Row } from '../formats/change-event.ts';
import { primaryKeyOf, SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { log } from '../lib/log.ts';
import { sleep } from '../lib/retry.ts';
import type pg from '../lib/pg.ts';

export const SNAPSHOT_LOW_PREFIX = 'totes-cdc/snapshot-low';
export const SNAPSHOT_HIGH_PREFIX = 'totes-cdc/snapshot-high';

export const SNAPSHOT_PROGRESS_DDL = `CREATE TABLE IF NOT EXISTS totes_cdc.snapshot_progress (
  slot_name text NOT NULL, table_name text NOT NULL, last_key bigint, done boolean NOT NULL DEFAULT false,
  rows_emitted bigint NOT NULL DEFAULT 0, requested_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (slot_name, table_name))`;

interface Window {
  table: SourceTable;
  recording: boolean;
  changed: Set<string>;
  /** The stream truncated the table between the watermarks. */
  truncated: boolean;
  rows: Row[] | null;
  /** The chunk's key range: (after, through], null for unbounded. */
  after: number | null;
  through: number | null;
  emitted: () => void;
}

/** A closed chunk: the rows to emit, and which keys of its range exist. */
export interface ClosedChunk {
  table: SourceTable;
  rows: Row[];
  range: { after: number | null; through: number | null; present: KeyRuns };
  done: () => void;
}

/** Ask for a table (or every table) to be snapshotted again by the service owning `slotName`. */
export async function requestSnapshot(db: Pick<pg.Pool, 'query'>, slotName: string, tables: readonly SourceTable[] = SOURCE_TABLE_NAMES): Promise<void> {
  await db.query(
    `INSERT INTO totes_cdc.snapshot_progress (slot_name, table_name) SELECT $1, unnest($2::text[])
     ON CONFLICT (slot_name, table_name) DO UPDATE SET last_key = NULL, done = false, rows_emitted = 0, requested_at = now()`,
    [slotName, tables],
  );
}

export class ChunkedSnapshot {
  private readonly windows = new Map<string, Window>();
  /** Rows emitted by this process, for metrics. */
  rows = 0;
  pending = true;

  constructor(
    private readonly pool: pg.Pool,
    private readonly slotName: string,
    private readonly chunkRows: number,
    private readonly emitMessage: (prefix: string, content: string) => Promise<void>,
    private readonly flushed: () => Promise<void>,
  ) {}

  /** The stream reached a low watermark: from here, note the keys that change. */
  opened(id: string): void {
    const w = this.windows.get(id);
    if (w) w.recording = true;
  }

  /** The stream carries a change: if a window on its table is open, that key's row is the stream's now. */
  observe(table: SourceTable, key: unknown): void {
    for (const w of this.windows.values()) if (w.recording && w.table === table) w.changed.add(String(key));
  }

  /** The stream carries a TRUNCATE of `table`: open windows on it emit no rows. */
  truncated(table: SourceTable): void {
    for (const w of this.windows.values()) if (w.recording && w.table === table) w.truncated = true;
  }

  /** The stream reached a high watermark: the rows to emit there and the keys of the range that exist (undefined if not ours). */
  closed(id: string): ClosedChunk | undefined {
    const w = this.windows.get(id);
    if (!w?.rows) return undefined;
    this.windows.delete(id);
    const pk = primaryKeyOf(w.table);
    const inRange = (k: number) => (w.after === null || k > w.after) && (w.through === null || k <= w.through);
    // keys the stream changed in the window stay too: the streamed change is their truth
    const present = [...w.rows.map((r) => Number(r[pk])), ...[...w.changed].map(Number).filter(inRange)].sort((a, b) => a - b);
    return {
      table: w.table,
      rows: w.truncated ? [] : w.rows.filter((r) => !w.changed.has(String(r[pk]))),
      range: { after: w.after, through: w.through, present: keyRuns(present) },
      done: w.emitted,
    };
  }

  /** Work through requested tables, chunk by chunk, until `signal` aborts; idle-polls for new requests. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const { rows } = await this.pool.query(
        `SELECT table_name, last_key FROM totes_cdc.snapshot_progress WHERE slot_name = $1 AND NOT done ORDER BY requested_at, table_name LIMIT 1`,
        [this.slotName],
      );
      if (rows.length === 0) {
        if (this.pending) log.info({ slot: this.slotName }, 'snapshot complete');
        this.pending = false;
        await sleep(1_000, signal);
        continue;
      }
      this.pending = true;
      await this.chunk(rows[0].table_name, rows[0].last_key === null ? null : Number(rows[0].last_key), signal);
    }
  }

  private async chunk(table: SourceTable, lastKey: number | null, signal: AbortSignal): Promise<void> {
    const id = randomUUID();
    const pk = primaryKeyOf(table);
    let emitted!: () => void;
    const done = new Promise<void>((resolve) => {
      emitted = resolve;
    });
    const window: Window = { table, recording: false, changed: new Set(), truncated: false, rows: null, after: lastKey, through: null, emitted };
    this.windows.set(id, window);
    try {
      await this.emitMessage(SNAPSHOT_LOW_PREFIX, id);
      const { rows } = await this.pool.query(`SELECT * FROM public."${table}" WHERE $1::bigint IS NULL OR ${pk} > $1 ORDER BY ${pk} LIMIT $2`, [
        lastKey,
        this.chunkRows,
      ]);
      // a full chunk covers up to its last key; a short one, the rest of the key space
      window.through = rows.length === this.chunkRows ? Number(rows[rows.length - 1][pk]) : null;
      window.rows = rows;
      await this.emitMessage(SNAPSHOT_HIGH_PREFIX, id);
      const onAbort = () => emitted();
      signal.addEventListener('abort', onAbort, { once: true });
      await done.finally(() => signal.removeEventListener('abort', onAbort));
      if (signal.aborted) return;
      await this.flushed();
      const finished = rows.length < this.chunkRows;
      await this.pool.query(
        `UPDATE totes_cdc.snapshot_progress SET last_key = $3, done = $4, rows_emitted = rows_emitted + $5 WHERE slot_name = $1 AND table_name = $2`,
        [this.slotName, table, rows.length ? rows[rows.length - 1][pk] : lastKey, finished, rows.length],
      );
      this.rows += rows.length;
      if (finished) log.info({ table }, 'table snapshotted');
    } finally {
      this.windows.delete(id);
    }
  }
}
