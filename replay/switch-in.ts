/**
 * Switch-in: a schema rebuilt from the archive (replay.ts) takes the live schema's place, in
 * one transaction holding the live loader's lock, after catching up with what the live
 * warehouse holds. The live loader waits meanwhile, then carries on in the rebuilt schema.
 */
import { LOAD_TABLES, type LoadTable, type LoadTableName, versionBeforeSql } from '../formats/load-tables.ts';
import { asOfSchema } from '../loader/as-of-sql.ts';
import type pg from '../lib/pg.ts';
import { PostgresWarehouse } from '../loader/warehouse.ts';
import { foreignKeysDdl } from '../loader/warehouse-schema.ts';
import { formatBehind } from './archive-completeness.ts';
import { DEFAULT_GAP_THRESHOLD_MS, replayArchive, REPLAY_SHARD, type ReplayOptions, type ReplayResult } from './replay.ts';

/** The rebuild was not switched in; the live schema is untouched. */
export class SwitchInError extends Error {
  override name = 'SwitchInError';
}

export interface SwitchInOptions extends Omit<ReplayOptions, 'schema' | 'freshSchema' | 'recordWatermark' | 'skipKeys' | 'archiveHeartbeats'> {
  /** The schema the rebuild was built in. */
  rebuildSchema: string;
  /** The live schema it replaces (default "public"). */
  liveSchema?: string;
  /** What the rebuild's replay read: catch-up passes read only newer objects, and go on from its heartbeats. */
  rebuilt: Pick<ReplayResult, 'keys' | 'archiveHeartbeats'>;
  /** Give up (changing nothing) when the archive is not complete, or not caught up with the live warehouse, by then. */
  timeoutMs?: number;
  pollMs?: number;
}

export interface SwitchInResult {
  /** Where the old live schema now lives (null when there was none). */
  replacedSchema: string | null;
  catchUpPasses: number;
  catchUpEvents: number;
  /** How long the live loader was held. */
  pausedSeconds: number;
}

/** Changes the live warehouse holds that a rebuild lacks, in one table. */
export interface MissingChanges {
  table: LoadTableName;
  /** Fact versions absent from the rebuild; dimension rows absent or at an older version there. */
  rows: number;
  oldestLsn: string;
  /** Commit time of the oldest missing fact version (dimension rows keep no commit time). */
  since: string | null;
}

/**
 * What the live warehouse holds that the rebuild does not: every fact version (by key and stream
 * position) and every dimension row at its version or a later one. It compares what each side
 * holds, whatever shard it came on: a guard besides the completeness point, which an archive
 * whose heartbeats name no shard has only as an upper bound.
 */
export async function missingFromRebuild(db: Pick<pg.PoolClient, 'query'>, live: string, rebuild: string): Promise<MissingChanges[]> {
  const missing: MissingChanges[] = [];
  for (const [table, t] of Object.entries(LOAD_TABLES) as [LoadTableName, LoadTable][]) {
    const sql =
      t.kind === 'fact'
        ? `SELECT count(*)::int AS n, min(l.source_lsn)::text AS lsn,
                  to_char(min(l.source_commit_time), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS since
             FROM "${live}".${table} l
            WHERE NOT EXISTS (SELECT 1 FROM "${rebuild}".${table} r
                               WHERE r.${t.key} = l.${t.key} AND r.source_lsn = l.source_lsn AND r.source_pos = l.source_pos)`
        : // an inferred member (0/0) is only a placeholder for a fact that arrived first
          `SELECT count(*)::int AS n, min(l.source_lsn)::text AS lsn, NULL AS since
             FROM "${live}".${table} l LEFT JOIN "${rebuild}".${table} r ON r.${t.key} = l.${t.key}
            WHERE l.source_lsn > '0/0' AND (r.${t.key} IS NULL OR ${versionBeforeSql('r', 'l')})`;
    const { rows } = await db.query(sql);
    if (rows[0].n > 0) missing.push({ table, rows: rows[0].n, oldestLsn: rows[0].lsn, since: rows[0].since });
  }
  return missing;
}

export function formatMissing(m: MissingChanges): string {
  return `  ${m.table}: ${m.rows} ${m.rows === 1 ? 'row' : 'rows'} from ${m.oldestLsn}${m.since ? ` (committed ${m.since})` : ''} on`;
}

