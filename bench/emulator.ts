/**
 * One emulator in its own process (`node --import tsx bench/emulator.ts kinesis|s3 PORT`), as the
 * real services run on other machines: kinesalite's sequence arithmetic and s3rver's file writes
 * then never take the event loop of the stage being measured. Tells its parent over IPC once it
 * listens; exits when the parent says stop or goes away.
 */
import { startKinesis, startS3, type Stoppable } from '../local/servers.ts';

const [kind, port] = process.argv.slice(2);
const server: Stoppable = kind === 'kinesis' ? await startKinesis({ port: Number(port), streams: [] }) : await startS3({ port: Number(port), buckets: [] });
const stop = async () => {
  await server.stop().catch(() => undefined);
  process.exit(0);
};
process.on('message', (m) => m === 'stop' && void stop());
process.on('disconnect', () => void stop());
process.send!('ready');
