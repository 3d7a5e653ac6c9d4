/** The doctor's judgements on facts the local stack cannot produce: an old or misconfigured RDS source, a lost slot, an empty warehouse. */
import { describe, expect, it } from 'vitest';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import type { Check } from './doctor-checks.ts';
import { judgeSource, type SourceFacts } from './doctor-source.ts';
import { judgeWarehouse } from './doctor-warehouse.ts';

const healthy: SourceFacts = {
  versionNum: 130020,
  version: '13.20',
  walLevel: 'logical',
  maxSlots: 10,
  maxSenders: 10,
  keepSizeMb: 10_240,
  role: 'totes_cdc',
  database: 'totesys',
  canReplicate: true,
  onRds: true,
  slots: [],
  activeSenders: 0,
  publication: { allTables: false, insert: true, update: true, delete: true },
  publishedTables: [...SOURCE_TABLE_NAMES.map((table) => ({ schema: 'public', table })), { schema: 'totes_cdc', table: 'signal' }],
  tables: SOURCE_TABLE_NAMES.map((name) => ({ name, replicaIdentity: 'd', hasPrimaryKey: true, canSelect: true })),
  progressTable: { select: true, insert: true, update: true },
};
const opts = { slot: 'totes_cdc', publication: 'totes_cdc' };
const failures = (checks: Check[]) => checks.filter((c) => c.status === 'fail').map((c) => `${c.what} | ${c.fix}`);

describe('judgeSource', () => {
  it('passes Postgres 13 on RDS set up as source-setup prints, a signal table of totes_cdc in the publication included', () => {
    expect(failures(judgeSource(healthy, opts))).toEqual([]);
  });

  it('names the RDS fixes for wal_level, the replication grant and an unlimited slot', () => {
    expect(failures(judgeSource({ ...healthy, walLevel: 'replica', canReplicate: false, keepSizeMb: -1 }, opts))).toEqual([
      'wal_level is replica | set rds.logical_replication = 1 in the DB parameter group and reboot the instance',
      'role totes_cdc may not stream replication | GRANT rds_replication TO totes_cdc;',
      expect.stringMatching(/^max_slot_wal_keep_size is unlimited \(-1\) \| .*10GB/),
    ]);
  });

  it('refuses Postgres 12, a keep size under the slot-lag alarm, a lost slot, a full set of slots and FOR ALL TABLES', () => {
    expect(failures(judgeSource({ ...healthy, versionNum: 120015, version: '12.15', keepSizeMb: 512 }, opts))).toEqual([
      expect.stringMatching(/^Postgres 12.15 \| capture needs Postgres 13/),
      expect.stringMatching(/^max_slot_wal_keep_size is 512 MB \| raise max_slot_wal_keep_size above the slot-lag-bytes alarm/),
    ]);
    const lost = { name: 'totes_cdc', plugin: 'pgoutput', database: 'totesys', active: false, walStatus: 'lost' };
    expect(failures(judgeSource({ ...healthy, slots: [lost] }, opts))).toEqual([
      expect.stringMatching(/^slot totes_cdc: wal_status lost, not active \| its WAL is gone/),
    ]);
    const others = Array.from({ length: 10 }, (_, i) => ({ ...lost, name: `other_${i}`, walStatus: 'reserved' }));
    expect(failures(judgeSource({ ...healthy, slots: others }, opts))).toEqual([expect.stringMatching(/no replication slot is free/)]);
    expect(failures(judgeSource({ ...healthy, publication: { ...healthy.publication!, allTables: true } }, opts))).toEqual([
      expect.stringMatching(/^publication totes_cdc is FOR ALL TABLES \| publish exactly the totesys tables: DROP PUBLICATION totes_cdc; CREATE PUBLICATION/),
    ]);
  });

  it('refuses a missing publication and a missing snapshot_progress table with the SQL that creates them', () => {
    expect(failures(judgeSource({ ...healthy, publication: null, publishedTables: [], progressTable: null }, opts))).toEqual([
      expect.stringMatching(/^publication totes_cdc does not exist \| CREATE PUBLICATION "totes_cdc" FOR TABLE public."address"/),
      expect.stringMatching(/^totes_cdc.snapshot_progress does not exist \| create the schema and table as `totes source-setup` prints/),
    ]);
  });
});

describe('judgeWarehouse', () => {
  const base = { role: 'totes_loader', schema: 'public', tables: [], freshnessView: false, canCreate: true, lagSeconds: null };
  it('accepts an empty warehouse the loader may create its schema in, and skips freshness; refuses one it may not', () => {
    expect(judgeWarehouse(base, { maxFreshnessSeconds: 600 }).map((c) => c.status)).toEqual(['ok', 'skip']);
    expect(failures(judgeWarehouse({ ...base, canCreate: false }, { maxFreshnessSeconds: 600 }))).toEqual([
      expect.stringMatching(/may not create it \| GRANT CREATE ON SCHEMA public TO totes_loader/),
    ]);
  });
});
