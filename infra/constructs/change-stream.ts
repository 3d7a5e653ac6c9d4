/**
 * The Kinesis data stream the capture service writes, and the Firehose delivery stream that
 * archives it, as GZIP NDJSON, into the ingestion bucket with the layout and buffering the
 * local stand-in uses (formats/archive-layout.ts).
 *
 * Firehose gets a role of its own with exactly what it needs to read the stream and add
 * objects under raw/ and raw-errors/ (the S3 destination's actions in the Firehose developer
 * guide). The L2 destination would grant bucket.grantReadWrite(), deletes included, to the
 * bucket that is the system of record: hence the L1 delivery stream.
 */
import { Construct } from 'constructs';
import { ArnFormat, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { ARCHIVE, RAW_PREFIX } from '../../formats/archive-layout.ts';
import type { TotesConfig } from '../config.ts';
import { bucketPrefixWildcard } from './nag.ts';
import { encryptedLogGroup } from './log-group.ts';

/** The key prefix of Firehose's error output: ARCHIVE.errorPrefix up to its first expression. */
const ERROR_PREFIX = ARCHIVE.errorPrefix.slice(0, ARCHIVE.errorPrefix.indexOf('!'));

export class ChangeStream extends Construct {
  readonly stream: kinesis.Stream;
  readonly archive: firehose.CfnDeliveryStream;
  readonly archiveRole: iam.Role;

  constructor(scope: Construct, id: string, props: { config: TotesConfig; ingestionBucket: s3.Bucket }) {
    super(scope, id);
    const { stream: cfg } = props.config;
    const bucket = props.ingestionBucket;
    this.stream = new kinesis.Stream(this, 'Stream', {
      streamMode: cfg.mode === 'ON_DEMAND' ? kinesis.StreamMode.ON_DEMAND : kinesis.StreamMode.PROVISIONED,
      ...(cfg.mode === 'PROVISIONED' ? { shardCount: cfg.shardCount } : {}),
      retentionPeriod: Duration.hours(cfg.retentionHours),
      encryption: kinesis.StreamEncryption.MANAGED,
    });

    const logGroup = encryptedLogGroup(this, 'ArchiveLogGroup', props.config.logRetentionDays);
    const logStream = new logs.LogStream(this, 'ArchiveLogStream', { logGroup });
    this.archiveRole = new iam.Role(this, 'ArchiveRole', {
      assumedBy: new iam.ServicePrincipal('firehose.amazonaws.com'),
      externalIds: [Stack.of(this).account],
      description: 'totes-cdc Firehose: reads the change stream, adds objects to the raw archive',
      inlinePolicies: {
        Archive: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              actions: ['kinesis:DescribeStream', 'kinesis:DescribeStreamSummary', 'kinesis:GetShardIterator', 'kinesis:GetRecords', 'kinesis:ListShards'],
              resources: [this.stream.streamArn],
            }),
            new iam.PolicyStatement({ actions: ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'], resources: [bucket.bucketArn] }),
            new iam.PolicyStatement({
              actions: ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'],
              resources: [bucket.arnForObjects(`${RAW_PREFIX}*`), bucket.arnForObjects(`${ERROR_PREFIX}*`)],
            }),
            new iam.PolicyStatement({
              actions: ['logs:PutLogEvents'],
              resources: [
                Stack.of(this).formatArn({
                  service: 'logs',
                  resource: 'log-group',
                  resourceName: `${logGroup.logGroupName}:log-stream:${logStream.logStreamName}`,
                  arnFormat: ArnFormat.COLON_RESOURCE_NAME,
                }),
              ],
            }),
          ],
        }),
      },
    });

    this.archive = new firehose.CfnDeliveryStream(this, 'Archive', {
      deliveryStreamType: 'KinesisStreamAsSource',
      kinesisStreamSourceConfiguration: { kinesisStreamArn: this.stream.streamArn, roleArn: this.archiveRole.roleArn },
      extendedS3DestinationConfiguration: {
        bucketArn: bucket.bucketArn,
        roleArn: this.archiveRole.roleArn,
        prefix: ARCHIVE.prefix,
        errorOutputPrefix: ARCHIVE.errorPrefix,
        bufferingHints: { sizeInMBs: ARCHIVE.bufferSizeMiB, intervalInSeconds: ARCHIVE.bufferIntervalSeconds },
        compressionFormat: ARCHIVE.compression,
        cloudWatchLoggingOptions: { enabled: true, logGroupName: logGroup.logGroupName, logStreamName: logStream.logStreamName },
      },
    });

    Validations.of(this.archive).acknowledge({
      id: 'AwsSolutions-KDF1',
      reason:
        'Firehose cannot encrypt on its side when its source is a Kinesis stream; records are encrypted at rest in the stream (KMS) and in the ingestion bucket (SSE-KMS).',
    });
    Validations.of(this.archiveRole).acknowledge(
      ...[RAW_PREFIX, ERROR_PREFIX].map((prefix) => ({
        id: bucketPrefixWildcard(bucket, prefix),
        reason: `Firehose names each archive object at delivery time (time-based key under ${prefix} and a generated name); only adding and reading objects there is allowed.`,
      })),
    );
  }
}
