/** The processor's Lambda contract, against s3rver: dead letters, partial failure, deterministic names. */
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import { freePort } from '../local/servers.ts';
import { startLocalAws, type LocalAws } from '../test/harness.ts';
import { kinesisEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { decodeParquet } from '../formats/parquet.ts';
import { encodeEvent, encodeRecord } from '../formats/change-event.ts';
import type { DeadLetter } from '../formats/manifest.ts';
import { Processor, processorMetrics } from './processor.ts';

describe('processor', () => {
  let aws: LocalAws;
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: ['processed', 'bundles', 'values', 'malformed'] });
  });
  afterAll(async () => {
    await aws?.stop();
  });

  it('sets aside what it cannot use, with the reason and payload, and processes the rest', async () => {
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const processor = new Processor(new MicroBatchStore(s3, 'processed'));
    const good = salesOrderChange(1);
    const badDate = salesOrderChange(2, 'c', { agreed_payment_date: 'next Tuesday' });
    const event = kinesisEvent([good, '{"not": "an event"', badDate, salesOrderChange(3, 'u')]);
    expect(await processor.handler(event)).toEqual({ batchItemFailures: [] });

    const dead = await s3.send(new ListObjectsV2Command({ Bucket: 'processed', Prefix: 'dead-letter/' }));
    expect(dead.KeyCount).toBe(2);
    const letters = await Promise.all(
      dead.Contents!.map(async (o) => JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: 'processed', Key: o.Key! }))).Body!.transformToString())),
    );
    expect(letters.map((l) => l.reason).sort()).toEqual(
      [expect.stringMatching(/^agreed_payment_date: not a YYYY-MM-DD date/), expect.stringMatching(/^not JSON/)].sort(),
    );
    expect(letters.find((l) => l.reason.startsWith('not JSON')).payload).toBe('{"not": "an event"');
    expect(letters.every((l) => l.shard === 'shardId-000000000000' && l.sequenceNumber)).toBe(true);
    // counted, and the newest named where the operator looks, without the values (they may be personal data)
    expect(processor.health).toMatchObject({ healthy: true, batches: 1, events: 4, deadLetters: 2, batchFailures: 0 });
    expect(processor.health.newestDeadLetters).toEqual([
      { table: 'sales_order', key: 2, column: 'agreed_payment_date', reason: expect.stringMatching(/^agreed_payment_date: not a YYYY-MM-DD date/) },
      { table: null, key: null, column: null, reason: 'not JSON' },
    ]);
    expect(JSON.stringify(processor.health)).not.toMatch(/next Tuesday|"not": "an event"/);

    const manifests = await s3.send(new ListObjectsV2Command({ Bucket: 'processed', Prefix: 'manifests/' }));
    expect(manifests.KeyCount).toBe(1);
    const store = new MicroBatchStore(s3, 'processed');
    const manifest = await store.getManifest(manifests.Contents![0].Key!);
    expect(manifest).toMatchObject({ events: 4, deadLetters: 2, tables: [{ table: 'fact_sales_order', rows: 2 }] });
    const rows = await decodeParquet('fact_sales_order', await store.getBytes(manifest.tables[0].key));
    expect(rows.map((r) => [r.sales_order_id, r.source_op, r.unit_price, r.created_time, r.last_updated_time])).toEqual([
      [1, 'c', '3.99', '09:15:02.123', '09:15:02.000'],
      [3, 'u', '3.99', '09:15:02.123', '09:15:02.000'],
    ]);

    // the same batch again (a retried invocation): the same names, nothing new
    const before = (await s3.send(new ListObjectsV2Command({ Bucket: 'processed' }))).Contents!.map((o) => `${o.Key}@${o.ETag}`).sort();
    expect(await processor.handler(event)).toEqual({ batchItemFailures: [] });
    const after = (await s3.send(new ListObjectsV2Command({ Bucket: 'processed' }))).Contents!.map((o) => `${o.Key}@${o.ETag}`).sort();
    expect(after).toEqual(before);
    s3.destroy();
  });

  it('reads a record bundling several changes of one row, each in order, setting aside only the bad one', async () => {
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const processor = new Processor(new MicroBatchStore(s3, 'bundles'));
    const v1 = salesOrderChange(20, 'c', { units_sold: 1 });
    const v2 = salesOrderChange(20, 'u', { units_sold: 2, agreed_payment_date: 'never' });
    const v3 = salesOrderChange(20, 'u', { units_sold: 3 });
    const bundle = encodeRecord([v1, v2, v3].map(encodeEvent));
    expect(await processor.handler(kinesisEvent([bundle, salesOrderChange(21)]))).toEqual({ batchItemFailures: [] });

    const store = new MicroBatchStore(s3, 'bundles');
    const manifests = await s3.send(new ListObjectsV2Command({ Bucket: 'bundles', Prefix: 'manifests/' }));
    const manifest = await store.getManifest(manifests.Contents![0].Key!);
    expect(manifest).toMatchObject({ events: 4, deadLetters: 1 });
    const rows = await decodeParquet('fact_sales_order', await store.getBytes(manifest.tables[0].key));
    expect(rows.map((r) => [r.sales_order_id, r.units_sold, r.source_lsn, r.source_pos])).toEqual([
      [20, 1, v1.source.lsn, 0],
      [20, 3, v3.source.lsn, 0],
      [21, 1000, expect.any(String), 0],
    ]);
    const dead = await s3.send(new ListObjectsV2Command({ Bucket: 'bundles', Prefix: 'dead-letter/' }));
    expect(dead.KeyCount).toBe(1);
    const letter = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: 'bundles', Key: dead.Contents![0].Key! }))).Body!.transformToString());
    expect(letter.sequenceNumber).toBe(kinesisEvent([bundle]).Records[0].kinesis.sequenceNumber);
    expect(letter.reason).toMatch(/^agreed_payment_date: not a YYYY-MM-DD date/);
    expect(JSON.parse(letter.payload)).toEqual(v2);
    s3.destroy();
  });

  it('sets aside a change whose value the warehouse cannot hold, naming its row, column and value, and loads the rest and later corrections', async () => {
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const store = new MicroBatchStore(s3, 'values');
    const processor = new Processor(store);
    const refused = [
      salesOrderChange(30, 'u', { unit_price: 'NaN' }), // pgoutput's NaN
      salesOrderChange(31, 'u', { unit_price: 'Infinity' }), // Postgres 14+
      salesOrderChange(32, 'u', { unit_price: '-Infinity' }),
      salesOrderChange(33, 'u', { unit_price: '123456789.00' }), // past numeric(10,2)
      salesOrderChange(34, 'u', { units_sold: '12.5' }), // a retyped column: the Parquet writer refused it and failed the batch
      salesOrderChange(35, 'u', { unit_price: null }), // wal2json's NaN
    ];
    const first = kinesisEvent([salesOrderChange(29), ...refused, salesOrderChange(36)], 'shardId-000000000000', 100);
    expect(await processor.handler(first)).toEqual({ batchItemFailures: [] });
    // the rows corrected at the source: their next changes load as any other
    const second = kinesisEvent(
      [salesOrderChange(30, 'u', { unit_price: '3.50' }), salesOrderChange(35, 'u', { unit_price: '4.00' })],
      'shardId-000000000000',
      200,
    );
    expect(await processor.handler(second)).toEqual({ batchItemFailures: [] });

    const keys = (await s3.send(new ListObjectsV2Command({ Bucket: 'values', Prefix: 'manifests/' }))).Contents!.map((o) => o.Key!).sort();
    const [m1, m2] = await Promise.all(keys.map((k) => store.getManifest(k)));
    expect(m1).toMatchObject({ events: 8, deadLetters: 6, tables: [{ table: 'fact_sales_order', rows: 2 }] });
    expect((await decodeParquet('fact_sales_order', await store.getBytes(m1.tables[0].key))).map((r) => r.sales_order_id)).toEqual([29, 36]);
    const corrected = await decodeParquet('fact_sales_order', await store.getBytes(m2.tables[0].key));
    expect(corrected.map((r) => [r.sales_order_id, r.unit_price])).toEqual([
      [30, '3.50'],
      [35, '4.00'],
    ]);

    const dead = await s3.send(new ListObjectsV2Command({ Bucket: 'values', Prefix: 'dead-letter/' }));
    const letters: DeadLetter[] = await Promise.all(
      dead.Contents!.map(async (o) => JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: 'values', Key: o.Key! }))).Body!.transformToString())),
    );
    expect(letters.map((l) => l.setAside)).toEqual([
      [{ table: 'sales_order', key: 30, column: 'unit_price', value: 'NaN', reason: 'unit_price: not a numeric(10,2): "NaN"' }],
      [{ table: 'sales_order', key: 31, column: 'unit_price', value: 'Infinity', reason: 'unit_price: not a numeric(10,2): "Infinity"' }],
      [{ table: 'sales_order', key: 32, column: 'unit_price', value: '-Infinity', reason: 'unit_price: not a numeric(10,2): "-Infinity"' }],
      [{ table: 'sales_order', key: 33, column: 'unit_price', value: '123456789.00', reason: 'unit_price: out of numeric(10,2) range: "123456789.00"' }],
      [{ table: 'sales_order', key: 34, column: 'units_sold', value: '12.5', reason: 'units_sold: not a 32-bit integer: "12.5"' }],
      [
        {
          table: 'sales_order',
          key: 35,
          column: 'unit_price',
          value: null,
          reason: expect.stringMatching(/^unit_price: null, but the source column is NOT NULL/),
        },
      ],
    ]);
    expect(letters.map((l) => JSON.parse(l.payload))).toEqual(refused);
    expect(letters.map((l) => l.reason)).toEqual(letters.map((l) => l.setAside![0].reason));
    s3.destroy();
  });

  it('names the row of a malformed event where the event names one', async () => {
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const processor = new Processor(new MicroBatchStore(s3, 'malformed'));
    const noAfter = JSON.stringify({ ...salesOrderChange(40), after: null });
    expect(await processor.handler(kinesisEvent([noAfter, '[1,2]']))).toEqual({ batchItemFailures: [] });
    const dead = await s3.send(new ListObjectsV2Command({ Bucket: 'malformed', Prefix: 'dead-letter/' }));
    const letters: DeadLetter[] = await Promise.all(
      dead.Contents!.map(async (o) => JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: 'malformed', Key: o.Key! }))).Body!.transformToString())),
    );
    expect(letters.map((l) => l.setAside)).toEqual([
      [{ table: 'sales_order', key: 40, column: null, value: null, reason: 'after: must be the new row in op c, got null' }],
      [{ table: null, key: null, column: null, value: null, reason: 'expected object, got an array' }],
    ]);
    s3.destroy();
  });

  it('reports the whole batch failed from its first record when it cannot write', async () => {
    const unreachable = s3Client({ s3Endpoint: `http://127.0.0.1:${await freePort()}` });
    const processor = new Processor(new MicroBatchStore(unreachable, 'processed'));
    const event = kinesisEvent([salesOrderChange(10), salesOrderChange(11)], 'shardId-000000000000', 500);
    const before = { ...processor.metrics };
    expect(await processor.handler(event)).toEqual({ batchItemFailures: [{ itemIdentifier: event.Records[0].kinesis.sequenceNumber }] });
    // a success to Lambda: counted as the processor's own failure, and unhealthy until a batch goes through
    expect(processorMetrics(processor.metrics, before)).toEqual({ Events: 0, DeadLetters: 0, BatchFailures: 1 });
    expect(processor.health).toMatchObject({ healthy: false, batchFailures: 1 });
    unreachable.destroy();
  });
});
