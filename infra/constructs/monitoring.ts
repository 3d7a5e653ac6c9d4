/**
 * Alarms to an SNS topic (email), and a dashboard with the same figures. Thresholds come from
 * the configuration; infra/config.ts explains the defaults against the 30-minute budget.
 *
 * Delivery, end to end: every alarm's action is the topic; the topic policy lets CloudWatch
 * publish (once a topic has a policy, nothing else does), and the topic's KMS key lets
 * CloudWatch encrypt, both only for this account's alarms named after this stack.
 *
 * Missing data: an alarm on a figure's value reads no figure as no breach, so the gap of an
 * ordinary deployment (capture's old task stops before the new one starts and reports) pages
 * no one. A figure that stops arriving is an alarm of its own, where something always produces
 * it (capture reports every minute from its start and puts a heartbeat on every shard every few
 * seconds; Firehose and the processor read them; the loader reports every minute): no figure
 * for SILENT_MINUTES, which outlasts a deployment. An alarm on a service that is deliberately
 * stopped (`capture.running` / `loader.running` false) keeps its notifications off, so the
 * first deployment does not page anyone for what it left off.
 */
import { Construct } from 'constructs';
import { ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { METRIC_NAMESPACE, type MetricName, type MetricService } from '../../lib/metrics.ts';
import type { TotesConfig } from '../config.ts';

export interface MonitoringProps {
  config: TotesConfig;
  alarmEmail: string;
  stream: kinesis.IStream;
  /** The Firehose delivery stream's name. */
  archiveName: string;
  processor: lambda.IFunction;
  onFailureQueue: sqs.IQueue;
  cluster: ecs.ICluster;
  captureService: ecs.IBaseService;
  loaderService: ecs.IBaseService;
  loaderLogGroup: logs.ILogGroup;
}

const MINUTE = Duration.minutes(1);
const FIVE_MINUTES = Duration.minutes(5);
/**
 * The longest an ordinary deployment leaves a figure missing: capture's old task stops (within
 * 30 s) before the new one is pulled and started, and reports at once: 1-3 minutes.
 */
export const DEPLOYMENT_GAP = Duration.minutes(3);
/** A figure missing this many minutes is an outage, not a deployment. */
const SILENT_MINUTES = 10;

type Service = 'capture' | 'loader';

/** A metric the services publish in Embedded Metric Format: only a name lib/metrics.ts lists for that service. */
function serviceMetric<S extends MetricService>(service: S, metricName: MetricName<S>, statistic: string, period = MINUTE): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace: METRIC_NAMESPACE, metricName, dimensionsMap: { Service: service }, statistic, period });
}

const COMPARISON = {
  '>=': cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
  '>': cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
  '<': cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
};

