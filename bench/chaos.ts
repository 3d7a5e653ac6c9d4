/**
 * The chaos test's long form for the bench report: test/chaos.e2e.test.ts with
 * TOTES_CHAOS_KILLS=100 (the compose services as their own processes, 100 SIGKILLs of random
 * services during a random workload), run by vitest as `npm test` runs it. The test writes its
 * outcome to the file TOTES_CHAOS_RESULT names; a run that ends before writing it is a failure,
 * reported with the last of its output.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHAOS_LONG_KILLS = 100;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TEST = 'test/chaos.e2e.test.ts';

/** What the chaos test writes when it reaches its checks. */
export interface ChaosOutcome {
  seed: number;
  /** SIGKILLs per service. */
  kills: Record<string, number>;
  verifyPassed: boolean;
  /** Fact versions the archive's change events make, those the warehouse holds, and the fact ids whose versions differ. */
  factVersions: { archive: number; warehouse: number; differingIds: number };
  /** Fact versions held twice: the same (id, lsn, pos). */
  duplicates: number;
  unexpectedExits: number;
  workloadTransactions: number;
}

export interface ChaosFigures {
  killsAsked: number;
  /** The test passed: all of its checks held. */
  passed: boolean;
  seconds: number;
  /** Null when the test ended before its checks. */
  outcome: ChaosOutcome | null;
  /** The last of the output of a failed run. */
  failure: string | null;
}

export async function measureChaos(kills: number, say: (line: string) => void): Promise<ChaosFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'totes-chaos-'));
  const resultFile = join(dir, 'result.json');
  const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
  say(`chaos: ${kills} kills (${TEST}), several minutes`);
  const started = Date.now();
  try {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [vitest, 'run', TEST], {
        cwd: ROOT,
        env: { ...process.env, TOTES_CHAOS_KILLS: String(kills), TOTES_CHAOS_RESULT: resultFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      const keep = (b: Buffer) => {
        output = (output + b.toString('utf8')).slice(-20_000);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve({ code: exitCode, output }));
    });
    const seconds = Math.round((Date.now() - started) / 1000);
    let outcome: ChaosOutcome | null = null;
    try {
      outcome = JSON.parse(readFileSync(resultFile, 'utf8')) as ChaosOutcome;
    } catch {
      // the test ended before its checks: the output says why
    }
    const passed = code === 0;
    say(`chaos: ${passed ? 'passed' : 'FAILED'} in ${seconds} s`);
    return { killsAsked: kills, passed, seconds, outcome, failure: passed ? null : output.slice(-4_000) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
