/**
 * The credentials of the source and the warehouse, in Secrets Manager. An existing secret is
 * imported by ARN (with the customer-managed KMS key that encrypts it, when there is one: its
 * readers get kms:Decrypt through Secrets Manager); otherwise an empty one is created for the
 * operator to fill (docs/deploy.md). The services get only the ARN and read the value at start
 * (lib/config.ts), so nothing secret is ever in an environment variable, a template or a log.
 *
 * A created secret survives what an operator does to the stack: CloudFormation generates a new
 * value (placeholder host, random password) on any change to its generation properties, so
 * those are constants here, never derived from a setting (the host and port reach the services
 * from the settings instead); and the secret is kept when the stack is deleted.
 */
import { Construct } from 'constructs';
import { RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { DatabaseConfig, TotesConfig } from '../config.ts';

/**
 * The generated values' templates, as the first stacks were deployed with them (the `port`
 * was then the port setting's default; the services read the port from the setting now).
 * Changing this text replaces what operators have filled in: infra/secrets.test.ts holds it.
 */
export const SECRET_TEMPLATES = {
  Source: '{"host":"REPLACE-ME","username":"totes_cdc","dbname":"totesys","port":5432}',
  Warehouse: '{"host":"REPLACE-ME","username":"totes_loader","dbname":"warehouse","port":5432}',
} as const;

export class DatabaseSecrets extends Construct {
  readonly source: secretsmanager.ISecret;
  readonly warehouse: secretsmanager.ISecret;

  constructor(scope: Construct, id: string, config: TotesConfig) {
    super(scope, id);
    this.source = this.secret('Source', config.source);
    this.warehouse = this.secret('Warehouse', config.warehouse);
  }

  private secret(name: keyof typeof SECRET_TEMPLATES, db: DatabaseConfig): secretsmanager.ISecret {
    if (db.secretArn)
      return secretsmanager.Secret.fromSecretAttributes(this, name, {
        secretCompleteArn: db.secretArn,
        ...(db.secretKmsKeyArn ? { encryptionKey: kms.Key.fromKeyArn(this, `${name}Key`, db.secretKmsKeyArn) } : {}),
      });
    const secret = new secretsmanager.Secret(this, name, {
      description: `totes-cdc ${name.toLowerCase()} database: JSON host, port, username, password, dbname. Replace host and password with the real values.`,
      generateSecretString: { secretStringTemplate: SECRET_TEMPLATES[name], generateStringKey: 'password', excludePunctuation: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The database is not managed by this stack: its owner changes the password in the database and then in this secret; a rotation Lambda would need admin access to a database we do not own.',
    });
    return secret;
  }
}

/**
 * Read access to a database secret, with kms:Decrypt through Secrets Manager when it is under a
 * customer-managed key: for a key imported by ARN, ISecret.grantRead's own grant (to a
 * ViaServicePrincipal) reaches neither the key's policy nor the grantee's.
 */
export function grantSecretRead(secret: secretsmanager.ISecret, grantee: iam.IGrantable): void {
  secret.grantRead(grantee);
  if (secret.encryptionKey)
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['kms:Decrypt'],
      resourceArns: [secret.encryptionKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Stack.of(secret).region}.amazonaws.com` } },
    });
}
