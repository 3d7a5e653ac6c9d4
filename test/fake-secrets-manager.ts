/**
 * Test helper: Secrets Manager's GetSecretValue over its real wire protocol (AWS JSON 1.1), for
 * the code that reads database secrets; no emulator of it installs here. Point the SDK at it
 * with AWS_ENDPOINT_URL_SECRETS_MANAGER.
 */
import { createServer } from 'node:http';
import { freePort } from '../local/servers.ts';

export async function startFakeSecretsManager(secrets: Record<string, string>): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString('utf8');
    });
    req.on('end', () => {
      const send = (status: number, payload: object) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(payload));
      };
      const { SecretId } = JSON.parse(body || '{}');
      if (req.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue')
        return send(400, { __type: 'InvalidRequestException', message: 'only GetSecretValue' });
      if (!(SecretId in secrets)) return send(400, { __type: 'ResourceNotFoundException', message: "Secrets Manager can't find the specified secret." });
      send(200, { ARN: SecretId, Name: SecretId.split(':')[6], SecretString: secrets[SecretId], VersionId: 'v1', VersionStages: ['AWSCURRENT'] });
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
