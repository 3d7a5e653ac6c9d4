/**
 * docker-compose.yml against the code, since these machines cannot run Docker: every
 * `totes run <service>` exists, every TOTES_* variable is one lib/config.ts reads, and the
 * services, endpoints, stream and buckets it names line up with each other.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV } from '../lib/config.ts';
import { SERVICES } from '../local/services.ts';
import { IMAGE } from './image.ts';
import { parse } from 'yaml';
import { REPO_ROOT } from './repo.ts';

interface ComposeService {
  image?: string;
  build?: { context: string; target: string };
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  volumes?: string[];
}

const text = readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
const compose = parse(text) as unknown as { services: Record<string, ComposeService> };
const services = compose.services;
const entries = Object.entries(services);
const envOf = (name: string) => services[name].environment ?? {};
/** The `totes` subcommand and its arguments in a command, or null. */
const totesArgs = (command: string[] = []) => {
  const i = command.indexOf('bin/totes.mjs');
  return i >= 0 ? command.slice(i + 1) : null;
};

describe('docker-compose.yml', () => {
  it('runs capture as ECS does (the runtime image and its command), the rest with `totes run`, every service of local/services.ts', () => {
    expect(services.capture).toMatchObject({ build: { context: '.', target: IMAGE.target }, command: IMAGE.command('capture') });
    const run = entries
      .map(([, s]) => totesArgs(s.command))
      .filter((a) => a?.[0] === 'run')
      .map((a) => a![1]);
    for (const name of run) expect(Object.keys(SERVICES)).toContain(name);
    expect([...run, 'capture'].sort()).toEqual(Object.keys(SERVICES).sort());
  });

  it('uses only TOTES_* variables lib/config.ts reads', () => {
    const known = new Set<string>(Object.values(ENV));
    const used = new Set(text.match(/TOTES_[A-Z0-9_]+/g));
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(known, name).toContain(name);
    for (const [name, s] of entries) {
      for (const key of Object.keys(s.environment ?? {})) if (key.startsWith('TOTES_')) expect(known, `${name}: ${key}`).toContain(key);
    }
  });

  it('has a logical-replication source on postgres:16, seeded with `totes seed`, and a warehouse', () => {
    expect(services.source.image).toBe('postgres:16');
    expect(services.source.command!.join(' ')).toContain('-c wal_level=logical');
    expect(totesArgs(services.seed.command)).toEqual(['seed']);
    expect(envOf('seed')[ENV.sourceUrl]).toMatch(/@source:5432\/totesys$/);
    expect(services.warehouse.image).toBe('postgres:16');
    expect(envOf('loader')[ENV.warehouseUrl]).toMatch(/@warehouse:5432\/warehouse$/);
  });

  it('runs kinesalite and s3rver from the image, creating the buckets the services use', () => {
    expect(services.kinesis.command).toEqual(['npx', 'kinesalite', '--port', '4567', '--createStreamMs', '50']);
    const s3 = services.s3.command!;
    expect(s3.slice(0, 8)).toEqual(['npx', 's3rver', '-d', '/data', '-a', '0.0.0.0', '-p', '4568']);
    const configured = s3.flatMap((arg, i) => (s3[i - 1] === '--configure-bucket' ? [arg] : []));
    const used = entries.flatMap(([name]) => [envOf(name)[ENV.ingestionBucket], envOf(name)[ENV.processedBucket], envOf(name)[ENV.keysBucket]]).filter(Boolean);
    expect(used.length).toBeGreaterThan(0);
    for (const bucket of used) expect(configured).toContain(bucket);
  });

  it('gives capture and the loader the key store, with the master key init writes in a volume they share, so values travel sealed', () => {
    const masterKey = envOf('init')[ENV.masterKeyFile];
    expect(masterKey).toMatch(/^\/keys\//);
    for (const name of ['capture', 'loader']) {
      expect(envOf(name)[ENV.keysBucket], name).toBe('totes-keys');
      expect(envOf(name)[ENV.masterKeyFile], name).toBe(masterKey);
      expect(services[name].volumes, name).toEqual(services.init.volumes);
      expect(services[name].depends_on?.init.condition, name).toBe('service_completed_successfully');
    }
    expect(services.init.volumes).toEqual(['keys:/keys']);
    expect(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8')).toMatch(/^RUN mkdir .*\/keys && chown node:node .*\/keys$/m);
    for (const name of ['processor', 'archiver']) expect(envOf(name)).not.toHaveProperty(ENV.keysBucket);
  });

  it('creates the one stream every service names, before capture starts', () => {
    const streams = new Set(entries.map(([name]) => envOf(name)[ENV.streamName]).filter(Boolean));
    expect(streams.size).toBe(1);
    expect(services.init.command).toEqual(['npx', 'tsx', 'infra/compose-init.ts']);
    expect(existsSync(join(REPO_ROOT, 'infra/compose-init.ts'))).toBe(true);
    expect(envOf('init')[ENV.streamName]).toBe([...streams][0]);
    expect(services.init.depends_on?.seed.condition).toBe('service_completed_successfully');
    for (const name of ['capture', 'processor', 'archiver']) expect(services[name].depends_on?.init.condition).toBe('service_completed_successfully');
  });

  it('points endpoints and database URLs at services that exist, on the ports they listen on', () => {
    for (const [name] of entries) {
      for (const [key, value] of Object.entries(envOf(name))) {
        const m = /^(?:https?|postgres):\/\/(?:[^@/]*@)?([a-z0-9-]+):(\d+)/.exec(value);
        if (!m) continue;
        expect(Object.keys(services), `${name} ${key}`).toContain(m[1]);
        const target = services[m[1]];
        const listens = target.image?.startsWith('postgres:') ? '5432' : target.command![target.command!.findIndex((a) => a === '--port' || a === '-p') + 1];
        expect(listens, `${name} ${key}`).toBe(m[2]);
      }
    }
  });

  it('depends only on services that exist', () => {
    for (const [name, s] of entries) for (const dep of Object.keys(s.depends_on ?? {})) expect(Object.keys(services), `${name} → ${dep}`).toContain(dep);
  });

  it('builds the image of each repository service from the stage its tag names, a stage the Dockerfile has', () => {
    const own = entries.filter(([, s]) => s.image?.startsWith('totes-cdc:'));
    expect(own.length).toBeGreaterThan(5);
    const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    for (const [name, s] of own) {
      expect(s.build, name).toEqual({ context: '.', target: s.image!.slice('totes-cdc:'.length) });
      expect(dockerfile, name).toMatch(new RegExp(`^FROM \\S+ AS ${s.build!.target}$`, 'm'));
    }
  });
});
