/** Test helper: wait for a condition, failing with what was awaited when it does not come. */
import { sleep } from '../lib/retry.ts';

export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
