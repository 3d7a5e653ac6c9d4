import { describe, expect, it } from 'vitest';
import type { ChaosFigures } from './chaos.ts';
import { formatChaos } from './report.ts';

const outcome = {
  seed: 1,
  kills: { capture: 26, processor: 24, archiver: 25, loader: 25 },
  verifyPassed: true,
  factVersions: { archive: 12_345, warehouse: 12_345, differingIds: 0 },
  duplicates: 0,
  unexpectedExits: 0,
  workloadTransactions: 9_000,
};

describe('the chaos line of the bench report', () => {
  it('says the long form was not run, and how to run it', () => {
    expect(formatChaos(null)).toBe('chaos, long form (100 kills): not run (npm run bench -- --chaos, or --full, runs it)');
  });

  it('gives kills per service, verify, fact versions against the archive and duplicates', () => {
    const run: ChaosFigures = { killsAsked: 100, passed: true, seconds: 640, outcome, failure: null };
    expect(formatChaos(run)).toBe(
      'chaos, long form (100 kills, seed 1): PASSED in 640 s; kills capture 26, processor 24, archiver 25, loader 25; verify passed; ' +
        'fact versions 12,345 in the warehouse, 12,345 made by the archive (0 ids differ); 0 duplicate versions; 0 unexpected exits',
    );
  });

  it('says a failure, with what the test saw and the last of its output', () => {
    const failed: ChaosFigures = {
      killsAsked: 100,
      passed: false,
      seconds: 700,
      outcome: { ...outcome, verifyPassed: false, factVersions: { archive: 12_345, warehouse: 12_300, differingIds: 40 }, duplicates: 2 },
      failure: 'AssertionError: verify after the kills',
    };
    expect(formatChaos(failed)).toMatch(
      /^chaos, long form \(100 kills, seed 1\): FAILED in 700 s; .*verify FAILED; fact versions 12,300 in the warehouse, 12,345 .*\(40 ids differ\); 2 duplicate/,
    );
    expect(formatChaos(failed)).toMatch(/\nAssertionError: verify after the kills$/);
    expect(formatChaos({ killsAsked: 100, passed: false, seconds: 30, outcome: null, failure: 'timed out' })).toBe(
      'chaos, long form (100 kills): FAILED in 30 s; ended before its checks\ntimed out',
    );
  });
});
