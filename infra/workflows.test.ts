import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from './repo.ts';

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, string | number>;
  env?: Record<string, string>;
}
interface Workflow {
  on: Record<string, any>;
  permissions: Record<string, string>;
  jobs: Record<string, { environment?: string; steps: Step[]; if?: string; env?: Record<string, string> }>;
}

const workflow = (name: string) => parse(readFileSync(join(REPO_ROOT, '.github/workflows', name), 'utf8')) as unknown as Workflow;
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
    const nodeOf = (job: string) => ci.jobs[job].steps.find((s) => s.uses?.startsWith('actions/setup-node@'))?.with?.['node-version'];
    expect(nodeOf('test')).toBe(20);
  });

  it('runs the Lambda handlers, their bundles and the capture service on Node 22 too, the files .ci/run runs on it', () => {
    expect(ci.jobs.node22.steps.find((s) => s.uses?.startsWith('actions/setup-node@'))?.with?.['node-version']).toBe(22);
    expect(runs(ci)).toContain('npm run test:node22');
    const script: string = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts['test:node22'];
    for (const file of ['processors/processor.test.ts', 'infra/bundles.pg.test.ts', 'service/', 'capture/lifecycle.pg.test.ts']) expect(script).toContain(file);
    expect(readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8')).toMatch(/PATH="\$PWD\/\$\(dirname "\$NODE22"\):\$PATH" npm run test:node22/);
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

  it('synthesizes first (configuration, CA bundle and cdk-nag checked before AWS is touched), with the same context as the deploy', () => {
    const synth = job.steps.findIndex((s) => s.run?.startsWith('npx cdk synth'));
    const credentials = job.steps.findIndex((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@'));
    expect(synth).toBeGreaterThan(-1);
    expect(synth).toBeLessThan(credentials);
    const context = (run: string) => run.slice(run.indexOf('-c "stackName'));
    expect(context(job.steps[synth].run!)).toBe(context(job.steps.find((s) => s.run?.includes('cdk deploy'))!.run!));
  });

  it('walks the two phases: before a deploy that starts capture or the loader, the database secrets must be filled in', () => {
    const check = job.steps.findIndex((s) => s.run?.includes('infra/deploy-phase.ts'));
    const deployAt = job.steps.findIndex((s) => s.run?.includes('cdk deploy'));
    expect(check).toBeGreaterThan(job.steps.findIndex((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@')));
    expect(check).toBeLessThan(deployAt);
    const script = job.steps[check].run!;
    expect(script).toContain('[ "$phase" = 2 ] || exit 0');
    expect(script).toMatch(/OutputKey=='\$1'/);
    expect(script).toContain('output SourceSecretArn');
    expect(script).toContain('output WarehouseSecretArn');
    expect(script.trim().split('\n').at(-1)).toBe('npx totes doctor --only secrets');
    expect(job.env?.TOTES_CONFIG).toBe(`$\{{ vars.TOTES_CONFIG }}`);
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
