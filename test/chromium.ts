/** Headless Chromium for the dashboard's browser tests (the system's, driven by playwright-core); the tests skip without it. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`dashboard browser test skipped: ${CHROMIUM} not found (Debian: apt-get install chromium)`);

/** A page in a fresh profile, errors on the page reported; close() removes the profile. */
export async function openPage(): Promise<{ page: Page; close(): Promise<void> }> {
  const profileDir = mkdtempSync(join(tmpdir(), 'totes-chromium-'));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1400, height: 1000 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => console.error('page error:', err.message));
  return {
    page,
    async close() {
      await context.close();
      rmSync(profileDir, { recursive: true, force: true });
    },
  };
}
