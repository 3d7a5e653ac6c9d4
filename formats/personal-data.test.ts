/** Sealed personal values: unreadable, bound to their subject and key version, and erased when the key is gone. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ERASED, isSealed, parseSealed, personalColumnsOf, seal, subjectOf, unseal } from './personal-data.ts';

const key = randomBytes(32);
const staff7 = { kind: 'staff', id: 7 } as const;

describe('sealed personal values', () => {
  it('hold no readable trace of the value, differ each time, name their subject and version, and open under their key', () => {
    const a = seal('Jeremie.Franey@terrifictotes.com', staff7, 3, key);
    const b = seal('Jeremie.Franey@terrifictotes.com', staff7, 3, key);
    expect(a).not.toBe(b);
    expect(a.toLowerCase()).not.toContain('franey');
    expect(isSealed(a)).toBe(true);
    const parsed = parseSealed(a);
    expect(parsed).toMatchObject({ subject: staff7, version: 3 });
    expect(unseal(parsed, key)).toBe('Jeremie.Franey@terrifictotes.com');
  });

  it('cannot be passed off as another subject’s value or opened under another key', () => {
    const a = seal('Jeremie', staff7, 1, key);
    expect(() => unseal(parseSealed(a.replace('pd1:staff:7:', 'pd1:staff:8:')), key)).toThrow();
    expect(() => unseal(parseSealed(a), randomBytes(32))).toThrow();
  });

  it('read as the erasure marker once their key is destroyed', () => {
    expect(unseal(parseSealed(seal('Jeremie', staff7, 1, key)), null)).toBe(ERASED);
  });

  it('are told from text that only starts like one', () => {
    expect(isSealed('Leeds')).toBe(false);
    expect(isSealed(null)).toBe(false);
    expect(() => parseSealed('pd1:staff:7:1:not base64!')).toThrow('not a sealed personal value');
  });
});

describe('the declaration', () => {
  it('names the personal columns and the subject of each table’s rows', () => {
    expect(personalColumnsOf('staff')).toEqual(['first_name', 'last_name', 'email_address']);
    expect(personalColumnsOf('counterparty')).toEqual(['commercial_contact', 'delivery_contact']);
    expect(personalColumnsOf('address')).toEqual([]);
    expect(subjectOf('counterparty', { counterparty_id: 4 })).toEqual({ kind: 'counterparty', id: 4 });
    expect(subjectOf('sales_order', { sales_order_id: 4 })).toBeNull();
  });
});
