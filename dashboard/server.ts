/**
 * The dashboard: a web page for analysts (data-model.md §3 on each fact as of now or the end of a past day)
 * and operators (freshness, loads, slot lag, changes/s, errors and dead letters).
 *
 * node:http only. Three kinds of request:
 *   GET /api/business?from=…&to=…&currency=ID&asOf=YYYY-MM-DD   every chart's rows, from one snapshot, as of
 *                                                                the end of asOf (UTC) or the watermark
 *   GET /api/pipeline                                             freshness and loads, plus pipelineStatus()
 *   GET /api/dead-letters                                         the newest dead letters, from deadLetters()
 *   GET / and a fixed list of static files (no path from the request reaches the file system)
 * Request text reaches SQL only as parameters. It needs nothing but SELECT on the warehouse, and
 * runs its reads in READ ONLY transactions, so a read-only role is enough (docs/dashboard.md).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg, { connectionConfig } from '../lib/pg.ts';
import {
  AS_OF_POINT_SQL,
  AS_OF_REFUSED,
  AS_OF_SETTING_SQL,
  BUSINESS_QUERIES,
  CURRENCIES_SQL,
  MONTH_ENDS_SQL,
  PIPELINE_QUERIES,
  SALES_EXTENT_SQL,
  type BusinessFilter,
  type BusinessQueryName,
} from './queries.ts';

export interface DashboardOptions {
  warehouseUrl: string;
  port: number;
  /** Interface to listen on; default 127.0.0.1 (this machine only). */
  host?: string;
  /**
   * What only the running pipeline knows. Fields the page reads, all optional:
   *   slotLagBytes: number          WAL the replication slot still holds
   *   captured: number              changes read so far (a counter: changes/s is its rate)
   *   changesPerSecond: number      used as is instead, when given
   *   deadLetters: number           dead letters so far
   *   errors: ({ at?, message } | string)[]
   * `local/status-line.ts` snapshotStatus() gives the first four.
   */
  pipelineStatus?: () => Promise<Record<string, unknown>>;
  /**
   * The newest `limit` dead letters, for the dead-letter panel, each as stores/dead-letter-reader.ts
   * shows it: { key, at, shard, sequenceNumber, reason, events: { table, op, key, column, values, text }[] },
   * personal values opened through the key store, or { notOpened: why } (cli/ wires it).
   * Without it the panel says that no processed bucket is configured.
   */
  deadLetters?: (limit: number) => Promise<unknown[]>;
}

export interface Dashboard {
  url: string;
  stop(): Promise<void>;
}

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));
/** chart.js's package exports hide dist/chart.umd.js: find it next to the entry point it does export. */
const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js');

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/index.html': { file: join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: join(PUBLIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: join(PUBLIC_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  '/vendor/chart.umd.js': { file: CHART_JS, type: 'text/javascript; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
};

/** Keep a slow or unreachable warehouse (an AWS endpoint behind a closed security group) from hanging requests. */
const CONNECT_TIMEOUT_MS = 5_000;
const STATEMENT_TIMEOUT_MS = 15_000;
const STATUS_TIMEOUT_MS = 5_000;
const KEPT_ERRORS = 10;
const DEAD_LETTER_PANEL = 10;

class BadRequest extends Error {}

