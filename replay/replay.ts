/**
 * Replay: rebuild warehouse state from the raw archive alone. Streams the GZIP NDJSON objects
 * Firehose wrote (all of them, a time range, or chosen tables) in delivery order, a few read
 * ahead, and pushes the events through the processor's mapping (`mapEvents`) and the loader's
 * merge (`Loader.loadTables`) as it goes (batch-loader.ts): the same code the live pipeline
 * runs, so a replayed warehouse is the warehouse the pipeline would have built. What is held is
 * a reorder window, the batch filling and the one merging, and the objects read ahead: not
 * the archive.
 *
 * Order: the merge takes different rows in any order (the live loader gets shards in any
 * interleaving), but each row's own versions in order (a fact delete carries the values of
 * the version before it). The archive keeps a row's changes in order (one shard per row,
 * each shard read in order) except where Firehose delivered an object late; the window
 * (reorder-window.ts) puts those back in (commit LSN, position) order and drops nearby
 * copies (a Firehose retry archives a record twice; a heartbeat, truncate or snapshot range
 * is sent on every shard). Events later than the window still load, after the events that
 * passed them; a late fact version whose own row had a later version loaded already is
 * reported (rows-out-of-order.ts): that row's history may differ from an ordered replay's.
 *
 * A corrupt archive loads nothing: a catch-up into an existing schema reads the archive once
 * first only to check it (holding nothing but the bad entries); a rebuild checks as it loads
 * and, on a bad entry, stops loading, reads on to list every bad entry, and drops the rebuild
 * schema, which was never live.
 *
 * Switching a rebuild in for the live schema is switch-in.ts.
 */
