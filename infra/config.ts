/**
 * Deployment configuration: each setting declared once below, with its type, its check and its
 * default; a deployment overrides settings by the CDK context key `totes` (a JSON object, in
 * cdk.json, cdk.context.json or `-c totes='{...}'`), key by key, and every setting is checked
 * before anything is built, then the rules between settings (RELATIONS).
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
/** A group of settings: left out, or any of its settings left out, it takes their defaults. */
function group<S extends Record<string, v.Type | v.Optional>>(shape: S) {
  const settings = v.object(shape);
  return settings.optional(() => settings.parse({}));
}

const oneOf = <T extends string>(...values: T[]) => v.union(...values.map((x) => v.literal(x)));
const positive = v.number().assert((n) => n > 0, 'must be a positive number');
const integerFrom = (min: number, max = Infinity, why = '') =>
  v
    .number()
    .assert(
      (n) => Number.isInteger(n) && n >= min && n <= max,
      `must be an integer ${max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`}${why}`,
    );
const between = (min: number, max: number) => v.number().assert((n) => n >= min && n <= max, `must be between ${min} and ${max}`);
const awsId = (kind: 'vpc' | 'subnet' | 'sg') =>
  v.string().assert((id) => new RegExp(`^${kind}-[0-9a-f]{8,17}$`).test(id), `is not an AWS id of that kind (${kind}-...)`);
const secretArn = v
  .string()
  .assert(
    (arn) => /^arn:aws[\w-]*:secretsmanager:[\w-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/.test(arn),
    "must be a secret's complete ARN (ending in its 6-character suffix)",
  );
const logRetention = v
  .number()
  .assert(
    (days): days is RetentionDays => Object.values(RetentionDays).includes(days),
    'must be one CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)',
  );

/** An existing VPC, imported by attributes so synth needs no AWS lookup. */
const importedVpc = v
  .object({
    vpcId: awsId('vpc'),
    availabilityZones: v.array(v.string()).assert((zones) => zones.length > 0, 'must name at least one zone'),
    /** Subnets with a route to the databases and to AWS APIs (NAT or VPC endpoints). */
    privateSubnetIds: v.array(awsId('subnet')),
  })
  .assert((vpc) => vpc.privateSubnetIds.length === vpc.availabilityZones.length, {
    message: 'needs one entry per availability zone',
    path: ['privateSubnetIds'],
  });

const database = () =>
  group({
    /** Secrets Manager secret (JSON host, port, username, password, dbname); created empty when absent. */
    secretArn: secretArn.optional(),
    /** The database's security group: given, it gets an ingress rule from the service that connects. */
    securityGroupId: awsId('sg').optional(),
    port: setting(integerFrom(1, 65_535), 5432),
  });

const totesConfig = v.object({
  // One shard carries totesys's few thousand changes a day many times over; see docs/deploy.md for 1,000 changes/s.
  stream: group({
    mode: setting(oneOf('PROVISIONED', 'ON_DEMAND'), 'PROVISIONED'),
    /** PROVISIONED only. One shard takes 1 MiB/s or 1,000 records/s of writes. */
    shardCount: setting(integerFrom(1), 1),
    /** How long a record stays replayable after a consumer stops (24 h is the cheapest). */
    retentionHours: setting(between(24, 8760), 24),
  }),
  capture: group({
    /** false (the default): the service exists with no task, until the source secret and network are real. */
    running: setting(v.boolean(), false),
    cpu: setting(v.number(), 512),
    memoryMiB: setting(v.number(), 1024),
    slotName: setting(v.string(), 'totes_cdc'),
    publication: setting(v.string(), 'totes_cdc'),
    heartbeatSeconds: setting(v.number(), 10),
    /** The health check fails past this slot lag, and ECS replaces the task. */
    maxHealthyLagSeconds: setting(v.number(), 300),
  }),
  processor: group({
    memoryMiB: setting(v.number(), 1024),
    timeoutSeconds: setting(v.number(), 120),
    batchSize: setting(between(1, 10_000), 1000),
    maxBatchingWindowSeconds: setting(between(0, 300), 5),
    // Skipping a batch loses changes, so retry for hours (alarms fire within minutes); the
    // dead-lettered sequence range then stays replayable for the rest of the stream's retention.
    /** A batch still failing after this long goes to the on-failure queue (metadata only). */
    maxRecordAgeSeconds: setting(between(60, 604_800), 6 * 3600),
    retryAttempts: setting(integerFrom(0, 10_000), 10_000),
  }),
  loader: group({
    /** false (the default): the schedule is disabled, until the warehouse secret and network are real. */
    running: setting(v.boolean(), false),
    memoryMiB: setting(v.number(), 1024),
    /** A run starts loads for up to 45 s, and none with under 30 s left (loader/lambda.ts): it ends before the next minute's run. */
    timeoutSeconds: setting(
      v.number().assert((s) => s > 30 && s <= 900, 'must be over 30 (the loader stops with 30 s left) and at most 900'),
      90,
    ),
    warehouseSchema: setting(v.string(), 'public'),
  }),
  /** The ingestion bucket: the raw archive, the system of record `totes replay` rebuilds from. */
  archive: group({
    infrequentAccessAfterDays: setting(
      v.number().assert((days) => days >= 30, 'must be at least 30 (an S3 rule for STANDARD_IA)'),
      30,
    ),
    /** To Glacier Instant Retrieval, which GetObject reads at once: replay needs no restore. */
    glacierAfterDays: setting(v.number(), 180),
    /** S3 Object Lock on every object version: COMPLIANCE (no one, root included, can delete or shorten it) or GOVERNANCE. */
    lockMode: setting(oneOf('COMPLIANCE', 'GOVERNANCE'), 'COMPLIANCE'),
    // Seven years covers UK company and tax record keeping (six years from the end of the financial year).
    lockRetentionDays: setting(integerFrom(1, 36_500), 2557),
  }),
  /** The processed bucket: micro-batches are loaded within minutes and can be rebuilt from the archive. */
  processed: group({
    expireAfterDays: setting(integerFrom(7, Infinity, ': a micro-batch must outlive any stall of the loader the alarms let pass'), 30),
    /** dead-letter/ holds records set aside for a person to look at: kept longer. */
    deadLetterExpireAfterDays: setting(integerFrom(1), 365),
  }),
  logRetentionDays: setting(logRetention, RetentionDays.THREE_MONTHS),
  /** null: a new VPC with `natGateways` NAT gateways, which reaches neither database until you connect it. */
  vpc: setting(importedVpc.nullable(), null),
  natGateways: setting(integerFrom(0), 1),
  /** With vpc null: true once the stack's new VPC is connected to both databases (peering or Transit Gateway, routes, security groups). */
  newVpcConnected: setting(v.boolean(), false),
  source: database(),
  warehouse: database(),
  /** The databases' CA bundle, a file in infra/certs/ (infra/ca-bundle.ts); copied into the image and the loader bundle. */
  dbCaBundlePath: setting(v.string(), 'infra/certs/rds-ca-bundle.pem'),
  alarms: group({
    // Firehose buffers 60 s and the processor 5 s: 5 minutes unread is a stall, not a buffer.
    /** Oldest unread record in the stream (Firehose or the processor behind). */
    streamIteratorAgeSeconds: setting(positive, 300),
    /** Oldest record the processor has not yet handled. */
    processorIteratorAgeSeconds: setting(positive, 300),
    /** Processor invocation errors per 5 minutes, in two consecutive periods. */
    processorErrors: setting(positive, 1),
    /** WAL the slot holds; keep it well under the source's max_slot_wal_keep_size (10 GB suggested). */
    slotLagBytes: setting(positive, 1024 ** 3),
    /** How far capture is behind the newest source commit. The same bound at which the health check makes ECS replace the task. */
    slotLagSeconds: setting(positive, 300),
    // Normal freshness is about a minute (10 s heartbeat, 1 min loader). 10 minutes for two
    // consecutive minutes alarms at about 12 minutes, 18 minutes before the 30-minute budget.
    /** Age of the newest source commit the warehouse fully reflects. */
    warehouseFreshnessSeconds: setting(positive, 600),
    // The archive is not on the warehouse's path: 15 minutes against a 60 s buffer.
    /** Age of the oldest record Firehose has not yet delivered to the archive. */
    firehoseFreshnessSeconds: setting(positive, 900),
    /** Loader invocation errors per 5 minutes, in two consecutive periods. */
    loaderErrors: setting(positive, 1),
    /** The loader's longest run, as a fraction of its timeout, in two consecutive 5-minute periods. */
    loaderDurationOfTimeout: setting(
      positive.assert((f) => f < 1, 'must be under 1 (a fraction of loader.timeoutSeconds)'),
      0.8,
    ),
    // A gap holds every later batch of its shard back: 15 minutes leaves half the budget.
    /** Age of a gap in a shard's loaded batches (a batch missing while later ones wait). */
    loaderGapAgeSeconds: setting(positive, 900),
    /** Capture's PutRecords retries per minute, for 5 minutes on end: the stream refuses writes. */
    putRecordsRetriesPerMinute: setting(positive, 1),
    /** Records Kinesis refused for throughput per minute, for 5 minutes on end. */
    writeThrottledRecordsPerMinute: setting(positive, 1),
  }),
});
export type TotesConfig = v.Infer<typeof totesConfig>;
export type DatabaseConfig = TotesConfig['source'];

export const DEFAULT_CONFIG: TotesConfig = totesConfig.parse({});

/** Rules between settings, checked once each setting is valid on its own: what must hold, and what to do when it does not. */
const RELATIONS: [(c: TotesConfig) => boolean, string][] = [
  ...(
    [
      ['capture', 'source'],
      ['loader', 'warehouse'],
    ] as const
  ).map(([service, database]): [(c: TotesConfig) => boolean, string] => [
    (c) => !c[service].running || c.vpc !== null || c.newVpcConnected,
    `${service}.running needs a network that reaches the ${database}: set vpc to the databases' VPC (vpcId, availabilityZones, privateSubnetIds), or connect the VPC this stack created to both databases (peering or Transit Gateway, routes, security groups) and set newVpcConnected to true (docs/deploy.md, phase 2)`,
  ]),
  [(c) => !(c.vpc && c.newVpcConnected), 'newVpcConnected is for the VPC the stack creates: leave it false with an imported vpc'],
  [(c) => c.vpc !== null || c.natGateways >= 1, 'natGateways must be at least 1 in a new VPC: the services reach AWS APIs through it'],
  [(c) => c.processor.maxRecordAgeSeconds <= c.stream.retentionHours * 3600, 'processor.maxRecordAgeSeconds must not exceed the stream retention'],
  [
    (c) => c.archive.glacierAfterDays >= c.archive.infrequentAccessAfterDays + 30,
    'archive.glacierAfterDays must be at least 30 days after archive.infrequentAccessAfterDays',
  ],
  [
    (c) => c.processed.deadLetterExpireAfterDays >= c.processed.expireAfterDays,
    'processed.deadLetterExpireAfterDays must be at least processed.expireAfterDays',
  ],
];

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
  const invalid = (problems: string[]) => new ConfigError(`invalid totes configuration:\n  ${problems.join('\n  ')}`);
  const config = check(totesConfig, patch, (_, problems) => invalid(problems), 'strict');
  const broken = RELATIONS.filter(([holds]) => !holds(config)).map(([, problem]) => problem);
  if (broken.length) throw invalid(broken);
  return config;
}
