/**
 * Replay: rebuild warehouse state from the raw archive alone. Reads the GZIP NDJSON objects
 * Firehose wrote (all of them, a time range, or chosen tables), orders the events by
 * (commit LSN, position), drops copies (a heartbeat, truncate or snapshot range was sent on
 * every shard), and pushes them through the processor's mapping
 * (`mapEvents`) and the loader's merge (`Loader.loadTables`): the same code the live pipeline
 * runs, so a replayed warehouse is the warehouse the pipeline would have built.
 *
 * Switching a rebuild in for the live schema is switch-in.ts.
 *
 * Three phases, so a corrupt archive is reported before anything is loaded:
 *   read   list the objects, fetch a few at a time, gunzip (zlib's thread pool), parse;
 *   order  sort in memory and de-duplicate (Firehose retries and one heartbeat per shard);
 *   load   big batches through loadTables, the next batch mapped while the last one merges.
 * Batch keys derive from the first and last event id, so a re-run skips batches it loaded.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { RAW_PREFIX } from '../formats/archive-layout.ts';
import { resolvePointer } from '../stores/oversize-store.ts';
import { decodeEvent, InvalidEventError, type ChangeEvent, type HeartbeatEvent, type RowsEndEvent, type StreamEvent } from '../formats/change-event.ts';
import { SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { MemoryPeak } from '../lib/memory-peak.ts';
import type pg from '../lib/pg.ts';
import { Warehouse } from '../loader/warehouse.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { mapEvents, targetOf } from '../processors/transform.ts';

const gunzipAsync = promisify(gunzip);

/** Firehose names objects by delivery time; an event is delivered this long after its commit at most (buffer interval plus retries). */
export const DELIVERY_LATENESS_MS = 60 * 60 * 1000;
/** Heartbeats come every 10 s (1 s locally); two further apart than this mean a hole in the archive. */
export const DEFAULT_GAP_THRESHOLD_MS = 5 * 60 * 1000;
/** The shard name the replay's watermark is recorded under in totes_shard_progress. */
export const REPLAY_SHARD = 'replay';

export interface ReplayOptions {
  s3: S3Client;
  bucket: string;
  /** Archive key prefix (default "raw/", the Firehose prefix before its date). */
  prefix?: string;
  pool: pg.Pool;
  /** Warehouse schema to load into (default "public": the live warehouse, an idempotent catch-up). */
  schema?: string;
  /** Drop and create `schema` first: a rebuild from nothing. Never point this at the live schema. */
  freshSchema?: boolean;
  /**
   * Record the newest heartbeat replayed as shard "replay" in totes_shard_progress, so the
   * schema's totes_freshness tells how far the replay reached. For rebuilds only: in the live
   * schema the row would hold the minimum over shards back for good.
   */
  recordWatermark?: boolean;
  /** Events committed at or after this instant... */
  from?: Date;
  /** ...and before this one. */
  to?: Date;
  /** Source tables to replay (heartbeats always are). Default: all. */
  tables?: SourceTable[];
  /** Report corrupt objects and lines and load the rest, instead of failing before loading. */
  skipCorrupt?: boolean;
  gapThresholdMs?: number;
  /** Change events per loadTables transaction. */
  batchEvents?: number;
  /** Objects fetched at once. */
  concurrency?: number;
  /** Object keys already replayed (a switch-in catch-up pass reads only the rest). */
  skipKeys?: ReadonlySet<string>;
  onProgress?: (p: ReplayProgress) => void;
}

export interface ReplayProgress {
  phase: 'list' | 'read' | 'order' | 'load';
  objectsRead: number;
  objectsTotal: number;
  eventsRead: number;
  eventsLoaded: number;
  eventsTotal: number;
}

export interface CorruptEntry {
  key: string;
  /** 1-based line of a bad event; null when the object itself cannot be read (gzip). */
  line: number | null;
  reason: string;
}

export interface ArchiveGap {
  /** The heartbeats either side of the hole, and the objects they were read from. */
  after: { lsn: string; commitTime: string; key: string };
  before: { lsn: string; commitTime: string; key: string };
  seconds: number;
}

