/**
 * A source capture cannot stream from ends `totes run capture` at once: exit 3, one log line
 * saying what is wrong and what to run or set, no stack trace, no retrying and never a word of
 * `streaming`. Each case is caused for real: a missing or partial publication, a role without
 * REPLICATION (after the DBA's setup applied by a table owner who is not a superuser),
 * wal_level replica, no free slot, no free WAL sender, and an option the server's pgoutput
 * refuses. A transient refusal (the slot held by another connection) is retried, with /health
 * not 200 until the server has accepted START_REPLICATION and sent its first message.
 * (A server older than 13: old-server.pg12.test.ts.)
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg, { inTransaction } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { freePort, type EmbeddedPg } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { runCapture, type CaptureChild } from '../test/capture-process.ts';
import { createDatabase, serverMajor, startLocalAws, startOwnPostgres, type LocalAws } from '../test/harness.ts';
import { ReplicationStream } from './replication-stream.ts';
import { explainSourceError, SourceNotReady } from './source-errors.ts';
import { CAPTURE_STATE_DDL, createPublicationSql, sourceSetupSql } from './source-setup.ts';
import { streamFormat } from './stream-format.ts';

const STREAM = 'changes';

/** Runs `sql` on `url` as its user. */
async function run(url: string, ...sql: string[]): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of sql) await c.query(s);
  } finally {
    await c.end();
  }
}

/** totesys, seeded, with capture's state tables; the publication is up to the test. */
async function seeded(url: string, ...then: string[]): Promise<void> {
  const db = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await inTransaction(db, async (c) => {
      await createTotesys(c, { seed: 3, sizes: scaledSizes(0.001) });
      for (const s of [CAPTURE_STATE_DDL, ...then]) await c.query(s);
    });
  } finally {
    await db.end();
  }
}

