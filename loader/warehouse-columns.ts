/**
 * The columns each load table's warehouse table holds, in order, with their warehouse types:
 * its own (LOAD_TABLES), and on a dimension deriving columns (DERIVED) those after the column
 * they follow. The tables (warehouse-schema.ts), their histories and the as-of views
 * (history-sql.ts, as-of-sql.ts) are all declared from here.
 */
import { type ColumnType, DERIVED, type Derivation, LOAD_TABLES, type LoadTable, type LoadTableName } from '../formats/load-tables.ts';

export const WAREHOUSE_TYPE: Record<ColumnType, string> = {
  int: 'int',
  text: 'varchar',
  money: 'numeric(10,2)',
  date: 'date',
  time: 'time(3)',
  bool: 'boolean',
};

/** A version's provenance, on a fact and on a dimension's history: what changed it, where in the stream, when it committed. */
export const VERSION_PROVENANCE = `source_op char(1) NOT NULL, source_lsn pg_lsn NOT NULL, source_pos integer NOT NULL, source_commit_time timestamp(6) NOT NULL, is_deleted boolean NOT NULL DEFAULT false`;

export interface WarehouseColumn {
  name: string;
  type: string;
  /** A derived column: the column of DERIVED's `from` table it holds. */
  from?: string;
}

/** A load table's business columns in warehouse order (key first; no surrogate key, no provenance). */
export function warehouseColumns(table: LoadTableName): WarehouseColumn[] {
  const { columns } = LOAD_TABLES[table] as LoadTable;
  const derived = (DERIVED as Partial<Record<LoadTableName, Derivation>>)[table];
  const out: WarehouseColumn[] = [];
  for (const [name, type] of Object.entries(columns)) {
    out.push({ name, type: WAREHOUSE_TYPE[type] });
    if (derived?.after !== name) continue;
    const from: Record<string, ColumnType> = LOAD_TABLES[derived.from].columns;
    for (const [d, f] of Object.entries(derived.columns)) out.push({ name: d, type: WAREHOUSE_TYPE[from[f]], from: f });
  }
  return out;
}
