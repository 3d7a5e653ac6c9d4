import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.ts';
import { DEFAULT_CONFIG, resolveConfig } from './config.ts';

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
    expect(() => resolveConfig({ stream: { shards: 4 } })).toThrow(/unknown setting totes.stream.shards/);
    expect(() => resolveConfig('not json')).toThrow(ConfigError);
    expect(() => resolveConfig([1])).toThrow(/JSON object/);
  });

  it('rejects values AWS would refuse at deploy time, naming each', () => {
    const bad = () =>
      resolveConfig({
        stream: { shardCount: 0 },
        archive: { infrequentAccessAfterDays: 10, glacierAfterDays: 20 },
        logRetentionDays: 42,
        loader: { idlePollMs: 10 },
        source: { secretArn: 'my-secret' },
        alarms: { slotLagBytes: 0 },
      });
    expect(bad).toThrow(/stream.shardCount/);
    expect(bad).toThrow(/archive.infrequentAccessAfterDays must be at least 30/);
    expect(bad).toThrow(/archive.glacierAfterDays/);
    expect(bad).toThrow(/logRetentionDays/);
    expect(bad).toThrow(/loader.idlePollMs/);
    expect(bad).toThrow(/source.secretArn/);
    expect(bad).toThrow(/alarms.slotLagBytes/);
  });

  it('needs every attribute of an imported VPC, one subnet per zone', () => {
    expect(() =>
      resolveConfig({
        vpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['eu-west-2a', 'eu-west-2b'], privateSubnetIds: ['subnet-0123456789abcdef0'] },
      }),
    ).toThrow(/one privateSubnetIds entry per availability zone/);
    expect(() => resolveConfig({ vpc: { vpcId: 'my-vpc', availabilityZones: ['eu-west-2a'], privateSubnetIds: ['subnet-1'] } })).toThrow(
      /vpc.vpcId: "my-vpc" is not an AWS id[\s\S]*privateSubnetIds: "subnet-1"/,
    );
    expect(() => resolveConfig({ warehouse: { securityGroupId: 'default' } })).toThrow(/warehouse.securityGroupId/);
  });

  it("checks the archive lock, the processed expiry and the imported secrets' keys and hosts", () => {
    const bad = () =>
      resolveConfig({
        archive: { lockMode: 'LEGAL', lockRetentionDays: 0 },
        processed: { expireAfterDays: 3, deadLetterExpireAfterDays: 1 },
        source: { secretKmsKeyArn: 'arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab' },
        warehouse: { host: 'db host', port: 70_000 },
      });
    expect(bad).toThrow(/archive.lockMode must be COMPLIANCE or GOVERNANCE/);
    expect(bad).toThrow(/archive.lockRetentionDays/);
    expect(bad).toThrow(/processed.expireAfterDays must be at least 7/);
    expect(bad).toThrow(/processed.deadLetterExpireAfterDays/);
    expect(bad).toThrow(/source.secretKmsKeyArn must be a KMS key's ARN .* with source.secretArn set/);
    expect(bad).toThrow(/warehouse.host must be a host name/);
    expect(bad).toThrow(/warehouse.port must be a port number/);
    expect(() => resolveConfig({ capture: { running: 'yes' } })).toThrow(/capture.running must be true or false/);
  });

  it('keeps the processor from dead-lettering records after the stream has dropped them', () => {
    expect(() => resolveConfig({ processor: { maxRecordAgeSeconds: 48 * 3600 } })).toThrow(/must not exceed the stream retention/);
  });
});
