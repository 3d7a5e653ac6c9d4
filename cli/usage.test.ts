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

  it('verify: --save goes with --as-of, and --at with neither', async () => {
    const save = await runTotes(['verify', '--save', 'truth.json'], {});
    expect(save.code).toBe(2);
    expect(save.stderr.split('\n')[0]).toBe('totes verify: --save goes with --as-of');
    const at = await runTotes(['verify', '--at', 'truth.json', '--as-of'], {});
    expect(at.code).toBe(2);
    expect(at.stderr.split('\n')[0]).toBe('totes verify: --at compares a truth saved earlier: give it without --as-of and --save');
    const help = await runTotes(['verify', '--help'], {});
    expect(help.stdout).toMatch(/--as-of {14}pin the source at one WAL position/);
  });
});
