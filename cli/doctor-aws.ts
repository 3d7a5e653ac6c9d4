/**
 * `totes doctor` on the AWS side (or the emulators): the database secrets, the stream and the
 * buckets, each read with the calls the services make. An S3 feature the endpoint does not
 * implement (an emulator) is reported as skipped, not as holding.
 */
import { DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { GetBucketVersioningCommand, GetObjectLockConfigurationCommand, HeadBucketCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { type Check, fail, ok, skip } from './doctor-checks.ts';

/** The host the stack writes into the secrets it creates (infra/constructs/database-secrets.ts), for the operator to replace. */
export const SECRET_PLACEHOLDER_HOST = 'REPLACE-ME';

/**
 * The secret a service reads (lib/config.ts databaseUrl): readable, JSON, complete, and no longer
 * the stack's placeholder. `host`: the host setting (TOTES_*_HOST), which makes the secret's own
 * optional, as in an RDS-managed secret.
 */
export async function checkSecret(which: 'source' | 'warehouse', arn: string, host?: string): Promise<Check[]> {
  const client = new SecretsManagerClient({ region: arn.split(':')[3] || undefined });
  const name = `${which} secret ${arn.split(':')[6] ?? arn}`;
  try {
    const out = await client.send(new GetSecretValueCommand({ SecretId: arn }));
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(out.SecretString ?? '');
    } catch {
      return [fail('secrets', `${name} is not JSON`, 'put {"host", "port", "username", "password", "dbname"} in it (docs/deploy.md, credentials)')];
    }
    const missing = [...(host ? [] : ['host']), 'username', 'password'].filter((k) => !value[k]);
    if (missing.length) return [fail('secrets', `${name} has no ${missing.join(', ')}`, 'put {"host", "port", "username", "password", "dbname"} in it')];
    if (value.host === SECRET_PLACEHOLDER_HOST)
      return [
        fail(
          'secrets',
          `${name} still holds the placeholder host ${SECRET_PLACEHOLDER_HOST}`,
          `aws secretsmanager put-secret-value --secret-id ${arn} --secret-string file://${which}.json`,
        ),
      ];
    return [ok('secrets', `${name}: ${value.username}@${host || value.host}:${value.port ?? 5432}/${value.dbname ?? ''}`)];
  } catch (err) {
    return [
      fail('secrets', `${name} cannot be read: ${(err as Error).message}`, 'check the ARN and that these credentials may secretsmanager:GetSecretValue on it'),
    ];
  } finally {
    client.destroy();
  }
}

export async function checkStream(name: string, endpoint: string | undefined): Promise<Check[]> {
  const client = kinesisClient({ kinesisEndpoint: endpoint });
  try {
    const { StreamDescriptionSummary: s } = await client.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    const checks = [
      s?.StreamStatus === 'ACTIVE' || s?.StreamStatus === 'UPDATING'
        ? ok('stream', `${name}: ${s.StreamStatus}, ${s.OpenShardCount} open shards, ${s.RetentionPeriodHours} h retention`)
        : fail('stream', `${name} is ${s?.StreamStatus}`, 'wait for the stream to become ACTIVE, or check the stack events'),
    ];
    if (!endpoint)
      checks.push(
        s?.EncryptionType === 'KMS'
          ? ok('stream', `${name} is encrypted (KMS)`)
          : fail('stream', `${name} is not encrypted`, 'deploy the stack: it encrypts the stream with KMS'),
      );
    return checks;
  } catch (err) {
    return [fail('stream', `${name} cannot be described: ${(err as Error).message}`, 'check TOTES_STREAM_NAME (the StreamName output) and the region')];
  } finally {
    client.destroy();
  }
}

const notImplemented = (err: unknown) => (err as { name?: string }).name === 'NotImplemented';

export async function checkBuckets(o: { ingestion: string; processed: string; endpoint: string | undefined }): Promise<Check[]> {
  const s3 = s3Client({ s3Endpoint: o.endpoint });
  const checks: Check[] = [];
  const readable = async (bucket: string, prefix: string, role: string) => {
    try {
      await s3.send(new HeadBucketCommand({ Bucket: bucket }));
      // by delimiter: a few common prefixes, one page on any bucket (s3rver fails on a truncated listing)
      await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, Delimiter: '/' }));
      checks.push(ok('buckets', `${role} ${bucket} exists and lists`));
      return true;
    } catch (err) {
      checks.push(
        fail('buckets', `${role} ${bucket} cannot be read: ${(err as Error).message}`, 'check the bucket name (stack outputs) and these credentials'),
      );
      return false;
    }
  };
  try {
    if (await readable(o.ingestion, 'raw/', 'ingestion bucket')) {
      try {
        const versioning = await s3.send(new GetBucketVersioningCommand({ Bucket: o.ingestion }));
        const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: o.ingestion }));
        const retention = lock.ObjectLockConfiguration?.Rule?.DefaultRetention;
        checks.push(
          versioning.Status === 'Enabled' && lock.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled' && retention
            ? ok(
                'buckets',
                `ingestion bucket is versioned, objects locked ${retention.Mode} for ${retention.Days ?? `${retention.Years} years`}${retention.Days ? ' days' : ''}`,
              )
            : fail(
                'buckets',
                `ingestion bucket: versioning ${versioning.Status ?? 'off'}, Object Lock default retention ${retention ? 'set' : 'not set'}`,
                'the archive must be immutable: deploy the stack, which versions and locks it',
              ),
        );
      } catch (err) {
        checks.push(
          notImplemented(err)
            ? skip('buckets', 'ingestion bucket versioning and Object Lock: not implemented by this S3 endpoint (an emulator)')
            : fail(
                'buckets',
                `ingestion bucket Object Lock cannot be read: ${(err as Error).message}`,
                'the archive must be immutable: deploy the stack, which versions and locks it',
              ),
        );
      }
    }
    await readable(o.processed, 'manifests/', 'processed bucket');
    return checks;
  } finally {
    s3.destroy();
  }
}
