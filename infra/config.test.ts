import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.ts';
import { DEFAULT_CONFIG, resolveConfig } from './config.ts';

const IMPORTED_VPC = { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['eu-west-2a'], privateSubnetIds: ['subnet-0123456789abcdef0'] };

describe('resolveConfig', () => {
  it('gives the defaults without a `totes` context, or with an empty one', () => {
    expect(resolveConfig(undefined)).toEqual(DEFAULT_CONFIG);
    expect(resolveConfig('')).toEqual(DEFAULT_CONFIG);
  });

  it('overrides key by key, from an object or from the JSON string `-c totes=...` gives', () => {
    const fromObject = resolveConfig({ stream: { shardCount: 4 }, alarms: { warehouseFreshnessSeconds: 300 } });
    expect(fromObject.stream).toEqual({ ...DEFAULT_CONFIG.stream, shardCount: 4 });
    expect(fromObject.alarms).toEqual({ ...DEFAULT_CONFIG.alarms, warehouseFreshnessSeconds: 300 });
    expect(resolveConfig('{"stream":{"mode":"ON_DEMAND"}}').stream.mode).toBe('ON_DEMAND');
  });

  it('rejects a misspelt setting instead of ignoring it', () => {
    expect(() => resolveConfig({ stream: { shards: 4 } })).toThrow(/^invalid totes configuration:\n {2}stream.shards: unknown field$/);
    expect(() => resolveConfig('not json')).toThrow(ConfigError);
    expect(() => resolveConfig([1])).toThrow(/JSON object/);
  });

  it('names every unknown setting by its path, at any depth, all at once', () => {
    expect(() => resolveConfig({ strem: {}, capture: { runing: true }, vpc: { ...IMPORTED_VPC, subnets: [] }, warehouse: { hostname: 'db' } })).toThrow(
      new ConfigError(
        'invalid totes configuration:\n  strem: unknown field\n  capture.runing: unknown field\n  vpc.subnets: unknown field\n  warehouse.hostname: unknown field',
      ),
    );
  });

  it('names a setting of the wrong type by its path, with the value given', () => {
    const bad = () =>
      resolveConfig({
        stream: 5,
        capture: { running: 'yes', slotName: 7 },
        processor: { batchSize: '1000' },
        vpc: 'vpc-0123456789abcdef0',
        source: { host: 5432 },
        alarms: { loaderErrors: null },
      });
    expect(bad).toThrow(/^ {2}stream: expected object, got 5$/m);
    expect(bad).toThrow(/^ {2}capture.running: expected boolean, got "yes"$/m);
    expect(bad).toThrow(/^ {2}capture.slotName: expected string, got 7$/m);
    expect(bad).toThrow(/^ {2}processor.batchSize: expected number, got "1000"$/m);
    expect(bad).toThrow(/^ {2}vpc: expected null or object, got "vpc-0123456789abcdef0"$/m);
    expect(bad).toThrow(/^ {2}source.host: expected string, got 5432$/m);
    expect(bad).toThrow(/^ {2}alarms.loaderErrors: expected number, got null$/m);
    expect(() => resolveConfig({ vpc: { ...IMPORTED_VPC, availabilityZones: 'eu-west-2a' } })).toThrow(
      /vpc.availabilityZones: expected array, got "eu-west-2a"/,
    );
  });

  it('rejects values AWS would refuse at deploy time, naming each', () => {
    const bad = () =>
      resolveConfig({
        stream: { shardCount: 0 },
        archive: { infrequentAccessAfterDays: 10 },
        logRetentionDays: 42,
        loader: { idlePollMs: 10 },
        source: { secretArn: 'my-secret' },
        alarms: { slotLagBytes: 0 },
      });
    expect(bad).toThrow(/stream.shardCount: must be a positive integer, got 0/);
    expect(bad).toThrow(/archive.infrequentAccessAfterDays: must be at least 30/);
    expect(bad).toThrow(/logRetentionDays: must be one CloudWatch Logs accepts .*, got 42/);
    expect(bad).toThrow(/loader.idlePollMs: must be a whole number of milliseconds, at least 100, got 10/);
    expect(bad).toThrow(/source.secretArn: must be a secret's complete ARN/);
    expect(bad).toThrow(/alarms.slotLagBytes: must be a positive number, got 0/);
  });

  it('checks the rules between settings once each setting is valid', () => {
    expect(() => resolveConfig({ archive: { glacierAfterDays: 20 } })).toThrow(
      /archive.glacierAfterDays: must be at least 30 days after archive.infrequentAccessAfterDays, got 20/,
    );
    expect(() => resolveConfig({ processed: { deadLetterExpireAfterDays: 10 } })).toThrow(
      /processed.deadLetterExpireAfterDays: must be at least processed.expireAfterDays, got 10/,
    );
    expect(() => resolveConfig({ capture: { running: true } })).toThrow(/capture.running: needs a network that reaches the source/);
    expect(() => resolveConfig({ loader: { running: true } })).toThrow(/loader.running: needs a network that reaches the warehouse/);
    expect(resolveConfig({ loader: { running: true }, newVpcConnected: true }).loader.running).toBe(true);
    expect(resolveConfig({ loader: { running: true }, vpc: IMPORTED_VPC }).loader.running).toBe(true);
    expect(() => resolveConfig({ vpc: IMPORTED_VPC, newVpcConnected: true })).toThrow(/newVpcConnected: is for the VPC the stack creates/);
    expect(() => resolveConfig({ natGateways: 0 })).toThrow(/natGateways: must be at least 1 in a new VPC/);
    expect(resolveConfig({ natGateways: 0, vpc: IMPORTED_VPC }).natGateways).toBe(0);
  });

  it('needs every attribute of an imported VPC, one subnet per zone', () => {
    expect(() =>
      resolveConfig({
        vpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['eu-west-2a', 'eu-west-2b'], privateSubnetIds: ['subnet-0123456789abcdef0'] },
      }),
    ).toThrow(/vpc.privateSubnetIds: needs one entry per availability zone/);
    expect(() => resolveConfig({ vpc: { vpcId: 'my-vpc', availabilityZones: ['eu-west-2a'], privateSubnetIds: ['subnet-1'] } })).toThrow(
      /vpc.vpcId: is not an AWS id of that kind \(vpc-...\), got "my-vpc"\n {2}vpc.privateSubnetIds\[0\]: is not an AWS id of that kind \(subnet-...\), got "subnet-1"$/,
    );
    expect(() => resolveConfig({ vpc: { vpcId: 'vpc-0123456789abcdef0' } })).toThrow(/vpc.availabilityZones: missing\n {2}vpc.privateSubnetIds: missing/);
    expect(() => resolveConfig({ warehouse: { securityGroupId: 'default' } })).toThrow(/warehouse.securityGroupId: is not an AWS id/);
  });

  it("checks the archive lock, the processed expiry and the imported secrets' keys and hosts", () => {
    const bad = () =>
      resolveConfig({
        archive: { lockMode: 'LEGAL', lockRetentionDays: 0 },
        processed: { expireAfterDays: 3, deadLetterExpireAfterDays: 1.5 },
        source: { secretKmsKeyArn: 'arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab' },
        warehouse: { host: 'db host', port: 70_000, secretKmsKeyArn: 'my-key' },
      });
    expect(bad).toThrow(/archive.lockMode: expected "COMPLIANCE" or "GOVERNANCE", got "LEGAL"/);
    expect(bad).toThrow(/archive.lockRetentionDays: must be a whole number of days from 1 to 36500, got 0/);
    expect(bad).toThrow(/processed.expireAfterDays: must be a whole number of days, at least 7/);
    expect(bad).toThrow(/processed.deadLetterExpireAfterDays: must be a whole number of days, got 1.5/);
    expect(bad).toThrow(/source.secretKmsKeyArn: is the key of an imported secret: set source.secretArn with it/);
    expect(bad).toThrow(/warehouse.secretKmsKeyArn: must be a KMS key's ARN \(arn:aws:kms:REGION:ACCOUNT:key\/ID\), got "my-key"/);
    expect(bad).toThrow(/warehouse.host: must be a host name or address, got "db host"/);
    expect(bad).toThrow(/warehouse.port: must be a port number, got 70000/);
  });

  it('keeps the processor from dead-lettering records after the stream has dropped them', () => {
    expect(() => resolveConfig({ processor: { maxRecordAgeSeconds: 48 * 3600 } })).toThrow(
      /processor.maxRecordAgeSeconds: must not exceed the stream retention/,
    );
    expect(resolveConfig({ processor: { maxRecordAgeSeconds: 48 * 3600 }, stream: { retentionHours: 48 } }).processor.maxRecordAgeSeconds).toBe(48 * 3600);
  });
});
