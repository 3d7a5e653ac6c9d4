/**
 * One Postgres server per test project (vitest.config.ts makes a project per major), with
 * logical replication on. Tests create their own databases on it (test/harness.ts). Where it
 * comes from, in order:
 *   TOTES_TEST_PG_URL   an existing server (must have wal_level=logical); its major is asked;
 *   a container runtime  testcontainers starts postgres:<major>;
 *   otherwise            the npm binaries of that major (these machines have no Docker engine).
 */
import type { TestProject } from 'vitest/node';
import pg from '../lib/pg.ts';
import { freePort, POSTGRES_MAJORS, startPostgres, type PostgresMajor } from '../local/servers.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
    pgSource: string;
    /** The server's major version: tests that start a cluster of their own start this one. */
    pgMajor: PostgresMajor;
  }
}

interface TestServer {
  url: string;
  source: string;
  stop(): Promise<void>;
}

async function fromContainerRuntime(major: PostgresMajor): Promise<TestServer | null> {
  try {
    const { getContainerRuntimeClient, GenericContainer, Wait } = await import('testcontainers');
    await getContainerRuntimeClient();
    const container = await new GenericContainer(`postgres:${major}`)
      .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
      .withCommand(['postgres', '-c', 'wal_level=logical', '-c', 'max_replication_slots=20', '-c', 'max_wal_senders=20'])
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    return {
      url: `postgres://postgres:postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`,
      source: `testcontainers, postgres:${major}`,
      stop: async () => {
        await container.stop();
      },
    };
  } catch {
    return null;
  }
}

async function fromNpmBinaries(major: PostgresMajor): Promise<TestServer> {
  const server = await startPostgres({ port: await freePort(), databases: [], label: `test${major}`, major });
  return { url: server.url('postgres'), source: `npm binaries, Postgres ${major}`, stop: server.stop };
}

async function majorOf(url: string): Promise<PostgresMajor> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const major = Math.floor(Number((await client.query('SHOW server_version_num')).rows[0].server_version_num) / 10_000);
    if (!POSTGRES_MAJORS.includes(major as PostgresMajor))
      throw new Error(`TOTES_TEST_PG_URL is Postgres ${major}; totes-cdc supports ${POSTGRES_MAJORS.join(', ')}`);
    return major as PostgresMajor;
  } finally {
    await client.end();
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.TOTES_TEST_PG_URL) {
    project.provide('pgUrl', process.env.TOTES_TEST_PG_URL);
    project.provide('pgSource', 'TOTES_TEST_PG_URL');
    project.provide('pgMajor', await majorOf(process.env.TOTES_TEST_PG_URL));
    return async () => undefined;
  }
  const major = project.config.provide.pgMajor as PostgresMajor;
  if (!POSTGRES_MAJORS.includes(major)) throw new Error(`TOTES_TEST_PG_MAJORS names Postgres ${major}; supported: ${POSTGRES_MAJORS.join(', ')}`);
  const server = (await fromContainerRuntime(major)) ?? (await fromNpmBinaries(major));
  project.provide('pgUrl', server.url);
  project.provide('pgSource', server.source);
  return async () => {
    await server.stop();
  };
}
