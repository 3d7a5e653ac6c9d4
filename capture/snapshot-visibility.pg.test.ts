/**
 * A commit is written to the WAL before other sessions see it. A transaction whose commit
 * precedes a chunk's low watermark in the WAL, but that the chunk's read cannot see yet, is in
 * neither the chunk's rows nor the keys the stream noted in the window: the chunk would call its
 * new row absent (the warehouse ends a row that exists) and emit its changed row as it was
 * before (a stale read after the change). A synchronous standby that never answers holds such a
 * transaction in that state: committed in the WAL, decoded by the stream, invisible to others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, SnapshotRangeEvent } from '../formats/change-event.ts';
import type { EmbeddedPg } from '../local/servers.ts';
import pg, { inTransaction, poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { startOwnPostgres } from '../test/harness.ts';
import { MemorySink } from '../test/memory-sink.ts';
import { until } from '../test/until.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from './capture-service.ts';
import { requestSnapshot } from './chunked-snapshot.ts';

const SLOT = 'visibility';

describe('a snapshot chunk and a commit not yet visible', () => {
  let server: EmbeddedPg;
  let pool: pg.Pool;
  let service: CaptureService;
  const sink = new MemorySink();

  beforeAll(async () => {
    // every session commits locally but the one that asks for the standby that never answers
    server = await startOwnPostgres({
      label: 'syncrep',
      databases: ['totesys'],
      settings: { synchronous_standby_names: 'nobody', synchronous_commit: 'local' },
    });
    pool = poolFor(server.url('totesys'), 2);
    await inTransaction(pool, (c) => createTotesys(c, { seed: 3, sizes: scaledSizes(0.003) }));
    service = new CaptureService(
      { ...DEFAULT_CAPTURE_CONFIG, sourceUrl: server.url('totesys'), slotName: SLOT, createPrerequisites: true, heartbeatMs: 0, snapshotChunkRows: 7 },
      sink,
    );
    service.run().catch(() => undefined);
    await until('the first snapshot', () => service.metrics.state === 'streaming' && !service.snapshotPending);
  });
  afterAll(async () => {
    await service?.stop().catch(() => undefined);
    await pool?.end();
    await server?.stop();
  });

  it('reads every row whose commit precedes its low watermark', async () => {
    const held = new pg.Client({ connectionString: server.url('totesys') });
    await held.connect();
    const heldPid = (await held.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
    await held.query(`BEGIN; SET LOCAL synchronous_commit = on`);
    const first = (await held.query(`SELECT min(payment_id) AS id FROM payment`)).rows[0].id as number;
    await held.query(`UPDATE payment SET payment_amount = payment_amount + 1, last_updated = now() WHERE payment_id = $1`, [first]);
    const added = (
      await held.query(
        `WITH t AS (INSERT INTO transaction (transaction_type, last_updated) VALUES ('SALE', now()) RETURNING transaction_id)
         INSERT INTO payment (last_updated, transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date,
                              company_ac_number, counterparty_ac_number)
         SELECT now(), t.transaction_id, p.counterparty_id, p.payment_amount, p.currency_id, p.payment_type_id, p.paid, p.payment_date,
                p.company_ac_number, p.counterparty_ac_number
           FROM t, payment p WHERE p.payment_id = $1 RETURNING payment_id`,
        [first],
      )
    ).rows[0].payment_id as number;
    // waits for the standby: in the WAL and in the stream, but no other session sees it yet
    const committed = held.query('COMMIT').catch(() => undefined);
    const streamed =
      (id: number, op: string) =>
      (e: (typeof sink.events)[number]): e is ChangeEvent =>
        e.kind === 'change' && e.table === 'payment' && e.op === op && e.key.payment_id === id;
    await until('the held commit in the stream', () => sink.events.some(streamed(added, 'c')));
    expect((await pool.query(`SELECT count(*)::int AS n FROM payment WHERE payment_id = $1`, [added])).rows[0].n).toBe(0);

    const from = sink.events.length;
    const lastRange = () =>
      sink.events.slice(from).some((e) => e.kind === 'snapshot-range' && e.table === 'payment' && (e as SnapshotRangeEvent).through === null);
    await requestSnapshot(pool, SLOT, ['payment']);
    // a chunk that reads without waiting for the held commit is done long before this
    const deadline = Date.now() + 5_000;
    while (!lastRange() && Date.now() < deadline) await sleep(25);
    await pool.query(`SELECT pg_cancel_backend($1)`, [heldPid]); // the commit completes locally, visible to all
    await committed;
    await held.end();
    await until('the snapshot of payment', lastRange);

    const ranges = sink.events.slice(from).filter((e): e is SnapshotRangeEvent => e.kind === 'snapshot-range' && e.table === 'payment');
    const covering = ranges.find((r) => (r.after === null || added > r.after) && (r.through === null || added <= r.through))!;
    expect(
      covering.present.some(([a, b]) => a <= added && added <= b),
      `payment ${added} is present in the range that covers it`,
    ).toBe(true);
    const updated = sink.events.find(streamed(first, 'u'))!;
    const reads = sink.events.slice(from).filter(streamed(first, 'r'));
    for (const r of reads) expect(r.after!.payment_amount, `the snapshot read of payment ${first} after its update`).toBe(updated.after!.payment_amount);
  });
});
