/**
 * A history beside every dimension load table (`<table>_history`): one row per version, the
 * dimension's own columns under the same names, and the provenance a fact version carries
 * (source_op, source_lsn, source_pos, source_commit_time, is_deleted). It is a version log
 * exactly like a fact table, appended by the same SQL (merge.ts with appendFactSql): a delete's
 * version carries the values it ends, a snapshot read that changes nothing adds nothing. Ends
 * without a delete of their own (truncates, snapshot ranges: row-ends.ts) are versions too
 * (source_op 't' or 'a'), and an inferred member (a fact named the key before its row came) is
 * a version at 0/0 with no values (source_op 'i') until the row's own first version comes: then
 * it goes, with any end that reached it before that version (the row was not there to end), so
 * the history holds the source's versions however the shards' loads interleaved (a replay, in
 * stream order, makes the same).
 * Derived columns are not kept: they are the derived-from table's version at the same point.
 */
import { LOAD_TABLES, type LoadTableName } from '../formats/load-tables.ts';
import { VERSION_PROVENANCE, warehouseColumns } from './warehouse-columns.ts';

/** The dimension load tables, in LOAD_TABLES order: each has a history. */
export const HISTORY_TABLES = (Object.keys(LOAD_TABLES) as LoadTableName[]).filter((t) => LOAD_TABLES[t].kind === 'dim');

export const historyName = (table: LoadTableName) => `${table}_history`;

/** Where a version of no known commit stands in time: an inferred member's, or one kept before histories were. */
export const UNKNOWN_COMMIT_TIME = '1970-01-01 00:00:00';

/** A history's own columns (the dimension's, derived ones left out), key first. */
export function historyColumns(table: LoadTableName): string[] {
  return warehouseColumns(table)
    .filter((c) => !c.from)
    .map((c) => c.name);
}

/**
 * The histories' DDL (search_path set to the schema). A warehouse from before histories gets
 * each dimension's rows as their first versions (commit time unknown), once, when the history
 * is made.
 */
export function historyDdl(): string {
  return HISTORY_TABLES.map((table) => {
    const { key } = LOAD_TABLES[table];
    const h = historyName(table);
    const own = warehouseColumns(table).filter((c) => !c.from);
    const cols = historyColumns(table).join(', ');
    return `DO $$ BEGIN
  IF to_regclass('${h}') IS NULL THEN
    CREATE TABLE ${h} (${own.map((c) => `${c.name} ${c.type}${c.name === key ? ' NOT NULL' : ''}`).join(', ')},
      ${VERSION_PROVENANCE}, PRIMARY KEY (${key}, source_lsn, source_pos));
    INSERT INTO ${h} (${cols}, source_op, source_lsn, source_pos, source_commit_time, is_deleted)
    SELECT ${cols}, CASE WHEN is_deleted THEN 'd' WHEN source_lsn = '0/0' THEN 'i' ELSE 'r' END, source_lsn, source_pos, '${UNKNOWN_COMMIT_TIME}', is_deleted
      FROM ${table};
  END IF;
END $$;`;
  }).join('\n');
}

/**
 * Inferred members' versions ($1 the keys a load's facts name that it does not bring): for the
 * keys the dimension lacks, so before inferredMembersSql adds them.
 */
export function inferredHistorySql(dim: LoadTableName, schema: string): string {
  const key = LOAD_TABLES[dim].key;
  return `INSERT INTO "${schema}".${historyName(dim)} (${key}, source_op, source_lsn, source_pos, source_commit_time)
    SELECT k, 'i', '0/0', 0, '${UNKNOWN_COMMIT_TIME}' FROM unnest($1::int[]) k
     WHERE NOT EXISTS (SELECT 1 FROM "${schema}".${dim} d WHERE d.${key} = k)
    ON CONFLICT DO NOTHING`;
}

const OWN_VERSION = `('c', 'u', 'd', 'r')`;

/**
 * Of the keys in $1, the placeholder and the ends that reached it before the key's first own
 * version, once that version is in: run after a load's merge and ends.
 */
export function filledInSql(dim: LoadTableName, schema: string): string {
  const key = LOAD_TABLES[dim].key;
  const h = `"${schema}".${historyName(dim)}`;
  return `DELETE FROM ${h} p
    USING (SELECT DISTINCT ON (o.${key}) o.${key} AS k, o.source_lsn AS lsn, o.source_pos AS pos FROM ${h} o
            WHERE o.source_op IN ${OWN_VERSION}
              AND o.${key} IN (SELECT i.${key} FROM ${h} i WHERE i.${key} = ANY($1::int[]) AND i.source_lsn = '0/0' AND i.source_op = 'i')
            ORDER BY o.${key}, o.source_lsn, o.source_pos) f
   WHERE p.${key} = f.k AND p.source_op NOT IN ${OWN_VERSION} AND (p.source_lsn, p.source_pos) < (f.lsn, f.pos)`;
}
