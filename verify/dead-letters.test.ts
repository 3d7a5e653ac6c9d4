/** A dead letter names the rows of the events it holds: each line of a bundle, none for a line that is no event. */
import { describe, expect, it } from 'vitest';
import { rowsNamed } from './dead-letters.ts';

describe('the rows a dead letter names', () => {
  it('reads each event of a bundle by table and key, and skips a line that is no event', () => {
    const payload = [
      JSON.stringify({ v: 1, kind: 'change', op: 'u', table: 'sales_order', key: { sales_order_id: 12 }, after: { agreed_payment_date: 'TBC' } }),
      '{"v":1,"kind":"change","table":', // a malformed record, kept verbatim
      JSON.stringify({ v: 1, kind: 'pointer', table: 'address', key: { address_id: 5 }, object: { bucket: 'b', key: 'k', bytes: 1 } }),
      JSON.stringify({ v: 1, kind: 'heartbeat' }),
    ].join('\n');
    expect(rowsNamed(payload)).toEqual(['sales_order 12', 'address 5']);
  });
});
