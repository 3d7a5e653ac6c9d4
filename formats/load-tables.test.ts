/**
 * LOAD_TABLES is the merge order: a table comes before every table that references it or
 * derives columns from it. The derived columns name columns that exist.
 */
import { describe, expect, it } from 'vitest';
import { DERIVED, DERIVED_TABLES, type Derivation, LOAD_TABLES, type LoadTableName, REFERENCES } from './load-tables.ts';

const ORDER = Object.keys(LOAD_TABLES) as LoadTableName[];

describe('the load tables', () => {
  it('come after every table they reference or derive columns from', () => {
    const before = ORDER.flatMap((table) => {
      const needs = [...Object.values(REFERENCES[table] ?? {}), ...(table in DERIVED ? [DERIVED[table as keyof typeof DERIVED].from] : [])];
      return needs.filter((t) => ORDER.indexOf(t) > ORDER.indexOf(table)).map((t) => `${table} needs ${t}, merged after it`);
    });
    expect(before).toEqual([]);
  });

  it('derive columns by a key they hold, from columns the other table has, after a column of their own', () => {
    for (const table of DERIVED_TABLES) {
      const d: Derivation = DERIVED[table];
      const own = Object.keys(LOAD_TABLES[table].columns);
      expect(own).toContain(d.by);
      expect(own).toContain(d.after);
      expect(Object.keys(LOAD_TABLES[d.from].columns)).toEqual(expect.arrayContaining(Object.values(d.columns)));
      expect(own.filter((c) => c in d.columns)).toEqual([]);
    }
  });
});
