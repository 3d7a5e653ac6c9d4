/**
 * The alarms of a running deployment (phase 2), against the 30-minute promise: each one's
 * notification followed end to end (alarm → topic → topic policy → KMS key policy), the
 * figures each watches, and what each makes of a figure that stops arriving.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from './config.ts';
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
    expect(alarms.length).toBe(19);
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
  const processorId = logicalIdOf('AWS::Lambda::Function', (p) => p.Environment?.Variables?.TOTES_PROCESSED_BUCKET && !p.VpcConfig);
  const loaderId = logicalIdOf('AWS::Lambda::Function', (p) => p.Environment?.Variables?.TOTES_WAREHOUSE_SECRET_ARN);
  const fn = (id: string) => [{ Name: 'FunctionName', Value: { Ref: id } }];
  const lambdaAlarm = (metric: string, id: string) => {
    const found = alarms.filter((x) => x.Namespace === 'AWS/Lambda' && x.MetricName === metric && x.Dimensions[0].Value.Ref === id);
    expect(found, `${metric} ${id}`).toHaveLength(1);
    return found[0];
  };
  const capture = [{ Name: 'Service', Value: 'capture' }];

  it('consumers that fall behind or stop polling: a stream or processor iterator age with no figure is breaching', () => {
    expect(find('AWS/Kinesis', 'GetRecords.IteratorAgeMilliseconds')).toMatchObject({
      Threshold: a.streamIteratorAgeSeconds * 1000,
      Statistic: 'Maximum',
      Dimensions: [{ Name: 'StreamName', Value: { Ref: streamId } }],
      TreatMissingData: 'breaching',
    });
    expect(lambdaAlarm('IteratorAge', processorId)).toMatchObject({ Threshold: a.processorIteratorAgeSeconds * 1000, TreatMissingData: 'breaching' });
    expect(lambdaAlarm('Errors', processorId)).toMatchObject({ Threshold: a.processorErrors, Statistic: 'Sum', Dimensions: fn(processorId) });
  });

  it('the loader: errors, throttles, a run near its timeout, a gap in loaded batches older than 15 minutes', () => {
    expect(lambdaAlarm('Errors', loaderId)).toMatchObject({ Threshold: a.loaderErrors, Statistic: 'Sum', EvaluationPeriods: 2 });
    expect(lambdaAlarm('Throttles', loaderId)).toMatchObject({ Threshold: 1, Statistic: 'Sum' });
    expect(lambdaAlarm('Duration', loaderId)).toMatchObject({ Threshold: DEFAULT_CONFIG.loader.timeoutSeconds * 1000 * 0.8, Statistic: 'Maximum' });
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
    expect(find('TotesCdc', 'SourceUnreachable')).toMatchObject({ Threshold: 1, Dimensions: capture, TreatMissingData: 'breaching' });
    expect(find('TotesCdc', 'SlotLagBytes')).toMatchObject({ Threshold: a.slotLagBytes, Dimensions: capture, TreatMissingData: 'breaching' });
    expect(find('TotesCdc', 'SlotLagSeconds')).toMatchObject({ Threshold: a.slotLagSeconds, Dimensions: capture, TreatMissingData: 'breaching' });
  });

  it('warehouse freshness, alarming well before the 30-minute budget and when the loader reports nothing', () => {
    const freshness = find('TotesCdc', 'WarehouseFreshnessSeconds');
    expect(freshness).toMatchObject({
      Threshold: a.warehouseFreshnessSeconds,
      Dimensions: [{ Name: 'Service', Value: 'loader' }],
      TreatMissingData: 'breaching',
    });
    // The latest it can fire: threshold plus the breaching minutes, with half the budget left.
    expect(freshness.Threshold + freshness.EvaluationPeriods * freshness.Period).toBeLessThanOrEqual(15 * 60);
  });

  it('dead letters, Firehose delivery and the capture task running', () => {
    expect(find('AWS/SQS', 'ApproximateNumberOfMessagesVisible')).toMatchObject({ Threshold: 1 });
    expect(find('TotesCdc', 'DeadLetters')).toMatchObject({ Threshold: 1, Statistic: 'Sum', Dimensions: [{ Name: 'Service', Value: 'processor' }] });
    expect(find('AWS/Firehose', 'DeliveryToS3.DataFreshness')).toMatchObject({ Threshold: a.firehoseFreshnessSeconds, TreatMissingData: 'breaching' });
    expect(find('ECS/ContainerInsights', 'RunningTaskCount')).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      Statistic: 'Minimum',
      TreatMissingData: 'breaching',
    });
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
