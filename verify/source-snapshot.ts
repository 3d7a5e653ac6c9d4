/**
 * A source snapshot pinned to a WAL position: the snapshot a temporary logical slot exports when
 * it is created (as logical replication's initial copy uses it). Postgres makes it see exactly
 * the transactions whose commit record starts before the slot's consistent_point, and decodes
 * from that point on every transaction whose commit record starts at or after it: no gap, no
 * overlap. The pipeline stamps each change with the LSN where its transaction's commit record
 * starts (pgoutput's BEGIN final_lsn, wal2json's BEGIN lsn), so the snapshot is the source as of
 * every commit with `source_lsn < consistent_point`.
 *
 * The slot is made on a replication connection, which must stay open while the snapshot is in
 * use (an exported snapshot lives as long as the command that exported it), and is TEMPORARY:
 * it is dropped when that connection ends, so it holds no WAL once verify is done with it.
 */
import { randomBytes } from 'node:crypto';
import { bigIntToLsn, lsnToBigInt } from '../formats/change-event.ts';
import pg, { connectionConfig } from '../lib/pg.ts';
import { FatalError } from '../lib/fatal.ts';

export interface PinnedPoint {
  /** The slot's consistent_point: the snapshot holds every commit record that starts before it, and no other. */
  consistentPoint: string;
  /** The newest commit LSN the snapshot holds, as `totes.as_of` takes it (see asOfLsn). */
  lsn: string;
}

/**
 * The LSN to read the warehouse as of, for a snapshot taken at `consistentPoint`: one byte
 * before it. The consistent point is the end of the xl_running_xacts record at which the slot
 * became consistent, so a commit record the snapshot holds starts before that record, more than
 * one byte before the point, and one it does not hold starts at the point or after. Reading
 * "commits up to and including" this LSN, or "before" it, is then the same set.
 */
export function asOfLsn(consistentPoint: string): string {
  return bigIntToLsn(lsnToBigInt(consistentPoint) - 1n);
}

/**
 * Runs `read` on a connection whose transaction (REPEATABLE READ, READ ONLY) sees the source as
 * of a WAL position taken now. The role needs REPLICATION (the capture service's has it).
 */
export async function inPinnedSnapshot<T>(sourceUrl: string, read: (db: pg.Client, point: PinnedPoint) => Promise<T>): Promise<T> {
  const replication = new pg.Client({ ...connectionConfig(sourceUrl), replication: 'database' } as pg.ClientConfig);
  const reader = new pg.Client(connectionConfig(sourceUrl));
  try {
    const slot = `totes_verify_${randomBytes(6).toString('hex')}`;
    // the form every version from 13 to 18 takes (15+ also take parenthesised options; 13 and 14 only this)
    const created = await replication
      .connect()
      .then(() => replication.query(`CREATE_REPLICATION_SLOT ${slot} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT`))
      .catch((err: Error) => {
        throw new FatalError(
          `could not pin a source snapshot with a temporary replication slot (${err.message}): the --source role needs the REPLICATION attribute (as the capture service's role has, see \`totes source-setup\`) and a free slot (max_replication_slots)`,
        );
      });
    const { consistent_point: consistentPoint, snapshot_name: snapshot } = created.rows[0] as { consistent_point: string; snapshot_name: string };
    await reader.connect();
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await reader.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
    try {
      return await read(reader, { consistentPoint, lsn: asOfLsn(consistentPoint) });
    } finally {
      await reader.query('COMMIT').catch(() => undefined);
    }
  } finally {
    await reader.end().catch(() => undefined);
    // ending the replication connection drops the temporary slot
    await replication.end().catch(() => undefined);
  }
}
