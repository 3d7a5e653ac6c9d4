/**
 * The replay's loads: events in stream order cut into batches of `batchEvents`, each mapped
 * (the processor's mapEvents) and merged in one loadTables transaction. One batch merges while
 * the next one fills (a delete version takes its values from the version before it, so batches
 * merge one at a time, in order). Batch keys derive from the first and last event id, so a
 * re-run skips the batches it loaded. With `recordWatermark` the last batch carries the point the
 * archive is complete up to (archive-completeness.ts): only once everything read is loaded is
 * everything before it loaded (a late event loads after the heartbeats that passed it).
 *
 * Events that came late (reorder-window.ts) are checked against the warehouse before their batch
 * merges and after (rows-out-of-order.ts): those appended after a later version of their own
 * row are reported.
 */
import type { StreamEvent } from '../formats/change-event.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import type { Warehouse } from '../loader/warehouse.ts';
import type { ArchivedHeartbeat } from './archive-completeness.ts';
import { mapEvents } from '../processors/transform.ts';
import { openRows, type SubjectKeys } from '../stores/subject-keys.ts';
import type { LoadedEvent } from './reorder-window.ts';
import { lateVersionsMissing, stillLoaded, type RowOutOfOrder } from './rows-out-of-order.ts';

/** The shard name the replay's watermark is recorded under in totes_shard_progress. */
export const REPLAY_SHARD = 'replay';

export interface Unmappable {
  id: string;
  table: string;
  reason: string;
}

const idOf = (e: StreamEvent) => `${e.source.lsn}:${e.source.pos}`;
/** Rows out of order listed (the count is of all). */
const OUT_OF_ORDER_LISTED = 20;

export class BatchLoader {
  batches = 0;
  skipped = 0;
  private started = 0;
  readonly unmappable: Unmappable[] = [];
  /** Late fact versions that came after a later version of their row had loaded. */
  outOfOrder = 0;
  readonly outOfOrderRows: (RowOutOfOrder & { object: string })[] = [];
  private events: LoadedEvent[] = [];
  /** This batch's late events, and the objects they came from. */
  private late: { event: LoadedEvent; object: string }[] = [];
  private merging: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: pg.Pool,
    private readonly warehouse: Warehouse,
    private readonly opts: {
      batchEvents: number;
      recordWatermark: boolean;
      /** Distinguishes the batch keys of a replay filtered by table. */
      filterTag: string;
      /** Events whose batch has merged: they are no longer held. */
      onLoaded: (events: number) => void;
      /** Opens sealed personal values before they merge. */
      keys: SubjectKeys | null;
    },
  ) {}

  /**
   * The next event, in stream order unless it is late (then `lateFrom` names its object);
   * resolves when it is taken (after the merge before it finished, when it starts a batch).
   */
  async add(event: LoadedEvent, lateFrom?: string): Promise<void> {
    if (this.events.length >= this.opts.batchEvents) await this.flush();
    this.events.push(event);
    if (lateFrom !== undefined) this.late.push({ event, object: lateFrom });
  }

  /**
   * Load what is left, with recordWatermark recording `complete` (the point the archive is complete
   * up to; null: none) with it: with no change at all, a batch of the watermark alone.
   */
  async finish(complete: ArchivedHeartbeat | null): Promise<void> {
    if (this.events.length > 0 || (this.started === 0 && this.opts.recordWatermark && complete)) await this.flush(complete);
    await this.merging;
  }

  /** Wait for the merge in flight without loading more (a replay that stops). */
  settle(): Promise<void> {
    return this.merging;
  }

  /** `complete`: the last batch's point (null: none), or undefined for a batch before the last. */
  private async flush(complete?: ArchivedHeartbeat | null): Promise<void> {
    const events = this.events;
    const late = this.late;
    this.events = [];
    this.late = [];
    const { rows, ends, failures } = mapEvents(events);
    for (const f of failures) this.unmappable.push({ id: idOf(f.event), table: f.event.table, reason: f.reason });
    const tables = new Map(Object.entries(rows) as [LoadTableName, LoadRow[]][]);
    for (const tableRows of tables.values()) await openRows(tableRows, this.opts.keys);
    const heartbeat = this.opts.recordWatermark ? (complete ?? null) : null;
    const batchKey =
      events.length > 0
        ? `replay${this.opts.filterTag}:${idOf(events[0])}-${idOf(events[events.length - 1])}`
        : `replay-watermark:${heartbeat ? `${heartbeat.lsn}:${heartbeat.pos}` : ''}`;
    await this.merging;
    const missing = late.length > 0 ? await this.lateMissing(late) : [];
    this.started++;
    this.merging = this.warehouse
      .loadTables(
        {
          batchKey,
          shard: REPLAY_SHARD,
          events: events.length,
          ends,
          ...(heartbeat ? { manifestKey: batchKey, heartbeat: { lsn: heartbeat.lsn, commitTime: heartbeat.commitTime } } : {}),
        },
        tables,
      )
      .then(async (loadedNow) => {
        this.batches++;
        if (!loadedNow) this.skipped++;
        if (missing.length > 0) this.report(await stillLoaded(this.pool, this.warehouse.schema, missing), late);
        this.opts.onLoaded(events.length);
      });
    // reading goes on while it merges: a failure is thrown where the merge is next awaited, not reported unhandled meanwhile
    this.merging.catch(() => undefined);
  }

  /** Late fact versions not in the warehouse while a later version of their row is: out of order if the merge appends them. */
  private lateMissing(late: { event: LoadedEvent; object: string }[]): Promise<RowOutOfOrder[]> {
    const { rows } = mapEvents(late.map((l) => l.event));
    return lateVersionsMissing(this.pool, this.warehouse.schema, new Map(Object.entries(rows) as [LoadTableName, LoadRow[]][]));
  }

  private report(found: RowOutOfOrder[], late: { event: LoadedEvent; object: string }[]): void {
    this.outOfOrder += found.length;
    const objectOf = new Map(late.map((l) => [idOf(l.event), l.object]));
    for (const r of found.slice(0, OUT_OF_ORDER_LISTED - this.outOfOrderRows.length)) {
      this.outOfOrderRows.push({ ...r, object: objectOf.get(r.id) ?? '?' });
    }
  }
}
