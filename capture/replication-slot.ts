/**
 * The slot, created when missing. A lost slot (its WAL was removed, e.g. past
 * max_slot_wal_keep_size) cannot resume: it is dropped and created again, and every table is
 * snapshotted again so the warehouse converges. Rows deleted while the slot was lost cannot be
 * seen by a snapshot; the README says how to reconcile them.
 */
import { log } from '../lib/log.ts';
import type pg from '../lib/pg.ts';
import { requestSnapshot } from './chunked-snapshot.ts';
import { SourceNotReady } from './source-errors.ts';
import type { Plugin } from './stream-format.ts';

export async function ensureSlot(db: pg.Pool, slot: string, plugin: Plugin): Promise<void> {
  const { rows } = await db.query('SELECT wal_status, plugin FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  if (rows[0] && rows[0].plugin !== plugin) {
    throw new SourceNotReady(
      `slot "${slot}" decodes with ${rows[0].plugin}, not ${plugin}`,
      `set TOTES_DECODER=${rows[0].plugin}, or use another TOTES_SLOT_NAME (a new slot snapshots every table again)`,
    );
  }
  if (rows[0]?.wal_status === 'lost') {
    log.error({ slot }, 'replication slot LOST: the WAL it needed was removed (max_slot_wal_keep_size). Recreating it and snapshotting every table again');
    await db.query('SELECT pg_drop_replication_slot($1)', [slot]);
  }
  if (rows.length === 0 || rows[0].wal_status === 'lost') {
    // the request first: a process that dies between the two leaves no slot, so the next start does both again
    await requestSnapshot(db, slot);
    await db.query('SELECT pg_create_logical_replication_slot($1, $2)', [slot, plugin]);
    log.info({ slot }, 'slot created; every table will be snapshotted while streaming');
  }
}
