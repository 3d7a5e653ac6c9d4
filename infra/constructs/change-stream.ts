/**
 * The Kinesis data stream the capture service writes, and the Firehose delivery stream that
 * archives it, as GZIP NDJSON, into the ingestion bucket with the layout and buffering the
 * local stand-in uses (formats/archive-layout.ts).
 */
import { Construct } from 'constructs';
import { Duration, Size, Validations } from 'aws-cdk-lib';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { ARCHIVE } from '../../formats/archive-layout.ts';
import type { TotesConfig } from '../config.ts';
import { bucketObjectsWildcard } from './nag.ts';

export class ChangeStream extends Construct {
  readonly stream: kinesis.Stream;
  readonly archive: firehose.DeliveryStream;

  constructor(scope: Construct, id: string, props: { config: TotesConfig; ingestionBucket: s3.Bucket }) {
    super(scope, id);
    const { stream: cfg } = props.config;
    this.stream = new kinesis.Stream(this, 'Stream', {
      streamMode: cfg.mode === 'ON_DEMAND' ? kinesis.StreamMode.ON_DEMAND : kinesis.StreamMode.PROVISIONED,
      ...(cfg.mode === 'PROVISIONED' ? { shardCount: cfg.shardCount } : {}),
      retentionPeriod: Duration.hours(cfg.retentionHours),
      encryption: kinesis.StreamEncryption.MANAGED,
    });
    this.archive = new firehose.DeliveryStream(this, 'Archive', {
      source: new firehose.KinesisStreamSource(this.stream),
      destination: new firehose.S3Bucket(props.ingestionBucket, {
        dataOutputPrefix: ARCHIVE.prefix,
        errorOutputPrefix: ARCHIVE.errorPrefix,
        bufferingSize: Size.mebibytes(ARCHIVE.bufferSizeMiB),
        bufferingInterval: Duration.seconds(ARCHIVE.bufferIntervalSeconds),
        compression: firehose.Compression.of(ARCHIVE.compression),
        loggingConfig: new firehose.EnableLogging(new logs.LogGroup(this, 'ArchiveLogGroup', { retention: props.config.logRetentionDays })),
      }),
    });
    Validations.of(this.archive).acknowledge(
      {
        id: 'AwsSolutions-KDF1',
        reason:
          'Firehose cannot encrypt on its side when its source is a Kinesis stream; records are encrypted at rest in the stream (KMS) and in the ingestion bucket (SSE-S3).',
      },
      // The S3 destination construct always grants its role bucket.grantReadWrite(); its role can be assumed only by Firehose.
      ...['s3:Abort*', 's3:DeleteObject*', 's3:GetBucket*', 's3:GetObject*', 's3:List*'].map((action) => ({
        id: `AwsSolutions-IAM5[Action::${action}]`,
        reason: 'Granted by the Firehose S3 destination construct (bucket.grantReadWrite) to a role only Firehose can assume, on the ingestion bucket alone.',
      })),
      {
        id: bucketObjectsWildcard(props.ingestionBucket),
        reason: 'Firehose names each archive object at delivery time (time-based prefix and a generated name).',
      },
    );
  }
}
