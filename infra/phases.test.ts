/**
 * The first deployment with the defaults must succeed: the stack cannot know the databases'
 * credentials or network yet, so capture and the loader stay stopped (phase 1) and nothing in
 * it tries to reach a database. Starting them (phase 2) is refused while no network reaches
 * the databases. docs/deploy.md walks both phases.
 */
import { describe, expect, it } from 'vitest';
import { SECRET_PLACEHOLDER_HOST } from '../cli/doctor-aws.ts';
import { resolveConfig } from './config.ts';
import { deployPhase } from './deploy-phase.ts';
import { inspect, RUNNING, synthesize, unacknowledgedNagFindings } from './testing.ts';

const { stack, template } = synthesize();
const { resources } = inspect(template);
const alarms = Object.values(resources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
const byName = (name: string) => alarms.find((a) => a.AlarmName === `TotesCdc-${name}`)!;
const IMPORTED_VPC = { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['eu-west-2a'], privateSubnetIds: ['subnet-0123456789abcdef0'] };

describe('phase 1: the defaults', () => {
  it('create the capture and loader services with no task', () => {
    expect(Object.values(resources('AWS::ECS::Service')).map((s) => s.Properties.DesiredCount)).toEqual([0, 0]);
  });

  it('keep the notifications of alarms on stopped services off, and those of the parts that do run on', () => {
    for (const name of [
      'capture-not-running',
      'slot-lag-bytes',
      'source-unreachable',
      'archive-iterator-age',
      'capture-silent',
      'loader-silent',
      'loader-not-running',
      'warehouse-freshness',
      'loader-errors',
      'loader-gap-age',
      'archive-freshness',
    ]) {
      expect(byName(name), name).toMatchObject({ ActionsEnabled: false, TreatMissingData: 'notBreaching' });
      expect(byName(name).AlarmDescription).toMatch(/Notifications off while .*running is false\.$/);
    }
    for (const name of ['processor-errors', 'on-failure-queue', 'dead-letters']) expect(byName(name).ActionsEnabled, name).toBe(true);
  });

  it('create the database secrets with the placeholder host `totes doctor` refuses before phase 2', () => {
    const created = Object.values(resources('AWS::SecretsManager::Secret')).map((r) => JSON.parse(r.Properties.GenerateSecretString.SecretStringTemplate).host);
    expect(created).toEqual([SECRET_PLACEHOLDER_HOST, SECRET_PLACEHOLDER_HOST]);
  });

  it('pass cdk-nag', () => {
    expect(unacknowledgedNagFindings(stack, 'error')).toEqual([]);
    expect(unacknowledgedNagFindings(stack, 'warning')).toEqual([]);
  });
});

describe('phase 2: starting capture and the loader', () => {
  it('is refused in the VPC the stack creates until it is marked as connected to the databases, naming what to set', () => {
    for (const service of ['capture', 'loader']) {
      expect(() => resolveConfig({ [service]: { running: true } })).toThrow(new RegExp(`${service}.running: needs a network .* set vpc .* newVpcConnected`));
    }
    expect(resolveConfig(RUNNING).capture.running).toBe(true);
    expect(resolveConfig({ ...RUNNING, newVpcConnected: false, vpc: IMPORTED_VPC }).loader.running).toBe(true);
    expect(() => resolveConfig({ vpc: IMPORTED_VPC, newVpcConnected: true })).toThrow(/newVpcConnected: is for the VPC the stack creates/);
  });

  it('is what the deploy workflow calls phase 2 (it then checks the database secrets first)', () => {
    expect(deployPhase(resolveConfig({}))).toBe(1);
    expect(deployPhase(resolveConfig(RUNNING))).toBe(2);
    expect(deployPhase(resolveConfig({ loader: { running: true }, newVpcConnected: true }))).toBe(2);
  });

  it('runs one capture task and one loader task', () => {
    const running = inspect(synthesize(RUNNING).template);
    expect(Object.values(running.resources('AWS::ECS::Service')).map((s) => s.Properties.DesiredCount)).toEqual([1, 1]);
  });
});
