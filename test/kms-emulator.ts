/**
 * A KMS emulator for tests: moto's KMS server (`moto_server`, from the machine's Python
 * packages), speaking KMS's own JSON protocol on a free port. Where it is not on PATH, `hasKmsEmulator`
 * is false and the tests that need it are skipped, saying so.
 */
import { spawn, spawnSync } from 'node:child_process';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { freePort } from '../local/servers.ts';
import { until } from './until.ts';

export const hasKmsEmulator = spawnSync('moto_server', ['--help'], { stdio: 'ignore' }).status === 0;
if (!hasKmsEmulator) console.warn('moto_server is not on PATH: the tests against a KMS emulator are skipped');

/** Credentials the emulator takes (it checks none). */
export const EMULATOR_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

export const kmsAt = (endpoint: string) => new KMSClient({ region: 'eu-west-2', endpoint, credentials: EMULATOR_CREDENTIALS });

export interface KmsEmulator {
  endpoint: string;
  kms: KMSClient;
  /** A symmetric key made on start. */
  keyId: string;
  stop(): void;
}

export async function startKmsEmulator(): Promise<KmsEmulator> {
  const port = await freePort();
  const moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  const kms = kmsAt(endpoint);
  let keyId = '';
  await until('moto_server answers', async () => {
    keyId = (await kms.send(new CreateKeyCommand({})).catch(() => null))?.KeyMetadata?.KeyId ?? '';
    return keyId !== '';
  });
  return {
    endpoint,
    kms,
    keyId,
    stop: () => {
      kms.destroy();
      moto.kill();
    },
  };
}