interface ErrorEntry {
  at: string;
  source: 'dashboard' | 'pipeline';
  message: string;
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

function dateParam(value: string | null, name: string): string | null {
  if (value === null || value === '') return null;
  const parsed = new Date(`${value}T00:00:00Z`);
  // Date rolls 2024-02-30 over to March 1st: a real date prints back as itself.
  if (!DATE.test(value) || Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== value) {
    throw new BadRequest(`${name} must be a calendar date YYYY-MM-DD, got ${JSON.stringify(value.slice(0, 40))}`);
  }
  return value;
}

/** The business filter from the query string; anything unknown, repeated or malformed is refused. */
function parseBusinessQuery(params: URLSearchParams): Omit<BusinessFilter, 'currencyId'> & { currencyId: number | null } {
  for (const name of new Set(params.keys())) {
    if (!['from', 'to', 'currency', 'asOf'].includes(name)) throw new BadRequest(`unknown parameter ${JSON.stringify(name.slice(0, 40))}`);
    if (params.getAll(name).length > 1) throw new BadRequest(`${name} given more than once`);
  }
  const from = dateParam(params.get('from'), 'from');
  const to = dateParam(params.get('to'), 'to');
  if (from && to && from > to) throw new BadRequest('from must not be after to');
  const currency = params.get('currency');
  if (currency !== null && currency !== '' && !/^[1-9]\d{0,8}$/.test(currency)) throw new BadRequest('currency must be a currency id (a positive integer)');
  return { from, to, currencyId: currency ? Number(currency) : null, asOf: dateParam(params.get('asOf'), 'asOf') };
}

/** A failure where the warehouse answered (a SQLSTATE outside connection, shutdown and login errors) is a query error, not unreachability. */
function warehouseAnswered(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(08|28|3D|57)/.test(code);
}

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const text = (v: unknown): string | null => (typeof v === 'string' ? v.slice(0, 500) : null);

function listOf<T>(v: unknown, pick: (entry: Record<string, unknown>) => T): T[] {
  if (!Array.isArray(v)) return [];
  return v.slice(-KEPT_ERRORS).map((e) => pick(typeof e === 'string' ? { message: e } : ((e ?? {}) as Record<string, unknown>)));
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const pool = new pg.Pool({
    ...connectionConfig(opts.warehouseUrl),
    max: 3,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    application_name: 'totes-dashboard',
  });
  const errors: ErrorEntry[] = [];
  const noteError = (source: ErrorEntry['source'], message: string) => {
    const last = errors[errors.length - 1];
    if (last && last.source === source && last.message === message) last.at = new Date().toISOString();
    else errors.push({ at: new Date().toISOString(), source, message });
    if (errors.length > KEPT_ERRORS) errors.shift();
  };
  // An idle connection dropped by the server (restart, failover) must not crash the process.
  pool.on('error', (err) => noteError('dashboard', `warehouse connection lost: ${err.message}`));

  /** All reads of one response see one snapshot, so the charts agree with one another. */
  async function readOnly<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    const db = await pool.connect();
    let broken = false;
    try {
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const result = await fn(db);
      await db.query('COMMIT');
      return result;
    } catch (err) {
      broken = !warehouseAnswered(err);
      await db.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      db.release(broken);
    }
  }

  async function business(params: URLSearchParams) {
    const query = parseBusinessQuery(params);
    return readOnly(async (db) => {
      await db.query(AS_OF_SETTING_SQL, [query.asOf]);
      const point = (await db.query(AS_OF_POINT_SQL, [query.asOf])).rows[0] as { lsn: string; commit_time: string | null };
      const monthEnds = (await db.query(MONTH_ENDS_SQL)).rows.map((r) => r.day as string);
      const currencies = (await db.query(CURRENCIES_SQL)).rows as { id: number; code: string; name: string | null }[];
      const filter: BusinessFilter = { ...query, currencyId: query.currencyId ?? currencies[0]?.id ?? 0 };
      const extent = (await db.query(SALES_EXTENT_SQL)).rows[0];
      const results = {} as Record<BusinessQueryName, unknown[]>;
      for (const [name, q] of Object.entries(BUSINESS_QUERIES) as [BusinessQueryName, (typeof BUSINESS_QUERIES)[BusinessQueryName]][]) {
        results[name] = (await db.query(q.sql, q.params(filter))).rows;
      }
      return { filter, asOf: { lsn: point.lsn, commitTime: point.commit_time, monthEnds }, currencies, extent, results };
    });
  }

  let lastCaptured: { at: number; count: number } | null = null;
  let changesPerSecond: number | null = null;

