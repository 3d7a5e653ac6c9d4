/**
 * docker compose's one-shot setup, after `totes seed`: applies what a DBA applies to totesys
 * (`totes source-setup`, unless its publication exists) and creates the Kinesis stream in
 * kinesalite. Idempotent, so `docker compose up` can run it again on the same volumes.
 */
import { CreateStreamCommand, DescribeStreamSummaryCommand, ResourceNotFoundException } from '@aws-sdk/client-kinesis';
import { sourceSetupSql } from '../capture/source-setup.ts';
import { ENV, required } from '../lib/config.ts';
import { kinesisClient } from '../lib/aws.ts';
import { poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';

/** Two shards, as `npm start` uses: enough to exercise per-shard ordering and freshness. */
const SHARDS = 2;
const PUBLICATION = 'totes_cdc';

/** Retry while the emulator starts listening. */
async function untilReachable<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (err instanceof ResourceNotFoundException || i === 60) throw err;
      console.log(`waiting for ${what}: ${(err as Error).message}`);
      await sleep(1000);
    }
  }
}

async function applySourceSetup(sourceUrl: string): Promise<void> {
  const pool = poolFor(sourceUrl, 1);
  try {
    const existing = await pool.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [PUBLICATION]);
    if (existing.rowCount) {
      console.log(`publication ${PUBLICATION} exists: source already set up`);
      return;
    }
    await pool.query(sourceSetupSql({ publication: PUBLICATION, role: 'totes_cdc' }));
    console.log('source set up as `totes source-setup` prints');
  } finally {
    await pool.end();
  }
}

async function createStream(endpoint: string, streamName: string): Promise<void> {
  const client = kinesisClient({ kinesisEndpoint: endpoint });
  try {
    const exists = await untilReachable('kinesis', async () => {
      try {
        await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
        return true;
      } catch (err) {
        if (err instanceof ResourceNotFoundException) return false;
        throw err;
      }
    });
    if (!exists) await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: SHARDS }));
    for (;;) {
      const d = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
      if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
      await sleep(100);
    }
    console.log(`stream ${streamName} active`);
  } finally {
    client.destroy();
  }
}

await applySourceSetup(required(process.env, ENV.sourceUrl, 'the totesys URL'));
await createStream(required(process.env, ENV.kinesisEndpoint, 'the Kinesis emulator URL'), required(process.env, ENV.streamName, 'the stream name'));