import { DERIVED, type Derivation } from '../formats/load-tables.ts';
import { SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { MemoryPeak } from '../lib/memory-peak.ts';
import { PostgresWarehouse } from '../loader/warehouse.ts';
import { targetOf } from '../processors/transform.ts';
import type { ArchiveHeartbeats, Completeness } from './archive-completeness.ts';
import { listArchive, type CorruptEntry } from './archive-reader.ts';
import type { Unmappable } from './batch-loader.ts';
import type { ArchiveGap, ReplayOptions, ReplayProgress } from './replay-options.ts';
import { checkArchive, DEFAULT_CONCURRENCY, streamArchive } from './stream-load.ts';

export { DELIVERY_LATENESS_MS, type CorruptEntry } from './archive-reader.ts';
export { ArchiveHeartbeats, formatBehind, type Completeness } from './archive-completeness.ts';
export { REPLAY_SHARD } from './batch-loader.ts';
export type { ArchiveGap, ReplayOptions, ReplayProgress } from './replay-options.ts';

export { DEFAULT_BATCH_EVENTS, DEFAULT_CONCURRENCY, DEFAULT_GAP_THRESHOLD_MS, DEFAULT_WINDOW_EVENTS } from './stream-load.ts';

export interface ReplayResult {
  /** Change events replayed (after the filters; copies dropped). */
  events: number;
  /** Distinct truncates and snapshot ranges replayed (each ends rows; once however many shards carried it). */
  ends: number;
  /** Extra copies of change events dropped (an event archived twice counts 1). */
  duplicates: number;
  /**
   * Changes, truncates and snapshot ranges that reached the replay after an event later in
   * stream order had been let go to load (the archive is further out of order than the
   * window): loaded then, and counted in `events`/`ends`. Harmless across rows (an archive
   * holds some shards behind others; a row's changes are on one shard, in order) and for a
   * copy of what is loaded already (it changes nothing).
   */
  late: number;
  /**
   * Late fact versions that came after a later version of their own row had loaded: that
   * row's fact history may differ from an ordered replay's. A larger window puts them in place.
   */
  outOfOrder: number;
  /** The first of them, with the object each was read from. */
  outOfOrderRows: { table: string; key: number; id: string; object: string }[];
  heartbeats: number;
  objects: number;
  bytes: number;
  batches: number;
  /** Batches the load log already held (a re-run): skipped, not merged again. */
  batchesSkipped: number;
  seconds: number;
  eventsPerSecond: number;
  /** This process's memory high-water during the replay, and the most events it held at once (read, not yet merged). */
  memory: { peakRssMb: number; peakHeapMb: number; peakEventsHeld: number };
  /** The reorder window's size, in events. */
  windowEvents: number;
  /** Newest heartbeat replayed: everything committed before it that the archive holds is loaded. */
  watermark: { lsn: string; commitTime: string } | null;
  /** How far the archive is complete (archive-completeness.ts): the point, and the shards it lacks. */
  completeness: Completeness;
  /** Every heartbeat copy read, for a later pass to go on from. */
  archiveHeartbeats: ArchiveHeartbeats;
  corrupt: CorruptEntry[];
  gaps: ArchiveGap[];
  /** Events the mapping rejects (the live processor dead-letters the same ones). */
  unmappable: Unmappable[];
  /** Every object read, for a later pass to skip. */
  keys: string[];
}

export class ArchiveCorruptError extends Error {
  override name = 'ArchiveCorruptError';
  constructor(
    readonly corrupt: CorruptEntry[],
    outcome = 'nothing was loaded',
  ) {
    super(`${corrupt.length} corrupt ${corrupt.length === 1 ? 'entry' : 'entries'} in the archive; ${outcome}:\n${corrupt.map(formatCorrupt).join('\n')}`);
  }
}

export function formatCorrupt(c: CorruptEntry): string {
  return `  ${c.key}${c.line == null ? '' : ` line ${c.line}`}: ${c.reason}`;
}

export function formatGap(g: ArchiveGap): string {
  return `  no heartbeat for ${Math.round(g.seconds)}s between ${g.after.commitTime} (${g.after.lsn}, in ${g.after.key}) and ${g.before.commitTime} (${g.before.lsn}, in ${g.before.key})`;
}

/** Star or load table names → the source tables that feed them, and those feeding the columns a dimension derives (DERIVED: dim_staff needs department). */
export function sourceTablesFor(names: string[]): SourceTable[] {
  const out = new Set<SourceTable>();
  for (const name of names) {
    const feeding = SOURCE_TABLE_NAMES.filter((t) => t === name || targetOf(t) === name);
    const derived = (DERIVED as Partial<Record<string, Derivation>>)[name];
    if (derived) feeding.push(...SOURCE_TABLE_NAMES.filter((t) => targetOf(t) === derived.from));
    if (feeding.length === 0)
      throw new Error(`unknown table ${JSON.stringify(name)}: name a totesys table (${SOURCE_TABLE_NAMES.join(', ')}) or a warehouse table`);
    for (const t of feeding) out.add(t);
  }
  return [...out];
}

export async function replayArchive(opts: ReplayOptions): Promise<ReplayResult> {
  const started = performance.now();
  const memory = new MemoryPeak();
  try {
    return await replay(opts, started, memory);
  } finally {
    memory.stop();
  }
}

async function replay(opts: ReplayOptions, started: number, memory: MemoryPeak): Promise<ReplayResult> {
  const schema = opts.schema ?? 'public';
  const progress: ReplayProgress = { phase: 'list', objectsRead: 0, objectsTotal: 0, bytesRead: 0, bytesTotal: 0, eventsRead: 0, eventsLoaded: 0 };
  const report = () => opts.onProgress?.({ ...progress });
  report();
  const objects = (await listArchive(opts.s3, opts.bucket, opts)).filter((o) => !opts.skipKeys?.has(o.key));
  progress.objectsTotal = objects.length;
  progress.bytesTotal = objects.reduce((n, o) => n + o.bytes, 0);
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);

  if (!opts.freshSchema && !opts.skipCorrupt) {
    progress.phase = 'check';
    report();
    const corrupt = await checkArchive(opts, objects, concurrency, progress, report);
    if (corrupt.length > 0) throw new ArchiveCorruptError(corrupt);
  }

  const warehouse = new PostgresWarehouse(opts.pool, schema);
  if (opts.freshSchema) await opts.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  // into an empty schema, the foreign keys are added after the load: one scan each instead of a trigger per row
  await warehouse.ensureSchema({ foreignKeys: !opts.freshSchema });
  Object.assign(progress, { phase: 'load', objectsRead: 0, bytesRead: 0, eventsRead: 0 });
  report();
  const streamed = await streamArchive(opts, warehouse, objects, concurrency, progress, report);
  if (streamed.corrupt.length > 0 && !opts.skipCorrupt) {
    if (opts.freshSchema) await opts.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    throw new ArchiveCorruptError(
      streamed.corrupt,
      opts.freshSchema
        ? `the rebuild schema ${schema} was dropped`
        : 'it was found while loading (the archive changed after it was checked): loading stopped there',
    );
  }
  if (opts.freshSchema) await warehouse.addForeignKeys();

  const seconds = (performance.now() - started) / 1000;
  const { loader, window, counts } = streamed;
  const newest = counts.newestHeartbeat?.event.source;
  return {
    events: counts.events,
    ends: counts.ends,
    duplicates: window.duplicates,
    late: counts.late,
    outOfOrder: loader.outOfOrder,
    outOfOrderRows: loader.outOfOrderRows,
    heartbeats: counts.heartbeats,
    objects: objects.length,
    bytes: progress.bytesRead,
    batches: loader.batches,
    batchesSkipped: loader.skipped,
    seconds,
    eventsPerSecond: (counts.events + counts.ends) / seconds,
    memory: { ...memory.stop(), peakEventsHeld: counts.peakHeld },
    windowEvents: window.capacity,
    watermark: newest ? { lsn: newest.lsn, commitTime: newest.commitTime } : null,
    completeness: streamed.completeness,
    archiveHeartbeats: streamed.heartbeats,
    corrupt: streamed.corrupt,
    gaps: counts.gaps,
    unmappable: loader.unmappable,
    keys: objects.map((o) => o.key),
  };
}
