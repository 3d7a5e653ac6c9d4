/**
 * `totes doctor`: checks, against the real endpoints (or the local stack's), everything the
 * pipeline needs of what it does not own and of what the stack deployed, and prints one line
 * per check with the fix for each that does not hold. Exit 0 only when every check holds.
 * Configured like the services: the same TOTES_* variables (the stack's outputs), so what it
 * checks is what they will use.
 */
import type { ParseArgsConfig } from 'node:util';
import { ConfigError, databaseUrl, ENV } from '../lib/config.ts';
import pg, { connectionConfig } from '../lib/pg.ts';
import { DEFAULT_STACK, INGESTION_BUCKET, PROCESSED_BUCKET, STREAM_NAME } from '../local/stack.ts';
import { checkBuckets, checkSecret, checkStream } from './doctor-aws.ts';
import { type Area, AREAS, attempt, type Check, fail, formatReport, ok, skip } from './doctor-checks.ts';
import { judgeSource, readSourceFacts } from './doctor-source.ts';
import { judgeWarehouse, readWarehouseFacts } from './doctor-warehouse.ts';

type Env = Record<string, string | undefined>;

const CONNECT_TIMEOUT_MS = 10_000;
/** The warehouse-freshness alarm's default threshold (infra/config.ts). */
const DEFAULT_MAX_FRESHNESS_SECONDS = 600;

/** The local stack's settings (`npm start`), under whatever the environment sets. */
function withLocalDefaults(env: Env): Env {
  const local: Env = {
    [ENV.sourceUrl]: `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.sourcePort}/totesys`,
    [ENV.warehouseUrl]: `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.warehousePort}/warehouse`,
    [ENV.streamName]: STREAM_NAME,
    [ENV.kinesisEndpoint]: `http://127.0.0.1:${DEFAULT_STACK.kinesisPort}`,
    [ENV.ingestionBucket]: INGESTION_BUCKET,
    [ENV.processedBucket]: PROCESSED_BUCKET,
    [ENV.s3Endpoint]: `http://127.0.0.1:${DEFAULT_STACK.s3Port}`,
  };
  const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v));
  return { ...local, ...set };
}

