/**
 * An AWS call against an endpoint that went silent (black-holed: the connection open, nothing
 * answering) ends at its request timeout, through the SDK's retries, instead of waiting for ever.
 */
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from './retry.ts';
import { startLocalAws, type LocalAws } from '../test/harness.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { kinesisClient, s3Client } from './aws.ts';

const TIMEOUT_MS = 500;
/** The SDK's standard retry: 3 attempts, with a backoff under a second between them here. */
const ATTEMPTS = 3;

describe('AWS clients', () => {
  let aws: LocalAws;
  const proxies: Awaited<ReturnType<typeof startProxy>>[] = [];
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'changes', shards: 1, buckets: [] });
  });
  afterAll(async () => {
    for (const p of proxies) await p.close();
    await aws?.stop();
  });

  /** The endpoint through a proxy that black-holes. */
  async function silent(endpoint: string): Promise<string> {
    const url = new URL(endpoint);
    const proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
    proxies.push(proxy);
    await proxy.open();
    proxy.blackHole();
    return `http://127.0.0.1:${proxy.port}`;
  }

  it('end a call to a black-holed endpoint at the request timeout, after the retries', async () => {
    const kinesis = kinesisClient({ kinesisEndpoint: await silent(aws.kinesisEndpoint), requestTimeoutMs: TIMEOUT_MS });
    const s3 = s3Client({ s3Endpoint: await silent(aws.s3Endpoint), requestTimeoutMs: TIMEOUT_MS });
    try {
      for (const call of [() => kinesis.send(new ListStreamsCommand({})), () => s3.send(new ListBucketsCommand({}))]) {
        const from = Date.now();
        const err = await Promise.race([
          call().then(
            () => null,
            (e: Error & { $metadata?: { attempts?: number } }) => e,
          ),
          sleep(20_000).then(() => Object.assign(new Error('still waiting after 20 s'), { $metadata: { attempts: 0 } })),
        ]);
        const ms = Date.now() - from;
        expect(err?.name).toBe('TimeoutError');
        expect(err?.$metadata?.attempts).toBe(ATTEMPTS);
        expect(ms).toBeGreaterThanOrEqual(ATTEMPTS * TIMEOUT_MS);
        expect(ms).toBeLessThan(ATTEMPTS * TIMEOUT_MS + 5_000);
      }
    } finally {
      kinesis.destroy();
      s3.destroy();
    }
  });
});
