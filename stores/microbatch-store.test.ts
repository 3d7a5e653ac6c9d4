/** The processed bucket's manifests against s3rver: read back checked, so one the loader cannot use stops it, named, instead of being misread. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import { freePort, startS3, type LocalS3 } from '../local/servers.ts';
import { MicroBatchStore } from './microbatch-store.ts';

describe('MicroBatchStore manifests', () => {
  let s3rver: LocalS3;
  let store: MicroBatchStore;
  beforeAll(async () => {
    s3rver = await startS3({ port: await freePort(), buckets: ['processed'] });
    store = new MicroBatchStore(s3Client({ s3Endpoint: s3rver.endpoint }), 'processed');
  });
  afterAll(async () => {
    store?.s3.destroy();
    await s3rver?.stop();
  });

  it('reads back the manifest it wrote, and refuses one whose fields are not a manifest, naming the object and the field', async () => {
    const batchId = MicroBatchStore.batchId('shardId-000000000000', '1', '2');
    const manifest = {
      batchId,
      shard: 'shardId-000000000000',
      firstSequence: '1',
      lastSequence: '2',
      events: 2,
      tables: [],
      heartbeat: null,
      maxCommitTime: null,
      deadLetters: 0,
    };
    await store.writeManifest(manifest);
    expect(await store.getManifest(store.manifestKey(batchId))).toEqual(manifest);

    const other = MicroBatchStore.batchId('shardId-000000000000', '3', '4');
    await store.putOnce(store.manifestKey(other), JSON.stringify({ ...manifest, events: -1 }), 'application/json');
    await expect(store.getManifest(store.manifestKey(other))).rejects.toThrow(`manifest ${store.manifestKey(other)}: events: must be a count, got -1`);
  });
});
