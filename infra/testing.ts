/** Synthesis for the infra tests: no lookups, no credentials; Lambda bundling skipped unless asked for. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { resolveConfig } from './config.ts';
import { REPO_ROOT } from './repo.ts';
import { TotesCdcStack } from './totes-stack.ts';

/** The feature flags `cdk synth` uses, so the tests see the same template. */
const CDK_JSON_CONTEXT: Record<string, unknown> = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')).context;

export function synthesize(override: unknown = {}): { stack: TotesCdcStack; template: Template } {
  const app = new App({ context: { ...CDK_JSON_CONTEXT, 'aws:cdk:bundling-stacks': [] } });
  const stack = new TotesCdcStack(app, 'TotesCdc', { config: resolveConfig(override) });
  return { stack, template: Template.fromStack(stack) };
}

/**
 * Synthesis as `cdk synth` does it, into `outdir`: the Lambdas bundled by esbuild and the
 * Docker build context staged, each asset a folder there. Returns the folder of each
 * function's code and of the image's context.
 */
export function synthesizeWithAssets(
  outdir: string,
  override: unknown = {},
): { template: Template; functionCode: (logicalId: string) => string; imageContext: string } {
  const app = new App({ outdir, context: CDK_JSON_CONTEXT });
  const stack = new TotesCdcStack(app, 'TotesCdc', { config: resolveConfig(override) });
  app.synth();
  const template = Template.fromStack(stack);
  const assetDir = (hash: string) => join(outdir, `asset.${hash}`);
  const functionCode = (logicalId: string) => assetDir(template.toJSON().Resources[logicalId].Properties.Code.S3Key.replace(/\.zip$/, ''));
  const image = template.findResources('AWS::ECS::TaskDefinition');
  const imageRef = JSON.stringify(Object.values(image)[0].Properties.ContainerDefinitions[0].Image);
  return { template, functionCode, imageContext: assetDir(/:([0-9a-f]{64})/.exec(imageRef)![1]) };
}

/** The settings of a deployment with both services started (phase 2), in the stack's new VPC. */
export const RUNNING = { capture: { running: true }, loader: { running: true }, newVpcConnected: true };

// biome-ignore lint/suspicious/noExplicitAny: a template is untyped JSON, read by tests
type Json = any;
type Resource = { Properties: Json; Metadata?: Json; DeletionPolicy?: string };

/** Reading a template: resources by type, the one of a type, the policy statements of a role. */
export function inspect(template: Template) {
  const resources = (type: string) => template.findResources(type) as Record<string, Resource>;
  const only = (type: string) => {
    const found = Object.entries(resources(type));
    if (found.length !== 1) throw new Error(`${found.length} resources of type ${type}`);
    return { id: found[0][0], props: found[0][1].Properties };
  };
  const logicalIdOf = (type: string, match: (props: Json) => boolean) => {
    const found = Object.entries(resources(type)).filter(([, r]) => match(r.Properties));
    if (found.length !== 1) throw new Error(`${found.length} resources of type ${type} match`);
    return found[0][0];
  };
  const statementsOf = (roleId: string): Json[] =>
    Object.values(resources('AWS::IAM::Policy'))
      .filter((p) => p.Properties.Roles.some((r: Json) => r.Ref === roleId))
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .concat((resources('AWS::IAM::Role')[roleId].Properties.Policies ?? []).flatMap((p: Json) => p.PolicyDocument.Statement));
  return { resources, only, logicalIdOf, statementsOf };
}

export const actionsOf = (s: { Action: string | string[] }): string[] => [s.Action].flat();

/** cdk-nag AwsSolutions findings left after the stack's acknowledgments, as "rule at construct path". */
export function unacknowledgedNagFindings(stack: TotesCdcStack, severity: 'error' | 'warning'): string[] {
  const report = new AwsSolutionsChecks().validateScope(stack);
  return report.violations.filter((v) => v.severity === severity).flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.constructPath}`));
}
