/**
 * The version order and the independent-version rule are written once in TypeScript and once in
 * SQL: asked of Postgres, the SQL gives what the TypeScript gives, for LSNs whose text order is
 * not their order and for every kind of change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../lib/pg.ts';
import { serverUrl } from '../test/harness.ts';
import {
  independentVersionSql,
  isIndependentVersion,
  type Provenance,
  type StreamPosition,
  versionBefore,
  versionBeforeSql,
  versionOrderSql,
} from './load-tables.ts';

const LSNS = ['0/0', '0/9', '0/10', '0/A', '0/a0', '0/FFFFFFFF', '1/0', '1/00000000', '9/1', '10/0', 'A/1'];
const POSITIONS: StreamPosition[] = LSNS.flatMap((source_lsn) => [0, 1, 2, 10].map((source_pos) => ({ source_lsn, source_pos })));

describe('the version order and the independent-version rule', () => {
  let db: pg.Client;
  beforeAll(async () => {
    db = new pg.Client({ connectionString: serverUrl() });
    await db.connect();
  });
  afterAll(() => db?.end());

  it('versionBeforeSql answers as versionBefore for every pair of positions', async () => {
    const pairs = POSITIONS.flatMap((a) => POSITIONS.map((b) => [a, b] as const));
    const { rows } = await db.query(
      `SELECT ${versionBeforeSql('a', ['b.lsn', 'b.pos'])} AS before
         FROM unnest($1::pg_lsn[], $2::int[], $3::pg_lsn[], $4::int[]) WITH ORDINALITY AS x(a_lsn, a_pos, b_lsn, b_pos, i),
              LATERAL (SELECT x.a_lsn AS source_lsn, x.a_pos AS source_pos) a, LATERAL (SELECT x.b_lsn AS lsn, x.b_pos AS pos) b
        ORDER BY x.i`,
      [pairs.map(([a]) => a.source_lsn), pairs.map(([a]) => a.source_pos), pairs.map(([, b]) => b.source_lsn), pairs.map(([, b]) => b.source_pos)],
    );
    const sql = rows.map((r) => r.before as boolean);
    expect(sql.filter(Boolean).length).toBeGreaterThan(0);
    expect(sql).toEqual(pairs.map(([a, b]) => versionBefore(a, b)));
  });

  it('versionOrderSql sorts as versionBefore does, oldest first and newest first', async () => {
    const compare = (a: StreamPosition, b: StreamPosition) => (versionBefore(a, b) ? -1 : versionBefore(b, a) ? 1 : 0);
    for (const order of ['oldest first', 'newest first'] as const) {
      const { rows } = await db.query(
        `SELECT v.i - 1 AS i FROM unnest($1::pg_lsn[], $2::int[]) WITH ORDINALITY AS v(source_lsn, source_pos, i) ORDER BY ${versionOrderSql(order, 'v')}, v.i`,
        [POSITIONS.map((p) => p.source_lsn), POSITIONS.map((p) => p.source_pos)],
      );
      const sortedSql = rows.map((r) => Number(r.i));
      // ties ('1/0' and '1/00000000' are one position) keep their given order on both sides
      const sign = order === 'oldest first' ? 1 : -1;
      const expected = [...POSITIONS.keys()].sort((i, j) => sign * compare(POSITIONS[i], POSITIONS[j]) || i - j);
      expect(sortedSql).toEqual(expected);
    }
  });

  it('independentVersionSql answers as isIndependentVersion for every kind of change', async () => {
    const versions: Pick<Provenance, 'source_op' | 'unchanged'>[] = (['c', 'u', 'd', 'r'] as const).flatMap((source_op) =>
      [null, ',notes,', ''].map((unchanged) => ({ source_op, unchanged })),
    );
    const { rows } = await db.query(
      `SELECT ${independentVersionSql('v')} AS independent FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS v(source_op, unchanged, i) ORDER BY v.i`,
      [versions.map((v) => v.source_op), versions.map((v) => v.unchanged)],
    );
    const sql = rows.map((r) => r.independent as boolean);
    expect(sql).toContain(true);
    expect(sql).toEqual(versions.map(isIndependentVersion));
  });
});
