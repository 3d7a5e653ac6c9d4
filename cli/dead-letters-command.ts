/**
 * `totes dead-letters`: the records the processor set aside, newest first, with their reasons
 * and events; with --values their rows' values, personal ones opened through the key store. The
 * reading is stores/dead-letter-reader.ts; this is flags, defaults and what gets printed. The
 * same flags give the dashboard its dead-letter panel (`totes dashboard`).
 */
import type { ParseArgsConfig } from 'node:util';
import type { S3Client } from '@aws-sdk/client-s3';
import { s3Client } from '../lib/aws.ts';
import { ENV } from '../lib/config.ts';
import { type DeadLetterView, NO_KEY_STORE, newestDeadLetters, showValue } from '../stores/dead-letter-reader.ts';
import { subjectKeysFrom } from '../stores/key-wrappers.ts';
import type { SubjectKeys } from '../stores/subject-keys.ts';
import { DEFAULT_STACK, KEYS_BUCKET, PROCESSED_BUCKET } from '../local/stack.ts';

/** In AWS (the processed bucket named by the environment) the defaults come from the environment; otherwise they are the local stack's. */
const inAws = Boolean(process.env[ENV.processedBucket]);

/** Where dead letters are read and their values opened: `totes dead-letters` and `totes dashboard` take the same flags. */
export const DEAD_LETTER_OPTIONS = {
  bucket: { type: 'string', default: process.env[ENV.processedBucket] ?? PROCESSED_BUCKET },
  's3-endpoint': {
    type: 'string',
    ...(process.env[ENV.s3Endpoint] || !inAws ? { default: process.env[ENV.s3Endpoint] ?? `http://127.0.0.1:${DEFAULT_STACK.s3Port}` } : {}),
  },
  'keys-bucket': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const DEAD_LETTER_HELP = `  --bucket NAME        the processed bucket (default env TOTES_PROCESSED_BUCKET, locally ${PROCESSED_BUCKET})
  --s3-endpoint URL    S3 endpoint (default env TOTES_S3_ENDPOINT, locally the stack's s3rver; unset in AWS)
  --keys-bucket NAME   the key store's bucket, to open personal values (default env TOTES_KEYS_BUCKET; locally
                       ${KEYS_BUCKET} once a master key is set)
The master key comes from the environment, as for the services: TOTES_KMS_KEY_ID (AWS) or
TOTES_MASTER_KEY_FILE (local; \`totes start\` prints its own). Without one, personal values show
as <${NO_KEY_STORE}>.`;

export interface DeadLetterSource {
  s3: S3Client;
  bucket: string;
  /** Null: no key store configured, personal values stay sealed. */
  keys: SubjectKeys | null;
}

/**
 * The bucket and, when `withKeys`, the key store the flags and environment name (a key store
 * named without a master key is a ConfigError).
 */
export function deadLetterSource(values: Record<string, string | boolean | undefined>, withKeys = true): DeadLetterSource {
  const s3 = s3Client({ s3Endpoint: values['s3-endpoint'] ? String(values['s3-endpoint']) : undefined });
  if (!withKeys) return { s3, bucket: String(values.bucket), keys: null };
  const masterKey = process.env[ENV.kmsKeyId] || process.env[ENV.masterKeyFile];
  const keysBucket = (values['keys-bucket'] as string | undefined) ?? process.env[ENV.keysBucket] ?? (masterKey && !inAws ? KEYS_BUCKET : undefined);
  const keys = keysBucket ? subjectKeysFrom({ ...process.env, [ENV.keysBucket]: keysBucket }, s3) : null;
  return { s3, bucket: String(values.bucket), keys };
}

const USAGE = `totes dead-letters [--values] [--limit N] [--shard ID] [options]

Lists the dead letters in the processed bucket, newest first: the records the processor set
aside whole, each with its object key, when it was written, its shard and sequence number, the
reason, and its events (source table, operation, row key, source LSN and commit time, and the
column at fault).

  --values             also print each event's row values, personal values (staff names and
                       e-mail, counterparty contacts) opened through the key store: this puts
                       personal data on your terminal, which is what the flag is for; an erased
                       subject's values print as [erased], and a value that cannot be opened
                       prints as <why>, never as its sealed text. Logs never carry them.
  --limit N            how many dead letters (default 20)
  --shard ID           only this shard's
${DEAD_LETTER_HELP}

Exit status: 0 listed (none is no error); 2 usage.`;

const line = (text: string) => process.stdout.write(`${text}\n`);

function printLetter(d: DeadLetterView, values: boolean): void {
  line(d.key);
  line(`  written ${d.at}  shard ${d.shard}  sequence ${d.sequenceNumber}`);
  line(`  reason: ${d.reason}`);
  for (const e of d.events) {
    const key =
      e.key &&
      Object.entries(e.key)
        .map(([c, v]) => `${c}=${v}`)
        .join(' ');
    const parts = [
      e.table ?? 'no table',
      e.op ?? 'not an event',
      key,
      e.lsn && `LSN ${e.lsn}`,
      e.commitTime && `committed ${e.commitTime}`,
      e.column && `column ${e.column}`,
    ];
    line(`  - ${parts.filter(Boolean).join('  ')}`);
    if (!values) continue;
    if (e.text !== undefined) line(`      ${JSON.stringify(e.text)}`);
    else if (e.values) for (const [c, v] of Object.entries(e.values)) line(`      ${c}: ${typeof v === 'string' ? JSON.stringify(v) : showValue(v)}`);
    else line('      (no row values)');
  }
}

export const deadLettersCommand = {
  summary: 'list the dead letters (records set aside, with reasons); --values opens their values through the key store',
  usage: USAGE,
  options: {
    values: { type: 'boolean', default: false },
    limit: { type: 'string', default: '20' },
    shard: { type: 'string' },
    ...DEAD_LETTER_OPTIONS,
  } satisfies NonNullable<ParseArgsConfig['options']>,

  async run(values: Record<string, string | boolean | undefined>): Promise<number> {
    const limit = Number(values.limit);
    if (!Number.isInteger(limit) || limit <= 0) {
      process.stderr.write(`totes dead-letters: --limit must be a positive whole number, got ${JSON.stringify(values.limit)}\n\n${USAGE}\n`);
      return 2;
    }
    const showValues = values.values === true;
    // without --values the key store is not read at all
    const source = deadLetterSource(values, showValues);
    try {
      const letters = await newestDeadLetters(source.s3, source.bucket, {
        limit,
        shard: values.shard as string | undefined,
        values: showValues,
        keys: source.keys,
      });
      const where = `s3://${source.bucket}/${values.shard ? ` (shard ${values.shard})` : ''}`;
      if (letters.length === 0) line(`no dead letters in ${where}`);
      for (const d of letters) printLetter(d, showValues);
      if (letters.length > 0) {
        const more = letters.length === limit ? ` (the newest ${limit}: --limit shows more)` : '';
        process.stderr.write(
          `${letters.length} dead letter${letters.length > 1 ? 's' : ''} in ${where}${more}; ` +
            (!showValues
              ? '--values prints their values\n'
              : source.keys
                ? `personal values opened through the key store s3://${source.keys.bucket}/\n`
                : `personal values stay sealed: no key store configured (set ${ENV.masterKeyFile} locally or ${ENV.kmsKeyId} on AWS, and --keys-bucket)\n`),
        );
      }
      return 0;
    } finally {
      source.s3.destroy();
    }
  },
};

/** The dashboard's dead-letter panel on `source`: the newest dead letters, values opened as --values opens them. */
export function deadLetterPanel(source: DeadLetterSource): (limit: number) => Promise<DeadLetterView[]> {
  return (limit) => newestDeadLetters(source.s3, source.bucket, { limit, values: true, keys: source.keys });
}
