/** What `totes doctor` reports: one line per check, and the fix for each that does not hold. */

export type Area = 'secrets' | 'source' | 'stream' | 'buckets' | 'warehouse';
export const AREAS: readonly Area[] = ['secrets', 'source', 'stream', 'buckets', 'warehouse'];

export interface Check {
  area: Area;
  status: 'ok' | 'fail' | 'skip';
  /** What was found. */
  what: string;
  /** For a failure: what to do about it. */
  fix?: string;
  /** A failure capture runs without (doctor still asks for it; `totes start --source` only warns). */
  advisory?: boolean;
}

export const ok = (area: Area, what: string): Check => ({ area, status: 'ok', what });
export const fail = (area: Area, what: string, fix: string, advisory?: boolean): Check => ({
  area,
  status: 'fail',
  what,
  fix,
  ...(advisory ? { advisory } : {}),
});
export const skip = (area: Area, what: string): Check => ({ area, status: 'skip', what });

const MARK = { ok: '✓', fail: '✗', skip: '-' } as const;

export function formatReport(checks: Check[]): string {
  const lines = checks.map((c) => `${c.area.padEnd(10)} ${MARK[c.status]} ${c.what}${c.fix ? `\n${' '.repeat(13)}fix: ${c.fix}` : ''}`);
  const count = (s: Check['status']) => checks.filter((c) => c.status === s).length;
  lines.push('', `${count('ok')} hold, ${count('fail')} to fix, ${count('skip')} skipped`);
  return `${lines.join('\n')}\n`;
}

/** Run `fn`, turning an error into a failed check of `area` (the message, and the fix given). */
export async function attempt(area: Area, what: string, fix: string, fn: () => Promise<Check[]>): Promise<Check[]> {
  try {
    return await fn();
  } catch (err) {
    return [fail(area, `${what}: ${(err as Error).message}`, fix)];
  }
}
