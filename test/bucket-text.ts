/** Test helper: every object of a bucket as readable text, gzip opened and Parquet decoded to its rows, to search for values. */
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { LoadTableName } from '../formats/load-tables.ts';
import { decodeParquet } from '../formats/parquet.ts';

export async function bucketText(s3: S3Client, bucket: string): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const { Key } of page.Contents ?? []) {
      const bytes = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body!.transformToByteArray());
      const parquet = /\/(\w+)\.parquet$/.exec(Key!);
      const text = Key!.endsWith('.gz')
        ? gunzipSync(bytes).toString('utf8')
        : parquet
          ? JSON.stringify(await decodeParquet(parquet[1] as LoadTableName, bytes))
          : bytes.toString('utf8');
      texts.set(`${bucket}/${Key}`, text);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return texts;
}
