/**
 * docker compose's one-shot setup, after `totes seed`: applies what a DBA applies to totesys
 * (`totes source-setup`), creates the Kinesis stream in kinesalite and, with
 * TOTES_MASTER_KEY_FILE set, writes the local master key of the personal-data key store into the
 * volume capture and the loader read it from (kept there: a new one would leave every sealed
 * value unreadable). Idempotent statement by
 * statement, so `docker compose up` can run it again on the same volumes, including after a
 * run that stopped half way (the role made, the publication not). A failure ends it with one
 * line saying what is wrong, like every service.
 */
import { CreateStreamCommand, DescribeStreamSummaryCommand, ResourceNotFoundException } from '@aws-sdk/client-kinesis';
import { sourceSetupSql } from '../capture/source-setup.ts';
import { ENV, required } from '../lib/config.ts';
import { kinesisClient } from '../lib/aws.ts';
import { describeFatal } from '../lib/fatal.ts';
import { poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { SQLSTATE } from '../lib/sqlstate.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';

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

/** SQLSTATEs that mean "this is already there": duplicate object (role, publication), schema, table. */
const ALREADY_THERE = new Set<string>([SQLSTATE.duplicate_object, SQLSTATE.duplicate_schema, SQLSTATE.duplicate_table]);

/** The statements of the setup script, comment lines left out. */
function setupStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n')
    .split(';')
    .map((statement) => statement.replace(/--[^\n]*/g, '').trim())
    .filter(Boolean);
}

async function applySourceSetup(sourceUrl: string): Promise<void> {
  const pool = poolFor(sourceUrl, 1);
  try {
    for (const statement of setupStatements(sourceSetupSql({ publication: PUBLICATION, role: 'totes_cdc' }))) {
      const what = statement.split('\n')[0].slice(0, 80);
      try {
        await pool.query(statement);
        console.log(`applied: ${what}`);
      } catch (err) {
        if (!ALREADY_THERE.has((err as { code?: string }).code ?? '')) throw err;
        console.log(`already there: ${what} (${(err as Error).message})`);
      }
    }
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

try {
  const masterKeyFile = process.env[ENV.masterKeyFile];
  if (masterKeyFile) {
    LocalMasterKey.fromFile(masterKeyFile, true);
    console.log(`master key in ${masterKeyFile}`);
  }
  await applySourceSetup(required(process.env, ENV.sourceUrl, 'the totesys URL'));
  await createStream(required(process.env, ENV.kinesisEndpoint, 'the Kinesis emulator URL'), required(process.env, ENV.streamName, 'the stream name'));
} catch (err) {
  const fatal = describeFatal(err, { [ENV.sourceUrl]: process.env[ENV.sourceUrl], [ENV.kinesisEndpoint]: process.env[ENV.kinesisEndpoint] });
  console.error(`compose-init: ${fatal.line}`);
  process.exit(fatal.exitCode);
}
