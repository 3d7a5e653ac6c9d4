/**
 * The credentials of the source and the warehouse, in Secrets Manager. An existing secret is
 * imported by ARN; otherwise an empty one is created for the operator to fill (docs/deploy.md).
 * The services get only the ARN and read the value at start (lib/config.ts), so nothing secret
 * is ever in an environment variable, a template or a log.
 */
import { Construct } from 'constructs';
import { Validations } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { TotesConfig } from '../config.ts';

export class DatabaseSecrets extends Construct {
  readonly source: secretsmanager.ISecret;
  readonly warehouse: secretsmanager.ISecret;

  constructor(scope: Construct, id: string, config: TotesConfig) {
    super(scope, id);
    this.source = this.secret('Source', config.source.secretArn, { username: 'totes_cdc', dbname: 'totesys', port: config.source.port });
    this.warehouse = this.secret('Warehouse', config.warehouse.secretArn, { username: 'totes_loader', dbname: 'warehouse', port: config.warehouse.port });
  }

  private secret(name: string, arn: string | undefined, template: { username: string; dbname: string; port: number }): secretsmanager.ISecret {
    if (arn) return secretsmanager.Secret.fromSecretCompleteArn(this, name, arn);
    const secret = new secretsmanager.Secret(this, name, {
      description: `totes-cdc ${name.toLowerCase()} database: JSON host, port, username, password, dbname. Replace host and password with the real values.`,
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ host: 'REPLACE-ME', ...template }),
        generateStringKey: 'password',
        excludePunctuation: true,
      },
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The database is not managed by this stack: its owner changes the password in the database and then in this secret; a rotation Lambda would need admin access to a database we do not own.',
    });
    return secret;
  }
}
