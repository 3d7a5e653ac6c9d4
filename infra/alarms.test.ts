/**
 * The alarms of a running deployment (phase 2), against the 30-minute promise: each one's
 * notification followed end to end (alarm → topic → topic policy → KMS key policy), the
 * figures each watches, and what each makes of a figure that stops arriving.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from './config.ts';
import { DEPLOYMENT_GAP } from './constructs/monitoring.ts';
import { actionsOf, inspect, RUNNING, synthesize } from './testing.ts';

const { template } = synthesize(RUNNING);
const { resources, only, logicalIdOf } = inspect(template);
const alarms = Object.values(resources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
const a = DEFAULT_CONFIG.alarms;
const find = (namespace: string, metricName: string) => {
  const found = alarms.filter((x) => x.Namespace === namespace && x.MetricName === metricName);
  expect(found, `${namespace} ${metricName}`).toHaveLength(1);
  return found[0];
};

/** A template value with the pseudo parameters of one account and region put in. */
const PSEUDO: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': 'eu-west-2', 'AWS::AccountId': '123456789012' };
function resolve(v: any): string {
  if (typeof v === 'string') return v;
  if (v.Ref in PSEUDO) return PSEUDO[v.Ref];
  if (v['Fn::Join']) return v['Fn::Join'][1].map(resolve).join(v['Fn::Join'][0]);
  throw new Error(`cannot resolve ${JSON.stringify(v)}`);
}
/** IAM's ArnLike: * and ? wildcards. */
const arnLike = (pattern: string, arn: string) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  ).test(arn);

describe('alarm notifications, end to end', () => {
  const topicId = only('AWS::SNS::Topic').id;
  const topic = resources('AWS::SNS::Topic')[topicId].Properties;
  const topicPolicy = Object.values(resources('AWS::SNS::TopicPolicy')).find((p) => p.Properties.Topics.some((t: any) => t.Ref === topicId))!.Properties
    .PolicyDocument;
  const keyId = topic.KmsMasterKeyId['Fn::GetAtt'][0];
  const keyPolicy = resources('AWS::KMS::Key')[keyId].Properties.KeyPolicy;
  const forCloudWatch = (statements: any[], action: string) =>
    statements.filter((s) => s.Effect === 'Allow' && s.Principal?.Service === 'cloudwatch.amazonaws.com' && actionsOf(s).includes(action));

  it('every alarm notifies the topic when it fires and when it clears, with its actions on', () => {
    expect(alarms.length).toBe(24);
    for (const alarm of alarms) {
      expect(alarm.AlarmActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
      expect(alarm.OKActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
      expect(alarm.ActionsEnabled, alarm.AlarmName).toBe(true);
    }
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: { Ref: 'AlarmEmail' }, TopicArn: { Ref: topicId } });
  });

  it('the topic policy lets CloudWatch publish for exactly these alarms, and still refuses plain HTTP', () => {
    const [publish] = forCloudWatch(topicPolicy.Statement, 'sns:Publish');
    expect(publish.Resource).toEqual({ Ref: topicId });
    expect(publish.Condition.StringEquals).toEqual({ 'aws:SourceAccount': { Ref: 'AWS::AccountId' } });
    const pattern = resolve(publish.Condition.ArnLike['aws:SourceArn']);
    for (const alarm of alarms) expect(arnLike(pattern, `arn:aws:cloudwatch:eu-west-2:123456789012:alarm:${alarm.AlarmName}`), alarm.AlarmName).toBe(true);
    expect(arnLike(pattern, 'arn:aws:cloudwatch:eu-west-2:123456789012:alarm:SomeoneElse-alarm')).toBe(false);
    expect(arnLike(pattern, 'arn:aws:cloudwatch:eu-west-2:999999999999:alarm:TotesCdc-x')).toBe(false);
    expect(topicPolicy.Statement).toContainEqual(expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }));
  });

  it("the topic's key lets CloudWatch decrypt and generate data keys for the same alarms", () => {
    const [publish] = forCloudWatch(topicPolicy.Statement, 'sns:Publish');
    for (const action of ['kms:Decrypt', 'kms:GenerateDataKey*']) {
      const [grant] = forCloudWatch(keyPolicy.Statement, action);
      expect(grant, action).toBeDefined();
      expect(grant.Condition).toEqual(publish.Condition);
    }
    expect(resources('AWS::KMS::Key')[keyId].Properties.EnableKeyRotation).toBe(true);
  });
});

