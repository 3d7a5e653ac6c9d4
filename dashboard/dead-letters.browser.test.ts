/**
 * The dashboard's dead-letter panel on s3rver and the real key store, through the reader
 * `totes start` and `totes dashboard` give it (cli/dead-letters-command.ts): the newest dead
 * letters with reason, table and key, a sealed staff name opened, [erased] once the subject's
 * key is tombstoned, and "sealed: no key store configured" where the dashboard has none. The
 * API, and the page in headless Chromium.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadLetterPanel } from '../cli/dead-letters-command.ts';
import { freePort } from '../local/servers.ts';
import { hasChromium, openPage } from '../test/chromium.ts';
import { createDatabase } from '../test/harness.ts';
import { MALFORMED_LETTER, NAME, STAFF, STAFF_LETTER, type SealedDeadLetters, startSealedDeadLetters } from '../test/sealed-dead-letters.ts';
import { type Dashboard, startDashboard } from './server.ts';

/** The panel's rows as the page shows them: each cell's text. */
async function panelRows(page: Awaited<ReturnType<typeof openPage>>['page']): Promise<string[][]> {
  await page.waitForFunction(() => (window as unknown as { __dashboard: { deadLetters?: unknown } }).__dashboard.deadLetters !== undefined, undefined, {
    timeout: 20_000,
  });
  return page.$$eval('#deadLetterTable tbody tr', (rows) => rows.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
}

describe('dashboard dead-letter panel', () => {
  let d: SealedDeadLetters;
  let warehouse: Awaited<ReturnType<typeof createDatabase>>;
  let withKeys: Dashboard;
  let withoutKeys: Dashboard;
  let withoutBucket: Dashboard;

  beforeAll(async () => {
    [d, warehouse] = await Promise.all([startSealedDeadLetters(), createDatabase('warehouse')]);
    const start = async (deadLetters?: Parameters<typeof startDashboard>[0]['deadLetters']) =>
      startDashboard({ warehouseUrl: warehouse.url, port: await freePort(), deadLetters });
    withKeys = await start(deadLetterPanel({ s3: d.s3, bucket: 'processed', keys: d.keys(200) }));
    withoutKeys = await start(deadLetterPanel({ s3: d.s3, bucket: 'processed', keys: null }));
    withoutBucket = await start();
  });
  afterAll(async () => {
    for (const x of [withKeys, withoutKeys, withoutBucket]) await x?.stop();
    await d?.stop();
    await warehouse?.drop();
  });

  const get = async (dashboard: Dashboard) => {
    const res = await fetch(new URL('/api/dead-letters', dashboard.url));
    return { status: res.status, text: await res.clone().text(), body: await res.json() };
  };

  it('lists the newest dead letters with the staff name opened through the key store, or says they are sealed without one', async () => {
    const opened = await get(withKeys);
    expect(opened.status).toBe(200);
    expect(opened.body.letters.map((l: { key: string }) => l.key)).toEqual([STAFF_LETTER, MALFORMED_LETTER]);
    expect(opened.body.letters[0]).toMatchObject({ reason: 'email_address: longer than dim_staff.email_address holds', shard: 'shardId-000000000000' });
    expect(opened.body.letters[0].events).toEqual([
      expect.objectContaining({
        table: 'staff',
        op: 'u',
        key: { staff_id: 7 },
        column: 'email_address',
        values: expect.objectContaining({ ...NAME, department_id: 2 }),
      }),
    ]);
    expect(opened.text).not.toContain('pd1:');

    const sealed = await get(withoutKeys);
    expect(sealed.body.letters[0].events[0].values).toMatchObject({
      first_name: { notOpened: 'sealed: no key store configured' },
      email_address: { notOpened: 'sealed: no key store configured' },
      department_id: 2,
    });
    expect(sealed.text).not.toContain(NAME.first_name);
    expect(sealed.text).not.toContain('pd1:');

    expect((await get(withoutBucket)).body).toEqual({ letters: null, problem: 'no processed bucket configured: the dashboard reads no dead letters' });
  });

  it.skipIf(!hasChromium)('shows them on the page: the name, then [erased] once the subject is erased; sealed without a key store', async () => {
    const browser = await openPage();
    try {
      await browser.page.goto(withKeys.url);
      const rows = await panelRows(browser.page);
      expect(rows[0].slice(1, 6)).toEqual([
        'shardId-000000000000 · 200',
        'email_address: longer than dim_staff.email_address holds',
        'staff',
        'u',
        'staff_id=7',
      ]);
      expect(rows[0][6]).toContain(`first_name: "${NAME.first_name}"`);
      expect(rows[0][6]).toContain(`email_address: "${NAME.email_address}"`);
      expect(await browser.page.textContent('#deadLetterTable .at-fault')).toBe(`email_address: "${NAME.email_address}"`);

      await d.keys().deleteKey(STAFF);
      await new Promise((r) => setTimeout(r, 250)); // past the dashboard's key cache
      await browser.page.reload();
      const erased = await panelRows(browser.page);
      expect(erased[0][6]).toContain('first_name: "[erased]"');
      expect(erased[0][6]).not.toContain(NAME.first_name);

      await browser.page.goto(withoutKeys.url);
      const sealed = await panelRows(browser.page);
      expect(sealed[0][6]).toContain('first_name: <sealed: no key store configured>');
      expect(await browser.page.content()).not.toContain('pd1:');

      await browser.page.goto(withoutBucket.url);
      await browser.page.waitForSelector('#deadLetterProblem:not([hidden])');
      expect(await browser.page.textContent('#deadLetterProblem')).toBe('no processed bucket configured: the dashboard reads no dead letters');
    } finally {
      await browser.close();
    }
  });
});
