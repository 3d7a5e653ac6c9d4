/** Each named SQLSTATE is the code the server raises under that condition name. */
import { describe, expect, it } from 'vitest';
import { serverUrl } from '../test/harness.ts';
import pg from './pg.ts';
import { SQLSTATE } from './sqlstate.ts';

describe('SQLSTATE', () => {
  it('names each code as Postgres does', async () => {
    const client = new pg.Client(serverUrl());
    await client.connect();
    try {
      for (const [name, code] of Object.entries(SQLSTATE)) {
        const raised = await client.query(`DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '${name}'; END $$`).catch((err: { code?: string }) => err.code);
        expect(raised, name).toBe(code);
      }
    } finally {
      await client.end();
    }
  });
});
