import { defineConfig } from 'vitest/config';
import type { PostgresMajor } from './local/servers.ts';

/**
 * One project per Postgres major (TOTES_TEST_PG_MAJORS, default 13 and 18; `.ci/run` runs all
 * six): the tests that face the source run on each; the rest of the suite runs once, on the
 * newest. With TOTES_TEST_PG_URL, one project on that server.
 */
const SOURCE_FACING = [
  'capture/**/*.pg.test.ts',
  'erasure/**/*.pg.test.ts',
  'test/pipeline.e2e.test.ts',
  'test/property.pg.test.ts',
  'test/value-set-aside.e2e.test.ts',
  'verify/dirty-source.pg.test.ts',
  'cli/start-source.pg.test.ts',
  'verify/source-snapshot.pg.test.ts',
  'verify/as-of.pg.test.ts',
];
const ALL = ['**/*.test.ts'];
const majors = process.env.TOTES_TEST_PG_URL ? [] : (process.env.TOTES_TEST_PG_MAJORS ?? '13,18').split(',').map((m) => Number(m.trim()) as PostgresMajor);
const newest = Math.max(...majors);

export default defineConfig({
  test: {
    exclude: ['node_modules/**', 'cdk.out/**'],
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 180_000,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', TOTES_LOG_LEVEL: process.env.TOTES_LOG_LEVEL ?? 'warn' },
    projects: process.env.TOTES_TEST_PG_URL
      ? [{ extends: true, test: { name: 'pg-url', include: ALL, globalSetup: ['test/global-setup.ts'] } }]
      : majors.map((major) => ({
          extends: true,
          test: { name: `pg${major}`, include: major === newest ? ALL : SOURCE_FACING, provide: { pgMajor: major }, globalSetup: ['test/global-setup.ts'] },
        })),
    coverage: {
      provider: 'v8',
      include: ['{lib,formats,stores,capture,processors,archiver,loader,replay,verify,local,cli,dashboard,totesys,infra}/**/*.ts'],
      exclude: ['**/*.test.ts', 'test/**', 'bench/**', 'dashboard/public/**'],
      reporter: ['text-summary', 'json-summary'],
      // just below what the suite reaches (80.5 % lines, 79.5 % statements, 79.2 % functions, 71.2 % branches)
      thresholds: { lines: 78, statements: 77, functions: 75, branches: 69 },
    },
  },
});
