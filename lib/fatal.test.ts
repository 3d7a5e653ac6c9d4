/** One line for each kind of fatal error, naming the setting behind an unreachable address. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from './config.ts';
import { describeFatal, FatalError } from './fatal.ts';

const refused = (address: string, port: number) => Object.assign(new Error(`connect ECONNREFUSED ${address}:${port}`), { code: 'ECONNREFUSED', address, port });

describe('describeFatal', () => {
  it('says a FatalError as it is, a ConfigError as configuration with exit 2', () => {
    expect(describeFatal(new FatalError('the stream is gone: create it'))).toEqual({ line: 'the stream is gone: create it', exitCode: 1, expected: true });
    expect(describeFatal(new ConfigError('TOTES_STREAM_NAME is not set'))).toEqual({
      line: 'configuration error: TOTES_STREAM_NAME is not set',
      exitCode: 2,
      expected: true,
    });
  });

  it('names the setting whose address refused the connection, by port', () => {
    const endpoints = { TOTES_SOURCE_URL: 'postgres://u:p@db:5433/totesys', TOTES_KINESIS_ENDPOINT: 'http://127.0.0.1:4567' };
    expect(describeFatal(refused('127.0.0.1', 4567), endpoints).line).toBe(
      'cannot reach 127.0.0.1:4567 (ECONNREFUSED), the address in TOTES_KINESIS_ENDPOINT: start it, or correct TOTES_KINESIS_ENDPOINT',
    );
    expect(describeFatal(refused('10.0.0.5', 5433), endpoints).line).toContain('the address in TOTES_SOURCE_URL');
    // a default port, and several addresses tried (localhost as IPv6 and IPv4)
    const both = Object.assign(new AggregateError([refused('::1', 5432), refused('127.0.0.1', 5432)]), { code: 'ECONNREFUSED' });
    expect(describeFatal(both, { '--warehouse': 'postgres://localhost/warehouse' }).line).toContain('the address in --warehouse');
    expect(describeFatal(refused('127.0.0.1', 9), endpoints).line).toBe('cannot reach 127.0.0.1:9 (ECONNREFUSED): start it, or correct the address');
    const dns = Object.assign(new Error('getaddrinfo ENOTFOUND kinesis'), { code: 'ENOTFOUND', hostname: 'kinesis' });
    expect(describeFatal(dns, { TOTES_KINESIS_ENDPOINT: 'http://kinesis:4567' }).line).toContain(
      'cannot reach kinesis (ENOTFOUND), the address in TOTES_KINESIS_ENDPOINT',
    );
  });

  it('words database and AWS refusals, and marks what looks like a bug', () => {
    const auth = Object.assign(new Error('password authentication failed for user "totes"'), { severity: 'FATAL', code: '28P01' });
    expect(describeFatal(auth).line).toBe(
      'the database refused: password authentication failed for user "totes" (SQLSTATE 28P01): correct the user and password in the database URL or secret',
    );
    const aws = Object.assign(new Error('Access Denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(describeFatal(aws).line).toBe('AWS refused (AccessDenied): Access Denied');
    expect(describeFatal(new Error('publication "totes_cdc" covers 0 of the 11 totesys tables; create it with: ...'))).toMatchObject({ expected: true });
    const bug = describeFatal(new TypeError("Cannot read properties of undefined (reading 'x')"));
    expect(bug).toMatchObject({ exitCode: 1, expected: false });
    expect(bug.line).toMatch(/^TypeError: .*TOTES_LOG_LEVEL=debug/);
  });
});
