/**
 * Which phase of docs/deploy.md a configuration deploys: 1 while capture and the loader stay
 * stopped (safe with placeholder secrets and no network to the databases), 2 once either is
 * started. .github/workflows/deploy.yml checks the database secrets before a phase 2 deploy.
 * Prints the phase; the configuration is TOTES_CONFIG, else the `totes` context in cdk.json.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveConfig, type TotesConfig } from './config.ts';
import { REPO_ROOT } from './repo.ts';

export function deployPhase(config: TotesConfig): 1 | 2 {
  return config.capture.running || config.loader.running ? 2 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fromCdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')).context?.totes;
  console.log(deployPhase(resolveConfig(process.env.TOTES_CONFIG || fromCdkJson)));
}
