/**
 * Why capture cannot run, in two kinds, with one retry policy:
 * - SourceNotReady: a condition only a person can fix (a setting, a grant, a missing object, a
 *   server too old). The service stops at once, saying what is wrong and what to run or set;
 *   retrying a statement the server will never accept only hides it.
 * - transient: the server is restarting, unreachable, or a killed predecessor's walsender
 *   still holds the slot. Starting is retried (START_RETRY) for up to 90 s (longer than the
 *   default wal_sender_timeout of 60 s), then the process exits for its orchestrator to restart.
 * Server errors are told apart by SQLSTATE, never by their text (which changes between majors).
 */
import type { DatabaseError } from 'pg';
import { FatalError } from '../lib/fatal.ts';
import type { RetryPolicy } from '../lib/retry.ts';
import { CONNECTION_EXCEPTION_CLASS, SQLSTATE } from '../lib/sqlstate.ts';
import { StartReplicationRefused } from './replication-stream.ts';

/** Exit 3: a person must act; starting again would fail the same way. */
export class SourceNotReady extends FatalError {
  override name = 'SourceNotReady';
  constructor(
    readonly problem: string,
    readonly fix: string,
  ) {
    super(`${problem}: ${fix}`, 3);
  }
}

const TRANSIENT_SQLSTATES = new Set<string>([
  SQLSTATE.object_in_use, // a killed predecessor's walsender still holds the slot
  SQLSTATE.admin_shutdown,
  SQLSTATE.crash_shutdown,
  SQLSTATE.cannot_connect_now,
  SQLSTATE.insufficient_resources,
  SQLSTATE.out_of_memory,
]);
const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);

/** True for errors a later attempt can get past by itself. */
export function isTransient(err: unknown): boolean {
  if (err instanceof SourceNotReady) return false;
  const code = (err as { code?: string }).code ?? '';
  if (TRANSIENT_SQLSTATES.has(code) || code.startsWith(CONNECTION_EXCEPTION_CLASS) || TRANSIENT_NODE_CODES.has(code)) return true;
  return /Connection terminated|timeout expired/i.test((err as Error).message ?? '');
}

/** Starting capture: transient errors for 90 s, waits from 0.5 s up to 10 s. */
export const START_RETRY = { firstMs: 500, capMs: 10_000, deadlineMs: 90_000, transient: isTransient } satisfies RetryPolicy;

/** What START_REPLICATION refuses that the cases below explain. */
const EXPLAINED_AT_START = new Set<string>([
  SQLSTATE.insufficient_privilege,
  SQLSTATE.object_not_in_prerequisite_state,
  SQLSTATE.undefined_object,
  SQLSTATE.undefined_file,
]);

/**
 * A server error met while checking, creating the slot or starting replication, as a
 * SourceNotReady when a person must act; otherwise the error itself.
 */
export function explainSourceError(err: unknown, context: { role: string; slot: string; plugin: string }): unknown {
  const e = (err instanceof StartReplicationRefused ? err.cause : err) as Partial<DatabaseError>;
  const said = `${e.message}${e.hint ? ` (${e.hint})` : ''}`;
  // what START_REPLICATION itself refuses, beyond the cases below, is an option this server's
  // plugin does not take: pgoutput raises those with no SQLSTATE of their own (XX000)
  if (err instanceof StartReplicationRefused && !isTransient(err) && !EXPLAINED_AT_START.has(e.code ?? ''))
    return new SourceNotReady(
      `the server rejected START_REPLICATION for slot "${context.slot}" (${said})`,
      `this build of totes-cdc does not speak this server's ${context.plugin}: run one that supports this Postgres version, or report it`,
    );
  switch (e.code) {
    case SQLSTATE.insufficient_privilege:
      if (/replication|WAL sender/i.test(`${e.message} ${e.detail ?? ''}`))
        return new SourceNotReady(
          `role "${context.role}" may not use replication (${e.message})`,
          `on RDS run GRANT rds_replication TO ${context.role}; elsewhere ALTER ROLE ${context.role} WITH REPLICATION (see \`totes source-setup\`)`,
        );
      return new SourceNotReady(`permission denied (${e.message})`, `grant role "${context.role}" what \`totes source-setup\` shows`);
    case SQLSTATE.too_many_connections:
      if (!/max_wal_senders/.test(e.message ?? '')) return err; // too many ordinary clients: transient
      return new SourceNotReady(
        `no free WAL sender (${e.message})`,
        'raise max_wal_senders (RDS: the DB parameter group; a restart applies it), or end an unused replication connection: SELECT pid, application_name FROM pg_stat_replication',
      );
    case SQLSTATE.configuration_limit_exceeded:
      return new SourceNotReady(
        `no free replication slot (${e.message})`,
        "drop an unused slot (SELECT slot_name, active FROM pg_replication_slots; SELECT pg_drop_replication_slot('NAME')) or raise max_replication_slots (RDS: the DB parameter group, then reboot)",
      );
    case SQLSTATE.object_not_in_prerequisite_state:
      return new SourceNotReady(
        `the server cannot decode logically (${said})`,
        'set wal_level = logical (RDS: rds.logical_replication = 1 in the DB parameter group, then reboot) and max_replication_slots above 0; see `totes source-setup`',
      );
    case SQLSTATE.undefined_file:
      return new SourceNotReady(`the ${context.plugin} plugin is not installed on the server (${e.message})`, `install it, or set TOTES_DECODER=pgoutput`);
    case SQLSTATE.undefined_object:
    case SQLSTATE.invalid_catalog_name:
      return new SourceNotReady(`a source object is missing (${e.message})`, 'create it as `totes source-setup` shows');
    case SQLSTATE.invalid_password:
    case SQLSTATE.invalid_authorization_specification:
      return new SourceNotReady(
        `the source refused the login of "${context.role}" (${e.message})`,
        'check the credentials and pg_hba.conf (on RDS: the secret)',
      );
    default:
      return err;
  }
}