describe('what the alarms watch', () => {
  const streamId = only('AWS::Kinesis::Stream').id;
  const processorId = logicalIdOf('AWS::Lambda::Function', (p) => p.Environment?.Variables?.TOTES_PROCESSED_BUCKET);
  const fn = (id: string) => [{ Name: 'FunctionName', Value: { Ref: id } }];
  const lambdaAlarm = (metric: string, id: string) => {
    const found = alarms.filter((x) => x.Namespace === 'AWS/Lambda' && x.MetricName === metric && x.Dimensions[0].Value.Ref === id);
    expect(found, `${metric} ${id}`).toHaveLength(1);
    return found[0];
  };
  const capture = [{ Name: 'Service', Value: 'capture' }];

  it("the stream's consumers by their own read positions: Firehose's MillisBehindLatest and the processor mapping's IteratorAge, not the stream's GetRecords age (the loader's reads raise it)", () => {
    expect(alarms.filter((x) => x.MetricName === 'GetRecords.IteratorAgeMilliseconds')).toEqual([]);
    const firehose = alarms.filter((x) => x.MetricName === 'DataReadFromKinesisStream.MillisBehindLatest');
    expect(firehose.map((x) => [x.Statistic, x.TreatMissingData]).sort()).toEqual([
      ['Maximum', 'notBreaching'],
      ['SampleCount', 'breaching'],
    ]);
    expect(firehose.find((x) => x.Statistic === 'Maximum')).toMatchObject({
      Namespace: 'AWS/Firehose',
      Threshold: a.streamIteratorAgeSeconds * 1000,
      Dimensions: [{ Name: 'DeliveryStreamName', Value: { Ref: only('AWS::KinesisFirehose::DeliveryStream').id } }],
    });
    const processorAge = alarms.filter((x) => x.Namespace === 'AWS/Lambda' && x.MetricName === 'IteratorAge' && x.Dimensions[0].Value.Ref === processorId);
    expect(processorAge.find((x) => x.Statistic === 'Maximum')).toMatchObject({
      Threshold: a.processorIteratorAgeSeconds * 1000,
      TreatMissingData: 'notBreaching',
    });
    expect(lambdaAlarm('Errors', processorId)).toMatchObject({ Threshold: a.processorErrors, Statistic: 'Sum', Dimensions: fn(processorId) });
    // batches reported failed for retry are successes to Lambda: their own count
    expect(find('TotesCdc', 'BatchFailures')).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Statistic: 'Sum',
      Period: 300,
      EvaluationPeriods: 2,
      Dimensions: [{ Name: 'Service', Value: 'processor' }],
      TreatMissingData: 'notBreaching',
    });
    expect(streamId).toBeDefined();
  });

  it('the loader: failed passes and fatal lines counted from its logs, its task running, a gap in loaded batches older than 15 minutes', () => {
    const filter = only('AWS::Logs::MetricFilter').props;
    expect(filter.FilterPattern).toContain('$.msg = "load failed; retrying"');
    expect(filter.MetricTransformations).toEqual([{ MetricNamespace: 'TotesCdc', MetricName: 'LoaderErrors', MetricValue: '1' }]);
    expect(find('TotesCdc', 'LoaderErrors')).toMatchObject({ Threshold: a.loaderErrors, Statistic: 'Sum', EvaluationPeriods: 2 });
    expect(find('TotesCdc', 'LoaderGapAgeSeconds')).toMatchObject({
      Threshold: 15 * 60,
      ComparisonOperator: 'GreaterThanThreshold',
      Dimensions: [{ Name: 'Service', Value: 'loader' }],
      TreatMissingData: 'notBreaching',
    });
  });

  it('writes to Kinesis: throttled records on the stream and capture retrying PutRecords, sustained for 5 minutes', () => {
    expect(find('AWS/Kinesis', 'WriteProvisionedThroughputExceeded')).toMatchObject({
      Threshold: a.writeThrottledRecordsPerMinute,
      Statistic: 'Sum',
      EvaluationPeriods: 5,
    });
    expect(find('TotesCdc', 'PutRecordsRetries')).toMatchObject({
      Threshold: a.putRecordsRetriesPerMinute,
      Statistic: 'Sum',
      Dimensions: capture,
      EvaluationPeriods: 5,
    });
  });

  it('the source: schema issues, wal_status leaving reserved, unreachable (no figure is breaching), slot lag (no figure is breaching)', () => {
    expect(find('TotesCdc', 'SchemaIssues')).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Dimensions: capture,
      EvaluationPeriods: 1,
    });
    expect(find('TotesCdc', 'SlotWalStatus')).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', Dimensions: capture });
    const unreachable = alarms.filter((x) => x.MetricName === 'SourceUnreachable');
    expect(unreachable.find((x) => x.Statistic === 'Maximum')).toMatchObject({ Threshold: 1, Dimensions: capture, TreatMissingData: 'notBreaching' });
    expect(find('TotesCdc', 'SlotLagBytes')).toMatchObject({ Threshold: a.slotLagBytes, Dimensions: capture, TreatMissingData: 'notBreaching' });
    expect(find('TotesCdc', 'SlotLagSeconds')).toMatchObject({ Threshold: a.slotLagSeconds, Dimensions: capture, TreatMissingData: 'notBreaching' });
  });

  it('warehouse freshness, alarming well before the 30-minute budget and when the loader reports nothing', () => {
    const [freshness] = alarms.filter((x) => x.MetricName === 'WarehouseFreshnessSeconds' && x.Statistic === 'Maximum');
    expect(freshness).toMatchObject({
      Threshold: a.warehouseFreshnessSeconds,
      Dimensions: [{ Name: 'Service', Value: 'loader' }],
      TreatMissingData: 'notBreaching',
    });
    expect(alarms.find((x) => x.MetricName === 'WarehouseFreshnessSeconds' && x.Statistic === 'SampleCount')).toMatchObject({ TreatMissingData: 'breaching' });
    // The latest it can fire: threshold plus the breaching minutes, with half the budget left.
    expect(freshness.Threshold + freshness.EvaluationPeriods * freshness.Period).toBeLessThanOrEqual(15 * 60);
  });

  it('dead letters, Firehose delivery and the capture task running', () => {
    expect(find('AWS/SQS', 'ApproximateNumberOfMessagesVisible')).toMatchObject({ Threshold: 1 });
    expect(find('TotesCdc', 'DeadLetters')).toMatchObject({ Threshold: 1, Statistic: 'Sum', Dimensions: [{ Name: 'Service', Value: 'processor' }] });
    expect(find('AWS/Firehose', 'DeliveryToS3.DataFreshness')).toMatchObject({ Threshold: a.firehoseFreshnessSeconds, TreatMissingData: 'notBreaching' });
    const running = alarms.filter((x) => x.MetricName === 'RunningTaskCount');
    expect(running.map((x) => x.Dimensions.find((d: any) => d.Name === 'ServiceName').Value['Fn::GetAtt'][0]).sort()).toEqual(
      Object.keys(resources('AWS::ECS::Service')).sort(),
    );
    for (const x of running)
      expect(x).toMatchObject({ Threshold: 1, ComparisonOperator: 'LessThanThreshold', Statistic: 'Minimum', TreatMissingData: 'breaching' });
  });
});