/**
 * Switch a rebuilt schema in for the live one, in one transaction that holds the live
 * loader's lock (the live loader waits, then carries on in the rebuilt schema):
 *   1. wait, replaying newly archived objects into the rebuild, until the archive lacks no shard
 *      open at its newest heartbeat (archive-completeness.ts) and, when there is a live
 *      warehouse, the rebuild's watermark (the point the archive is complete up to) has passed
 *      every change the live warehouse holds and the rebuild holds every one of them
 *      (missingFromRebuild): the archive lags the stream by Firehose's buffer interval, and the
 *      live loader is paused meanwhile;
 *   2. copy the live load log and shard progress across, so the live loader resumes at the
 *      manifests it had reached and freshness is the live shards' again (the "replay" row goes);
 *   3. rename the live schema to <live>_replaced_<UTC stamp> and the rebuild to <live>.
 */
export async function switchInRebuild(opts: SwitchInOptions): Promise<SwitchInResult> {
  const live = opts.liveSchema ?? 'public';
  const rebuild = opts.rebuildSchema;
  const replayed = new Set(opts.rebuilt.keys);
  const heartbeats = opts.rebuilt.archiveHeartbeats;
  const gapMs = opts.gapThresholdMs ?? DEFAULT_GAP_THRESHOLD_MS;
  const deadline = Date.now() + (opts.timeoutMs ?? 5 * 60_000);
  const pausedAt = Date.now();
  let catchUpPasses = 0,
    catchUpEvents = 0;
  const liveWarehouse = new PostgresWarehouse(opts.pool, live);
  const rebuilt = new PostgresWarehouse(opts.pool, rebuild);
  const replacedSchema = await liveWarehouse.withLoadsLocked(async (db) => {
    const exists = (await db.query(`SELECT to_regclass($1) AS t`, [`"${live}".totes_shard_progress`])).rows[0].t !== null;
    const newestLive = exists ? await liveWarehouse.newestSourceLsn(db) : null;
    /** What keeps the rebuild from being switched in now; null: nothing. */
    const waitingFor = async (): Promise<string | null> => {
      const { behind } = heartbeats.completeness(gapMs);
      if (behind.length) return `the archive lacks shards open at its newest heartbeat:\n${behind.map(formatBehind).join('\n')}`;
      if (newestLive === null) return null;
      const w = await db.query(
        `SELECT watermark_lsn::text AS lsn, watermark_lsn >= $1::pg_lsn AS caught_up FROM "${rebuild}".totes_shard_progress WHERE shard = $2`,
        [newestLive, REPLAY_SHARD],
      );
      if (!w.rows[0]?.caught_up)
        return `the rebuild is complete up to ${w.rows[0]?.lsn ?? 'no point yet'}, the live warehouse holds changes up to ${newestLive}`;
      const missing = await missingFromRebuild(db, live, rebuild);
      if (missing.length === 0) return null;
      return `the rebuild lacks changes the live warehouse holds:\n${missing.map(formatMissing).join('\n')}\n(their objects are not in the archive yet, or were lost)`;
    };
    for (let waiting = await waitingFor(); waiting; waiting = await waitingFor()) {
      if (Date.now() > deadline)
        throw new SwitchInError(`the archive has not caught up${newestLive === null ? '' : ' with the live warehouse'}: ${waiting}; nothing was switched`);
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 2_000));
      // a catch-up adds to the rebuild: never drop it (that would also wait on this transaction's locks)
      const pass = await replayArchive({
        ...opts,
        schema: rebuild,
        freshSchema: false,
        recordWatermark: true,
        skipKeys: replayed,
        archiveHeartbeats: heartbeats,
      });
      for (const k of pass.keys) replayed.add(k);
      catchUpPasses++;
      catchUpEvents += pass.events;
    }
    if (exists) await rebuilt.adoptLoadState(db, live, REPLAY_SHARD);
    // a rebuild whose replay died before its foreign keys were added gets them now (validated) or is not switched in
    await db.query(foreignKeysDdl(rebuild));
    const liveSchemaExists = (await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [live])).rowCount === 1;
    const aside = liveSchemaExists ? `${live}_replaced_${new Date().toISOString().slice(0, 19).replace(/\D/g, '')}` : null;
    if (aside) await db.query(`ALTER SCHEMA "${live}" RENAME TO "${aside}"`);
    await db.query(`ALTER SCHEMA "${rebuild}" RENAME TO "${live}"`);
    // each schema's as-of views go with it
    if (aside) await renameIfExists(db, asOfSchema(live), asOfSchema(aside));
    await renameIfExists(db, asOfSchema(rebuild), asOfSchema(live));
    return aside;
  });
  return { replacedSchema, catchUpPasses, catchUpEvents, pausedSeconds: (Date.now() - pausedAt) / 1000 };
}

async function renameIfExists(db: pg.PoolClient, schema: string, to: string): Promise<void> {
  if ((await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema])).rowCount) await db.query(`ALTER SCHEMA "${schema}" RENAME TO "${to}"`);
}
