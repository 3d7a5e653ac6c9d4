/**
 * Deployment configuration: defaults here, overridden per deployment by the CDK context key
 * `totes` (a JSON object, in cdk.json, cdk.context.json or `-c totes='{...}'`), merged key by
 * key over these defaults and validated before anything is built.
 *
 * Two phases (docs/deploy.md): the defaults deploy everything but leave capture and the loader
 * stopped, since the stack cannot know the databases' credentials or network before they are
 * filled in; a second deployment with `capture.running` and `loader.running` starts them, and
 * is refused while no network reaches the databases.
 *
 * Alarm defaults are set against the pipeline's budget: a source commit must be in the
 * warehouse within 30 minutes. Each "behind" alarm fires after about 5-12 minutes of a stall,
 * which leaves a person at least 15 minutes of that budget to act.
 */
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { ConfigError } from '../lib/config.ts';

/** An existing VPC, imported by attributes so synth needs no AWS lookup. */
export interface ImportedVpc {
  vpcId: string;
  availabilityZones: string[];
  /** Subnets with a route to the databases and to AWS APIs (NAT or VPC endpoints). */
  privateSubnetIds: string[];
}

export interface DatabaseConfig {
  /** Secrets Manager secret (JSON host, port, username, password, dbname); created empty when absent. */
  secretArn?: string;
  /** The database's security group: given, it gets an ingress rule from the service that connects. */
  securityGroupId?: string;
  /** The database's host, given to the services (over the secret's `host`, which an RDS-managed secret lacks). */
  host?: string;
  port: number;
  /** The customer-managed KMS key that encrypts an imported secret: its readers get kms:Decrypt on it. */
  secretKmsKeyArn?: string;
}

export interface TotesConfig {
  stream: {
    mode: 'PROVISIONED' | 'ON_DEMAND';
    /** PROVISIONED only. One shard takes 1 MiB/s or 1,000 records/s of writes. */
    shardCount: number;
    /** How long a record stays replayable after a consumer stops (24 h is the cheapest). */
    retentionHours: number;
  };
  capture: {
    /** false (the default): the service exists with no task, until the source secret and network are real. */
    running: boolean;
    cpu: number;
    memoryMiB: number;
    slotName: string;
    publication: string;
    heartbeatSeconds: number;
    /** The health check fails past this slot lag, and ECS replaces the task. */
    maxHealthyLagSeconds: number;
  };
  processor: {
    memoryMiB: number;
    timeoutSeconds: number;
    batchSize: number;
    maxBatchingWindowSeconds: number;
    /** A batch still failing after this long goes to the on-failure queue (metadata only). */
    maxRecordAgeSeconds: number;
    retryAttempts: number;
  };
  loader: {
    /** false (the default): the loader service has no task, until the warehouse secret and network are real. */
    running: boolean;
    cpu: number;
    memoryMiB: number;
    /** How long the loader waits after a pass that found nothing new: each pass lists every shard's manifests (S3 LIST). */
    idlePollMs: number;
    warehouseSchema: string;
  };
  /** The ingestion bucket: the raw archive, the system of record `totes replay` rebuilds from. */
  archive: {
    infrequentAccessAfterDays: number;
    /** To Glacier Instant Retrieval, which GetObject reads at once: replay needs no restore. */
    glacierAfterDays: number;
    /** S3 Object Lock on every object version: COMPLIANCE (no one, root included, can delete or shorten it) or GOVERNANCE. */
    lockMode: 'COMPLIANCE' | 'GOVERNANCE';
    lockRetentionDays: number;
  };
  /** The processed bucket: micro-batches are loaded within minutes and can be rebuilt from the archive. */
  processed: {
    expireAfterDays: number;
    /** dead-letter/ holds records set aside for a person to look at: kept longer. */
    deadLetterExpireAfterDays: number;
  };
  /** Every log group (KMS-encrypted). */
  logRetentionDays: number;
  /** null: a new VPC with `natGateways` NAT gateways, which reaches neither database until you connect it. */
  vpc: ImportedVpc | null;
  natGateways: number;
  /** With vpc null: true once the stack's new VPC is connected to both databases (peering or Transit Gateway, routes, security groups). */
  newVpcConnected: boolean;
  source: DatabaseConfig;
  warehouse: DatabaseConfig;
  /** The databases' CA bundle, a file in infra/certs/ (infra/ca-bundle.ts); copied into the image and the loader bundle. */
  dbCaBundlePath: string;
  alarms: {
    /** How far Firehose, the stream's other consumer, reads behind the stream's newest record. */
    streamIteratorAgeSeconds: number;
    /** Oldest record the processor has not yet handled. */
    processorIteratorAgeSeconds: number;
    /** Processor invocation errors per 5 minutes, in two consecutive periods. */
    processorErrors: number;
    /** WAL the slot holds; keep it well under the source's max_slot_wal_keep_size (10 GB suggested). */
    slotLagBytes: number;
    /** How far capture is behind the newest source commit. */
    slotLagSeconds: number;
    /** Age of the newest source commit the warehouse fully reflects. */
    warehouseFreshnessSeconds: number;
    /** Age of the oldest record Firehose has not yet delivered to the archive. */
    firehoseFreshnessSeconds: number;
    /** Failed loader passes (each retried) per 5 minutes, in two consecutive periods. */
    loaderErrors: number;
    /** Age of a gap in a shard's loaded batches (a batch missing while later ones wait). */
    loaderGapAgeSeconds: number;
    /** Capture's PutRecords retries per minute, for 5 minutes on end: the stream refuses writes. */
    putRecordsRetriesPerMinute: number;
    /** Records Kinesis refused for throughput per minute, for 5 minutes on end. */
    writeThrottledRecordsPerMinute: number;
  };
}

