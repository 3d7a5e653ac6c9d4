/**
 * The local S3 stores a PUT whole or not at all, as S3 does: a writer killed mid-PUT leaves no
 * object cut short, and a reader never sees one half written.
 */
import { request } from 'node:http';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import { freePort, type LocalS3, startS3 } from './servers.ts';

describe('the local S3', () => {
  let s3rver: LocalS3;
  let s3: S3Client;
  beforeAll(async () => {
    s3rver = await startS3({ port: await freePort(), buckets: ['cut-short'] });
    s3 = s3Client({ s3Endpoint: s3rver.endpoint });
  });
  afterAll(async () => {
    s3?.destroy();
    await s3rver?.stop();
  });

  it('stores nothing of a PUT whose writer dies before the body is all sent', async () => {
    const body = `{"manifest":"${'x'.repeat(64 * 1024)}"}`;
    // half the body, then the connection dropped, as when the processor is killed mid-PUT
    await new Promise<void>((resolve) => {
      const put = request(`${s3rver.endpoint}/cut-short/manifests/cut.json`, { method: 'PUT', headers: { 'content-length': body.length } });
      put.on('error', () => resolve());
      put.write(body.slice(0, body.length / 2), () => setTimeout(() => put.destroy(), 200));
      put.on('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 300));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'cut-short', Prefix: 'manifests/' }));
    expect(listed.Contents ?? []).toEqual([]);
    await expect(s3.send(new GetObjectCommand({ Bucket: 'cut-short', Key: 'manifests/cut.json' }))).rejects.toThrow(/NoSuchKey|does not exist/);

    // a whole PUT of the same key is stored whole
    await s3.send(new PutObjectCommand({ Bucket: 'cut-short', Key: 'manifests/cut.json', Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'cut-short', Key: 'manifests/cut.json' }));
    expect(await got.Body?.transformToString()).toBe(body);
    expect((await s3.send(new ListObjectsV2Command({ Bucket: 'cut-short', Prefix: 'manifests/' }))).Contents?.map((o) => [o.Key, o.Size])).toEqual([
      ['manifests/cut.json', body.length],
    ]);
  });
});