describe('an ordinary capture deployment pages no one', () => {
  // The old capture task stops before the new one starts (min 0 %), so for DEPLOYMENT_GAP nothing
  // capture drives reports: capture's own figures, heartbeats, hence the processor and Firehose.
  const gapSeconds = DEPLOYMENT_GAP.toSeconds();
  const breachingWhenMissing = alarms.filter((x) => x.TreatMissingData === 'breaching');

  it('every alarm reads a missing figure as no breach, except those that need it missing for longer than a deployment', () => {
    for (const x of alarms) expect(['notBreaching', 'breaching'], x.AlarmName).toContain(x.TreatMissingData);
    expect(breachingWhenMissing.length).toBeGreaterThan(0);
    for (const x of breachingWhenMissing) {
      expect(x.DatapointsToAlarm, x.AlarmName).toBe(x.EvaluationPeriods);
      // missing from the gap's start, a period boundary can fall anywhere: the alarm needs one more period than the gap covers
      expect(x.EvaluationPeriods * x.Period, x.AlarmName).toBeGreaterThanOrEqual(gapSeconds + x.Period);
    }
  });

  it('the figures that stop during a deployment have an alarm for their silence, ten minutes long', () => {
    const silent = breachingWhenMissing.filter((x) => x.Statistic === 'SampleCount').map((x) => x.MetricName);
    expect(silent.sort()).toEqual(['DataReadFromKinesisStream.MillisBehindLatest', 'IteratorAge', 'SourceUnreachable', 'WarehouseFreshnessSeconds']);
    for (const x of breachingWhenMissing.filter((y) => y.Statistic === 'SampleCount'))
      expect(x).toMatchObject({ EvaluationPeriods: 10, Period: 60, Threshold: 1, ComparisonOperator: 'LessThanThreshold' });
  });

  it('a value alarm on a capture figure cannot fire on the figures of a task restarted with its slot: slot lag stays under the thresholds for the gap', () => {
    expect(a.slotLagSeconds).toBeGreaterThan(gapSeconds);
    expect(a.warehouseFreshnessSeconds).toBeGreaterThan(gapSeconds);
    expect(a.processorIteratorAgeSeconds).toBeGreaterThan(gapSeconds);
  });
});

describe('dashboard', () => {
  it('graphs every alarmed metric and shows every alarm', () => {
    // The body is a Fn::Join of JSON text and references; references become a placeholder string.
    const parts: unknown[] = only('AWS::CloudWatch::Dashboard').props.DashboardBody['Fn::Join'][1];
    const body = JSON.parse(parts.map((p) => (typeof p === 'string' ? p : 'ref')).join(''));
    const graphed = new Set(body.widgets.flatMap((w: any) => (w.properties.metrics ?? []).map((m: string[]) => `${m[0]} ${m[1]}`)));
    for (const alarm of alarms) expect(graphed).toContain(`${alarm.Namespace} ${alarm.MetricName}`);
    expect(body.widgets.find((w: any) => w.type === 'alarm').properties.alarms).toHaveLength(alarms.length);
  });
});
