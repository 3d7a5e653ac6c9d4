/**
 * The CDK app (cdk.json runs it with tsx). Environment-agnostic on purpose: `cdk synth` needs
 * no credentials or lookups; `cdk deploy` targets the account and region of the credentials.
 * Configuration: the `totes` context over the defaults in infra/config.ts.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { resolveConfig } from './config.ts';
import { TotesCdcStack } from './totes-stack.ts';

const app = new App();
const stackName = app.node.tryGetContext('stackName') ?? 'TotesCdc';
new TotesCdcStack(app, stackName, {
  config: resolveConfig(app.node.tryGetContext('totes')),
  description: 'totes-cdc: change data capture from totesys into the star-schema warehouse',
});
// Any unacknowledged finding stops synthesis (and so deployment).
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
