/** The CLI's usage errors: said in one line with the command's usage, exit 2, nothing started. */
import { describe, expect, it } from 'vitest';
import { runTotes } from '../test/totes-process.ts';

describe('totes usage', () => {
  it('lists the source Postgres major, 13 by default as on RDS', async () => {
    const r = await runTotes(['start', '--help'], {});
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--source-postgres N {2}totesys Postgres major, 13, 14, 15, 16, 17, 18 \(default 13, as totesys on RDS\)/);
  });

  it('refuses a major it does not support before starting anything', async () => {
    const r = await runTotes(['demo', '--source-postgres', '12'], {});
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('totes demo: --source-postgres must be one of 13, 14, 15, 16, 17, 18, got "12"');
  });

  it('keeps --apply-setup and --drop-slot-on-exit for a source of your own, before starting anything', async () => {
    const r = await runTotes(['start', '--apply-setup'], {});
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(
      'totes start: --apply-setup and --drop-slot-on-exit are for --source URL: the embedded totesys is set up, and dropped, by totes',
    );
  });
});
