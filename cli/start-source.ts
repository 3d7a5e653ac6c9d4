/**
 * `totes start --source URL`: the local stack on a totesys it did not create. Before anything
 * starts, the source is checked as `totes doctor` checks it; what a DBA must apply stops the
 * start with what `totes source-setup` would have them run. Nothing is written to the source
 * that its owner did not agree to: capture's slot (and its progress rows) only, and capture's
 * schema and the publication only with --apply-setup. On the way out it says what it left.
 */
import { sourceSetupSql, CAPTURE_STATE_DDL, createPublicationSql } from '../capture/source-setup.ts';
import { SourceNotReady } from '../capture/source-errors.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { ConfigError } from '../lib/config.ts';
import { type Check, fail, formatReport } from './doctor-checks.ts';
import { judgeSource, readSourceFacts, type SourceFacts } from './doctor-source.ts';
import { withClient } from './doctor.ts';

export interface GivenSource {
  url: string;
  slot: string;
  publication: string;
  applySetup: boolean;
}

/** The URL without its password: safe to print, and psql asks for the password (or reads ~/.pgpass). */
export function withoutPassword(url: string): string {
  const u = new URL(url);
  u.password = '';
  return u.toString();
}

/** The facts as they will be once --apply-setup has created capture's schema and the publication (owned by the URL's role). */
function afterSetup(f: SourceFacts): SourceFacts {
  return {
    ...f,
    publication: f.publication ?? { allTables: false, insert: true, update: true, delete: true },
    publishedTables: f.publication ? f.publishedTables : SOURCE_TABLE_NAMES.map((table) => ({ schema: 'public', table })),
    progressTable: f.progressTable ?? { select: true, insert: true, update: true },
  };
}

/** The doctor's checks of the source, and one of its own: the slot must not be another process's. */
function judge(f: SourceFacts, s: GivenSource): Check[] {
  const checks = judgeSource(f, { slot: s.slot, publication: s.publication });
  if (f.slots.some((slot) => slot.name === s.slot && slot.active))
    checks.push(fail('source', `slot ${s.slot} is in use by another process`, 'stop that process, or give this run a slot of its own with --slot NAME'));
  return checks;
}

const blocking = (checks: Check[]) => checks.filter((c) => c.status === 'fail' && !c.advisory);

/**
 * Checks the source; prints the report and the setup script, and throws (one line) when capture
 * cannot run on it; with --apply-setup creates what is missing of capture's schema and the
 * publication. Returns what it created, and the advisory failures to warn about.
 */
export async function prepareGivenSource(s: GivenSource, print: (text: string) => void): Promise<{ created: string[]; warnings: Check[] }> {
  return withClient(s.url, async (db) => {
    const facts = await readSourceFacts(db, s.publication);
    const checks = judge(facts, s);
    const failing = blocking(checks);
    const setupSuffices = blocking(judge(afterSetup(facts), s)).length === 0;
    if (failing.length > 0 && !(s.applySetup && setupSuffices)) {
      print(
        `${formatReport(checks)}\nWhat \`totes source-setup\` has a DBA run on totesys (none of it was run):\n\n${sourceSetupSql({ publication: s.publication, role: 'totes_cdc' })}`,
      );
      throw new SourceNotReady(
        `the source ${withoutPassword(s.url)} is not ready for capture (${failing.length} of the checks above fail); nothing was changed on it`,
        setupSuffices
          ? "have its DBA apply the fixes above and start again, or add --apply-setup to create the publication and capture's schema as this URL's role"
          : 'have its DBA apply the fixes above (the script above is the whole setup), then start again',
      );
    }
    const created: string[] = [];
    if (s.applySetup && (!facts.progressTable || !facts.publication)) {
      await db.query(CAPTURE_STATE_DDL); // the publication holds its signal table
      if (!facts.progressTable) created.push('schema totes_cdc (tables snapshot_progress and signal)');
      if (!facts.publication) {
        await db.query(createPublicationSql(s.publication));
        created.push(`publication ${s.publication}`);
      }
    }
    return { created, warnings: checks.filter((c) => c.status === 'fail' && c.advisory) };
  });
}

/** Refuses a warehouse database that a pipeline has loaded before: the local stream starts empty, so its progress would point nowhere. */
export async function checkWarehouseEmpty(url: string): Promise<void> {
  await withClient(url, async (db) => {
    const { rows } = await db.query(`SELECT to_regclass('totes_shard_progress') IS NOT NULL AS loaded`);
    if (rows[0].loaded)
      throw new ConfigError(
        `the warehouse ${withoutPassword(url)} already holds a loaded warehouse (totes_shard_progress): the local stream starts empty each time; give an empty database`,
      );
  });
}

/** What the run left on the source, and how to remove it; said on the way out. */
export function leftOnSource(s: GivenSource, o: { slotDropped: boolean; created: string[] }): string {
  const psql = `psql '${withoutPassword(s.url)}'`;
  const lines = [`The source ${withoutPassword(s.url)} is as totes found it, except:`];
  if (o.slotDropped) lines.push(`  nothing of this run's: its replication slot ${s.slot} was dropped, with capture's rows for it`);
  else
    lines.push(
      `  the replication slot ${s.slot}: it keeps the source's WAL from where this run stopped until it is dropped (the next \`totes start --source\` resumes from it).`,
      `  Drop it, with capture's rows for it (its snapshot progress; on Postgres 13 its signal row), when you are done:`,
      `    ${psql} -c "SELECT pg_drop_replication_slot('${s.slot}')" -c "DELETE FROM totes_cdc.snapshot_progress WHERE slot_name = '${s.slot}'" -c "DELETE FROM totes_cdc.signal WHERE writer = '${s.slot}'"`,
      '  (or start with --drop-slot-on-exit next time)',
    );
  if (o.created.length > 0)
    lines.push(
      `  created at your request (--apply-setup): ${o.created.join(', ')}. Remove with:`,
      `    ${psql}${o.created.some((c) => c.startsWith('publication')) ? ` -c 'DROP PUBLICATION "${s.publication}"'` : ''}${o.created.some((c) => c.startsWith('schema')) ? ' -c "DROP SCHEMA totes_cdc CASCADE"' : ''}`,
    );
  return lines.join('\n');
}
