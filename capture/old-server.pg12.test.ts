/**
 * A server older than 13 (Postgres 12, the npm binaries): `totes run capture` refuses it at
 * once, in one line that names the version and what to do, and creates no slot. Runs once,
 * not per major (vitest.config.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../lib/pg.ts';
import { freePort, startPostgres, type EmbeddedPg } from '../local/servers.ts';
import { runCapture } from '../test/capture-process.ts';

describe('a Postgres 12 source', () => {
  let server: EmbeddedPg;
  beforeAll(async () => {
    server = await startPostgres({ port: await freePort(), databases: ['totesys'], label: 'pg12', major: 12 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('is refused at once, saying it needs 13 or later', async () => {
    const proc = runCapture({
      TOTES_SOURCE_URL: server.url('totesys'),
      TOTES_STREAM_NAME: 'changes',
      TOTES_KINESIS_ENDPOINT: 'http://127.0.0.1:9', // never reached
      TOTES_HEALTH_PORT: String(await freePort()),
    });
    const exit = await proc.exitWithin(30_000);
    const output = `${proc.out.stdout}\n${proc.out.stderr}`;
    expect(exit?.code, output).toBe(3);
    const said = proc.out.stderr.trimEnd().split('\n');
    expect(said, output).toHaveLength(1);
    expect(said[0]).toMatch(/^totes run capture: the source is Postgres 12\.\d+, older than 13: totes-cdc needs Postgres 13 or later/);
    expect(output).not.toMatch(/^\s+at /m);
    const c = new pg.Client({ connectionString: server.url('totesys') });
    await c.connect();
    try {
      expect((await c.query('SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  });
});
