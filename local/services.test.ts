/**
 * `totes run processor` as a process: its dead letters counted in /health (the newest with their
 * reasons, no values) and in the DeadLetters metric line, 200 while it only sets records aside;
 * a batch it cannot write (S3 gone) counted in BatchFailures, and /health 503.
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kinesisClient } from '../lib/aws.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { putOnStream } from '../test/stream-fixture.ts';
import { startTotes, type TotesProcess } from '../test/totes-process.ts';
import { until } from '../test/until.ts';
import { freePort, type LocalKinesis, type LocalS3, startKinesis, startS3 } from './servers.ts';

const STREAM = 'changes';
const BUCKET = 'processed';

describe('totes run processor: dead letters and failed batches where the operator looks', () => {
  let kinesisServer: LocalKinesis;
  let s3: LocalS3 | null;
  let kinesis: KinesisClient;
  let service: TotesProcess | null = null;

  beforeAll(async () => {
    [kinesisServer, s3] = await Promise.all([
      freePort().then((port) => startKinesis({ port, streams: [{ name: STREAM, shards: 1 }] })),
      freePort().then((port) => startS3({ port, buckets: [BUCKET] })),
    ]);
    kinesis = kinesisClient({ kinesisEndpoint: kinesisServer.endpoint });
  });
  afterAll(async () => {
    if (service?.running()) {
      service.child.kill('SIGKILL');
      await service.exited;
    }
    kinesis?.destroy();
    await s3?.stop();
    await kinesisServer?.stop();
  });

  it('reports dead letters in /health and its metrics line with 200, and a batch it cannot write as BatchFailures with 503', async () => {
    const port = await freePort();
    service = startTotes(['run', 'processor'], {
      TOTES_PROCESSED_BUCKET: BUCKET,
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: kinesisServer.endpoint,
      TOTES_S3_ENDPOINT: s3!.endpoint,
      TOTES_HEALTH_PORT: String(port),
      TOTES_METRICS_SECONDS: '1',
    });
    const proc = service;
    const health = async () => {
      if (!proc.running()) throw new Error(`the processor exited:\n${proc.out.stderr.slice(-3000)}\n${proc.out.stdout.slice(-3000)}`);
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5_000) });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    const answering = () => health().catch((e) => (/exited/.test(e.message) ? Promise.reject(e) : null));
    const metricsLines = () =>
      proc.out.stdout
        .split('\n')
        .filter((l) => l.includes('"_aws"'))
        .map((l) => JSON.parse(l) as { Service: string; DeadLetters?: number; BatchFailures?: number });
    const total = (name: 'DeadLetters' | 'BatchFailures') => metricsLines().reduce((n, l) => n + (l[name] ?? 0), 0);

    await putOnStream(kinesis, STREAM, [salesOrderChange(1), salesOrderChange(2, 'c', { agreed_payment_date: 'next Tuesday' })], { maxEventsPerRecord: 1 });
    await until('the dead letter in /health', async () => (await answering())?.body.deadLetters === 1, 30_000, 100);
    const { status, body } = await health();
    expect(status).toBe(200);
    expect(body).toMatchObject({ healthy: true, events: 2, deadLetters: 1, batchFailures: 0 });
    expect(body.newestDeadLetters).toEqual([
      { table: 'sales_order', key: 2, column: 'agreed_payment_date', reason: expect.stringMatching(/^agreed_payment_date: not a YYYY-MM-DD date/) },
    ]);
    expect(JSON.stringify(body)).not.toContain('next Tuesday');
    await until('the DeadLetters metric', () => total('DeadLetters') === 1, 10_000, 100);
    expect(metricsLines().every((l) => l.Service === 'processor' && l.BatchFailures !== undefined)).toBe(true);

    await s3!.stop();
    s3 = null;
    await putOnStream(kinesis, STREAM, [salesOrderChange(3)], { maxEventsPerRecord: 1 });
    await until('/health to say 503', async () => (await answering())?.status === 503, 30_000, 100);
    expect((await health()).body).toMatchObject({ healthy: false, deadLetters: 1 });
    await until('the BatchFailures metric', () => total('BatchFailures') >= 1, 10_000, 100);
  });
});