  async function pipelineReport() {
    if (!opts.pipelineStatus) return null;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${STATUS_TIMEOUT_MS / 1000}s`)), STATUS_TIMEOUT_MS);
    });
    try {
      const s = await Promise.race([opts.pipelineStatus(), timeout]);
      const captured = finite(s.captured);
      if (finite(s.changesPerSecond) !== null) {
        changesPerSecond = finite(s.changesPerSecond);
      } else if (captured !== null) {
        const now = Date.now();
        // Measured over at least a second: several open pages poll far more often than that.
        if (lastCaptured && now - lastCaptured.at >= 1_000) changesPerSecond = Math.max(0, (captured - lastCaptured.count) / ((now - lastCaptured.at) / 1000));
        if (!lastCaptured || now - lastCaptured.at >= 1_000) lastCaptured = { at: now, count: captured };
      }
      for (const e of listOf(s.errors, (e) => ({ at: text(e.at), message: text(e.message) ?? JSON.stringify(e).slice(0, 500) }))) {
        if (!errors.some((known) => known.source === 'pipeline' && known.message === e.message)) {
          errors.push({ at: e.at ?? new Date().toISOString(), source: 'pipeline', message: e.message });
          if (errors.length > KEPT_ERRORS) errors.shift();
        }
      }
      const slotLag = finite(s.slotLagBytes);
      return {
        // confirmed_flush_lsn can run a few bytes past pg_current_wal_lsn() on an idle slot: that is no lag.
        slotLagBytes: slotLag === null ? null : Math.max(0, slotLag),
        changesPerSecond,
        captured,
        deadLetters: finite(s.deadLetters),
      };
    } catch (err) {
      noteError('dashboard', `pipeline status unavailable: ${(err as Error).message}`);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async function pipelineStatus() {
    const [warehouse, pipeline] = await Promise.all([
      readOnly(async (db) => ({
        freshness: (await db.query(PIPELINE_QUERIES.freshness)).rows[0] ?? null,
        gaps: (await db.query(PIPELINE_QUERIES.gaps)).rows,
        loads: (await db.query(PIPELINE_QUERIES.loads)).rows[0],
        loadsPerInterval: (await db.query(PIPELINE_QUERIES.loadsPerInterval)).rows,
      })).then(
        (data) => ({ ok: true as const, ...data }),
        (err: Error) => {
          noteError('dashboard', `warehouse: ${err.message}`);
          return { ok: false as const, reachable: warehouseAnswered(err), error: err.message };
        },
      ),
      pipelineReport(),
    ]);
    return { warehouse, pipeline, errors: [...errors].reverse(), generatedAt: new Date().toISOString() };
  }

  function sendJson(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...SECURITY_HEADERS, Allow: 'GET, HEAD' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    if (url.pathname === '/api/business') {
      try {
        sendJson(res, 200, await business(url.searchParams));
      } catch (err) {
        if (err instanceof BadRequest) return sendJson(res, 400, { error: err.message });
        // a day past the watermark: the warehouse's own words on how far it has loaded
        const { code, hint } = err as { code?: string; hint?: string };
        if (code === AS_OF_REFUSED) return sendJson(res, 400, { error: (err as Error).message, hint, asOfRefused: true });
        noteError('dashboard', `warehouse: ${(err as Error).message}`);
        sendJson(res, 503, { error: (err as Error).message, reachable: warehouseAnswered(err) });
      }
      return;
    }
    if (url.pathname === '/api/pipeline') return sendJson(res, 200, await pipelineStatus());
    if (url.pathname === '/api/dead-letters') {
      if (!opts.deadLetters) return sendJson(res, 200, { letters: null, problem: 'no processed bucket configured: the dashboard reads no dead letters' });
      try {
        return sendJson(res, 200, { letters: await opts.deadLetters(DEAD_LETTER_PANEL) });
      } catch (err) {
        noteError('dashboard', `dead letters: ${(err as Error).message}`);
        return sendJson(res, 503, { error: (err as Error).message });
      }
    }
    const asset = STATIC_FILES[url.pathname];
    if (!asset) return sendJson(res, 404, { error: 'not found' });
    const body = await readFile(asset.file);
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Cache-Control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) sendJson(res, 500, { error: err.message });
      else res.destroy(err);
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as { port: number };
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.end();
    },
  };
}
