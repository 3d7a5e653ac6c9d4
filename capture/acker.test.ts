/** The Acker: the slot is confirmed only past commits the sink fully accepted, in commit order, never backwards. */
import { describe, expect, it } from 'vitest';
import { Acker } from './acker.ts';

function acker() {
  const confirmed: string[] = [];
  return { acker: new Acker((lsn) => confirmed.push(lsn)), confirmed };
}

describe('Acker', () => {
  it('confirms a commit once the sink has accepted its last event, not before', () => {
    const { acker: a, confirmed } = acker();
    a.committed(4, '0/100');
    a.accept(3);
    expect(confirmed).toEqual([]);
    a.accept(4);
    expect(confirmed).toEqual(['0/100']);
    expect(a.confirmedLsn).toBe('0/100');
  });

  it('confirms at once a commit whose events were already accepted', () => {
    const { acker: a, confirmed } = acker();
    a.accept(9);
    a.committed(9, '0/200');
    expect(confirmed).toEqual(['0/200']);
  });

  it('confirms the newest of the commits an acceptance covers, in one call, and keeps the rest waiting', () => {
    const { acker: a, confirmed } = acker();
    a.committed(2, '0/100');
    a.committed(5, '0/200');
    a.committed(8, '0/300');
    a.accept(6);
    expect(confirmed).toEqual(['0/200']);
    a.accept(8);
    expect(confirmed).toEqual(['0/200', '0/300']);
  });

  it('holds a commit with nothing new behind an earlier one still in flight', () => {
    const { acker: a, confirmed } = acker();
    a.accept(3);
    a.committed(7, '0/100'); // in flight
    a.committed(3, '0/180'); // a transaction that sent nothing: its events are "accepted" already
    expect(confirmed).toEqual([]); // confirming 0/180 would skip the first transaction after a restart
    a.accept(7);
    expect(confirmed).toEqual(['0/180']);
  });

  it('moves an idle slot on keepalives only when nothing is buffered or waiting', () => {
    const { acker: a, confirmed } = acker();
    a.idle('0/50', true);
    expect(confirmed).toEqual(['0/50']);
    a.idle('0/60', false); // the sink still holds events
    a.committed(1, '0/70');
    a.idle('0/80', true); // a commit is waiting for the sink
    expect(confirmed).toEqual(['0/50']);
    a.accept(1);
    a.idle('0/90', true);
    expect(confirmed).toEqual(['0/50', '0/70', '0/90']);
  });

  it('never confirms backwards, comparing LSNs as numbers, not text', () => {
    const { acker: a, confirmed } = acker();
    a.idle('0/FF', true);
    a.idle('0/100', true); // "0/100" < "0/FF" as text, but 0x100 > 0xFF
    a.idle('0/FF', true);
    a.committed(-1, '0/F0');
    expect(confirmed).toEqual(['0/FF', '0/100']);
    a.idle('1/0', true);
    expect(a.confirmedLsn).toBe('1/0');
  });
});
