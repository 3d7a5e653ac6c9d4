/**
 * The source schema as the stream reports it (relation messages), against what the warehouse
 * maps. Added columns travel in events and processors ignore what they do not map; a dropped
 * or retyped column that the warehouse needs is an issue, reported loudly, since its values
 * stop arriving.
 */
import { SOURCE_TABLES, type SourceTable } from '../formats/source-tables.ts';
import { log } from '../lib/log.ts';

export class SchemaWatch {
  /** `columnTypes`: each table's column type oids when capture started. */
  constructor(private readonly columnTypes: Map<SourceTable, Map<string, number>>) {}

  /** A relation message: the table's columns as the stream now sends them. Returns the issues, each logged. */
  relation(table: SourceTable, columns: { name: string; typeOid: number }[]): string[] {
    const seen = this.columnTypes.get(table);
    const names = new Set(columns.map((c) => c.name));
    const issues: string[] = [];
    for (const expected of SOURCE_TABLES[table]) if (!names.has(expected)) issues.push(`${table}.${expected} was dropped`);
    for (const c of columns) {
      const before = seen?.get(c.name);
      if (before !== undefined && before !== c.typeOid) issues.push(`${table}.${c.name} changed type (oid ${before} → ${c.typeOid})`);
      if (!(SOURCE_TABLES[table] as readonly string[]).includes(c.name) && !seen?.has(c.name))
        log.info({ table, column: c.name }, 'new source column: carried in events, not mapped');
    }
    this.columnTypes.set(table, new Map(columns.map((c) => [c.name, c.typeOid])));
    for (const issue of issues) log.error({ table, issue }, 'source schema change the warehouse depends on');
    return issues;
  }
}