/** One connection to `url` for `fn`, as the services connect (TLS verified with TOTES_DB_CA_FILE). */
export async function withClient<T>(url: string, fn: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ ...connectionConfig(url), connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  db.on('error', () => undefined); // a dropped connection fails the query in progress, which reports it
  await db.connect();
  try {
    return await fn(db);
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** Where a database is: its URL, from TOTES_*_URL or its secret; null (with the reason) when there is none to use. */
async function databaseTarget(env: Env, which: 'source' | 'warehouse', secretChecks: Check[]): Promise<{ url: string } | { reason: Check }> {
  const area = which;
  const urlVar = which === 'source' ? ENV.sourceUrl : ENV.warehouseUrl;
  const secretVar = which === 'source' ? ENV.sourceSecret : ENV.warehouseSecret;
  if (!env[urlVar] && !env[secretVar])
    return {
      reason: fail(
        area,
        `neither ${urlVar} nor ${secretVar} is set`,
        `set ${secretVar} to the stack's ${which === 'source' ? 'SourceSecretArn' : 'WarehouseSecretArn'} output`,
      ),
    };
  if (!env[urlVar] && secretChecks.some((c) => c.status === 'fail'))
    return { reason: skip(area, `not checked: its secret does not hold usable credentials (above)`) };
  return { url: await databaseUrl(env, which) };
}

const describeTarget = (url: string) => {
  const u = new URL(url);
  return `${decodeURIComponent(u.username)}@${u.hostname}:${u.port || 5432}${u.pathname}${process.env[ENV.caFile] ? ', TLS verified' : ''}`;
};

export async function runDoctor(env: Env, only: readonly Area[], o: { maxFreshnessSeconds: number }): Promise<Check[]> {
  const checks: Check[] = [];
  const wanted = (a: Area) => only.includes(a);
  const secretChecks: Record<'source' | 'warehouse', Check[]> = { source: [], warehouse: [] };
  for (const which of ['source', 'warehouse'] as const) {
    const arn = env[which === 'source' ? ENV.sourceSecret : ENV.warehouseSecret];
    const url = env[which === 'source' ? ENV.sourceUrl : ENV.warehouseUrl];
    if (arn && !url) secretChecks[which] = await checkSecret(which, arn, env[which === 'source' ? ENV.sourceHost : ENV.warehouseHost]);
    if (wanted('secrets'))
      checks.push(
        ...(arn && !url
          ? secretChecks[which]
          : [skip('secrets', `${which}: a URL is given (${which === 'source' ? ENV.sourceUrl : ENV.warehouseUrl}), no secret to check`)]),
      );
  }
  const database = async (which: 'source' | 'warehouse', judge: (db: pg.Client) => Promise<Check[]>) => {
    const target = await databaseTarget(env, which, secretChecks[which]).catch((err: Error) => ({
      reason: fail(which, `its credentials cannot be read: ${err.message}`, 'set AWS_REGION and credentials that may read the secret'),
    }));
    if ('reason' in target) return [target.reason];
    return attempt(
      which,
      `cannot connect to ${describeTarget(target.url)}`,
      'check the host and port, the security groups between here and the database, and the credentials',
      () => withClient(target.url, async (db) => [ok(which, `connected to ${describeTarget(target.url)}`), ...(await judge(db))]),
    );
  };
  if (wanted('source')) {
    const slot = env[ENV.slotName] || 'totes_cdc';
    const publication = env[ENV.publication] || 'totes_cdc';
    checks.push(...(await database('source', async (db) => judgeSource(await readSourceFacts(db, publication), { slot, publication }))));
  }
  if (wanted('stream')) {
    const name = env[ENV.streamName];
    checks.push(
      ...(name
        ? await checkStream(name, env[ENV.kinesisEndpoint])
        : [fail('stream', `${ENV.streamName} is not set`, "set it to the stack's StreamName output")]),
    );
  }
  if (wanted('buckets')) {
    const [ingestion, processed] = [env[ENV.ingestionBucket], env[ENV.processedBucket]];
    checks.push(
      ...(ingestion && processed
        ? await checkBuckets({ ingestion, processed, endpoint: env[ENV.s3Endpoint] })
        : [
            fail(
              'buckets',
              `${ENV.ingestionBucket} and ${ENV.processedBucket} must both be set`,
              "set them to the stack's IngestionBucketName and ProcessedBucketName outputs",
            ),
          ]),
    );
  }
  if (wanted('warehouse')) {
    const schema = env[ENV.warehouseSchema] || 'public';
    checks.push(...(await database('warehouse', async (db) => judgeWarehouse(await readWarehouseFacts(db, schema), o))));
  }
  return checks;
}

const USAGE = `totes doctor [--local] [--only AREAS] [--max-freshness SECONDS]

Checks what the pipeline needs and prints the fix for each check that fails; exit 0 only when
all hold. Areas: ${AREAS.join(', ')} (default: all).
  secrets    the database secrets are readable, complete, and no longer the stack's placeholder
  source     Postgres version, wal_level, replication role, slots and WAL senders, the publication
             (exactly the 11 tables; tables of schema totes_cdc are capture's own), replica identity,
             the role's grants, totes_cdc.snapshot_progress, max_slot_wal_keep_size
  stream     the Kinesis stream is active (and encrypted)
  buckets    both buckets can be listed; the archive is versioned and under Object Lock
  warehouse  the star schema (or the right to create it) and freshness

  --local               fill what the environment leaves unset with the local stack's settings (npm start)
  --only AREAS          comma-separated areas, e.g. --only secrets
  --max-freshness N     the warehouse must reflect commits up to N seconds old (default ${DEFAULT_MAX_FRESHNESS_SECONDS})

Environment, as for the services (the stack's outputs):
  TOTES_SOURCE_URL | TOTES_SOURCE_SECRET_ARN, TOTES_WAREHOUSE_URL | TOTES_WAREHOUSE_SECRET_ARN,
  TOTES_STREAM_NAME, TOTES_INGESTION_BUCKET, TOTES_PROCESSED_BUCKET, TOTES_SLOT_NAME, TOTES_PUBLICATION,
  TOTES_WAREHOUSE_SCHEMA, TOTES_DB_CA_FILE (verify TLS, e.g. infra/certs/rds-ca-bundle.pem),
  TOTES_KINESIS_ENDPOINT / TOTES_S3_ENDPOINT (emulators only), AWS_REGION and AWS credentials.`;

export const doctorCommand = {
  summary: 'check the source, the secrets, the stream, the buckets and the warehouse, and say what to fix',
  usage: USAGE,
  options: {
    local: { type: 'boolean', default: false },
    only: { type: 'string', default: AREAS.join(',') },
    'max-freshness': { type: 'string', default: String(DEFAULT_MAX_FRESHNESS_SECONDS) },
  } satisfies NonNullable<ParseArgsConfig['options']>,
  async run(values: Record<string, string | boolean | undefined>): Promise<number> {
    const only = String(values.only)
      .split(',')
      .map((a) => a.trim());
    const unknown = only.filter((a) => !AREAS.includes(a as Area));
    if (unknown.length) throw new ConfigError(`--only: unknown area ${unknown.join(', ')}; areas are ${AREAS.join(', ')}`);
    const maxFreshnessSeconds = Number(values['max-freshness']);
    if (!(maxFreshnessSeconds > 0)) throw new ConfigError(`--max-freshness must be a number of seconds, got ${JSON.stringify(values['max-freshness'])}`);
    const env = values.local ? withLocalDefaults(process.env) : process.env;
    const checks = await runDoctor(env, only as Area[], { maxFreshnessSeconds });
    process.stdout.write(formatReport(checks));
    return checks.some((c) => c.status === 'fail') ? 1 : 0;
  },
};
