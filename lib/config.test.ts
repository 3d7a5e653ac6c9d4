/**
 * databaseUrl against Secrets Manager's wire protocol: credentials from the secret, host and
 * port from the deployment's settings when given, so an RDS-managed secret (username and
 * password only) works and a port change needs no new secret.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSecretsManager } from '../test/fake-secrets-manager.ts';
import { ENV, databaseUrl } from './config.ts';

const ARN = (name: string) => `arn:aws:secretsmanager:eu-west-2:123456789012:secret:${name}-AbCdEf`;
const SECRETS = {
  [ARN('rds-managed')]: JSON.stringify({ username: 'totes_cdc', password: 'p@ss/word' }),
  [ARN('full')]: JSON.stringify({ host: 'old.example.com', port: 5433, username: 'totes_loader', password: 'x', dbname: 'dw' }),
};

describe('databaseUrl from a secret', () => {
  let secrets: Awaited<ReturnType<typeof startFakeSecretsManager>>;
  const saved = { ...process.env };
  beforeAll(async () => {
    secrets = await startFakeSecretsManager(SECRETS);
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_REGION: 'eu-west-2',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    });
  });
  afterAll(async () => {
    process.env = saved;
    await secrets?.stop();
  });

  it('accepts an RDS-managed secret: the host and port from the settings, the credentials from the secret', async () => {
    const env = { [ENV.sourceSecret]: ARN('rds-managed'), [ENV.sourceHost]: 'totesys.abc.eu-west-2.rds.amazonaws.com', [ENV.sourcePort]: '5432' };
    expect(await databaseUrl(env, 'source')).toBe('postgres://totes_cdc:p%40ss%2Fword@totesys.abc.eu-west-2.rds.amazonaws.com:5432/totesys');
  });

  it('refuses a secret without a host when no host setting is given, naming both ways to give one', async () => {
    await expect(databaseUrl({ [ENV.sourceSecret]: ARN('rds-managed') }, 'source')).rejects.toThrow(
      /has no "host": set TOTES_SOURCE_HOST \(the source.host setting\) or put "host" in the secret/,
    );
  });

  it("takes the settings' host and port over the secret's, and the secret's when no setting is given", async () => {
    expect(await databaseUrl({ [ENV.warehouseSecret]: ARN('full') }, 'warehouse')).toBe('postgres://totes_loader:x@old.example.com:5433/dw');
    const env = { [ENV.warehouseSecret]: ARN('full'), [ENV.warehouseHost]: 'new.example.com', [ENV.warehousePort]: '6432' };
    expect(await databaseUrl(env, 'warehouse')).toBe('postgres://totes_loader:x@new.example.com:6432/dw');
  });
});