export interface ReplayResult {
  /** Distinct change events replayed (after the filters). */
  events: number;
  /** Distinct truncates and snapshot ranges replayed (each ends rows; once however many shards carried it). */
  ends: number;
  /** Extra copies of change events dropped (an event archived twice counts 1). */
  duplicates: number;
  heartbeats: number;
  objects: number;
  bytes: number;
  batches: number;
  /** Batches the load log already held (a re-run): skipped, not merged again. */
  batchesSkipped: number;
  seconds: number;
  eventsPerSecond: number;
  /** This process's memory high-water during the replay. */
  memory: { peakRssMb: number; peakHeapMb: number };
  /** Newest heartbeat replayed: everything committed before it that the archive holds is loaded. */
  watermark: { lsn: string; commitTime: string } | null;
  corrupt: CorruptEntry[];
  gaps: ArchiveGap[];
  /** Events the mapping rejects (the live processor dead-letters the same ones). */
  unmappable: { id: string; table: string; reason: string }[];
  /** Every object read, for a later pass to skip. */
  keys: string[];
}

export class ArchiveCorruptError extends Error {
  override name = 'ArchiveCorruptError';
  constructor(readonly corrupt: CorruptEntry[]) {
    super(
      `${corrupt.length} corrupt ${corrupt.length === 1 ? 'entry' : 'entries'} in the archive; nothing was loaded:\n${corrupt.map(formatCorrupt).join('\n')}`,
    );
  }
}

export function formatCorrupt(c: CorruptEntry): string {
  return `  ${c.key}${c.line == null ? '' : ` line ${c.line}`}: ${c.reason}`;
}

export function formatGap(g: ArchiveGap): string {
  return `  no heartbeat for ${Math.round(g.seconds)}s between ${g.after.commitTime} (${g.after.lsn}, in ${g.after.key}) and ${g.before.commitTime} (${g.before.lsn}, in ${g.before.key})`;
}

/** An event with its id parsed once: sorting with compareEventIds would parse both LSNs on every comparison (2.3 s against 0.5 s per million). */
interface Keyed {
  hi: number;
  lo: number;
  pos: number;
  /** Pointers are resolved when read: only changes, heartbeats, truncates and snapshot ranges are kept. */
  event: ReplayedEvent;
  /** The archive object it was read from. */
  objectKey: string;
}

/** What the archive is replayed as: changes, and the truncates and snapshot ranges that end rows, in stream order. */
type LoadedEvent = ChangeEvent | RowsEndEvent;
type ReplayedEvent = LoadedEvent | HeartbeatEvent;

function keyed(event: ReplayedEvent, objectKey: string): Keyed {
  const slash = event.source.lsn.indexOf('/');
  return { hi: parseInt(event.source.lsn.slice(0, slash), 16), lo: parseInt(event.source.lsn.slice(slash + 1), 16), pos: event.source.pos, event, objectKey };
}

const byEventId = (a: Keyed, b: Keyed) => a.hi - b.hi || a.lo - b.lo || a.pos - b.pos;
const idOf = (e: StreamEvent) => `${e.source.lsn}:${e.source.pos}`;

