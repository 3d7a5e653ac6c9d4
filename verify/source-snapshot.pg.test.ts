/**
 * The pinned snapshot holds exactly the transactions whose commit LSN (as the pipeline stamps it:
 * pgoutput's BEGIN final_lsn) is at or before the LSN it gives, under a stream of commits racing
 * the slot's creation; and its temporary slot is gone once the snapshot has been read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { lsnToBigInt } from '../formats/change-event.ts';
import { createDatabase } from '../test/harness.ts';
import { until } from '../test/until.ts';
import { asOfLsn, inPinnedSnapshot } from './source-snapshot.ts';

let db: Awaited<ReturnType<typeof createDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createDatabase('pinned');
  pool = poolFor(db.url, 4);
  await pool.query(`CREATE TABLE mark (id serial PRIMARY KEY, xid bigint NOT NULL); CREATE PUBLICATION probe FOR TABLE mark`);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** Each committed transaction's xid and commit LSN, read from a pgoutput slot's BEGIN messages. */
async function commitLsns(slot: string): Promise<Map<number, bigint>> {
  const { rows } = await pool.query(
    `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'probe')`,
    [slot],
  );
  const lsns = new Map<number, bigint>();
  for (const { data } of rows as { data: Buffer }[]) if (data[0] === 0x42) lsns.set(data.readUInt32BE(17), data.readBigUInt64BE(1));
  return lsns;
}

describe('inPinnedSnapshot', () => {
  it('holds every commit at or before its LSN and none after, while commits race it', async () => {
    const slot = `probe_${db.name}`;
    await pool.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    let writing = true;
    const writer = async () => {
      while (writing) await pool.query(`INSERT INTO mark (xid) VALUES (txid_current() % 4294967296)`);
    };
    const writers = [writer(), writer(), writer()];
    await new Promise((r) => setTimeout(r, 200));
    const { seen, point } = await inPinnedSnapshot(db.url, async (source, point) => {
      const { rows } = await source.query(`SELECT xid FROM mark`);
      return { seen: new Set(rows.map((r) => Number(r.xid))), point };
    });
    await new Promise((r) => setTimeout(r, 200));
    writing = false;
    await Promise.all(writers);

    expect(point.lsn).toBe(asOfLsn(point.consistentPoint));
    const pinned = lsnToBigInt(point.lsn);
    const lsns = await commitLsns(slot);
    const before = [...lsns].filter(([, lsn]) => lsn <= pinned);
    const after = [...lsns].filter(([, lsn]) => lsn > pinned);
    expect(before.length).toBeGreaterThan(10);
    expect(after.length).toBeGreaterThan(10);
    expect(before.filter(([xid]) => !seen.has(xid))).toEqual([]);
    expect(after.filter(([xid]) => seen.has(xid))).toEqual([]);
    expect(seen.size).toBe(before.length);
    // the boundary itself: no commit starts at the consistent point minus one, and none at the point is held
    expect(after.every(([, lsn]) => lsn >= lsnToBigInt(point.consistentPoint))).toBe(true);

    await until(
      'the temporary slot to be dropped',
      async () =>
        (await pool.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'totes_verify_%' AND database = current_database()`)).rowCount === 0,
      5_000,
      50,
    );
  });

  it('names the missing REPLICATION attribute when the role cannot make the slot', async () => {
    const role = `norepl_${db.name}`;
    await pool.query(`CREATE ROLE ${role} LOGIN NOREPLICATION PASSWORD 'norepl'`);
    try {
      const url = new URL(db.url);
      url.username = role;
      url.password = 'norepl';
      await expect(inPinnedSnapshot(url.toString(), async () => 0)).rejects.toThrow(/REPLICATION attribute/);
    } finally {
      await pool.query(`DROP ROLE ${role}`);
    }
  });
});

describe('asOfLsn', () => {
  it('is the byte before the consistent point, across a 32-bit boundary', () => {
    expect(asOfLsn('0/16B3748')).toBe('0/16B3747');
    expect(asOfLsn('1/0')).toBe('0/FFFFFFFF');
  });
});
