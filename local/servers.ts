/**
 * The servers of the local stack, all real protocol peers: Postgres (its binaries from npm, one
 * package per major), Kinesis (kinesalite) and S3 (s3rver). No Docker, no AWS.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CreateStreamCommand, DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import kinesalite from 'kinesalite';
import S3rver, { type S3rverStore } from 's3rver';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import pg from '../lib/pg.ts';
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
 * Data directories go under the OS temp dir: Postgres refuses to run as root, so as root it
 * runs as `postgres`, which must be able to reach the directory.
 */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `totes-${label}-`));
  chmodSync(dir, 0o755);
  return dir;
}

/** Postgres binaries by major, each installed from npm under its own alias (package.json). */
const POSTGRES_BINARIES = {
  12: () => import('pg12'), // unsupported: only to show that capture refuses it
  13: () => import('pg13'),
  14: () => import('pg14'),
  15: () => import('pg15'),
  16: () => import('pg16'),
  17: () => import('pg17'),
  18: () => import('pg18'),
} as const;
export type PostgresMajor = keyof typeof POSTGRES_BINARIES;
/** The majors totes-cdc supports, and tests against. */
export const POSTGRES_MAJORS: PostgresMajor[] = [13, 14, 15, 16, 17, 18];
export const DEFAULT_POSTGRES_MAJOR: PostgresMajor = 16;

/** Postgres refuses to run as root: as root, its binaries run as the `postgres` user (created when missing). */
function postgresUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--user-group', '--no-create-home', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

export interface EmbeddedPg extends Stoppable {
  url: (database: string) => string;
  port: number;
  major: PostgresMajor;
}

/**
 * A Postgres cluster of the given major (the npm binaries: initdb, then postgres), with logical
 * replication enabled and the named databases created. `settings` override the server settings.
 */
export async function startPostgres(opts: {
  port: number;
  databases: string[];
  label: string;
  major?: PostgresMajor;
  settings?: Record<string, string>;
}): Promise<EmbeddedPg> {
  const major = opts.major ?? DEFAULT_POSTGRES_MAJOR;
  const { initdb, postgres } = await POSTGRES_BINARIES[major]();
  const dir = tempDir(opts.label);
  const data = join(dir, 'data');
  const user = postgresUser();
  mkdirSync(data, { mode: 0o700 });
  if (user.uid !== undefined) chownSync(data, user.uid, user.gid!);
  writeFileSync(join(dir, 'pw'), 'postgres\n', { mode: 0o644 });
  try {
    execFileSync(initdb, ['-D', data, '-U', 'postgres', '--auth=password', `--pwfile=${join(dir, 'pw')}`, '--encoding=UTF8', '--locale=C'], {
      ...user,
      stdio: 'pipe',
    });
  } finally {
    rmSync(join(dir, 'pw'));
  }
  const settings: Record<string, string> = {
    wal_level: 'logical',
    max_replication_slots: '10',
    max_wal_senders: '10',
    fsync: 'off',
    listen_addresses: '127.0.0.1',
    ...opts.settings,
  };
  const server = spawn(postgres, ['-D', data, '-p', String(opts.port), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])], {
    ...user,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  server.stderr.on('data', (b: Buffer) => {
    output = (output + b.toString('utf8')).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const url = (database: string) => `postgres://postgres:postgres@127.0.0.1:${opts.port}/${database}`;
  for (let attempt = 0; ; attempt++) {
    if (server.exitCode !== null) throw new Error(`Postgres ${major} did not start:\n${output}`);
    const client = new pg.Client({ connectionString: url('postgres') });
    try {
      await client.connect();
      for (const db of opts.databases) await client.query(`CREATE DATABASE "${db}"`);
      break;
    } catch (err) {
      if (attempt > 300) throw new Error(`Postgres ${major} did not accept connections: ${(err as Error).message}\n${output}`);
      await sleep(50);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return {
    port: opts.port,
    major,
    url,
    stop: async () => {
      server.kill('SIGINT'); // fast shutdown
      await exited;
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

/**
 * S3 stores a PUT whole or not at all; s3rver writes the body into the object's file as it
 * arrives, so a reader saw half an object while it was written, and a writer killed mid-PUT
 * left it cut short for good (a loader then stopped on a manifest that was not JSON). Here the
 * body is received whole first (a request cut short fails its read: nothing is stored), written
 * beside the object and renamed over it, its metadata first: a listing finds the object only
 * once both are there.
 */
function atomicPuts(store: S3rverStore): void {
  store.putObject = async (object) => {
    const chunks: Buffer[] = [];
    if (Buffer.isBuffer(object.content)) chunks.push(object.content);
    else for await (const chunk of object.content) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const md5 = createHash('md5').update(body).digest('hex');
    const path = store.getResourcePath(object.bucket, object.key, 'object');
    const partial = `${path}.${randomUUID()}.part`;
    await mkdir(dirname(path), { recursive: true });
    await writeFile(partial, body);
    await store.putMetadata(object.bucket, object.key, object.metadata, md5);
    await rename(partial, path);
    return { size: body.length, md5 };
  };
}

export async function startS3(opts: { port: number; buckets: string[] }): Promise<LocalS3> {
  const dir = tempDir('s3');
  const server = new S3rver({ port: opts.port, address: '127.0.0.1', directory: dir, silent: true });
  atomicPuts(server.store);
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
