import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseYaml } from './mini-yaml.ts';
import { REPO_ROOT } from './repo.ts';

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, string>;
  env?: Record<string, string>;
}
interface Workflow {
  on: Record<string, any>;
  permissions: Record<string, string>;
  jobs: Record<string, { environment?: string; steps: Step[]; if?: string }>;
}

const workflow = (name: string) => parseYaml(readFileSync(join(REPO_ROOT, '.github/workflows', name), 'utf8')) as unknown as Workflow;
const runs = (w: Workflow) => Object.values(w.jobs).flatMap((j) => j.steps.map((s) => s.run ?? ''));

describe('ci.yml', () => {
  const ci = workflow('ci.yml');
  it('installs, typechecks, tests and synthesizes, on pushes to main and pull requests, read-only', () => {
    expect(Object.keys(ci.on).sort()).toEqual(['pull_request', 'push']);
    expect(ci.permissions).toEqual({ contents: 'read' });
    const commands = runs(ci);
    for (const expected of [/^npm ci\b/, /^npx tsc -p \.$/, /^npm test$/, /^npx cdk synth\b/])
      expect(
        commands.some((c) => expected.test(c)),
        String(expected),
      ).toBe(true);
    const setupNode = Object.values(ci.jobs)
      .flatMap((j) => j.steps)
      .find((s) => s.uses?.startsWith('actions/setup-node@'));
    expect(setupNode?.with?.['node-version']).toBe('20');
  });
});

describe('deploy.yml', () => {
  const deploy = workflow('deploy.yml');
  const job = Object.values(deploy.jobs)[0];
  it('deploys main after CI, behind the production environment approval', () => {
    expect(deploy.on.workflow_run).toEqual({ workflows: ['CI'], types: ['completed'], branches: ['main'] });
    expect(job.if).toContain("github.event.workflow_run.conclusion == 'success'");
    expect(job.environment).toBe('production');
  });

  it('assumes a role through OIDC, with no stored keys, then runs cdk deploy with the alarm email', () => {
    expect(deploy.permissions['id-token']).toBe('write');
    const credentials = job.steps.find((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@'));
    expect(credentials?.with?.['role-to-assume']).toMatch(/^\$\{\{ vars\./);
    expect(JSON.stringify(deploy)).not.toMatch(/aws-access-key-id|secrets\.AWS/);
    const deployStep = job.steps.find((s) => s.run?.includes('cdk deploy'));
    expect(deployStep?.run).toContain('--parameters "AlarmEmail=$ALARM_EMAIL"');
    expect(job.steps.indexOf(credentials!)).toBeLessThan(job.steps.indexOf(deployStep!));
  });

  it('refuses to deploy without the RDS CA bundle', () => {
    expect(runs(deploy).some((r) => r.startsWith('test -s infra/certs/rds-global-bundle.pem'))).toBe(true);
  });
});

describe('every workflow', () => {
  it('pins each action by a full commit SHA, so a moved tag cannot change what runs', () => {
    const uses = readdirSync(join(REPO_ROOT, '.github/workflows')).flatMap((name) =>
      Object.values(workflow(name).jobs).flatMap((j) => j.steps.flatMap((s) => (s.uses ? [`${name}: ${s.uses}`] : []))),
    );
    expect(uses.length).toBeGreaterThan(0);
    expect(uses.filter((u) => !/@[0-9a-f]{40}$/.test(u))).toEqual([]);
  });
});
