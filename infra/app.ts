/**
 * The CDK app (cdk.json runs it with tsx). Environment-agnostic on purpose: `cdk synth` needs
 * no credentials or lookups; `cdk deploy` targets the account and region of the credentials.
 * Configuration: the `totes` context over the defaults in infra/config.ts.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../lib/config.ts';
import { resolveConfig } from './config.ts';
import { TotesCdcStack } from './totes-stack.ts';

const app = new App();
const stackName = app.node.tryGetContext('stackName') ?? 'TotesCdc';
try {
  new TotesCdcStack(app, stackName, {
    config: resolveConfig(app.node.tryGetContext('totes')),
    description: 'totes-cdc: change data capture from totesys into the star-schema warehouse',
  });
} catch (err) {
  // What to set, said once, without a stack trace: the message names the setting and the fix.
  if (!(err instanceof ConfigError)) throw err;
  console.error(`totes: ${err.message}`);
  process.exit(err.exitCode);
}
// Any unacknowledged finding stops synthesis (and so deployment).
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
