/**
 * Key changes that leave a TOASTed value unchanged. Capture splits such an update into the old
 * key's delete at (L, d) and the new key's insert at (L, d + 1), and the source sends the value
 * with neither (the old tuple is the key alone): the insert lists it as unchanged and names the
 * old key (`moved_key`). The value is the old key's as its delete ended it. It is found here,
 * before the merge, and written into the insert, which then carries every value:
 *   in the load's own versions of the old key before the delete, newest first, else
 *   when the load holds the delete, in the warehouse's version of the old key (before the load's);
 *   a fact's delete version at (L, d), loaded earlier, carries the values it ended;
 *   a dimension keeps only a key's latest version, and the old key may be used again before the
 *   insert comes: a load holding the old key's delete without the new key's insert therefore gives
 *   the new key, at (L, d), the old key's values, which the insert takes when it comes.
 * The two keys hash to shards of their own, each loaded in its own order, so the insert may come
 * before the delete: then the load fails, saying which key it waits for, and is tried again once
 * that shard has caught up (a replay loads in stream order: the delete comes first).
 */
import { compareLsn } from '../formats/change-event.ts';
import { LOAD_TABLES, type LoadRow, type LoadTableName, type LoadValue, type StreamPosition, versionBefore } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';

export class KeyMoveNotLoadedError extends Error {
  override name = 'KeyMoveNotLoadedError';
}

interface Version extends StreamPosition {
  values: Record<string, LoadValue>;
}

// the warehouse prints an LSN without the leading zeros the stream's have
const samePosition = (a: StreamPosition, b: StreamPosition) => a.source_pos === b.source_pos && compareLsn(a.source_lsn, b.source_lsn) === 0;
const unchangedIn = (row: LoadRow, column: string) => row.unchanged?.includes(`,${column},`) ?? false;

/** Fill the unchanged columns of every key-changing insert of `tables` (in place), and add the new keys' dimension versions. */
export async function carryKeyMoves(db: pg.PoolClient, schema: string, tables: Map<LoadTableName, LoadRow[]>): Promise<void> {
  for (const [table, rows] of tables) {
    const moves = rows.filter((r) => r.moved_key != null && (r.source_op === 'd' || r.unchanged !== null));
    if (moves.length > 0) await carryTable(db, schema, table, rows, moves, tables);
  }
}

async function carryTable(
  db: pg.PoolClient,
  schema: string,
  table: LoadTableName,
  rows: LoadRow[],
  moves: LoadRow[],
  tables: Map<LoadTableName, LoadRow[]>,
): Promise<void> {
  const { key, kind, columns } = LOAD_TABLES[table];
  const attrs = Object.keys(columns).filter((c) => c !== key);
  const versions = new Map<number, LoadRow[]>();
  for (const r of rows) versions.set(r[key] as number, [...(versions.get(r[key] as number) ?? []), r]);
  for (const v of versions.values()) v.sort((a, b) => (versionBefore(a, b) ? -1 : versionBefore(b, a) ? 1 : 0));
  const has = (k: number, at: StreamPosition, op: LoadRow['source_op']) => versions.get(k)?.some((r) => r.source_op === op && samePosition(r, at)) ?? false;
  const stored = await warehouseVersions(db, schema, table, moves);
  const added: LoadRow[] = [];

  moves.sort((a, b) => (versionBefore(a, b) ? -1 : 1)); // a key moved twice: the first move is carried first
  for (const move of moves) {
    if (move.source_op === 'd') {
      // a dimension's old key leaves: the new key's insert (L, d + 1) is in another load, which keeps the old key's values from here
      const inserted = { source_lsn: move.source_lsn, source_pos: move.source_pos + 1 };
      if (kind !== 'dim' || has(move.moved_key!, inserted, 'c')) continue;
      const values = knownValues(move[key] as number, move, attrs);
      if (!values) continue; // not known here (never so in a shard loaded in order): the insert says so when it comes
      added.push({
        ...values,
        [key]: move.moved_key!,
        source_op: 'u',
        source_lsn: move.source_lsn,
        source_pos: move.source_pos,
        source_commit_time: move.source_commit_time,
        unchanged: null,
      } as LoadRow);
      continue;
    }
    const ended = { source_lsn: move.source_lsn, source_pos: move.source_pos - 1 };
    const own = stored.get(`${move[key]}`);
    if (own && !versionBefore(own, move)) continue; // loaded already (a batch delivered again): it changes nothing
    const kept = attrs.filter((c) => unchangedIn(move, c));
    // a dimension's new key holds the old key's values at the delete when an earlier load held the delete alone
    const values = kept.length === 0 ? {} : kind === 'dim' && own && samePosition(own, ended) ? own.values : knownValues(move.moved_key!, ended, kept);
    if (!values) {
      throw new KeyMoveNotLoadedError(
        `${table} key ${move[key]} moved from key ${move.moved_key} at ${move.source_lsn}:${move.source_pos} keeps unchanged ${kept.join(', ')}: key ${move.moved_key}'s version at ${ended.source_lsn}:${ended.source_pos} is not loaded yet (its shard is behind); the load is tried again`,
      );
    }
    for (const c of kept) move[c] = values[c];
    move.unchanged = null;
  }
  if (added.length > 0) tables.set(table, [...rows, ...added]);

  /** The values of `columns` that key `k` held when its delete at `ended` ended it, or null when this load cannot know them yet. */
  function knownValues(k: number, ended: StreamPosition, columns: string[]): Record<string, LoadValue> | null {
    const found: Record<string, LoadValue> = {};
    let missing = columns;
    // the load's versions of the key before its delete, newest first (a key-changing insert among them is carried already)
    for (const v of (versions.get(k) ?? []).filter((r) => versionBefore(r, ended)).reverse()) {
      if (v.source_op === 'd') continue;
      for (const c of missing) if (!unchangedIn(v, c)) found[c] = v[c];
      missing = missing.filter((c) => !(c in found));
      if (missing.length === 0) return found;
    }
    // when this load holds the delete, the warehouse's version is the one before the load's; a fact's delete version also
    // carries the values it ended (a dimension's tombstone need not: one merged with the change before it keeps older ones)
    const base = kind === 'dim' ? stored.get(`${k}`) : stored.get(`${k}@${ended.source_lsn}/${ended.source_pos}`);
    if (!base || !((has(k, ended, 'd') && versionBefore(base, ended)) || (kind === 'fact' && samePosition(base, ended)))) return null;
    for (const c of missing) found[c] = base.values[c];
    return found;
  }
}

