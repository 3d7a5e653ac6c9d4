/**
 * Test helpers: fresh databases on the project's server, clusters of the project's Postgres
 * major, and Kinesis and S3 over their real APIs.
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import pg from '../lib/pg.ts';
import { freePort, startKinesis, startPostgres, startS3, type EmbeddedPg, type PostgresMajor } from '../local/servers.ts';
import { until } from './until.ts';

export function serverUrl(): string {
  return inject('pgUrl');
}

/** The Postgres major this test project runs against. */
export function serverMajor(): PostgresMajor {
  return inject('pgMajor');
}

/** A cluster of its own, of the project's major, for tests whose settings would disturb the shared server. */
export async function startOwnPostgres(opts: { label: string; databases: string[]; settings?: Record<string, string> }): Promise<EmbeddedPg> {
  return startPostgres({ ...opts, port: await freePort(), major: serverMajor() });
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A new, empty database; dropped (with its replication slots) by the returned function. */
export async function createDatabase(prefix: string): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  return {
    name,
    url: withDatabase(serverUrl(), name),
    drop: async () => {
      await quiesce(withDatabase(serverUrl(), name), 5_000).catch(() => undefined); // then end whatever is left
      const c = new pg.Client({ connectionString: serverUrl() });
      await c.connect();
      await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
      // a terminated walsender releases its slot only once it has exited: drop slots as they come free
      await until(
        'the replication slots of the database to be released',
        async () => {
          await c.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, [name]);
          return (await c.query(`SELECT 1 FROM pg_replication_slots WHERE database = $1`, [name])).rowCount === 0;
        },
        10_000,
        50,
      );
      await c.query(`DROP DATABASE IF EXISTS "${name}"`);
      await c.end();
    },
  };
}

/**
 * pg's Pool.end() resolves before its connections have closed: wait until the database has no
 * other client sessions, so that stopping the server or dropping the database does not hit a
 * closing client with "terminating connection" (an uncaught error in this process).
 */
export async function quiesce(url: string, ms = 10_000): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await until(
      'sessions to close',
      async () =>
        (
          await c.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
          )
        ).rows[0].n === 0,
      ms,
      50,
    );
  } finally {
    await c.end();
  }
}

export interface LocalAws {
  kinesisEndpoint: string;
  s3Endpoint: string;
  stop: () => Promise<void>;
}

/** kinesalite and s3rver on free ports, with the named stream and buckets. */
export async function startLocalAws(opts: { stream: string; shards: number; buckets: string[] }): Promise<LocalAws> {
  const [kinesis, s3] = await Promise.all([
    freePort().then((port) => startKinesis({ port, streams: [{ name: opts.stream, shards: opts.shards }] })),
    freePort().then((port) => startS3({ port, buckets: opts.buckets })),
  ]);
  return {
    kinesisEndpoint: kinesis.endpoint,
    s3Endpoint: s3.endpoint,
    stop: async () => {
      await kinesis.stop();
      await s3.stop();
    },
  };
}
