/**
 * `totes forget`: erase a data subject. The work is erasure/forget.ts; this is flags, defaults
 * and what gets printed.
 */
import type { ParseArgsConfig } from 'node:util';
import { forget } from '../erasure/forget.ts';
import type { Subject } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { ConfigError, databaseUrl, ENV } from '../lib/config.ts';
import { poolFor } from '../lib/pg.ts';
import { subjectKeysFrom } from '../stores/key-wrappers.ts';
import { DEFAULT_STACK, KEYS_BUCKET } from '../local/stack.ts';

const say = (line: string) => process.stderr.write(`${line}\n`);

/** In AWS (TOTES_INGESTION_BUCKET set) the defaults come from the environment; otherwise they are the local stack's. */
const inAws = Boolean(process.env[ENV.ingestionBucket]);

const USAGE = `totes forget --staff ID | --counterparty ID [--dry-run] [options]

Erases a data subject (a staff member, or a counterparty's commercial and delivery contacts):
records the erasure in the key store and destroys their key, so every archived, streamed or
dead-lettered copy of their personal values is unreadable for good and later changes arrive
erased; waits out the key cache of running services (up to 60 s after the erasure); then
replaces their personal values with [erased] in every warehouse table that holds them
(dimension, history, any other schema). Idempotent: run it again to see nothing left.

  --staff ID             the staff member (staff_id)
  --counterparty ID      the counterparty whose contacts to erase (counterparty_id)
  --dry-run              say what it would touch, change nothing
  --warehouse URL        warehouse (default env TOTES_WAREHOUSE_URL or TOTES_WAREHOUSE_SECRET_ARN, locally the stack's)
  --keys-bucket NAME     the key store's bucket (default env TOTES_KEYS_BUCKET, locally ${KEYS_BUCKET})
  --s3-endpoint URL      S3 endpoint (default env TOTES_S3_ENDPOINT, locally the stack's s3rver; unset in AWS)
The master key comes from the environment, as for the services: TOTES_KMS_KEY_ID (AWS) or
TOTES_MASTER_KEY_FILE (local).

Exit status: 0 done (or nothing left to do); 2 usage.`;

function subjectFrom(values: Record<string, string | boolean | undefined>): Subject {
  const given = (['staff', 'counterparty'] as const).filter((k) => values[k] !== undefined);
  if (given.length !== 1) throw new RangeError('give one of --staff ID or --counterparty ID');
  const id = Number(values[given[0]]);
  if (!Number.isInteger(id) || id <= 0) throw new RangeError(`--${given[0]} must be a positive whole number, got ${JSON.stringify(values[given[0]])}`);
  return { kind: given[0], id };
}

export const forgetCommand = {
  summary: 'erase a staff member or a counterparty contact everywhere (crypto-shredding); --dry-run says what it would touch',
  usage: USAGE,
  options: {
    staff: { type: 'string' },
    counterparty: { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    warehouse: {
      type: 'string',
      ...(process.env[ENV.warehouseUrl] || !inAws
        ? { default: process.env[ENV.warehouseUrl] ?? `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.warehousePort}/warehouse` }
        : {}),
    },
    'keys-bucket': { type: 'string', default: process.env[ENV.keysBucket] ?? KEYS_BUCKET },
    's3-endpoint': {
      type: 'string',
      ...(process.env[ENV.s3Endpoint] || !inAws ? { default: process.env[ENV.s3Endpoint] ?? `http://127.0.0.1:${DEFAULT_STACK.s3Port}` } : {}),
    },
  } satisfies NonNullable<ParseArgsConfig['options']>,

  async run(values: Record<string, string | boolean | undefined>): Promise<number> {
    let subject: Subject;
    try {
      subject = subjectFrom(values);
    } catch (err) {
      say(`totes forget: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    const dryRun = values['dry-run'] === true;
    const s3 = s3Client({ s3Endpoint: values['s3-endpoint'] ? String(values['s3-endpoint']) : undefined });
    const keys = subjectKeysFrom({ ...process.env, [ENV.keysBucket]: String(values['keys-bucket']) }, s3);
    if (!keys) throw new ConfigError(`no key store: set ${ENV.keysBucket} or --keys-bucket`);
    const warehouse = poolFor(values.warehouse ? String(values.warehouse) : await databaseUrl(process.env, 'warehouse'), 2);
    const name = `${subject.kind} ${subject.id}`;
    try {
      const result = await forget({
        keys,
        warehouse,
        subject,
        dryRun,
        onWait: (ms) => say(`waiting ${Math.ceil(ms / 1000)} s: running services may hold the key in memory that long after the erasure`),
      });
      const keyLine = {
        destroyed: `key destroyed and the erasure recorded in s3://${keys.bucket}/ at ${result.erasedAt}`,
        recorded: `no key had been made yet: the erasure is recorded in s3://${keys.bucket}/ at ${result.erasedAt}, so none will be`,
        'already erased': `already erased at ${result.erasedAt}: its key is gone`,
        'would destroy': `would destroy its key in s3://${keys.bucket}/ and record the erasure`,
        'would record': `has no key yet: would record the erasure in s3://${keys.bucket}/ so none is made`,
      }[result.key];
      say(`${dryRun ? '(dry run) ' : ''}${name}: ${keyLine}`);
      for (const t of result.tables)
        say(`  ${`${t.schema}.${t.table}`.padEnd(36)} ${String(t.rows).padStart(5)} rows ${dryRun ? 'to erase' : 'erased'} (${t.columns.join(', ')})`);
      if (result.tables.length === 0) say('  no warehouse table holds these personal columns');
      say(
        dryRun
          ? 'nothing changed'
          : `${name} is erased: the archive keeps its objects (locked), their copies of these values unreadable without the key; \`totes forget --dry-run\` shows 0 rows left`,
      );
      return 0;
    } finally {
      await warehouse.end();
      s3.destroy();
    }
  },
};
