/** The replication slot as the DBA sees it: lag in bytes and seconds, and whether WAL is at risk. */
import type pg from '../lib/pg.ts';

export interface SlotHealth {
  lagBytes: number;
  /** reserved | extended | unreserved | lost (Postgres 13+). */
  walStatus: string;
  /** Bytes that can still be written before the slot is in danger of being lost; null when unlimited. */
  safeWalSize: number | null;
}

export async function readSlotHealth(db: pg.Pool | pg.Client, slotName: string): Promise<SlotHealth> {
  const { rows } = await db.query(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag_bytes, wal_status, safe_wal_size::float8
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  if (rows.length === 0) return { lagBytes: 0, walStatus: 'missing', safeWalSize: null };
  const r = rows[0];
  return { lagBytes: r.lag_bytes ?? 0, walStatus: r.wal_status ?? 'unknown', safeWalSize: r.safe_wal_size };
}
