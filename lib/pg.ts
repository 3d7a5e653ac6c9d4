/**
 * The one place `pg` is configured. Dates and timestamps stay as the text Postgres prints:
 * node-postgres would otherwise parse timestamp (1114) in the host's local time zone and
 * drop microseconds, and turn date (1082) into a local midnight. pg-logical-replication
 * resolves its column parsers from this same `pg` copy, so the stream gets the same treatment.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { log } from './log.ts';

const asText = (value: string) => value;
for (const oid of [1082, 1083, 1114, 1184, 1266]) pg.types.setTypeParser(oid, asText);

export default pg;
export type { Pool, PoolClient, Client, ClientConfig } from 'pg';

const CONNECT_TIMEOUT_MS = 10_000;
const KEEPALIVE_IDLE_MS = 15_000;

/**
 * Connection settings for a URL. With TOTES_DB_CA_FILE (the RDS CA bundle in AWS) the server
 * certificate is verified; nothing else is accepted then.
 *
 * Bounded: a connect that gets no answer fails after CONNECT_TIMEOUT_MS, and TCP keepalives
 * find an idle connection whose path died (no FIN, no RST) within about half a minute (Node
 * probes every second, ten times, after the idle delay). A query already sent when the path
 * dies waits for TCP's own retransmission limit: node-postgres's `query_timeout` would leave
 * the connection busy with that query, so whoever must answer in time (a health check, a
 * metrics line) bounds its own wait instead.
 */
export function connectionConfig(url: string): pg.ClientConfig {
  const caFile = process.env.TOTES_DB_CA_FILE;
  return {
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    ...(caFile ? { ssl: { ca: readFileSync(caFile, 'utf8'), rejectUnauthorized: true } } : {}),
  };
}

/**
 * A pool. An idle connection the server ends (a restart, a failover) is only logged: the pool
 * drops it and connects afresh, and whoever queries next sees any real outage.
 */
export function poolFor(url: string, max = 4): pg.Pool {
  const pool = new pg.Pool({ ...connectionConfig(url), max });
  pool.on('error', (err) => log.warn({ err: err.message }, 'an idle database connection was closed; the pool connects again when needed'));
  return pool;
}

/** Run `fn` inside one transaction on a pooled client. */
export async function inTransaction<T>(pool: pg.Pool, fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
