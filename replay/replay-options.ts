/**
 * What a replay is asked to do and what it reports as it goes: the shapes replay.ts and the
 * stream that loads (stream-load.ts) share, apart so neither imports the other.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { SourceTable } from '../formats/source-tables.ts';
import type pg from '../lib/pg.ts';
import type { SubjectKeys } from '../stores/subject-keys.ts';
import type { ArchiveHeartbeats } from './archive-completeness.ts';

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
   * Record the point the archive is complete up to (ReplayResult.completeness) as shard "replay"
   * in totes_shard_progress, so the schema's totes_freshness tells how far the replay reached.
   * For rebuilds only: in the live schema the row would hold the minimum over shards back for good.
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
  /** Events the reorder window holds: how far out of stream order the archive may be and still load in order. */
  windowEvents?: number;
  /** Objects fetched at once. */
  concurrency?: number;
  /** Object keys already replayed (a switch-in catch-up pass reads only the rest). */
  skipKeys?: ReadonlySet<string>;
  /** The heartbeats those objects held (a catch-up pass goes on from them, and adds to them). */
  archiveHeartbeats?: ArchiveHeartbeats;
  onProgress?: (p: ReplayProgress) => void;
  /** Opens the personal values the archive holds sealed (without it, a sealed value stops the replay). */
  keys?: SubjectKeys;
}

/**
 * What is known as it goes. The listing gives the objects and their stored bytes up front; how
 * many events they hold is known only once they are read.
 */
export interface ReplayProgress {
  /** list the archive; check it (a catch-up: nothing loads until every object has been read); load it. */
  phase: 'list' | 'check' | 'load';
  objectsRead: number;
  objectsTotal: number;
  bytesRead: number;
  bytesTotal: number;
  eventsRead: number;
  eventsLoaded: number;
}

export interface ArchiveGap {
  /** The heartbeats either side of the hole, and the objects they were read from. */
  after: { lsn: string; commitTime: string; key: string };
  before: { lsn: string; commitTime: string; key: string };
  seconds: number;
}
