// npm audit of the production dependencies: exits 1 on a high or critical advisory, naming each.
// A registry that refuses the advisory endpoint (a mirror that serves only GET answers 405 to its
// POST) is said in one loud line: nothing was audited then, and nothing is claimed.
import { spawnSync } from 'node:child_process';

const run = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8' });
let report;
try {
  report = JSON.parse(run.stdout);
} catch {
  console.error(`npm audit: no report (exit ${run.status}): ${run.stderr.trim() || run.stdout.trim()}`);
  process.exit(1);
}
const counts = report.metadata?.vulnerabilities;
if (!counts) {
  if (report.statusCode === 405) {
    console.warn(`npm audit: NOT RUN, the registry refuses the advisory endpoint (${report.message}); production dependencies are unaudited here`);
    process.exit(0);
  }
  console.error(`npm audit failed: ${report.message ?? JSON.stringify(report).slice(0, 500)}`);
  process.exit(1);
}
const serious = Object.values(report.vulnerabilities ?? {}).filter((v) => v.severity === 'high' || v.severity === 'critical');
for (const v of serious) {
  const titles = v.via.filter((via) => typeof via === 'object').map((via) => `${via.title} (${via.url})`);
  console.error(`npm audit: ${v.severity} in ${v.name} ${v.range}${titles.length ? `: ${titles.join('; ')}` : ` (through ${v.via.join(', ')})`}`);
}
const summary = Object.entries(counts)
  .filter(([severity]) => severity !== 'total')
  .map(([severity, n]) => `${n} ${severity}`)
  .join(', ');
console.log(`npm audit of production dependencies: ${summary}`);
process.exit(serious.length > 0 ? 1 : 0);