export const DEFAULT_CONFIG: TotesConfig = {
  // One shard carries totesys's few thousand changes a day many times over; see docs/deploy.md for 1,000 changes/s.
  stream: { mode: 'PROVISIONED', shardCount: 1, retentionHours: 24 },
  // A heartbeat every 2 s moves the warehouse's watermark every 2 s on a quiet source (docs/deploy.md, freshness).
  capture: { running: false, cpu: 512, memoryMiB: 1024, slotName: 'totes_cdc', publication: 'totes_cdc', heartbeatSeconds: 2, maxHealthyLagSeconds: 300 },
  processor: {
    memoryMiB: 1024,
    timeoutSeconds: 120,
    batchSize: 1000,
    // No wait beyond the mapping's one poll a second per shard: a change is processed within about a second.
    maxBatchingWindowSeconds: 0,
    // Skipping a batch loses changes, so retry for hours (alarms fire within minutes); the
    // dead-lettered sequence range then stays replayable for the rest of the stream's retention.
    maxRecordAgeSeconds: 6 * 3600,
    retryAttempts: 10_000,
  },
  // 1 GiB as the Lambda it replaces had; one pass a second when idle (one S3 LIST per shard).
  loader: { running: false, cpu: 256, memoryMiB: 1024, idlePollMs: 1000, warehouseSchema: 'public' },
  // Seven years covers UK company and tax record keeping (six years from the end of the financial year).
  archive: { infrequentAccessAfterDays: 30, glacierAfterDays: 180, lockMode: 'COMPLIANCE', lockRetentionDays: 2557 },
  processed: { expireAfterDays: 30, deadLetterExpireAfterDays: 365 },
  // As long as the archive's lock (seven years): the logs say what happened to the data it holds
  // (dead letters, gaps, reprocessing); kept in CloudWatch at cents per GB-month (docs/deploy.md).
  logRetentionDays: RetentionDays.SEVEN_YEARS,
  vpc: null,
  natGateways: 1,
  newVpcConnected: false,
  // Optional keys are listed (as undefined) so that a misspelt override is reported.
  source: { secretArn: undefined, securityGroupId: undefined, host: undefined, port: 5432, secretKmsKeyArn: undefined },
  warehouse: { secretArn: undefined, securityGroupId: undefined, host: undefined, port: 5432, secretKmsKeyArn: undefined },
  dbCaBundlePath: 'infra/certs/rds-ca-bundle.pem',
  alarms: {
    // Firehose buffers 60 s: 5 minutes behind is a stall, not a buffer.
    streamIteratorAgeSeconds: 300,
    processorIteratorAgeSeconds: 300,
    processorErrors: 1,
    slotLagBytes: 1024 ** 3,
    // The same bound at which the health check makes ECS replace the task.
    slotLagSeconds: 300,
    // Normal freshness is seconds (2 s heartbeat, the loader continuous). 10 minutes for two
    // consecutive minutes alarms at about 12 minutes, 18 minutes before the 30-minute budget.
    warehouseFreshnessSeconds: 600,
    // The archive is not on the warehouse's path: 15 minutes against a 60 s buffer.
    firehoseFreshnessSeconds: 900,
    loaderErrors: 1,
    // A gap holds every later batch of its shard back: 15 minutes leaves half the budget.
    loaderGapAgeSeconds: 900,
    putRecordsRetriesPerMinute: 1,
    writeThrottledRecordsPerMinute: 1,
  },
};

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Override `base` with `patch` key by key; unknown keys are an error, so typos do not pass silently. */
function merge(base: Plain, patch: Plain, path: string): Plain {
  const out: Plain = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const where = path ? `${path}.${key}` : key;
    if (!(key in base)) throw new ConfigError(`unknown setting totes.${where}`);
    out[key] = isPlain(base[key]) && isPlain(value) ? merge(base[key] as Plain, value, where) : value;
  }
  return out;
}

