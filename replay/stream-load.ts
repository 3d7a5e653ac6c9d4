/**
 * The replay's two passes over the listed objects: a check that keeps nothing but the bad
 * entries, and the stream that reads, orders (reorder-window.ts) and loads (batch-loader.ts)
 * as it goes, counting what it holds and noting every heartbeat copy (archive-completeness.ts).
 */
import type { StreamEvent } from '../formats/change-event.ts';
import type { Warehouse } from '../loader/warehouse.ts';
import { ArchiveHeartbeats } from './archive-completeness.ts';
import { readArchive, type CorruptEntry, type ListedObject } from './archive-reader.ts';
import { BatchLoader } from './batch-loader.ts';
import { ReorderWindow, type Keyed } from './reorder-window.ts';
import type { ArchiveGap, ReplayOptions, ReplayProgress } from './replay-options.ts';

/** Heartbeats come every 10 s (1 s locally); two further apart than this mean a hole in the archive. */
export const DEFAULT_GAP_THRESHOLD_MS = 5 * 60 * 1000;
export const DEFAULT_BATCH_EVENTS = 25_000;
/** Events the reorder window holds: two load batches, several archive objects (5 MiB of events at most each). */
export const DEFAULT_WINDOW_EVENTS = 2 * DEFAULT_BATCH_EVENTS;
/** Objects read ahead: enough to keep the merge fed, since reading is faster than merging. */
export const DEFAULT_CONCURRENCY = 4;

const byKeyThenLine = (a: CorruptEntry, b: CorruptEntry) => (a.key < b.key ? -1 : a.key > b.key ? 1 : (a.line ?? 0) - (b.line ?? 0));

/** Read every object only to find corrupt ones: nothing but the bad entries is kept. */
export async function checkArchive(opts: ReplayOptions, objects: ListedObject[], concurrency: number, progress: ReplayProgress, report: () => void) {
  const corrupt: CorruptEntry[] = [];
  for await (const read of readArchive(opts.s3, opts.bucket, objects, concurrency)) {
    corrupt.push(...read.corrupt);
    progress.objectsRead++;
    progress.bytesRead += read.bytes;
    progress.eventsRead += read.events.length;
    report();
  }
  return corrupt.sort(byKeyThenLine);
}

/** Read, order and load, holding the window and what is in flight; on a corrupt entry (unless skipped) stop loading and read on only to list the rest. */
export async function streamArchive(
  opts: ReplayOptions,
  warehouse: Warehouse,
  objects: ListedObject[],
  concurrency: number,
  progress: ReplayProgress,
  report: () => void,
) {
  const gapMs = opts.gapThresholdMs ?? DEFAULT_GAP_THRESHOLD_MS;
  const tables = opts.tables ? new Set<string>(opts.tables) : null;
  const from = opts.from?.getTime() ?? -Infinity;
  const to = opts.to?.getTime() ?? Infinity;
  const inRange = (e: StreamEvent) => {
    if (!opts.from && !opts.to) return true;
    const t = Date.parse(e.source.commitTime);
    return t >= from && t < to;
  };
  const counts = {
    events: 0,
    ends: 0,
    late: 0,
    heartbeats: 0,
    newestHeartbeat: null as Keyed | null,
    gaps: [] as ArchiveGap[],
    /** Events parsed; of them, copies dropped (counted by the window), others dropped (filtered out, heartbeats), merged. */
    parsed: 0,
    dropped: 0,
    merged: 0,
    peakHeld: 0,
  };
  const release = (n: number) => {
    counts.dropped += n;
  };
  const window = new ReorderWindow(opts.windowEvents ?? DEFAULT_WINDOW_EVENTS);
  const loader = new BatchLoader(opts.pool, warehouse, {
    batchEvents: opts.batchEvents ?? DEFAULT_BATCH_EVENTS,
    recordWatermark: opts.recordWatermark ?? false,
    filterTag: opts.tables ? `[${[...opts.tables].sort().join(',')}]` : '',
    keys: opts.keys ?? null,
    onLoaded: (n) => {
      counts.merged += n;
      progress.eventsLoaded += n;
      report();
    },
  });

  /** An event for the loader, in stream order unless late; resolves when the loader has taken it. */
  const load = async (k: Keyed, late: boolean): Promise<void> => {
    const e = k.event;
    if (!inRange(e) || (e.kind !== 'heartbeat' && tables && !tables.has(e.table))) return release(1);
    if (e.kind === 'heartbeat') {
      // a late heartbeat is a copy from another shard, or older than one replayed already: no hole ends at it
      if (!late) passHeartbeat(k);
      return release(1);
    }
    if (late) counts.late++;
    if (e.kind === 'change') counts.events++;
    else counts.ends++;
    await loader.add(e, late ? k.objectKey : undefined);
  };
  const passHeartbeat = (k: Keyed) => {
    const previous = counts.newestHeartbeat;
    if (previous) {
      const ms = Date.parse(k.event.source.commitTime) - Date.parse(previous.event.source.commitTime);
      const side = (h: Keyed) => ({ lsn: h.event.source.lsn, commitTime: h.event.source.commitTime, key: h.objectKey });
      if (ms > gapMs) counts.gaps.push({ after: side(previous), before: side(k), seconds: ms / 1000 });
    }
    counts.heartbeats++;
    counts.newestHeartbeat = k;
  };
  // every copy, as read (the window keeps one): each names its shard
  const heartbeats = opts.archiveHeartbeats ?? new ArchiveHeartbeats();

  const corrupt: CorruptEntry[] = [];
  let stopped = false;
  // what is held only grows when an object is parsed
  const parsed = (n: number) => {
    counts.parsed += n;
    counts.peakHeld = Math.max(counts.peakHeld, counts.parsed - window.copies - counts.dropped - counts.merged);
  };
  for await (const read of readArchive(opts.s3, opts.bucket, objects, concurrency, parsed)) {
    corrupt.push(...read.corrupt);
    progress.objectsRead++;
    progress.bytesRead += read.bytes;
    progress.eventsRead += read.events.length;
    report();
    stopped ||= corrupt.length > 0 && !opts.skipCorrupt;
    if (stopped) {
      release(read.events.length);
      continue;
    }
    for (const k of read.events) {
      if (k.event.kind === 'heartbeat' && inRange(k.event)) heartbeats.seen(k.event, k.objectKey);
      if (window.push(k) === 'late') await load(k, true);
      for (let next = window.next(); next; next = window.next()) await load(next, false);
    }
  }
  const completeness = heartbeats.completeness(gapMs);
  if (stopped) await loader.settle();
  else {
    for (let next = window.next(true); next; next = window.next(true)) await load(next, false);
    await loader.finish(completeness.point);
  }
  return { loader, window, counts, heartbeats, completeness, corrupt: corrupt.sort(byKeyThenLine) };
}
