/**
 * Deployment configuration: each setting declared once below, with its type, its check and its
 * default; a deployment overrides settings by the CDK context key `totes` (a JSON object, in
 * cdk.json, cdk.context.json or `-c totes='{...}'`), key by key, and the whole is checked
 * before anything is built: each setting, then the rules between settings.
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
import * as v from '@badrap/valita';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { check } from '../formats/schema.ts';
import { ConfigError } from '../lib/config.ts';

/** A setting: its type and check, and its value when the context leaves it out. */
const setting = <T>(type: v.Type<T>, fallback: T) => type.optional(() => fallback);
/** A setting with no default: left out, it is undefined, still a key, so DEFAULT_CONFIG lists every setting. */
const unset = <T>(type: v.Type<T>) => type.optional(() => undefined);
/** A group of settings: left out, or any of its settings left out, it takes their defaults. */
const group = <T>(settings: v.Type<T>) => settings.optional(() => settings.parse({}));

const number = (holds: (n: number) => boolean, message: string) => v.number().assert(holds, message);
const oneOf = <T extends string>(...values: T[]) => v.union(...values.map((x) => v.literal(x)));
const positiveInteger = number((n) => Number.isInteger(n) && n >= 1, 'must be a positive integer');
const positive = number((n) => n > 0, 'must be a positive number');
const between = (min: number, max: number) => number((n) => n >= min && n <= max, `must be between ${min} and ${max}`);
const awsId = (kind: 'vpc' | 'subnet' | 'sg') =>
  v.string().assert((id) => new RegExp(`^${kind}-[0-9a-f]{8,17}$`).test(id), `is not an AWS id of that kind (${kind}-...)`);

/** An existing VPC, imported by attributes so synth needs no AWS lookup. */
const importedVpc = v
  .object({
    vpcId: awsId('vpc'),
    availabilityZones: v.array(v.string()).assert((zones) => zones.length > 0, 'must name at least one availability zone'),
    /** Subnets with a route to the databases and to AWS APIs (NAT or VPC endpoints). */
    privateSubnetIds: v.array(awsId('subnet')),
  })
  .assert((vpc) => vpc.privateSubnetIds.length === vpc.availabilityZones.length, {
    message: 'needs one entry per availability zone (vpc.availabilityZones)',
    path: ['privateSubnetIds'],
  });