function withUser(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

describe('a source capture cannot stream from', () => {
  let aws: LocalAws;
  const children: CaptureChild[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    aws = await startLocalAws({ stream: STREAM, shards: 1, buckets: [] });
  });
  afterAll(async () => {
    for (const c of children) if (c.running()) c.child.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await aws?.stop();
  });

  async function capture(sourceUrl: string, env: Record<string, string> = {}): Promise<CaptureChild & { healthPort: number }> {
    const healthPort = await freePort();
    const proc = runCapture({
      TOTES_SOURCE_URL: sourceUrl,
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_SLOT_NAME: `fail_${randomBytes(3).toString('hex')}`,
      TOTES_HEALTH_PORT: String(healthPort),
      TOTES_HEARTBEAT_SECONDS: '1',
      ...env,
    });
    children.push(proc);
    return Object.assign(proc, { healthPort });
  }

  /** Exit 3 by itself, soon, with one line on stderr holding every fragment, no stack trace, no retry, no `streaming`. */
  async function expectRefusal(proc: CaptureChild, ...fragments: string[]): Promise<string> {
    const exit = await proc.exitWithin(30_000);
    const output = `${proc.out.stdout}\n${proc.out.stderr}`;
    expect(exit, `still running after 30 s:\n${output}`).not.toBeNull();
    expect(exit!.code, output).toBe(3);
    const said = proc.out.stderr.trimEnd().split('\n');
    expect(said, output).toHaveLength(1);
    expect(said[0], output).toMatch(/^totes run capture: /);
    for (const f of fragments) expect(said[0]).toContain(f);
    expect(output, 'no stack trace').not.toMatch(/^\s+at /m);
    const lines = proc.logLines();
    expect(lines.filter((l) => /retrying/.test(l.msg))).toEqual([]);
    expect(lines.filter((l) => l.msg === 'streaming')).toEqual([]);
    return said[0];
  }

  it('a database without the publication', async () => {
    const db = await createDatabase('nopub');
    cleanups.push(db.drop);
    await seeded(db.url);
    await expectRefusal(await capture(db.url), 'publication "totes_cdc" does not exist', createPublicationSql('totes_cdc'));
  });

  it('a publication that misses tables', async () => {
    const db = await createDatabase('partpub');
    cleanups.push(db.drop);
    // every business table but payment, and not the signal table
    await seeded(
      db.url,
      createPublicationSql('totes_cdc')
        .replace(', public."payment"', '')
        .replace(/, totes_cdc\.signal$/, ''),
    );
    const message = await expectRefusal(await capture(db.url), 'lacks public.payment', 'ALTER PUBLICATION "totes_cdc" ADD TABLE public."payment"');
    // on 13 the signal table carries heartbeats and watermarks, so it must be published too; on 14+ it need not
    if (serverMajor() === 13) expect(message).toContain('totes_cdc.signal');
    else expect(message).not.toContain('totes_cdc.signal');
  });

  it('a role without REPLICATION, after the DBA applied `totes source-setup` without superuser; with REPLICATION it streams', async () => {
    const suffix = randomBytes(3).toString('hex');
    const owner = `owner_${suffix}`;
    const role = `capture_${suffix}`;
    const db = await createDatabase('setup');
    const admin = db.url;
    cleanups.push(async () => {
      await db.drop();
      await run(admin, `DROP ROLE IF EXISTS ${role}`, `DROP ROLE IF EXISTS ${owner}`);
    });
    // the tables' owner, as on RDS: may create roles, owns the database, is no superuser
    await run(
      admin,
      `CREATE ROLE ${owner} LOGIN CREATEROLE PASSWORD 'owner'`,
      `ALTER DATABASE "${db.name}" OWNER TO ${owner}`,
      `ALTER SCHEMA public OWNER TO ${owner}`,
    );
    const asOwner = withUser(db.url, owner, 'owner');
    const ownerPool = new pg.Pool({ connectionString: asOwner, max: 1 });
    try {
      await inTransaction(ownerPool, (c) => createTotesys(c, { seed: 3, sizes: scaledSizes(0.001) }));
    } finally {
      await ownerPool.end();
    }
    await run(asOwner, sourceSetupSql({ publication: 'totes_cdc', role }), `ALTER ROLE ${role} PASSWORD 'capture'`);
    const asCapture = withUser(db.url, role, 'capture');
    await expectRefusal(await capture(asCapture), `role "${role}" may not use replication`, `GRANT rds_replication TO ${role}`);

    // what `GRANT rds_replication` gives on RDS; here only a superuser can grant it
    await run(admin, `ALTER ROLE ${role} REPLICATION`);
    const proc = await capture(asCapture);
    const health = async () => (await fetch(`http://127.0.0.1:${proc.healthPort}/health`).catch(() => null))?.json() as Promise<Record<string, unknown> | null>;
    for (const deadline = Date.now() + 30_000; ; await sleep(200)) {
      const body = await health().catch(() => null);
      if (body?.state === 'streaming' && body.snapshotPending === false) break;
      if (!proc.running() || Date.now() > deadline) throw new Error(`capture as ${role} did not stream and snapshot:\n${proc.out.stdout.slice(-3_000)}`);
    }
    proc.child.kill('SIGTERM');
    expect((await proc.exitWithin(30_000))?.code).toBe(0);
  });

  describe('a server whose settings refuse', () => {
    let replica: EmbeddedPg;
    let scarce: EmbeddedPg;
    beforeAll(async () => {
      [replica, scarce] = await Promise.all([
        startOwnPostgres({ label: 'replica', databases: ['totesys'], settings: { wal_level: 'replica' } }),
        startOwnPostgres({ label: 'scarce', databases: ['totesys'], settings: { max_replication_slots: '2', max_wal_senders: '2' } }),
      ]);
      await Promise.all([seeded(replica.url('totesys'), createPublicationSql('totes_cdc')), seeded(scarce.url('totesys'), createPublicationSql('totes_cdc'))]);
    });
    afterAll(async () => {
      await replica?.stop();
      await scarce?.stop();
    });

    it('wal_level replica', async () => {
      await expectRefusal(await capture(replica.url('totesys')), "wal_level is 'replica'", 'rds.logical_replication = 1');
    });

    it('no free replication slot', async () => {
      const url = scarce.url('totesys');
      await run(url, `SELECT pg_create_physical_replication_slot('filler_1')`, `SELECT pg_create_physical_replication_slot('filler_2')`);
      try {
        await expectRefusal(await capture(url), 'no free replication slot', 'max_replication_slots');
      } finally {
        await run(url, `SELECT pg_drop_replication_slot('filler_1')`, `SELECT pg_drop_replication_slot('filler_2')`);
      }
    });

    it('no free WAL sender', async () => {
      const url = scarce.url('totesys');
      // idle replication connections: each holds a WAL sender
      const holders = [0, 1].map(() => new pg.Client({ connectionString: url, replication: 'database' } as pg.ClientConfig));
      await Promise.all(holders.map((h) => h.connect()));
      try {
        await expectRefusal(await capture(url), 'no free WAL sender', 'max_wal_senders');
      } finally {
        await Promise.all(holders.map((h) => h.end()));
      }
    });
  });

  it("an option the server's pgoutput refuses", async () => {
    const db = await createDatabase('option');
    cleanups.push(db.drop);
    await seeded(db.url, createPublicationSql('totes_cdc'));
    await run(db.url, `SELECT pg_create_logical_replication_slot('refused', 'pgoutput')`);
    // on 13 the very statement pg-logical-replication sends (with `messages`, which 13 does not know); on 14+ an unknown option
    const statement =
      serverMajor() === 13
        ? streamFormat('pgoutput', 'totes_cdc', 'message').statement('refused')
        : streamFormat('pgoutput', 'totes_cdc', 'message').statement('refused').replace(/\)$/, ", bogus_option 'x')");
    const stream = new ReplicationStream(db.url);
    const refusal = await stream.start(statement, { data: () => undefined, keepalive: () => undefined }).then(
      () => null,
      (err: unknown) => err,
    );
    await stream.stop();
    expect(refusal, 'the server accepted the statement').not.toBeNull();
    const explained = explainSourceError(refusal, { role: 'postgres', slot: 'refused', plugin: 'pgoutput' });
    expect(explained).toBeInstanceOf(SourceNotReady);
    expect((explained as Error).message).toContain('the server rejected START_REPLICATION for slot "refused"');
    expect((explained as Error).message).toContain(serverMajor() === 13 ? 'unrecognized pgoutput option: messages' : 'bogus_option');
    await run(db.url, `SELECT pg_drop_replication_slot('refused')`);
  });

  it('a slot another connection holds: retried, not healthy until the server streams to it', async () => {
    const db = await createDatabase('held');
    cleanups.push(db.drop);
    await seeded(db.url, createPublicationSql('totes_cdc'));
    const slot = `held_${randomBytes(3).toString('hex')}`;
    await run(db.url, `SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`);
    const holder = new ReplicationStream(db.url);
    await holder.start(streamFormat('pgoutput', 'totes_cdc', serverMajor() === 13 ? 'table' : 'message').statement(slot), {
      data: () => undefined,
      keepalive: () => undefined,
    });
    const proc = await capture(db.url, { TOTES_SLOT_NAME: slot });
    const health = async () => {
      const res = await fetch(`http://127.0.0.1:${proc.healthPort}/health`).catch(() => null);
      return res ? { status: res.status, body: (await res.json()) as { state: string } } : null;
    };
    for (const deadline = Date.now() + 20_000; !proc.logLines().some((l) => /retrying/.test(l.msg)); await sleep(100))
      if (!proc.running() || Date.now() > deadline) throw new Error(`no retry while the slot is held:\n${proc.out.stdout}`);
    const whileHeld = await health();
    expect(whileHeld?.status).toBe(503);
    expect(whileHeld?.body.state).toBe('starting');
    expect(proc.logLines().filter((l) => l.msg === 'streaming')).toEqual([]);

    await holder.stop();
    for (const deadline = Date.now() + 30_000; (await health())?.status !== 200; await sleep(100))
      if (!proc.running() || Date.now() > deadline) throw new Error(`not healthy after the slot was released:\n${proc.out.stdout}`);
    expect(proc.logLines().filter((l) => l.msg === 'streaming')).toHaveLength(1);
    proc.child.kill('SIGTERM');
    expect((await proc.exitWithin(30_000))?.code).toBe(0);
  });
});
