/**
 * Service configuration from the environment: the same variables for the Fargate task, the
 * Lambdas, docker compose and `totes run`. A missing or malformed value fails at start with
 * a message that says which variable and what to put in it.
 *
 * Database credentials come either as a URL (local, compose) or as a Secrets Manager secret
 * ARN (AWS): the secret is read at start, never placed in the environment or logged.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { FatalError } from './fatal.ts';

/** A missing or malformed setting: fatal, exit status 2. */
export class ConfigError extends FatalError {
  override name = 'ConfigError';
  constructor(message: string) {
    super(message, 2, 'configuration error');
  }
}

export const ENV = {
  sourceUrl: 'TOTES_SOURCE_URL',
  sourceSecret: 'TOTES_SOURCE_SECRET_ARN',
  warehouseUrl: 'TOTES_WAREHOUSE_URL',
  warehouseSecret: 'TOTES_WAREHOUSE_SECRET_ARN',
  /** With a secret ARN: the host and port (the deployment's settings), over the secret's own. */
  sourceHost: 'TOTES_SOURCE_HOST',
  sourcePort: 'TOTES_SOURCE_PORT',
  warehouseHost: 'TOTES_WAREHOUSE_HOST',
  warehousePort: 'TOTES_WAREHOUSE_PORT',
  streamName: 'TOTES_STREAM_NAME',
  ingestionBucket: 'TOTES_INGESTION_BUCKET',
  processedBucket: 'TOTES_PROCESSED_BUCKET',
  kinesisEndpoint: 'TOTES_KINESIS_ENDPOINT',
  s3Endpoint: 'TOTES_S3_ENDPOINT',
  slotName: 'TOTES_SLOT_NAME',
  decoder: 'TOTES_DECODER',
  publication: 'TOTES_PUBLICATION',
  heartbeatSeconds: 'TOTES_HEARTBEAT_SECONDS',
  healthPort: 'TOTES_HEALTH_PORT',
  maxHealthyLagSeconds: 'TOTES_MAX_HEALTHY_LAG_SECONDS',
  sourceSilenceSeconds: 'TOTES_SOURCE_SILENCE_SECONDS',
  metricsSeconds: 'TOTES_METRICS_SECONDS',
  warehouseSchema: 'TOTES_WAREHOUSE_SCHEMA',
  /** How long the loader waits after a pass that found nothing new (milliseconds). */
  loaderIdleMs: 'TOTES_LOADER_IDLE_MS',
  caFile: 'TOTES_DB_CA_FILE',
  /** The personal-data key store (stores/subject-keys.ts): its bucket, and the master key that wraps its keys (KMS on AWS, a file locally). */
  keysBucket: 'TOTES_KEYS_BUCKET',
  kmsKeyId: 'TOTES_KMS_KEY_ID',
  masterKeyFile: 'TOTES_MASTER_KEY_FILE',
} as const;

type Env = Record<string, string | undefined>;

export function required(env: Env, name: string, what: string): string {
  const v = env[name];
  if (!v) throw new ConfigError(`${name} is not set: set it to ${what}`);
  return v;
}

export function optionalNumber(env: Env, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`${name}=${JSON.stringify(v)} is not a non-negative number`);
  return n;
}

/**
 * A Postgres URL from NAME_URL, or built from the secret NAME_SECRET_ARN points at: credentials
 * from the secret, host and port from NAME_HOST and NAME_PORT when set (an RDS-managed secret
 * holds only username and password), else from the secret.
 */
export async function databaseUrl(env: Env, which: 'source' | 'warehouse'): Promise<string> {
  const [urlVar, secretVar, hostVar, portVar] =
    which === 'source'
      ? [ENV.sourceUrl, ENV.sourceSecret, ENV.sourceHost, ENV.sourcePort]
      : [ENV.warehouseUrl, ENV.warehouseSecret, ENV.warehouseHost, ENV.warehousePort];
  if (env[urlVar]) {
    if (!/^postgres(ql)?:\/\//.test(env[urlVar]!)) throw new ConfigError(`${urlVar} must be a postgres:// URL`);
    return env[urlVar]!;
  }
  const arn = env[secretVar];
  if (!arn)
    throw new ConfigError(
      `set ${urlVar} to a postgres:// URL, or ${secretVar} to the ARN of a Secrets Manager secret holding host, port, username, password and dbname`,
    );
  const client = new SecretsManagerClient({});
  try {
    const out = await client.send(new GetSecretValueCommand({ SecretId: arn }));
    const s = JSON.parse(out.SecretString ?? '{}');
    for (const k of ['username', 'password']) if (!s[k]) throw new ConfigError(`secret ${secretVar} has no "${k}"`);
    const host = env[hostVar] || s.host;
    if (!host) throw new ConfigError(`secret ${secretVar} has no "host": set ${hostVar} (the ${which}.host setting) or put "host" in the secret`);
    const port = env[portVar] ? optionalNumber(env, portVar, 5432) : (s.port ?? 5432);
    return `postgres://${encodeURIComponent(s.username)}:${encodeURIComponent(s.password)}@${host}:${port}/${s.dbname ?? (which === 'source' ? 'totesys' : 'warehouse')}`;
  } finally {
    client.destroy();
  }
}
