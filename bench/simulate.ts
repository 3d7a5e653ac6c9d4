/**
 * The simulator as its own process (`node --import tsx bench/simulate.ts URL RATE SECONDS`), so
 * the business writing to totesys does not share an event loop with the pipeline it measures.
 * Prints the simulator's stats as JSON when done.
 */
import { poolFor } from '../lib/pg.ts';
import { Simulator } from '../totesys/simulator.ts';

const [url, rate, seconds] = process.argv.slice(2);
const pool = poolFor(url, 2);
const simulator = new Simulator(pool, 7);
const stats = await simulator.run({ rate: Number(rate), signal: AbortSignal.timeout(Number(seconds) * 1000) });
await pool.end();
process.stdout.write(JSON.stringify(stats));