const database = (name: 'source' | 'warehouse') =>
  group(
    v
      .object({
        /** Secrets Manager secret (JSON host, port, username, password, dbname); created empty when absent. */
        secretArn: unset(
          v
            .string()
            .assert(
              (arn) => /^arn:aws[\w-]*:secretsmanager:[\w-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/.test(arn),
              "must be a secret's complete ARN (ending in its 6-character suffix)",
            ),
        ),
        /** The database's security group: given, it gets an ingress rule from the service that connects. */
        securityGroupId: unset(awsId('sg')),
        /** The database's host, given to the services (over the secret's `host`, which an RDS-managed secret lacks). */
        host: unset(v.string().assert((host) => /^[A-Za-z0-9.-]+$/.test(host), 'must be a host name or address')),
        port: setting(
          number((n) => Number.isInteger(n) && n >= 1 && n <= 65_535, 'must be a port number'),
          5432,
        ),
        /** The customer-managed KMS key that encrypts an imported secret: its readers get kms:Decrypt on it. */
        secretKmsKeyArn: unset(
          v.string().assert((key) => /^arn:aws[\w-]*:kms:[\w-]+:\d{12}:key\/[\w-]+$/.test(key), "must be a KMS key's ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"),
        ),
      })
      .assert((db) => db.secretKmsKeyArn === undefined || db.secretArn !== undefined, {
        message: `is the key of an imported secret: set ${name}.secretArn with it`,
        path: ['secretKmsKeyArn'],
      }),
  );

const settings = v.object({
  // One shard carries totesys's few thousand changes a day many times over; see docs/deploy.md for 1,000 changes/s.
  stream: group(
    v.object({
      mode: setting(oneOf('PROVISIONED', 'ON_DEMAND'), 'PROVISIONED'),
      /** PROVISIONED only. One shard takes 1 MiB/s or 1,000 records/s of writes. */
      shardCount: setting(positiveInteger, 1),
      /** How long a record stays replayable after a consumer stops (24 h is the cheapest). */
      retentionHours: setting(between(24, 8760), 24),
    }),
  ),
  capture: group(
    v.object({
      /** false (the default): the service exists with no task, until the source secret and network are real. */
      running: setting(v.boolean(), false),
      cpu: setting(v.number(), 512),
      memoryMiB: setting(v.number(), 1024),
      slotName: setting(v.string(), 'totes_cdc'),
      publication: setting(v.string(), 'totes_cdc'),
      // A heartbeat every 2 s moves the warehouse's watermark every 2 s on a quiet source (docs/deploy.md, freshness).
      heartbeatSeconds: setting(v.number(), 2),
      /** The health check fails past this slot lag, and ECS replaces the task. */
      maxHealthyLagSeconds: setting(v.number(), 300),
    }),
  ),
  processor: group(
    v.object({
      memoryMiB: setting(v.number(), 1024),
      timeoutSeconds: setting(v.number(), 120),
      batchSize: setting(between(1, 10_000), 1000),
      // No wait beyond the mapping's one poll a second per shard: a change is processed within about a second.
      maxBatchingWindowSeconds: setting(between(0, 300), 0),
      // Skipping a batch loses changes, so retry for hours (alarms fire within minutes); the
      // dead-lettered sequence range then stays replayable for the rest of the stream's retention.
      /** A batch still failing after this long goes to the on-failure queue (metadata only). */
      maxRecordAgeSeconds: setting(between(60, 604_800), 6 * 3600),
      retryAttempts: setting(
        number((n) => Number.isInteger(n) && n >= 0 && n <= 10_000, 'must be an integer from 0 to 10000'),
        10_000,
      ),
    }),
  ),
  // 1 GiB as the Lambda it replaces had; one pass a second when idle (one S3 LIST per shard).
  loader: group(
    v.object({
      /** false (the default): the loader service has no task, until the warehouse secret and network are real. */
      running: setting(v.boolean(), false),
      cpu: setting(v.number(), 256),
      memoryMiB: setting(v.number(), 1024),
      /** How long the loader waits after a pass that found nothing new: each pass lists every shard's manifests (S3 LIST). */
      idlePollMs: setting(
        number((n) => Number.isInteger(n) && n >= 100, 'must be a whole number of milliseconds, at least 100'),
        1000,
      ),
      warehouseSchema: setting(v.string(), 'public'),
    }),
  ),
  /** The ingestion bucket: the raw archive, the system of record `totes replay` rebuilds from. */
  archive: group(
    v
      .object({
        infrequentAccessAfterDays: setting(
          number((days) => days >= 30, 'must be at least 30 (an S3 rule for STANDARD_IA)'),
          30,
        ),
        /** To Glacier Instant Retrieval, which GetObject reads at once: replay needs no restore. */
        glacierAfterDays: setting(v.number(), 180),
        /** S3 Object Lock on every object version: COMPLIANCE (no one, root included, can delete or shorten it) or GOVERNANCE. */
        lockMode: setting(oneOf('COMPLIANCE', 'GOVERNANCE'), 'COMPLIANCE'),
        // Seven years covers UK company and tax record keeping (six years from the end of the financial year).
        lockRetentionDays: setting(
          number((days) => Number.isInteger(days) && days >= 1 && days <= 36_500, 'must be a whole number of days from 1 to 36500'),
          2557,
        ),
      })
      .assert((a) => a.glacierAfterDays >= a.infrequentAccessAfterDays + 30, {
        message: 'must be at least 30 days after archive.infrequentAccessAfterDays',
        path: ['glacierAfterDays'],
      }),
  ),
  /** The processed bucket: micro-batches are loaded within minutes and can be rebuilt from the archive. */
  processed: group(
    v
      .object({
        expireAfterDays: setting(
          number(
            (days) => Number.isInteger(days) && days >= 7,
            'must be a whole number of days, at least 7: a micro-batch must outlive any stall of the loader the alarms let pass',
          ),
          30,
        ),
        /** dead-letter/ holds records set aside for a person to look at: kept longer. */
        deadLetterExpireAfterDays: setting(
          number((days) => Number.isInteger(days), 'must be a whole number of days'),
          365,
        ),
      })
      .assert((p) => p.deadLetterExpireAfterDays >= p.expireAfterDays, {
        message: 'must be at least processed.expireAfterDays',
        path: ['deadLetterExpireAfterDays'],
      }),
  ),
  // As long as the archive's lock (seven years): the logs say what happened to the data it holds
  // (dead letters, gaps, reprocessing); kept in CloudWatch at cents per GB-month (docs/deploy.md).
  /** Every log group (KMS-encrypted). */
  logRetentionDays: setting(
    number((days) => Object.values(RetentionDays).includes(days), 'must be one CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)'),
    RetentionDays.SEVEN_YEARS,
  ),
  /** null: a new VPC with `natGateways` NAT gateways, which reaches neither database until you connect it. */
  vpc: setting(v.union(v.null(), importedVpc), null),
  natGateways: setting(
    number((n) => Number.isInteger(n) && n >= 0, 'must be a whole number'),
    1,
  ),
  /** With vpc null: true once the stack's new VPC is connected to both databases (peering or Transit Gateway, routes, security groups). */
  newVpcConnected: setting(v.boolean(), false),
  source: database('source'),
  warehouse: database('warehouse'),
  /** The databases' CA bundle, a file in infra/certs/ (infra/ca-bundle.ts); copied into the image and the loader bundle. */
  dbCaBundlePath: setting(v.string(), 'infra/certs/rds-ca-bundle.pem'),
  alarms: group(
    v.object({
      // Firehose buffers 60 s: 5 minutes behind is a stall, not a buffer.
      /** How far Firehose, the stream's other consumer, reads behind the stream's newest record. */
      streamIteratorAgeSeconds: setting(positive, 300),
      /** Oldest record the processor has not yet handled. */
      processorIteratorAgeSeconds: setting(positive, 300),
      /** Processor invocation errors per 5 minutes, in two consecutive periods. */
      processorErrors: setting(positive, 1),
      /** WAL the slot holds; keep it well under the source's max_slot_wal_keep_size (10 GB suggested). */
      slotLagBytes: setting(positive, 1024 ** 3),
      // The same bound at which the health check makes ECS replace the task.
      /** How far capture is behind the newest source commit. */
      slotLagSeconds: setting(positive, 300),
      // Normal freshness is seconds (2 s heartbeat, the loader continuous). 10 minutes for two
      // consecutive minutes alarms at about 12 minutes, 18 minutes before the 30-minute budget.
      /** Age of the newest source commit the warehouse fully reflects. */
      warehouseFreshnessSeconds: setting(positive, 600),
      // The archive is not on the warehouse's path: 15 minutes against a 60 s buffer.
      /** Age of the oldest record Firehose has not yet delivered to the archive. */
      firehoseFreshnessSeconds: setting(positive, 900),
      /** Failed loader passes (each retried) per 5 minutes, in two consecutive periods. */
      loaderErrors: setting(positive, 1),
      // A gap holds every later batch of its shard back: 15 minutes leaves half the budget.
      /** Age of a gap in a shard's loaded batches (a batch missing while later ones wait). */
      loaderGapAgeSeconds: setting(positive, 900),
      /** Capture's PutRecords retries per minute, for 5 minutes on end: the stream refuses writes. */
      putRecordsRetriesPerMinute: setting(positive, 1),
      /** Records Kinesis refused for throughput per minute, for 5 minutes on end. */
      writeThrottledRecordsPerMinute: setting(positive, 1),
    }),
  ),
});

/** A started service needs a network that reaches its database. */
const reachable = (service: 'capture' | 'loader', database: 'source' | 'warehouse'): Parameters<typeof settings.assert> => [
  (c) => !c[service].running || c.vpc !== null || c.newVpcConnected,
  {
    message: `needs a network that reaches the ${database}: set vpc to the databases' VPC (vpcId, availabilityZones, privateSubnetIds), or connect the VPC this stack created to both databases (peering or Transit Gateway, routes, security groups) and set newVpcConnected to true (docs/deploy.md, phase 2)`,
    path: [service, 'running'],
  },
];

/** Every setting, then the rules between groups, checked once every setting is valid on its own (the first broken one is reported). */
const totesConfig = settings
  .assert(...reachable('capture', 'source'))
  .assert(...reachable('loader', 'warehouse'))
  .assert((c) => !(c.vpc && c.newVpcConnected), {
    message: 'is for the VPC the stack creates: leave it false with an imported vpc',
    path: ['newVpcConnected'],
  })
  .assert((c) => c.vpc !== null || c.natGateways >= 1, {
    message: 'must be at least 1 in a new VPC: the services reach AWS APIs through it',
    path: ['natGateways'],
  })
  .assert((c) => c.processor.maxRecordAgeSeconds <= c.stream.retentionHours * 3600, {
    message: 'must not exceed the stream retention (stream.retentionHours)',
    path: ['processor', 'maxRecordAgeSeconds'],
  });

export type TotesConfig = v.Infer<typeof totesConfig>;
export type DatabaseConfig = TotesConfig['source'];

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
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new ConfigError('context "totes" must be a JSON object');
  // strict: an unknown key is a misspelt setting, reported instead of ignored
  return check(totesConfig, patch, (_, problems) => new ConfigError(`invalid totes configuration:\n  ${problems.join('\n  ')}`), 'strict');
}

export const DEFAULT_CONFIG: TotesConfig = resolveConfig({});