/**
 * What the warehouse holds for the keys of the moves: a dimension's row of each key, by key; a
 * fact's versions of the old key up to its delete (by key@position) and the new key's up to the
 * insert (by key).
 */
async function warehouseVersions(db: pg.PoolClient, schema: string, table: LoadTableName, moves: LoadRow[]): Promise<Map<string, Version>> {
  const { key, kind, columns } = LOAD_TABLES[table];
  const attrs = Object.keys(columns).filter((c) => c !== key);
  const t = `"${schema}"."${table}"`;
  const pick = `${attrs.map((c) => `"${c}"`).join(', ')}, source_lsn::text AS source_lsn, source_pos`;
  const toVersion = (r: Record<string, unknown>): Version => ({
    source_lsn: r.source_lsn as string,
    source_pos: r.source_pos as number,
    values: Object.fromEntries(attrs.map((c) => [c, r[c] as LoadValue])),
  });
  const found = new Map<string, Version>();
  if (kind === 'dim') {
    const keys = [...new Set(moves.flatMap((m) => [m[key] as number, m.moved_key!]))];
    const { rows } = await db.query(`SELECT "${key}" AS k, ${pick} FROM ${t} WHERE "${key}" = ANY($1::int[])`, [keys]);
    for (const r of rows) found.set(`${r.k}`, toVersion(r));
    return found;
  }
  // the new key's latest version up to its insert, and the old key's up to its delete
  const probes = moves
    .filter((m) => m.source_op === 'c')
    .flatMap((m) => [
      { k: m[key] as number, lsn: m.source_lsn, pos: m.source_pos, name: `${m[key]}` },
      { k: m.moved_key!, lsn: m.source_lsn, pos: m.source_pos - 1, name: `${m.moved_key}@${m.source_lsn}/${m.source_pos - 1}` },
    ]);
  const { rows } = await db.query(
    `SELECT p.name, f.* FROM unnest($1::int[], $2::pg_lsn[], $3::int[], $4::text[]) AS p(k, lsn, pos, name)
       CROSS JOIN LATERAL (SELECT ${pick} FROM ${t} f WHERE f."${key}" = p.k AND (f.source_lsn, f.source_pos) <= (p.lsn, p.pos)
                            ORDER BY f.source_lsn DESC, f.source_pos DESC LIMIT 1) f`,
    [probes.map((p) => p.k), probes.map((p) => p.lsn), probes.map((p) => p.pos), probes.map((p) => p.name)],
  );
  for (const r of rows) found.set(r.name as string, toVersion(r));
  return found;
}
