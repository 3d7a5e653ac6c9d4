/**
 * totes-cdc in AWS: capture (Fargate) → Kinesis → Firehose → ingestion bucket, and
 * Kinesis → processor (Lambda) → processed bucket → loader (Fargate, continuous) → warehouse.
 * The databases are not part of the stack: it reaches them through the network it is given
 * and the credentials in Secrets Manager.
 */
import type { Construct } from 'constructs';
import { CfnOutput, CfnParameter, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import { checkedCaBundle } from './ca-bundle.ts';
import type { TotesConfig } from './config.ts';
import { PipelineBuckets } from './constructs/buckets.ts';
import { CaptureService } from './constructs/capture-service.ts';
import { ChangeStream } from './constructs/change-stream.ts';
import { DatabaseSecrets } from './constructs/database-secrets.ts';
import { LoaderService } from './constructs/loader-service.ts';
import { Monitoring } from './constructs/monitoring.ts';
import { Network } from './constructs/network.ts';
import { ProcessorFunction } from './constructs/processor.ts';
import { SubjectKeyStore } from './constructs/subject-keys.ts';

export class TotesCdcStack extends Stack {
  constructor(scope: Construct, id: string, props: StackProps & { config: TotesConfig }) {
    super(scope, id, props);
    const { config } = props;
    const alarmEmail = new CfnParameter(this, 'AlarmEmail', {
      type: 'String',
      description: 'Email address that receives the pipeline alarms (confirm the subscription email AWS sends)',
      allowedPattern: '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$',
      constraintDescription: 'must be an email address',
    });

    const caBundle = checkedCaBundle(config.dbCaBundlePath);
    const network = new Network(this, 'Network', config);
    const secrets = new DatabaseSecrets(this, 'Secrets', config);
    const buckets = new PipelineBuckets(this, 'Buckets', config);
    const keyStore = new SubjectKeyStore(this, 'SubjectKeys', { accessLogs: buckets.accessLogs });
    const changes = new ChangeStream(this, 'Changes', { config, ingestionBucket: buckets.ingestion });
    const capture = new CaptureService(this, 'Capture', {
      config,
      stream: changes.stream,
      ingestionBucket: buckets.ingestion,
      sourceSecret: secrets.source,
      keyStore,
      vpc: network.vpc,
      subnets: network.subnets,
      securityGroup: network.captureSecurityGroup,
      caBundleFile: caBundle.fileName,
    });
    const processor = new ProcessorFunction(this, 'Processor', {
      config,
      stream: changes.stream,
      processedBucket: buckets.processed,
      ingestionBucket: buckets.ingestion,
    });
    const loader = new LoaderService(this, 'Loader', {
      config,
      cluster: capture.cluster,
      processedBucket: buckets.processed,
      stream: changes.stream,
      warehouseSecret: secrets.warehouse,
      keyStore,
      subnets: network.subnets,
      securityGroup: network.loaderSecurityGroup,
      caBundleFile: caBundle.fileName,
    });
    const monitoring = new Monitoring(this, 'Monitoring', {
      config,
      alarmEmail: alarmEmail.valueAsString,
      stream: changes.stream,
      archiveName: changes.archive.ref,
      processor: processor.function,
      onFailureQueue: processor.onFailureQueue,
      cluster: capture.cluster,
      captureService: capture.service,
      loaderService: loader.service,
      loaderLogGroup: loader.logGroup,
    });

    Validations.of(this).acknowledge({
      id: 'CloudFormation-Validate::W7001',
      reason: 'The Firehose L2 adds a mapping of its service CIDR blocks that only some destinations use; it is harmless here.',
    });

    new CfnOutput(this, 'SourceSecretArn', { value: secrets.source.secretArn, description: 'Put the totesys credentials here (docs/deploy.md)' });
    new CfnOutput(this, 'WarehouseSecretArn', { value: secrets.warehouse.secretArn, description: 'Put the warehouse credentials here (docs/deploy.md)' });
    new CfnOutput(this, 'StreamName', { value: changes.stream.streamName });
    new CfnOutput(this, 'IngestionBucketName', { value: buckets.ingestion.bucketName });
    new CfnOutput(this, 'ProcessedBucketName', { value: buckets.processed.bucketName });
    new CfnOutput(this, 'KeysBucketName', { value: keyStore.bucket.bucketName, description: 'The personal-data key store (docs/deploy.md)' });
    new CfnOutput(this, 'PersonalDataKmsKeyArn', { value: keyStore.key.keyArn, description: 'Wraps the personal-data keys; replay and totes forget need it' });
    new CfnOutput(this, 'ErasurePolicyArn', { value: keyStore.erasurePolicy.managedPolicyArn, description: 'Attach to the role that runs totes forget' });
    new CfnOutput(this, 'OnFailureQueueUrl', { value: processor.onFailureQueue.queueUrl });
    new CfnOutput(this, 'AlarmTopicArn', { value: monitoring.topic.topicArn });
    new CfnOutput(this, 'DashboardName', { value: monitoring.dashboard.dashboardName });
  }
}
