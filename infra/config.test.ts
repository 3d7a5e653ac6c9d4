import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.ts';
import { describeFatal } from '../lib/fatal.ts';
import { DEFAULT_CONFIG, resolveConfig } from './config.ts';

const catchError = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('did not throw');
};

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
    // the services' configuration error: said as one, with exit status 2
    expect(describeFatal(catchError(() => resolveConfig({ strem: {} })))).toMatchObject({ line: expect.stringMatching(/^configuration error: /), exitCode: 2 });
    expect(() => resolveConfig([1])).toThrow(/JSON object/);
  });

  it('rejects values AWS would refuse at deploy time, naming each', () => {
    const bad = () =>
      resolveConfig({
        stream: { shardCount: 0 },
        archive: { infrequentAccessAfterDays: 10 },
        logRetentionDays: 42,
        loader: { timeoutSeconds: 30 },
        source: { secretArn: 'my-secret' },
        alarms: { slotLagBytes: 0 },
      });
    expect(bad).toThrow(/stream.shardCount: must be an integer of at least 1, got 0/);
    expect(bad).toThrow(/archive.infrequentAccessAfterDays: must be at least 30/);
    expect(bad).toThrow(/logRetentionDays: must be one CloudWatch Logs accepts .*, got 42/);
    expect(bad).toThrow(/loader.timeoutSeconds: must be over 30/);
    expect(bad).toThrow(/source.secretArn: must be a secret's complete ARN/);
    expect(bad).toThrow(/alarms.slotLagBytes: must be a positive number, got 0/);
    expect(() => resolveConfig({ stream: 5 })).toThrow(/stream: expected object, got 5/);
  });

  it('checks the rules between settings once each is valid', () => {
    expect(() => resolveConfig({ archive: { glacierAfterDays: 20 } })).toThrow(
      /archive.glacierAfterDays must be at least 30 days after archive.infrequentAccessAfterDays/,
    );
    expect(() => resolveConfig({ processed: { deadLetterExpireAfterDays: 10 } })).toThrow(
      /processed.deadLetterExpireAfterDays must be at least processed.expireAfterDays/,
    );
    expect(() => resolveConfig({ loader: { running: true } })).toThrow(/loader.running needs a network that reaches the warehouse/);
    expect(() => resolveConfig({ natGateways: 0 })).toThrow(/natGateways must be at least 1 in a new VPC/);
    expect(resolveConfig({ loader: { running: true }, newVpcConnected: true }).loader.running).toBe(true);
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
    expect(() => resolveConfig({ warehouse: { securityGroupId: 'default' } })).toThrow(/warehouse.securityGroupId: is not an AWS id/);
  });

  it('checks the archive lock, the processed expiry and the loader duration alarm', () => {
    const bad = () =>
      resolveConfig({
        archive: { lockMode: 'LEGAL', lockRetentionDays: 0 },
        processed: { expireAfterDays: 3, deadLetterExpireAfterDays: 1 },
        alarms: { loaderDurationOfTimeout: 1.2 },
      });
    expect(bad).toThrow(/archive.lockMode: expected "COMPLIANCE" or "GOVERNANCE", got "LEGAL"/);
    expect(bad).toThrow(/archive.lockRetentionDays: must be an integer from 1 to 36500, got 0/);
    expect(bad).toThrow(/processed.expireAfterDays: must be an integer of at least 7/);
    expect(bad).toThrow(/alarms.loaderDurationOfTimeout: must be under 1/);
    expect(() => resolveConfig({ capture: { running: 'yes' } })).toThrow(/capture.running: expected boolean, got "yes"/);
  });

  it('keeps the processor from dead-lettering records after the stream has dropped them', () => {
    expect(() => resolveConfig({ processor: { maxRecordAgeSeconds: 48 * 3600 } })).toThrow(/must not exceed the stream retention/);
  });
});
