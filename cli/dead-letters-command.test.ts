/**
 * `totes dead-letters` on s3rver and the real key store: newest first with
 * their events; --values opens a sealed staff name through the key store, shows it as [erased]
 * once the subject's key is tombstoned, and without a key store (or with the wrong master key)
 * says why in place of the value, never its sealed text.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { MALFORMED_LETTER, NAME, STAFF, STAFF_LETTER, type SealedDeadLetters, startSealedDeadLetters } from '../test/sealed-dead-letters.ts';
import { main } from './main.ts';

const KEY_STORE_ENV = ['TOTES_MASTER_KEY_FILE', 'TOTES_KMS_KEY_ID', 'TOTES_KEYS_BUCKET'];

/** What `totes <args>` prints, and its exit status, with `env` (and no other key store setting) in the environment. */
async function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const saved = { stdout: process.stdout.write, stderr: process.stderr.write, env: KEY_STORE_ENV.map((name) => [name, process.env[name]] as const) };
  for (const stream of ['stdout', 'stderr'] as const)
    process[stream].write = ((chunk: string) => {
      out[stream] += chunk;
      return true;
    }) as typeof process.stdout.write;
  for (const name of KEY_STORE_ENV) delete process.env[name];
  Object.assign(process.env, env);
  try {
    return { code: await main(args), ...out };
  } finally {
    process.stdout.write = saved.stdout;
    process.stderr.write = saved.stderr;
    for (const [name, value] of saved.env)
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
  }
}

describe('totes dead-letters', () => {
  let d: SealedDeadLetters;
  let flags: string[];
  const totes = (args: string[], env: Record<string, string> = {}) => run(['dead-letters', ...args, ...flags], env);

  beforeAll(async () => {
    d = await startSealedDeadLetters();
    flags = ['--bucket', 'processed', '--s3-endpoint', d.s3Endpoint];
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('lists the newest first with their events, no values unless asked, and no key store read', async () => {
    // a master key file that is not there: reading the key store would fail the command
    const r = await totes(['--keys-bucket', 'keys'], { TOTES_MASTER_KEY_FILE: '/nonexistent/master.key' });
    expect(r.code).toBe(0);
    expect(r.stdout.indexOf(STAFF_LETTER)).toBeGreaterThanOrEqual(0);
    expect(r.stdout.indexOf(STAFF_LETTER)).toBeLessThan(r.stdout.indexOf(MALFORMED_LETTER));
    expect(r.stdout).toContain('  reason: email_address: longer than dim_staff.email_address holds');
    expect(r.stdout).toMatch(/- staff {2}u {2}staff_id=7 {2}LSN 0\/16B3748 {2}committed 2026-12-07T23:10:00.123456Z {2}column email_address/);
    expect(r.stdout).not.toContain(NAME.first_name);
    expect(r.stdout).not.toContain('pd1:');
    expect(r.stderr).toContain('--values prints their values');

    expect(r.stdout).toContain('  - staff  not an event\n');

    const one = await totes(['--limit', '1']);
    expect(one.stdout).toContain(STAFF_LETTER);
    expect(one.stdout).not.toContain(MALFORMED_LETTER);
    const shard = await totes(['--shard', 'shardId-000000000001']);
    expect(shard.stdout).not.toContain(STAFF_LETTER);
    expect(shard.stdout).toContain(MALFORMED_LETTER);
  });

  it('without a key store, or with another master key, says why in place of each personal value', async () => {
    const r = await totes(['--values']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('      first_name: <sealed: no key store configured>');
    expect(r.stdout).toContain('      department_id: 2');
    expect(r.stdout).not.toContain('pd1:');
    expect(r.stderr).toContain('personal values stay sealed: no key store configured (set TOTES_MASTER_KEY_FILE');

    const dir = mkdtempSync(join(tmpdir(), 'totes-other-key-'));
    try {
      LocalMasterKey.fromFile(join(dir, 'master.key'), true);
      const other = await totes(['--values', '--keys-bucket', 'keys'], { TOTES_MASTER_KEY_FILE: join(dir, 'master.key') });
      expect(other.code).toBe(0);
      expect(other.stdout).not.toContain('pd1:');
      expect(other.stdout).toMatch(/ {6}first_name: <sealed: cannot open: [^\n]+>\n/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('--values opens the sealed name through the key store, in a malformed line too; once erased it reads [erased]', async () => {
    const withKeys = { TOTES_MASTER_KEY_FILE: d.masterKeyFile };
    const r = await totes(['--values', '--keys-bucket', 'keys'], withKeys);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`      first_name: "${NAME.first_name}"`);
    expect(r.stdout).toContain(`      email_address: "${NAME.email_address}"`);
    expect(r.stdout).toContain('      department_id: 2');
    expect(r.stdout).toContain(`"first_name\\":\\"${NAME.first_name}\\"`);
    expect(r.stdout).not.toContain('pd1:');
    expect(r.stderr).toContain('personal values opened through the key store s3://keys/');

    await d.keys().deleteKey(STAFF);
    const erased = await totes(['--values', '--keys-bucket', 'keys'], withKeys);
    expect(erased.stdout).toContain('      first_name: "[erased]"');
    expect(erased.stdout).toContain('      email_address: "[erased]"');
    expect(erased.stdout).not.toContain(NAME.first_name);
    expect(erased.stdout).not.toContain('pd1:');
  });
});
