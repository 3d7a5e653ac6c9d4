import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'cdk.out/**'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 180_000,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', TOTES_LOG_LEVEL: process.env.TOTES_LOG_LEVEL ?? 'warn' },
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
