/** Each line names the component it was logged for, however late and from wherever it started. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { asComponent, createLogger } from './log.ts';
import { sleep } from './retry.ts';

function collected() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: createLogger(destination) };
}

describe('asComponent', () => {
  it('names the component in every line logged while it runs and by what it starts, and in no line outside it', async () => {
    const { lines, log } = collected();
    const ticks: Promise<void>[] = [];
    await Promise.all([
      asComponent('capture', async () => {
        log.warn('starting');
        await sleep(5);
        ticks.push(new Promise((done) => setTimeout(() => done(log.warn('later, from a timer')), 5)));
      }),
      asComponent('loader', () => Promise.resolve().then(() => log.child({ shard: 'a' }).warn('loaded'))),
    ]);
    await Promise.all(ticks);
    log.warn('the process itself');
    expect(lines.map((l) => [l.msg, l.component])).toEqual([
      ['starting', 'capture'],
      ['loaded', 'loader'],
      ['later, from a timer', 'capture'],
      ['the process itself', undefined],
    ]);
  });
});
