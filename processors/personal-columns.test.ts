/** formats/personal-data.ts says where each personal column lands in the warehouse: the mapping must agree. */
import { describe, expect, it } from 'vitest';
import { PERSONAL_DATA } from '../formats/personal-data.ts';
import { SOURCE_TABLES, type SourceTable } from '../formats/source-tables.ts';
import { changeEvent } from '../test/kinesis-events.ts';
import { mapEvents } from './transform.ts';

const SOURCE = { lsn: '0/16B3748', pos: 0, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' };

describe('personal columns in the warehouse', () => {
  for (const [table, declared] of Object.entries(PERSONAL_DATA) as [SourceTable, { columns: Record<string, string | null> }][]) {
    it(`${table}: each personal column lands where the declaration says, and nowhere else`, () => {
      const row = Object.fromEntries(SOURCE_TABLES[table].map((c, i) => [c, i === 0 ? 1 : c.endsWith('_id') ? 2 : `${c}-value`]));
      Object.assign(row, { created_at: '2024-05-01 09:15:02.123', last_updated: '2024-05-01 09:15:02.123' });
      const { rows, failures } = mapEvents([changeEvent(table, 'c', row, SOURCE)]);
      expect(failures).toEqual([]);
      const landed = new Map<string, string>();
      for (const [loadTable, loadRows] of Object.entries(rows))
        for (const [column, value] of Object.entries(loadRows![0])) if (typeof value === 'string') landed.set(value, `${loadTable}.${column}`);
      for (const [column, target] of Object.entries(declared.columns)) expect(landed.get(`${column}-value`) ?? null).toBe(target);
    });
  }
});
