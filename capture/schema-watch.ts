/**
 * The source schema as the stream reports it (pgoutput's relation messages; the columns of
 * wal2json's changes, which has none), against what the warehouse maps. Added columns travel in
 * events and processors ignore what they do not map; a dropped or retyped column that the
 * warehouse needs is an issue, reported loudly (once), since its values stop arriving.
 */
import { SOURCE_TABLES, type SourceTable } from '../formats/source-tables.ts';
import { log } from '../lib/log.ts';

/**
 * The type oid of a column a change left out: wal2json leaves an update's unchanged TOASTed
 * values out, so such a column is as it was if its type can be TOASTed, and dropped if not.
 */
export const UNSENT_TYPE = 0;

/**
 * Types whose values can be stored out of line: text, varchar, char, bytea, json, jsonb (a
 * numeric(10,2) is varlena too, but far below the size TOAST moves out of line).
 */
const TOASTABLE = new Set([25, 1043, 1042, 17, 114, 3802]);

export class SchemaWatch {
  private readonly reported = new Set<string>();

  /** `columnTypes`: each table's column type oids when capture started. */
  constructor(private readonly columnTypes: Map<SourceTable, Map<string, number>>) {}

  /** A table's columns as the stream now sends them. Returns the issues not reported before, each logged. */
  relation(table: SourceTable, columns: { name: string; typeOid: number }[]): string[] {
    const seen = this.columnTypes.get(table);
    const now = new Map<string, number>();
    for (const { name, typeOid } of columns) {
      const before = seen?.get(name);
      if (typeOid !== UNSENT_TYPE) now.set(name, typeOid);
      else if (before !== undefined && TOASTABLE.has(before)) now.set(name, before);
    }
    const issues: string[] = [];
    for (const expected of SOURCE_TABLES[table]) if (!now.has(expected)) issues.push(`${table}.${expected} was dropped`);
    for (const [name, typeOid] of now) {
      const before = seen?.get(name);
      if (before !== undefined && before !== typeOid) issues.push(`${table}.${name} changed type (oid ${before} → ${typeOid})`);
      if (!(SOURCE_TABLES[table] as readonly string[]).includes(name) && before === undefined)
        log.info({ table, column: name }, 'new source column: carried in events, not mapped');
    }
    this.columnTypes.set(table, now);
    const fresh = issues.filter((issue) => !this.reported.has(issue));
    for (const issue of fresh) {
      this.reported.add(issue);
      log.error({ table, issue }, 'source schema change the warehouse depends on');
    }
    return fresh;
  }
}