function problems(c: TotesConfig): string[] {
  const found: string[] = [];
  const positiveInt = (v: unknown, name: string) => {
    if (!Number.isInteger(v) || (v as number) < 1) found.push(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  };
  if (!['PROVISIONED', 'ON_DEMAND'].includes(c.stream.mode)) found.push(`stream.mode must be PROVISIONED or ON_DEMAND, got ${JSON.stringify(c.stream.mode)}`);
  positiveInt(c.stream.shardCount, 'stream.shardCount');
  for (const [name, v] of [
    ['capture.running', c.capture.running],
    ['loader.running', c.loader.running],
    ['newVpcConnected', c.newVpcConnected],
  ] as const)
    if (typeof v !== 'boolean') found.push(`${name} must be true or false`);
  for (const [service, database, running] of [
    ['capture', 'source', c.capture.running],
    ['loader', 'warehouse', c.loader.running],
  ] as const) {
    if (running && !c.vpc && !c.newVpcConnected)
      found.push(
        `${service}.running needs a network that reaches the ${database}: set vpc to the databases' VPC (vpcId, availabilityZones, privateSubnetIds), or connect the VPC this stack created to both databases (peering or Transit Gateway, routes, security groups) and set newVpcConnected to true (docs/deploy.md, phase 2)`,
      );
  }
  if (c.vpc && c.newVpcConnected) found.push('newVpcConnected is for the VPC the stack creates: leave it false with an imported vpc');
  if (!(c.stream.retentionHours >= 24 && c.stream.retentionHours <= 8760)) found.push('stream.retentionHours must be between 24 and 8760');
  if (c.processor.maxRecordAgeSeconds > c.stream.retentionHours * 3600) found.push('processor.maxRecordAgeSeconds must not exceed the stream retention');
  if (!(c.processor.maxRecordAgeSeconds >= 60 && c.processor.maxRecordAgeSeconds <= 604_800))
    found.push('processor.maxRecordAgeSeconds must be between 60 and 604800');
  if (!(Number.isInteger(c.processor.retryAttempts) && c.processor.retryAttempts >= 0 && c.processor.retryAttempts <= 10_000))
    found.push('processor.retryAttempts must be an integer from 0 to 10000');
  if (!(c.processor.batchSize >= 1 && c.processor.batchSize <= 10_000)) found.push('processor.batchSize must be between 1 and 10000');
  if (!(c.processor.maxBatchingWindowSeconds >= 0 && c.processor.maxBatchingWindowSeconds <= 300))
    found.push('processor.maxBatchingWindowSeconds must be between 0 and 300');
  if (!(Number.isInteger(c.loader.idlePollMs) && c.loader.idlePollMs >= 100))
    found.push('loader.idlePollMs must be a whole number of milliseconds, at least 100');
  if (c.archive.infrequentAccessAfterDays < 30) found.push('archive.infrequentAccessAfterDays must be at least 30 (an S3 rule for STANDARD_IA)');
  if (c.archive.glacierAfterDays < c.archive.infrequentAccessAfterDays + 30)
    found.push('archive.glacierAfterDays must be at least 30 days after archive.infrequentAccessAfterDays');
  if (!['COMPLIANCE', 'GOVERNANCE'].includes(c.archive.lockMode))
    found.push(`archive.lockMode must be COMPLIANCE or GOVERNANCE, got ${JSON.stringify(c.archive.lockMode)}`);
  if (!(Number.isInteger(c.archive.lockRetentionDays) && c.archive.lockRetentionDays >= 1 && c.archive.lockRetentionDays <= 36_500))
    found.push('archive.lockRetentionDays must be a whole number of days from 1 to 36500');
  if (!(Number.isInteger(c.processed.expireAfterDays) && c.processed.expireAfterDays >= 7))
    found.push('processed.expireAfterDays must be at least 7: a micro-batch must outlive any stall of the loader the alarms let pass');
  if (!(Number.isInteger(c.processed.deadLetterExpireAfterDays) && c.processed.deadLetterExpireAfterDays >= c.processed.expireAfterDays))
    found.push('processed.deadLetterExpireAfterDays must be a whole number of days, at least processed.expireAfterDays');
  if (!Object.values(RetentionDays).includes(c.logRetentionDays as RetentionDays))
    found.push(`logRetentionDays must be one CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...), got ${c.logRetentionDays}`);
  if (c.vpc && !(c.vpc.vpcId && c.vpc.availabilityZones?.length && c.vpc.privateSubnetIds?.length === c.vpc.availabilityZones.length)) {
    found.push('vpc needs vpcId, availabilityZones and one privateSubnetIds entry per availability zone');
  }
  const ids: [string | undefined, RegExp, string][] = [
    [c.vpc?.vpcId, /^vpc-[0-9a-f]{8,17}$/, 'vpc.vpcId'],
    ...(c.vpc?.privateSubnetIds ?? []).map((id): [string, RegExp, string] => [id, /^subnet-[0-9a-f]{8,17}$/, 'vpc.privateSubnetIds']),
    [c.source.securityGroupId, /^sg-[0-9a-f]{8,17}$/, 'source.securityGroupId'],
    [c.warehouse.securityGroupId, /^sg-[0-9a-f]{8,17}$/, 'warehouse.securityGroupId'],
  ];
  for (const [id, format, name] of ids) if (id !== undefined && !format.test(id)) found.push(`${name}: ${JSON.stringify(id)} is not an AWS id of that kind`);
  if (!c.vpc && !(Number.isInteger(c.natGateways) && c.natGateways >= 1))
    found.push('natGateways must be at least 1 in a new VPC: the services reach AWS APIs through it');
  for (const db of ['source', 'warehouse'] as const) {
    const arn = c[db].secretArn;
    if (arn !== undefined && !/^arn:aws[\w-]*:secretsmanager:[\w-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/.test(arn)) {
      found.push(`${db}.secretArn must be a secret's complete ARN (ending in its 6-character suffix), got ${JSON.stringify(arn)}`);
    }
    const key = c[db].secretKmsKeyArn;
    if (key !== undefined && !(arn && /^arn:aws[\w-]*:kms:[\w-]+:\d{12}:key\/[\w-]+$/.test(key)))
      found.push(`${db}.secretKmsKeyArn must be a KMS key's ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), with ${db}.secretArn set, got ${JSON.stringify(key)}`);
    const host = c[db].host;
    if (host !== undefined && !(typeof host === 'string' && /^[A-Za-z0-9.-]+$/.test(host)))
      found.push(`${db}.host must be a host name or address, got ${JSON.stringify(host)}`);
    if (!(Number.isInteger(c[db].port) && c[db].port >= 1 && c[db].port <= 65_535))
      found.push(`${db}.port must be a port number, got ${JSON.stringify(c[db].port)}`);
  }
  for (const [name, value] of Object.entries(c.alarms)) if (!(typeof value === 'number' && value > 0)) found.push(`alarms.${name} must be a positive number`);
  return found;
}

/** The configuration for a deployment: `override` (the `totes` context value) over the defaults. */
export function resolveConfig(override: unknown): TotesConfig {
  let patch: unknown = override ?? {};
  if (typeof patch === 'string') {
    if (patch.trim() === '') patch = {};
    else {
      try {
        patch = JSON.parse(patch);
      } catch {
        throw new ConfigError('context "totes" must be a JSON object');
      }
    }
  }
  if (!isPlain(patch)) throw new ConfigError('context "totes" must be a JSON object');
  const config = merge(DEFAULT_CONFIG as unknown as Plain, patch, '') as unknown as TotesConfig;
  const found = problems(config);
  if (found.length) throw new ConfigError(`invalid totes configuration:\n  ${found.join('\n  ')}`);
  return config;
}