export class Monitoring extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const t = props.config.alarms;
    const stack = Stack.of(this);
    const prefix = stack.stackName;
    const running: Record<Service, boolean> = { capture: props.config.capture.running, loader: props.config.loader.running };

    // Only this account's alarms of this stack (their names start with the stack name) may use the topic and its key.
    const cloudWatch = new iam.ServicePrincipal('cloudwatch.amazonaws.com');
    const ourAlarms = {
      StringEquals: { 'aws:SourceAccount': stack.account },
      ArnLike: {
        'aws:SourceArn': stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: `${prefix}-*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
      },
    };
    const key = new kms.Key(this, 'TopicKey', { description: 'totes-cdc alarm topic', enableKeyRotation: true });
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsUseTheTopicKey',
        principals: [cloudWatch],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: ourAlarms,
      }),
    );
    this.topic = new sns.Topic(this, 'AlarmTopic', { displayName: 'totes-cdc alarms', masterKey: key, enforceSSL: true });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [cloudWatch],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: ourAlarms,
      }),
    );
    this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    const notify = new actions.SnsAction(this.topic);

    const alarm = (
      name: string,
      description: string,
      metric: cloudwatch.IMetric,
      o: {
        threshold: number;
        periods: number;
        compare?: keyof typeof COMPARISON;
        /** No data means something stopped: alarm on it (while the services it needs run). Only for a count of periods that outlasts DEPLOYMENT_GAP. */
        missingIsBreaching?: boolean;
        /** The services whose stopping is deliberate while their `running` setting is false. */
        needs?: Service[];
      },
    ): cloudwatch.Alarm => {
      const stopped = (o.needs ?? []).filter((s) => !running[s]);
      const a = new cloudwatch.Alarm(this, name, {
        alarmName: `${prefix}-${name}`,
        alarmDescription: stopped.length ? `${description} Notifications off while ${stopped.map((s) => `${s}.running`).join(' and ')} is false.` : description,
        metric,
        threshold: o.threshold,
        evaluationPeriods: o.periods,
        datapointsToAlarm: o.periods,
        comparisonOperator: COMPARISON[o.compare ?? '>='],
        treatMissingData: o.missingIsBreaching && stopped.length === 0 ? cloudwatch.TreatMissingData.BREACHING : cloudwatch.TreatMissingData.NOT_BREACHING,
        actionsEnabled: stopped.length === 0,
      });
      a.addAlarmAction(notify);
      a.addOkAction(notify);
      this.alarms.push(a);
      return a;
    };

    const firehoseMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/Firehose',
        metricName,
        dimensionsMap: { DeliveryStreamName: props.archiveName },
        statistic: 'Maximum',
        period: MINUTE,
      });
    // Firehose's own read position, not the stream's GetRecords age, which the loader's reads at old positions would raise.
    const archiveBehind = firehoseMetric('DataReadFromKinesisStream.MillisBehindLatest');
    const writeThrottled = props.stream.metricWriteProvisionedThroughputExceeded({ statistic: 'Sum', period: MINUTE });
    const processorIteratorAge = props.processor.metric('IteratorAge', { statistic: 'Maximum', period: MINUTE });
    const processorErrors = props.processor.metricErrors({ statistic: 'Sum', period: FIVE_MINUTES });
    // A failed pass (retried with backoff: loader/loader.ts runLoop) or a fatal line, from the loader's logs.
    const loaderErrors = new logs.MetricFilter(this, 'LoaderErrorsFilter', {
      logGroup: props.loaderLogGroup,
      filterPattern: logs.FilterPattern.any(
        logs.FilterPattern.stringValue('$.msg', '=', 'load failed; retrying'),
        logs.FilterPattern.numberValue('$.level', '>=', 60),
      ),
      metricNamespace: METRIC_NAMESPACE,
      metricName: 'LoaderErrors',
      metricValue: '1',
    }).metric({ statistic: 'Sum', period: FIVE_MINUTES });
    const slotLagBytes = serviceMetric('capture', 'SlotLagBytes', 'Maximum');
    const slotLagSeconds = serviceMetric('capture', 'SlotLagSeconds', 'Maximum');
    const walStatus = serviceMetric('capture', 'SlotWalStatus', 'Maximum');
    const sourceUnreachable = serviceMetric('capture', 'SourceUnreachable', 'Maximum');
    const schemaIssues = serviceMetric('capture', 'SchemaIssues', 'Maximum');
    const putRetries = serviceMetric('capture', 'PutRecordsRetries', 'Sum');
    const freshness = serviceMetric('loader', 'WarehouseFreshnessSeconds', 'Maximum');
    const gapAge = serviceMetric('loader', 'LoaderGapAgeSeconds', 'Maximum');
    const unproven = serviceMetric('loader', 'UnprovenJunctions', 'Sum', FIVE_MINUTES);
    const queueVisible = props.onFailureQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: FIVE_MINUTES });
    const deadLetters = serviceMetric('processor', 'DeadLetters', 'Sum', FIVE_MINUTES);
    // a batch failed and reported for retry: Lambda counts it a success, so Errors never sees it
    const batchFailures = serviceMetric('processor', 'BatchFailures', 'Sum', FIVE_MINUTES);
    const archiveFreshness = firehoseMetric('DeliveryToS3.DataFreshness');
    const runningTasks = (service: ecs.IBaseService) =>
      new cloudwatch.Metric({
        namespace: 'ECS/ContainerInsights',
        metricName: 'RunningTaskCount',
        statistic: 'Minimum',
        period: MINUTE,
        dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: service.serviceName },
      });
    const captureTasks = runningTasks(props.captureService);
    const loaderTasks = runningTasks(props.loaderService);
    /** No figure at all for SILENT_MINUTES: what produces it has stopped. */
    const silent = (name: string, description: string, metric: cloudwatch.Metric, needs: Service[]) =>
      alarm(name, `${description} No figure for ${SILENT_MINUTES} minutes (a deployment's gap is shorter).`, metric.with({ statistic: 'SampleCount' }), {
        threshold: 1,
        periods: SILENT_MINUTES,
        compare: '<',
        missingIsBreaching: true,
        needs,
      });

    alarm('archive-iterator-age', 'Firehose reads the change stream far behind its newest record: check its log group and raw-errors/.', archiveBehind, {
      threshold: t.streamIteratorAgeSeconds * 1000,
      periods: 3,
      needs: ['capture'],
    });
    // With capture running there are records on every shard (heartbeats), so Firehose reads every shard every second.
    silent('archive-silent', 'Firehose reads nothing from the change stream.', archiveBehind, ['capture']);
    alarm(
      'processor-iterator-age',
      'The processor is behind the change stream: check its errors, its event source mapping and the on-failure queue.',
      processorIteratorAge,
      { threshold: t.processorIteratorAgeSeconds * 1000, periods: 3, needs: ['capture'] },
    );
    // Heartbeats reach every shard every few seconds, so a running capture invokes the processor all the time.
    silent('processor-silent', 'The processor is no longer invoked: check its event source mapping, then capture.', processorIteratorAge, ['capture']);
    alarm('processor-errors', 'Processor invocations are failing (batches are retried; the shard waits).', processorErrors, {
      threshold: t.processorErrors,
      periods: 2,
    });
    alarm(
      'processor-batch-failures',
      'Processor batches fail and are retried (S3 or the stream unreachable; processor logs "batch failed"): the shard waits.',
      batchFailures,
      { threshold: 1, periods: 2 },
    );
    alarm('slot-lag-bytes', 'The replication slot holds much WAL on the source: capture is behind. The source disk fills if this grows.', slotLagBytes, {
      threshold: t.slotLagBytes,
      periods: 3,
      needs: ['capture'],
    });
    alarm('slot-lag-seconds', 'Capture is behind the newest source commit.', slotLagSeconds, {
      threshold: t.slotLagSeconds,
      periods: 2,
      needs: ['capture'],
    });
    alarm(
      'slot-wal-status',
      "The slot's wal_status has left 'reserved' (1 extended, 2 unreserved: WAL will be removed at the next checkpoint, 3 lost, 4 the slot is missing): capture is far behind.",
      walStatus,
      { threshold: 1, periods: 3, needs: ['capture'] },
    );
    alarm('source-unreachable', 'Capture cannot query the source database: its slot health is unknown and nothing is being captured.', sourceUnreachable, {
      threshold: 1,
      periods: 3,
      needs: ['capture'],
    });
    // Capture reports SourceUnreachable (0 or 1) at start and every minute, whatever the source does.
    silent('capture-silent', 'Capture reports nothing: the task is stopped or hung, and slot lag is unknown.', sourceUnreachable, ['capture']);
    alarm(
      'schema-issues',
      'A column the warehouse maps was dropped or retyped in totesys: its changes no longer reach the warehouse while freshness can stay green. Capture logs name the table and column.',
      schemaIssues,
      { threshold: 1, periods: 1, needs: ['capture'] },
    );
    alarm('put-records-retries', 'Capture keeps retrying PutRecords: Kinesis refuses its writes (add shards, or ON_DEMAND).', putRetries, {
      threshold: t.putRecordsRetriesPerMinute,
      periods: 5,
      needs: ['capture'],
    });
    alarm('stream-write-throttled', 'Kinesis throttles writes to the change stream: it lacks shard capacity for the change rate.', writeThrottled, {
      threshold: t.writeThrottledRecordsPerMinute,
      periods: 5,
      needs: ['capture'],
    });
    alarm('warehouse-freshness', 'The warehouse is stale: the newest source commit it fully reflects is too old (budget: 30 minutes).', freshness, {
      threshold: t.warehouseFreshnessSeconds,
      periods: 2,
      needs: ['capture', 'loader'],
    });
    // The loader reports freshness every minute once it has loaded a heartbeat.
    silent('loader-silent', 'The loader reports no warehouse freshness: it is stopped or has loaded no heartbeat.', freshness, ['capture', 'loader']);
    alarm('loader-errors', 'Loader passes are failing (each is retried): the warehouse falls behind from here (loader logs).', loaderErrors, {
      threshold: t.loaderErrors,
      periods: 2,
      needs: ['loader'],
    });
    alarm(
      'loader-unproven-junctions',
      "The loader loaded micro-batches past the stream's retention without proof that none lies between them (it was behind by more than the retention): run `totes verify`; if anything is missing, `totes replay` over the range its log names.",
      unproven,
      { threshold: 1, periods: 1, needs: ['loader'] },
    );
    alarm('loader-gap-age', "A shard's loaded batches have a gap older than the threshold: the batches after it wait.", gapAge, {
      threshold: t.loaderGapAgeSeconds,
      periods: 1,
      compare: '>',
      needs: ['loader'],
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
      needs: ['capture'],
    });
    // Five minutes outlasts a deployment, which stops the old capture task before it starts the new one.
    alarm('capture-not-running', 'No capture task is running: nothing is read from the source and its slot holds WAL.', captureTasks, {
      threshold: 1,
      periods: 5,
      compare: '<',
      missingIsBreaching: true,
      needs: ['capture'],
    });
    alarm('loader-not-running', 'No loader task is running: the warehouse falls behind (ECS service events, loader logs).', loaderTasks, {
      threshold: 1,
      periods: 5,
      compare: '<',
      missingIsBreaching: true,
      needs: ['loader'],
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
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 })],
        [
          graph('Warehouse freshness (s)', [freshness], t.warehouseFreshnessSeconds, [serviceMetric('loader', 'BatchesLoaded', 'Sum')]),
          graph('Slot lag (s)', [slotLagSeconds], t.slotLagSeconds),
          graph('Slot lag (bytes)', [slotLagBytes], t.slotLagBytes, [serviceMetric('capture', 'SafeWalSizeBytes', 'Minimum')]),
        ],
        [
          graph('Source: unreachable, wal_status, schema issues', [sourceUnreachable, walStatus, schemaIssues], 1),
          graph('Tasks running: capture, loader', [captureTasks, loaderTasks], 1),
          graph('Capture throughput', [serviceMetric('capture', 'ChangesPerSecond', 'Average')], undefined, [
            serviceMetric('capture', 'BytesPerSecond', 'Average'),
          ]),
        ],
        [
          graph('Kinesis writes: retries and throttled records', [putRetries, writeThrottled], 1, [serviceMetric('capture', 'PutRecordsLatency', 'Average')]),
          graph('Firehose behind the stream (ms)', [archiveBehind], t.streamIteratorAgeSeconds * 1000),
          graph('Processor iterator age (ms)', [processorIteratorAge], t.processorIteratorAgeSeconds * 1000),
        ],
        [
          graph('Processor events and errors', [serviceMetric('processor', 'Events', 'Sum', FIVE_MINUTES)], undefined, [processorErrors, batchFailures]),
          graph('Dead letters and on-failure queue', [deadLetters, queueVisible], 1),
          graph('Archive (Firehose) freshness (s)', [archiveFreshness], t.firehoseFreshnessSeconds),
        ],
        [
          graph('Loader errors', [loaderErrors], t.loaderErrors),
          graph('Loader gap age (s)', [gapAge], t.loaderGapAgeSeconds),
          graph('Batches loaded without proof (past the retention)', [unproven], 1),
        ],
      ],
    });
  }
}