/** Star or load table names → the source tables that feed them (dim_staff needs department, dim_counterparty needs address). */
export function sourceTablesFor(names: string[]): SourceTable[] {
  const out = new Set<SourceTable>();
  for (const name of names) {
    const feeding = SOURCE_TABLE_NAMES.filter((t) => t === name || targetOf(t) === name);
    if (name === 'dim_staff') feeding.push('department');
    if (name === 'dim_counterparty') feeding.push('address');
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
  const progress: ReplayProgress = { phase: 'list', objectsRead: 0, objectsTotal: 0, eventsRead: 0, eventsLoaded: 0, eventsTotal: 0 };
  const report = () => opts.onProgress?.({ ...progress });
  report();

  const keys = (await listArchive(opts)).filter((k) => !opts.skipKeys?.has(k));
  progress.phase = 'read';
  progress.objectsTotal = keys.length;
  report();
  const { entries, corrupt, bytes } = await readObjects(
    opts,
    keys,
    () => {
      progress.objectsRead++;
      report();
    },
    (n) => {
      progress.eventsRead += n;
    },
  );
  if (corrupt.length > 0 && !opts.skipCorrupt) throw new ArchiveCorruptError(corrupt);

  memory.sample();
  progress.phase = 'order';
  report();
  const ordered = orderAndFilter(entries, opts);
  const changes = ordered.changes;
  const gaps = findGaps(ordered.heartbeats, opts.gapThresholdMs ?? DEFAULT_GAP_THRESHOLD_MS);

  progress.phase = 'load';
  progress.eventsTotal = changes.length;
  report();
  const warehouse = new Warehouse(opts.pool, schema);
  if (opts.freshSchema) await opts.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  // into an empty schema, the foreign keys are added after the load: one scan each instead of a trigger per row
  await warehouse.ensureSchema({ foreignKeys: !opts.freshSchema });
  const loaded = await loadInBatches(warehouse, changes, ordered.heartbeats, opts, (n) => {
    progress.eventsLoaded += n;
    report();
  });
  if (opts.freshSchema) await warehouse.addForeignKeys();

  const seconds = (performance.now() - started) / 1000;
  const newest = ordered.heartbeats.at(-1);
  return {
    events: changes.length - ordered.ends,
    ends: ordered.ends,
    duplicates: ordered.duplicates,
    heartbeats: ordered.heartbeats.length,
    objects: keys.length,
    bytes,
    batches: loaded.batches,
    batchesSkipped: loaded.skipped,
    seconds,
    eventsPerSecond: changes.length / seconds,
    memory: memory.stop(),
    watermark: newest ? { lsn: newest.event.source.lsn, commitTime: newest.event.source.commitTime } : null,
    corrupt,
    gaps,
    unmappable: loaded.unmappable,
    keys,
  };
}

const hourPrefix = (prefix: string, at: Date) => `${prefix}${at.toISOString().slice(0, 13).replace(/[-T]/g, '/')}/`;

/** Object keys in delivery order; with a time range, only the hours that can hold it. */
async function listArchive(opts: ReplayOptions): Promise<string[]> {
  const prefix = opts.prefix ?? RAW_PREFIX;
  // Delivery is never before commit, and at most DELIVERY_LATENESS_MS after it.
  const startAfter = opts.from ? hourPrefix(prefix, opts.from) : undefined;
  const lastHour = opts.to ? hourPrefix(prefix, new Date(opts.to.getTime() + DELIVERY_LATENESS_MS)) : undefined;
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await opts.s3.send(
      new ListObjectsV2Command({
        Bucket: opts.bucket,
        Prefix: prefix,
        ContinuationToken: token,
        ...(startAfter && !token ? { StartAfter: startAfter } : {}),
      }),
    );
    for (const o of out.Contents ?? []) {
      if (lastHour && o.Key!.slice(0, lastHour.length) > lastHour) return keys.sort();
      keys.push(o.Key!);
    }
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** Fetch, gunzip and parse objects, `concurrency` at a time. Bad objects and lines are collected, not thrown. */
async function readObjects(opts: ReplayOptions, keys: string[], onObject: () => void, onEvents: (n: number) => void) {
  const entries: Keyed[] = [];
  const corrupt: CorruptEntry[] = [];
  let bytes = 0;
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++];
      const out = await opts.s3.send(new GetObjectCommand({ Bucket: opts.bucket, Key: key }));
      const body = await out.Body!.transformToByteArray();
      bytes += body.length;
      let text: string;
      try {
        text = (await gunzipAsync(body)).toString('utf8');
      } catch (err) {
        corrupt.push({ key, line: null, reason: `not readable as gzip: ${(err as Error).message}` });
        onObject();
        continue;
      }
      const lines = text.split('\n');
      // Every event ends in "\n", so the piece after the last one is empty.
      if (lines.at(-1) === '') lines.pop();
      for (let i = 0; i < lines.length; i++) {
        try {
          const event = decodeEvent(lines[i]);
          entries.push(keyed(event.kind === 'pointer' ? await resolvePointer(opts.s3, event) : event, key));
        } catch (err) {
          if (!(err instanceof InvalidEventError)) throw err;
          corrupt.push({ key, line: i + 1, reason: err.message });
        }
      }
      onEvents(lines.length);
      onObject();
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, keys.length) }, worker));
  corrupt.sort((a, b) => a.key.localeCompare(b.key) || (a.line ?? 0) - (b.line ?? 0));
  return { entries, corrupt, bytes };
}

