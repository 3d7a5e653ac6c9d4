/**
 * The random workload as its own OS process, as the application writing to totesys is. Run in
 * a test's own process it would share that event loop with kinesalite and s3rver serving every
 * service, and on a busy machine fall to a few transactions a second (measured: 3 to 5 of its
 * 40 in the chaos test at a load of 15 on 2 cores, 40 alone). `node --import tsx
 * random-workload-process.ts SEED RATE` with TOTES_SOURCE_URL: runs at RATE transactions a
 * second until SIGTERM, then prints its counts as one JSON line.
 */
import { poolFor } from '../lib/pg.ts';
import { RandomWorkload } from '../totesys/random-workload.ts';

const [seed, rate] = process.argv.slice(2).map(Number);
const pool = poolFor(process.env.TOTES_SOURCE_URL as string, 2);
const random = new RandomWorkload(pool, seed);
const paced = random.runPaced(rate);
process.once('SIGTERM', async () => {
  await paced.stop();
  await pool.end();
  process.stdout.write(`${JSON.stringify({ committed: random.committed, skipped: random.skipped })}\n`);
});
