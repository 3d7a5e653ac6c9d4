/**
 * Personal values sealed before they leave capture: through the live pipeline (capture →
 * kinesalite → archive and processor on s3rver → loader), no staff name or e-mail and no
 * counterparty contact is readable in any record of the stream or any object of either bucket
 * (gzip and Parquet opened), while the warehouse holds them in the clear, equal to the source;
 * a replay of the archive opens them through the same key store, and refuses without one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.ts';
import { poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { replayArchive } from '../replay/replay.ts';
import { archiveEverything, startTestPipeline, type TestPipeline } from '../test/pipeline-harness.ts';
import { bucketText } from '../test/bucket-text.ts';
import { readShards } from '../test/stream-fixture.ts';
import { until } from '../test/until.ts';
import { formatDifferences, verify } from '../verify/verify.ts';

const STAFF = `SELECT staff_id, first_name, last_name, email_address FROM staff ORDER BY staff_id`;

describe('personal data through the pipeline', () => {
  let t: TestPipeline;
  let warehouse: pg.Pool;
  beforeAll(async () => {
    t = await startTestPipeline({ personalData: true });
    warehouse = poolFor(t.warehouseUrl, 2);
  });
  afterAll(async () => {
    await warehouse?.end();
    await t?.stop();
  });

  it('never travels or rests readable outside the source and the warehouse; the warehouse and a replay hold the clear values', async () => {
    // a streamed change besides the snapshot, and a contact set where the seed may have left it null
    await t.sourcePool.query(
      `UPDATE staff SET first_name = 'Zebulon', email_address = 'zebulon.quartermaine@terrifictotes.com', last_updated = now() WHERE staff_id = 1`,
    );
    await t.sourcePool.query(`UPDATE counterparty SET commercial_contact = 'Philippa Marchbanks', last_updated = now() WHERE counterparty_id = 1`);
    await until(
      'the renamed staff member in the warehouse',
      async () =>
        (await warehouse.query(`SELECT 1 FROM dim_staff WHERE staff_id = 1 AND first_name = 'Zebulon'`).catch(() => ({ rowCount: 0 }))).rowCount === 1,
      120_000,
    );
    const live = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
    expect(formatDifferences(live.differences)).toBe('');
    const source = (await t.sourcePool.query(STAFF)).rows;
    expect((await warehouse.query(`SELECT staff_id, first_name, last_name, email_address FROM dim_staff ORDER BY staff_id`)).rows).toEqual(source);
    await archiveEverything(t.pipeline);

    const contacts = (await t.sourcePool.query(`SELECT commercial_contact, delivery_contact FROM counterparty`)).rows.flatMap((r) => [
      r.commercial_contact,
      r.delivery_contact,
    ]);
    // as a clear value appears in JSON: quoted, which no sealed value's base64 can be
    const personal = [...source.flatMap((r) => [r.first_name, r.last_name, r.email_address]), ...contacts, 'Zebulon', 'Philippa Marchbanks']
      .filter((v): v is string => typeof v === 'string')
      .map((v) => JSON.stringify(v));
    expect(personal.length).toBeGreaterThan(40);

    const kept = new Map([...(await bucketText(t.pipeline.s3, 'ingestion')), ...(await bucketText(t.pipeline.s3, 'processed'))]);
    for (const [shard, records] of await readShards(t.pipeline.kinesis, 'changes'))
      kept.set(`stream/${shard}`, records.map((r) => Buffer.from(r.Data!).toString('utf8')).join(''));
    expect([...kept.keys()].some((k) => k.startsWith('ingestion/raw/'))).toBe(true);
    expect([...kept.keys()].some((k) => k.endsWith('dim_staff.parquet'))).toBe(true);
    const readable = [...kept].flatMap(([where, text]) => personal.filter((v) => text.includes(v)).map((v) => `${where}: ${v}`));
    expect(readable).toEqual([]);
    // what is there instead: each value sealed under its subject's key
    for (const kind of ['staff', 'counterparty']) expect([...kept.values()].some((text) => text.includes(`"pd1:${kind}:1:1:`))).toBe(true);

    const base = { s3: t.pipeline.s3, bucket: 'ingestion', pool: warehouse, freshSchema: true };
    await expect(replayArchive({ ...base, schema: 'replay_without_keys' })).rejects.toThrow(ConfigError);
    await replayArchive({ ...base, schema: 'replayed', keys: t.pipeline.keys! });
    expect((await warehouse.query(`SELECT staff_id, first_name, last_name, email_address FROM replayed.dim_staff ORDER BY staff_id`)).rows).toEqual(source);
  });
});
