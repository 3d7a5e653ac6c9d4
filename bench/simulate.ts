/**
 * The simulator as its own process (`node --import tsx bench/simulate.ts URL RATE SECONDS SEED`),
 * so the business writing to totesys does not share an event loop with the pipeline it measures.
 * One simulator writes one transaction at a time, about 1,000 changes/s at most here, so higher
 * rates run several of these side by side. Side by side they can collide (a deadlock, an order
 * another one deleted): the transaction is counted as failed and a fresh simulator carries on.
 * Prints { transactions, changes, failed } as JSON when done.
 */
import { poolFor } from '../lib/pg.ts';
import { Simulator } from '../totesys/simulator.ts';

const [url, rate, seconds, seed] = process.argv.slice(2);
const pool = poolFor(url, 2);
const signal = AbortSignal.timeout(Number(seconds) * 1000);
const total = { transactions: 0, changes: 0, failed: 0 };
for (let run = 0; !signal.aborted; run++) {
  const simulator = new Simulator(pool, Number(seed) + 1_000 * run);
  try {
    await simulator.run({ rate: Number(rate), signal });
  } catch (err) {
    if (!signal.aborted) {
      total.failed++;
      process.stderr.write(`simulator ${seed}: ${(err as Error).message}; carrying on\n`);
    }
  }
  total.transactions += simulator.stats.transactions;
  total.changes += simulator.stats.changes;
}
await pool.end();
process.stdout.write(JSON.stringify(total));
