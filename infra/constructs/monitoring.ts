/**
 * Alarms to an SNS topic (email), and a dashboard with the same figures. Thresholds come from
 * the configuration; infra/config.ts explains the defaults against the 30-minute budget.
 */
import { Construct } from 'constructs';
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { METRIC_NAMESPACE } from '../../lib/metrics.ts';
import type { TotesConfig } from '../config.ts';

export interface MonitoringProps {
  config: TotesConfig;
  alarmEmail: string;
  stream: kinesis.IStream;
  archive: firehose.IDeliveryStream;
  processor: lambda.IFunction;
  onFailureQueue: sqs.IQueue;
  loader: lambda.IFunction;
  cluster: ecs.ICluster;
  captureService: ecs.IBaseService;
}

const MINUTE = Duration.minutes(1);
const FIVE_MINUTES = Duration.minutes(5);

/** A metric the services publish in Embedded Metric Format (lib/metrics.ts). */
function serviceMetric(service: 'capture' | 'processor' | 'loader', metricName: string, statistic: string, period = MINUTE): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace: METRIC_NAMESPACE, metricName, dimensionsMap: { Service: service }, statistic, period });
}

export class Monitoring extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const t = props.config.alarms;
    const prefix = Stack.of(this).stackName;

    // CloudWatch can publish to an encrypted topic only with a customer managed key that lets it use the key.
    const key = new kms.Key(this, 'TopicKey', { description: 'totes-cdc alarm topic', enableKeyRotation: true });
    key.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.topic = new sns.Topic(this, 'AlarmTopic', { displayName: 'totes-cdc alarms', masterKey: key, enforceSSL: true });
    this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    const notify = new actions.SnsAction(this.topic);

    const alarm = (
      name: string,
      description: string,
      metric: cloudwatch.IMetric,
      o: {
        threshold: number;
        periods: number;
        below?: boolean;
        missing?: cloudwatch.TreatMissingData;
      },
    ): cloudwatch.Alarm => {
      const a = new cloudwatch.Alarm(this, name, {
        alarmName: `${prefix}-${name}`,
        alarmDescription: description,
        metric,
        threshold: o.threshold,
        evaluationPeriods: o.periods,
        datapointsToAlarm: o.periods,
        comparisonOperator: o.below ? cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD : cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: o.missing ?? cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      a.addAlarmAction(notify);
      a.addOkAction(notify);
      this.alarms.push(a);
      return a;
    };

    const streamIteratorAge = props.stream.metricGetRecordsIteratorAgeMilliseconds({ statistic: 'Maximum', period: MINUTE });
    const processorIteratorAge = props.processor.metric('IteratorAge', { statistic: 'Maximum', period: MINUTE });
    const processorErrors = props.processor.metricErrors({ statistic: 'Sum', period: FIVE_MINUTES });
    const slotLagBytes = serviceMetric('capture', 'SlotLagBytes', 'Maximum');
    const slotLagSeconds = serviceMetric('capture', 'SlotLagSeconds', 'Maximum');
    const freshness = serviceMetric('loader', 'WarehouseFreshnessSeconds', 'Maximum');
    const queueVisible = props.onFailureQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: FIVE_MINUTES });
    const deadLetters = serviceMetric('processor', 'DeadLetters', 'Sum', FIVE_MINUTES);
    const archiveFreshness = props.archive.metric('DeliveryToS3.DataFreshness', { statistic: 'Maximum', period: MINUTE });
    const runningTasks = new cloudwatch.Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      statistic: 'Minimum',
      period: MINUTE,
      dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: props.captureService.serviceName },
    });

    alarm('stream-iterator-age', 'A consumer of the change stream (Firehose or the processor) has stopped reading: records wait unread.', streamIteratorAge, {
      threshold: t.streamIteratorAgeSeconds * 1000,
      periods: 3,
    });
    alarm('processor-iterator-age', 'The processor is behind the change stream: check its errors and the on-failure queue.', processorIteratorAge, {
      threshold: t.processorIteratorAgeSeconds * 1000,
      periods: 3,
    });
    alarm('processor-errors', 'Processor invocations are failing (batches are retried; the shard waits).', processorErrors, {
      threshold: t.processorErrors,
      periods: 2,
    });
    alarm(
      'slot-lag-bytes',
      'The replication slot holds much WAL on the source: capture is behind or stopped. The source disk fills if this grows.',
      slotLagBytes,
      { threshold: t.slotLagBytes, periods: 3 },
    );
    alarm('slot-lag-seconds', 'Capture is behind the newest source commit.', slotLagSeconds, { threshold: t.slotLagSeconds, periods: 2 });
    // No figure means the loader is not running or has loaded no heartbeat: the warehouse is not known to be fresh.
    alarm('warehouse-freshness', 'The warehouse is stale: the newest source commit it fully reflects is too old (budget: 30 minutes).', freshness, {
      threshold: t.warehouseFreshnessSeconds,
      periods: 2,
      missing: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm(
      'on-failure-queue',
      'A processor batch was given up on: replay its sequence range from the stream (docs/deploy.md) before the stream retention ends.',
      queueVisible,
      { threshold: 1, periods: 1 },
    );
    alarm('dead-letters', 'The processor could not decode or map some records: they are under dead-letter/ in the processed bucket.', deadLetters, {
      threshold: 1,
      periods: 1,
    });
    alarm('archive-freshness', 'Firehose is not delivering the change stream to the ingestion bucket.', archiveFreshness, {
      threshold: t.firehoseFreshnessSeconds,
      periods: 3,
    });
    // Five minutes covers a deployment, which stops the old task before it starts the new one.
    alarm('capture-not-running', 'No capture task is running: nothing is read from the source and its slot holds WAL.', runningTasks, {
      threshold: 1,
      periods: 5,
      below: true,
      missing: cloudwatch.TreatMissingData.BREACHING,
    });

    const graph = (title: string, left: cloudwatch.IMetric[], threshold?: number, right: cloudwatch.IMetric[] = []) =>
      new cloudwatch.GraphWidget({
        title,
        left,
        right,
        width: 8,
        height: 6,
        ...(threshold !== undefined ? { leftAnnotations: [{ value: threshold, label: 'alarm', color: cloudwatch.Color.RED }] } : {}),
      });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${prefix}-pipeline`,
      widgets: [
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 3 })],
        [
          graph('Warehouse freshness (s)', [freshness], t.warehouseFreshnessSeconds, [serviceMetric('loader', 'BatchesLoaded', 'Sum')]),
          graph('Slot lag (s)', [slotLagSeconds], t.slotLagSeconds),
          graph('Slot lag (bytes)', [slotLagBytes], t.slotLagBytes, [serviceMetric('capture', 'SafeWalSizeBytes', 'Minimum')]),
        ],
        [
          graph('Capture tasks running', [runningTasks], 1),
          graph('Capture throughput', [serviceMetric('capture', 'ChangesPerSecond', 'Average')], undefined, [
            serviceMetric('capture', 'BytesPerSecond', 'Average'),
          ]),
          graph('Kinesis PutRecords', [serviceMetric('capture', 'PutRecordsLatency', 'Average')], undefined, [
            serviceMetric('capture', 'PutRecordsRetries', 'Sum'),
          ]),
        ],
        [
          graph('Stream iterator age (ms)', [streamIteratorAge], t.streamIteratorAgeSeconds * 1000),
          graph('Processor iterator age (ms)', [processorIteratorAge], t.processorIteratorAgeSeconds * 1000),
          graph('Processor events and errors', [serviceMetric('processor', 'Events', 'Sum', FIVE_MINUTES)], undefined, [processorErrors]),
        ],
        [
          graph('Dead letters and on-failure queue', [deadLetters, queueVisible], 1),
          graph('Archive (Firehose) freshness (s)', [archiveFreshness], t.firehoseFreshnessSeconds),
          graph('Loader errors and duration', [props.loader.metricErrors({ period: FIVE_MINUTES })], undefined, [
            props.loader.metricDuration({ statistic: 'Maximum', period: FIVE_MINUTES }),
          ]),
        ],
      ],
    });
  }
}