/** Sort by (commit LSN, position), drop copies, apply the filters. Heartbeats arrive once per shard: those copies are not duplicates. */
function orderAndFilter(entries: Keyed[], opts: ReplayOptions): { changes: LoadedEvent[]; heartbeats: Keyed[]; duplicates: number; ends: number } {
  entries.sort(byEventId);
  const tables = opts.tables ? new Set<string>(opts.tables) : null;
  const from = opts.from?.getTime() ?? -Infinity;
  const to = opts.to?.getTime() ?? Infinity;
  const inRange = (e: StreamEvent) => {
    if (!opts.from && !opts.to) return true;
    const t = Date.parse(e.source.commitTime);
    return t >= from && t < to;
  };
  const changes: LoadedEvent[] = [];
  const heartbeats: Keyed[] = [];
  let duplicates = 0,
    ends = 0;
  let previous: Keyed | null = null;
  for (const k of entries) {
    const copy = previous !== null && byEventId(previous, k) === 0;
    previous = k;
    const e = k.event;
    if (copy) {
      if (e.kind === 'change') duplicates++;
      continue;
    }
    if (!inRange(e)) continue;
    if (e.kind === 'heartbeat') heartbeats.push(k);
    else if (!tables || tables.has(e.table)) {
      changes.push(e);
      if (e.kind !== 'change') ends++;
    }
  }
  return { changes, heartbeats, duplicates, ends };
}

function findGaps(heartbeats: Keyed[], thresholdMs: number): ArchiveGap[] {
  const gaps: ArchiveGap[] = [];
  for (let i = 1; i < heartbeats.length; i++) {
    const a = heartbeats[i - 1],
      b = heartbeats[i];
    const ms = Date.parse(b.event.source.commitTime) - Date.parse(a.event.source.commitTime);
    if (ms > thresholdMs) {
      const side = (k: Keyed) => ({ lsn: k.event.source.lsn, commitTime: k.event.source.commitTime, key: k.objectKey });
      gaps.push({ after: side(a), before: side(b), seconds: ms / 1000 });
    }
  }
  return gaps;
}

/**
 * Merge the ordered changes in batches, one at a time (a delete version takes its values
 * from the version before it, so order matters); the next batch is mapped while one merges.
 * With recordWatermark each batch carries the newest heartbeat it has passed.
 */
async function loadInBatches(warehouse: Warehouse, changes: LoadedEvent[], heartbeats: Keyed[], opts: ReplayOptions, onLoaded: (n: number) => void) {
  const size = opts.batchEvents ?? 25_000;
  const filterTag = opts.tables ? `[${[...opts.tables].sort().join(',')}]` : '';
  const unmappable: ReplayResult['unmappable'] = [];
  let batches = 0,
    skipped = 0,
    nextHeartbeat = 0;
  let merging: Promise<void> = Promise.resolve();
  const batchCount = Math.max(Math.ceil(changes.length / size), opts.recordWatermark && heartbeats.length > 0 ? 1 : 0);
  for (let b = 0; b < batchCount; b++) {
    const events = changes.slice(b * size, (b + 1) * size);
    const { rows, ends, failures } = mapEvents(events);
    for (const f of failures) unmappable.push({ id: idOf(f.event), table: f.event.table, reason: f.reason });
    const tables = new Map(Object.entries(rows) as [LoadTableName, LoadRow[]][]);
    // The newest heartbeat before the next batch's first event: everything up to it is loaded once this batch is.
    const bound = b + 1 < batchCount ? keyed(changes[(b + 1) * size], '') : null;
    while (nextHeartbeat < heartbeats.length && (bound === null || byEventId(heartbeats[nextHeartbeat], bound) < 0)) nextHeartbeat++;
    const heartbeat = opts.recordWatermark && nextHeartbeat > 0 ? heartbeats[nextHeartbeat - 1].event.source : undefined;
    const batchKey =
      events.length > 0
        ? `replay${filterTag}:${idOf(events[0])}-${idOf(events[events.length - 1])}`
        : `replay-watermark:${heartbeat ? `${heartbeat.lsn}:${heartbeat.pos}` : ''}`;
    await merging;
    merging = warehouse
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
      .then((loadedNow) => {
        batches++;
        if (!loadedNow) skipped++;
        onLoaded(events.length);
      });
  }
  await merging;
  return { batches, skipped, unmappable };
}
