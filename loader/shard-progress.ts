/**
 * totes_shard_progress as the stream loader keeps it: per shard the frontier (last record of
 * the loaded prefix), the watermark (newest heartbeat in that prefix), whether a closed shard
 * is loaded to its end, and a gap when there is one. Frontiers move only in the transaction
 * that loads the batches they cover, and only from where the plan found them: two loaders that
 * planned from the same state cannot both move a shard.
 */
import type pg from '../lib/pg.ts';
import { lsnToBigInt } from '../formats/change-event.ts';
import type { Manifest } from '../formats/manifest.ts';
import type { Gap, ShardState } from './frontier.ts';
import type { ShardInfo } from '../stores/shard-stream.ts';

type Db = Pick<pg.PoolClient, 'query'>;

/** Another loader moved a shard after this one planned: plan again. */
export class StalePlanError extends Error {
  override name = 'StalePlanError';
}

/** A shard's frontier moved over loaded batches. */
export interface ShardAdvance {
  shard: string;
  from: string | null;
  to: string;
  lastManifestKey: string;
  /** Newest heartbeat among the batches. */
  heartbeat: Manifest['heartbeat'];
}

export interface StoredShardState extends ShardState {
  gapMissing: string | null;
}

/** The newest of the batches' heartbeats. */
export function newestHeartbeat(heartbeats: Manifest['heartbeat'][]): Manifest['heartbeat'] {
  let newest: Manifest['heartbeat'] = null;
  for (const h of heartbeats) if (h && (!newest || lsnToBigInt(h.lsn) > lsnToBigInt(newest.lsn))) newest = h;
  return newest;
}

/** Every shard's state, with a row made first for shards of the stream that have none. */
export async function shardStates(db: Db, schema: string, shards: ShardInfo[]): Promise<Map<string, StoredShardState>> {
  const t = `"${schema}".totes_shard_progress`;
  const read = async () => {
    const { rows } = await db.query(`SELECT shard, frontier_seq, ended, gap_missing_seq FROM ${t}`);
    return new Map<string, StoredShardState>(rows.map((r) => [r.shard, { frontier: r.frontier_seq, ended: r.ended, gapMissing: r.gap_missing_seq }]));
  };
  const states = await read();
  const fresh = shards.filter((s) => !states.has(s.id));
  if (fresh.length === 0) return states;
  await db.query(
    `INSERT INTO ${t} (shard, last_manifest_key, parents)
     SELECT s, '', coalesce(string_to_array(nullif(p, ''), ','), '{}') FROM unnest($1::text[], $2::text[]) AS x(s, p) ON CONFLICT (shard) DO NOTHING`,
    [fresh.map((s) => s.id), fresh.map((s) => s.parents.join(','))],
  );
  return read();
}

/** Lock the shards' rows and check their frontiers are where the plan found them. */
export async function checkFrontiers(db: Db, schema: string, advances: { shard: string; from: string | null }[]): Promise<void> {
  if (advances.length === 0) return;
  const { rows } = await db.query(`SELECT shard, frontier_seq FROM "${schema}".totes_shard_progress WHERE shard = ANY($1) FOR UPDATE`, [
    advances.map((a) => a.shard),
  ]);
  const now = new Map(rows.map((r) => [r.shard as string, r.frontier_seq as string | null]));
  for (const a of advances) {
    if (!now.has(a.shard) || now.get(a.shard) !== a.from) throw new StalePlanError(`shard ${a.shard} moved from ${a.from} to ${now.get(a.shard)} meanwhile`);
  }
}

/** Move frontiers and watermarks (inside the transaction that loaded the batches). */
export async function advanceShards(db: Db, schema: string, advances: ShardAdvance[]): Promise<void> {
  for (const a of advances) {
    await db.query(
      `UPDATE "${schema}".totes_shard_progress SET frontier_seq = $2, last_manifest_key = $3,
         watermark_commit_time = CASE WHEN $4::pg_lsn > watermark_lsn THEN $5::timestamptz ELSE watermark_commit_time END,
         watermark_lsn = greatest(watermark_lsn, coalesce($4::pg_lsn, '0/0')), updated_at = now()
       WHERE shard = $1`,
      [a.shard, a.to, a.lastManifestKey, a.heartbeat?.lsn ?? null, a.heartbeat?.commitTime ?? null],
    );
  }
}

/** Record a shard's gap (or its end), when that changed. */
export async function settleShard(db: Db, schema: string, shard: string, frontier: string | null, ended: boolean, gap: Gap | null): Promise<void> {
  await db.query(
    `UPDATE "${schema}".totes_shard_progress
        SET ended = $3, gap_after_seq = $4, gap_missing_seq = $5, gap_resumes_seq = $6,
            gap_since = CASE WHEN $5::text IS NULL THEN NULL WHEN gap_missing_seq = $5 THEN gap_since ELSE coalesce($7, now()) END, updated_at = now()
      WHERE shard = $1 AND frontier_seq IS NOT DISTINCT FROM $2`,
    [shard, frontier, ended, gap?.after ?? null, gap?.missing ?? null, gap?.resumesAt ?? null, gap?.missingArrivedAt ?? null],
  );
}

/**
 * A child shard is complete up to where its parents were once they are loaded to their end:
 * every change before a parent's last heartbeat went to the parent. So it takes the lowest of
 * its parents' watermarks when that is ahead of its own.
 */
export async function inheritWatermarks(db: Db, schema: string): Promise<void> {
  const t = `"${schema}".totes_shard_progress`;
  await db.query(
    `UPDATE ${t} c SET watermark_lsn = p.lsn, watermark_commit_time = p.commit_time, updated_at = now()
       FROM (SELECT c2.shard, min(p2.watermark_lsn) AS lsn, min(p2.watermark_commit_time) AS commit_time
               FROM ${t} c2 JOIN ${t} p2 ON p2.shard = ANY(c2.parents)
              GROUP BY c2.shard, c2.parents HAVING bool_and(p2.ended) AND count(*) = cardinality(c2.parents)) p
      WHERE c.shard = p.shard AND p.lsn > c.watermark_lsn`,
  );
}
