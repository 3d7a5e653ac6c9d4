/**
 * A Kinesis client whose every PutRecords call waits `ms` before it goes to the emulator: the
 * round trip real Kinesis takes (tens of milliseconds), which kinesalite on this machine does not.
 * Bench only: the injected fault behind the "30 ms a call" capture figures.
 */
import { PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { sleep } from '../lib/retry.ts';

export function delayedPutRecords(client: KinesisClient, ms: number): KinesisClient {
  const send = async (command: Parameters<KinesisClient['send']>[0]) => {
    if (command instanceof PutRecordsCommand) await sleep(ms);
    return client.send(command);
  };
  return { send } as unknown as KinesisClient;
}
