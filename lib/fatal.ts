/**
 * Fatal errors: what a process cannot go on from (bad configuration, a missing prerequisite,
 * an endpoint it cannot reach). Every command and service ends one the same way, in one place
 * (cli/main.ts): one line saying what is wrong and what to do, and a non-zero exit. Code that
 * knows the fix throws a FatalError saying it; describeFatal words the rest (a refused
 * connection, a database or AWS error) as well as can be told from the error itself.
 */
import { SQLSTATE } from './sqlstate.ts';

export class FatalError extends Error {
  override name = 'FatalError';
  constructor(
    message: string,
    /** 2 for configuration and usage, 3 for a source a person must prepare (capture), 1 for the rest. */
    readonly exitCode = 1,
    /** Said before the message ("configuration error"). */
    readonly kind?: string,
  ) {
    super(message);
  }
}

export interface FatalDescription {
  line: string;
  exitCode: number;
  /** False for what looks like a bug (a TypeError...): its stack is worth printing under debug. */
  expected: boolean;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

type Detail = { code?: string; address?: string; port?: number; hostname?: string; errors?: Detail[] };

/** The port a URL's host is reached on (its default when it names none). */
function portOf(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol.startsWith('postgres') ? 5432 : url.protocol === 'http:' ? 80 : 443;
}

/** Which setting names the host and port a connection failed on. */
function settingFor(detail: Detail, endpoints: Record<string, string | undefined>): string | undefined {
  for (const [setting, value] of Object.entries(endpoints)) {
    if (!value) continue;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      continue;
    }
    if (detail.port !== undefined ? portOf(url) === detail.port : url.hostname === detail.hostname) return setting;
  }
  return undefined;
}

/**
 * One line for any error. `endpoints` maps settings (an environment variable, a flag) to the
 * URLs they hold, so that an unreachable address is named by the setting that chose it.
 */
export function describeFatal(err: unknown, endpoints: Record<string, string | undefined> = {}): FatalDescription {
  if (err instanceof FatalError) return { line: err.kind ? `${err.kind}: ${err.message}` : err.message, exitCode: err.exitCode, expected: true };
  if (!(err instanceof Error)) return { line: String(err), exitCode: 1, expected: false };
  const e = err as Error & Detail & { severity?: string; $metadata?: unknown };
  // several addresses tried (localhost as ::1 and 127.0.0.1) come as an AggregateError: the first says where
  const detail: Detail = e.errors?.find((x) => x.code && UNREACHABLE.has(x.code)) ?? (e.code && UNREACHABLE.has(e.code) ? e : {});
  if (detail.code) {
    const target = detail.port !== undefined ? `${detail.address ?? detail.hostname ?? 'localhost'}:${detail.port}` : (detail.hostname ?? 'the server');
    const setting = settingFor(detail, endpoints);
    return {
      line: `cannot reach ${target} (${detail.code})${setting ? `, the address in ${setting}` : ''}: start it, or correct ${setting ?? 'the address'}`,
      exitCode: 1,
      expected: true,
    };
  }
  if (e.code === 'EADDRINUSE') return { line: `${e.message}: stop what holds that port, or choose another`, exitCode: 1, expected: true };
  if (e.name === 'TimeoutError')
    return { line: `timed out reaching a service: ${e.message}: is the endpoint right and reachable?`, exitCode: 1, expected: true };
  if (typeof e.severity === 'string' && typeof e.code === 'string') {
    const fix: Record<string, string> = {
      [SQLSTATE.invalid_password]: 'correct the user and password in the database URL or secret',
      [SQLSTATE.invalid_authorization_specification]: 'correct the user and password in the database URL or secret',
      [SQLSTATE.invalid_catalog_name]: 'create it, or correct the database name in the URL',
      [SQLSTATE.insufficient_privilege]: 'grant the role what it needs (see `totes source-setup`)',
      [SQLSTATE.too_many_connections]: 'wait for connections to free up, or raise max_connections',
    };
    return { line: `the database refused: ${e.message} (SQLSTATE ${e.code})${fix[e.code] ? `: ${fix[e.code]}` : ''}`, exitCode: 1, expected: true };
  }
  if (e.name === 'CredentialsProviderError')
    return { line: `no AWS credentials: ${e.message}: run with a role, or set AWS_PROFILE or AWS_ACCESS_KEY_ID`, exitCode: 1, expected: true };
  if (e.$metadata) return { line: `AWS refused (${e.name}): ${e.message}`, exitCode: 1, expected: true };
  if (e.name === 'Error') return { line: e.message, exitCode: 1, expected: true };
  return { line: `${e.name}: ${e.message} (unexpected: TOTES_LOG_LEVEL=debug prints where it came from)`, exitCode: 1, expected: false };
}
