/** Synthesis for the infra tests: Lambda bundling skipped (no esbuild run), no lookups, no credentials. */
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

/** cdk-nag AwsSolutions findings left after the stack's acknowledgments, as "rule at construct path". */
export function unacknowledgedNagFindings(stack: TotesCdcStack, severity: 'error' | 'warning'): string[] {
  const report = new AwsSolutionsChecks().validateScope(stack);
  return report.violations.filter((v) => v.severity === severity).flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.constructPath}`));
}
