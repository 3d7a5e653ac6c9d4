/**
 * Losing a replication slot for real: a cluster of its own whose slots may hold back at most
 * 1 MB of WAL, and WAL written past a slot nobody reads until Postgres removes what it needed
 * (wal_status 'lost'). A cluster of its own, since these settings would make every slot on a
 * shared server fragile.
 */
import pg from '../lib/pg.ts';
import type { EmbeddedPg } from '../local/servers.ts';
import { startOwnPostgres } from './harness.ts';

export async function startFragileSlotsPostgres(label: string, databases: string[]): Promise<EmbeddedPg> {
  // a cluster of its own, of the project's major: these WAL settings would make every slot on a shared server fragile
  const server = await startOwnPostgres({ databases, label });
  const admin = new pg.Client({ connectionString: server.url(databases[0]) });
  await admin.connect();
  try {
    // sighup settings: at most 1 MB held back (less than a 16 MB segment), checkpoints as often as Postgres allows
    await admin.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
    await admin.query(`ALTER SYSTEM SET max_wal_size = '32MB'`);
    await admin.query(`ALTER SYSTEM SET min_wal_size = '32MB'`);
    await admin.query('SELECT pg_reload_conf()');
  } finally {
    await admin.end();
  }
  return server;
}

/** Write WAL `slot` does not consume, with checkpoints, until the slot is lost. Returns the rounds it took. */
export async function loseSlot(db: pg.Pool, slot: string, timeoutMs = 30_000): Promise<number> {
  await db.query('CREATE TABLE IF NOT EXISTS wal_filler (id int, pad text)');
  const deadline = Date.now() + timeoutMs;
  for (let rounds = 0; ; rounds++) {
    const { rows } = await db.query('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (rows[0]?.wal_status === 'lost') return rounds;
    if (Date.now() > deadline) throw new Error(`the slot's wal_status is still ${rows[0]?.wal_status} after ${rounds} rounds of WAL and checkpoints`);
    await db.query(`INSERT INTO wal_filler SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`);
    await db.query('SELECT pg_switch_wal()');
    await db.query('CHECKPOINT');
  }
}
