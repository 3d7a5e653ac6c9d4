/**
 * The dashboard's SQL: one named query per chart or table (data-model.md §3), every one on the
 * as-of views (docs/time-travel.md), so each order or payment counts once, at its version as of
 * the point `totes.as_of` names (the transaction sets it: AS_OF_SETTING_SQL), and with the
 * dimensions as they stood then; unset, the warehouse's watermark: never half a source transaction.
 *
 * Filters reach Postgres only as parameters. The date range applies to the order's created_date
 * (the payment's for receivables); either end may be NULL for "open". Values are summed per
 * currency: a ranking in one currency is meaningful, a sum across currencies is not.
 */

export interface BusinessFilter {
  /** YYYY-MM-DD, inclusive; null: no lower bound. */
  from: string | null;
  /** YYYY-MM-DD, inclusive; null: no upper bound. */
  to: string | null;
  /** dim_currency.currency_id the rankings are computed in. */
  currencyId: number;
  /** YYYY-MM-DD: the warehouse as it stood at the end of that day (UTC); null: as of the watermark. */
  asOf: string | null;
}

interface NamedQuery {
  sql: string;
  params(filter: BusinessFilter): unknown[];
}

/** The public schema's as-of views (loader/as-of-sql.ts asOfSchema; the dashboard imports only lib/). */
const AS_OF = 'as_of';

const IN_RANGE = `($1::date IS NULL OR f.created_date >= $1::date) AND ($2::date IS NULL OR f.created_date <= $2::date)`;
const range = (f: BusinessFilter) => [f.from, f.to];
const rangeAndCurrency = (f: BusinessFilter) => [f.from, f.to, f.currencyId];

/** Current sales orders in the range and currency, with their value. */
const SALES = `sales AS (
  SELECT f.*, f.units_sold * f.unit_price AS value
    FROM ${AS_OF}.fact_sales_order f
   WHERE ${IN_RANGE} AND f.currency_id = $3)`;

/** Inferred dimension members have no attributes until their row arrives: label them by id. */
const currencyLabel = (alias: string, idColumn: string) => `coalesce(${alias}.currency_code, 'currency ' || ${idColumn})`;

/** The day overdue days count to ($3): the as-of day, or today, in UTC so the answer does not depend on the session's time zone. */
const TODAY_UTC = `coalesce($3::date, (now() AT TIME ZONE 'UTC')::date)`;

export const BUSINESS_QUERIES = {
  /** Q1: sales value per month, per currency (every currency: the chart has one line each). */
  salesByMonth: {
    sql: `SELECT to_char(f.created_date, 'YYYY-MM') AS month, ${currencyLabel('c', 'f.currency_id')} AS currency,
                 sum(f.units_sold * f.unit_price) AS value
            FROM ${AS_OF}.fact_sales_order f LEFT JOIN ${AS_OF}.dim_currency c ON c.currency_id = f.currency_id
           WHERE ${IN_RANGE}
           GROUP BY 1, 2 ORDER BY 1, 2`,
    params: range,
  },
  /** Q2: sales by staff member, with department and location. */
  salesByStaff: {
    sql: `WITH ${SALES}
          SELECT f.sales_staff_id AS staff_id, coalesce(s.first_name || ' ' || s.last_name, 'staff ' || f.sales_staff_id) AS staff,
                 s.department_name AS department, s.location, sum(f.units_sold)::bigint::text AS units, sum(f.value) AS value
            FROM sales f LEFT JOIN ${AS_OF}.dim_staff s ON s.staff_id = f.sales_staff_id
           GROUP BY 1, 2, 3, 4 ORDER BY sum(f.value) DESC, 1`,
    params: rangeAndCurrency,
  },
  /** Q2, rolled up: sales by department and location. */
  salesByDepartment: {
    sql: `WITH ${SALES}
          SELECT coalesce(s.department_name, 'unknown') AS department, coalesce(s.location, 'unknown') AS location, sum(f.value) AS value
            FROM sales f LEFT JOIN ${AS_OF}.dim_staff s ON s.staff_id = f.sales_staff_id
           GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2`,
    params: rangeAndCurrency,
  },
  /** Q3: the ten designs with the highest sales value. */
  topDesigns: {
    sql: `WITH ${SALES}
          SELECT f.design_id, coalesce(d.design_name, 'design ' || f.design_id) AS design, sum(f.value) AS value
            FROM sales f LEFT JOIN ${AS_OF}.dim_design d ON d.design_id = f.design_id
           GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 10`,
    params: rangeAndCurrency,
  },
  /** Q4: the ten counterparties with the highest sales value. */
  topCounterparties: {
    sql: `WITH ${SALES}
          SELECT f.counterparty_id, coalesce(cp.counterparty_legal_name, 'counterparty ' || f.counterparty_id) AS counterparty, sum(f.value) AS value
            FROM sales f LEFT JOIN ${AS_OF}.dim_counterparty cp ON cp.counterparty_id = f.counterparty_id
           GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 10`,
    params: rangeAndCurrency,
  },
  /** Q5: sales by delivery country. */
  salesByCountry: {
    sql: `WITH ${SALES}
          SELECT coalesce(l.country, 'unknown') AS country, sum(f.value) AS value
            FROM sales f LEFT JOIN ${AS_OF}.dim_location l ON l.location_id = f.agreed_delivery_location_id
           GROUP BY 1 ORDER BY 2 DESC, 1`,
    params: rangeAndCurrency,
  },
  /** Q6: the top three designs in each delivery country. */
  topDesignsPerCountry: {
    sql: `WITH ${SALES},
          per_country AS (
            SELECT coalesce(l.country, 'unknown') AS country, coalesce(d.design_name, 'design ' || f.design_id) AS design, sum(f.value) AS value
              FROM sales f LEFT JOIN ${AS_OF}.dim_location l ON l.location_id = f.agreed_delivery_location_id
                           LEFT JOIN ${AS_OF}.dim_design d ON d.design_id = f.design_id
             GROUP BY 1, 2),
          ranked AS (SELECT *, row_number() OVER (PARTITION BY country ORDER BY value DESC, design) AS rank FROM per_country)
          SELECT country, rank::int, design, value FROM ranked WHERE rank <= 3 ORDER BY country, rank`,
    params: rangeAndCurrency,
  },
  /**
   * Q7: each employee's units in the latest month of the range, their share of that month and
   * the growth on their previous month (null when they sold nothing then). Units, so every currency.
   */
  staffUnitsLatestMonth: {
    sql: `WITH monthly AS (
            SELECT date_trunc('month', f.created_date)::date AS month, f.sales_staff_id, sum(f.units_sold) AS units
              FROM ${AS_OF}.fact_sales_order f WHERE ${IN_RANGE} GROUP BY 1, 2),
          measured AS (
            SELECT m.*, m.units / sum(m.units) OVER (PARTITION BY m.month) AS share,
                   lag(m.units) OVER (PARTITION BY m.sales_staff_id ORDER BY m.month) AS previous_units,
                   lag(m.month) OVER (PARTITION BY m.sales_staff_id ORDER BY m.month) AS previous_month
              FROM monthly m)
          SELECT to_char(m.month, 'YYYY-MM') AS month, coalesce(s.first_name || ' ' || s.last_name, 'staff ' || m.sales_staff_id) AS staff,
                 m.units::bigint::text AS units, round(100 * m.share, 1) AS share_percent,
                 CASE WHEN m.previous_month = (m.month - interval '1 month')::date
                      THEN round(100 * (m.units - m.previous_units)::numeric / m.previous_units, 1) END AS growth_percent
            FROM measured m LEFT JOIN ${AS_OF}.dim_staff s ON s.staff_id = m.sales_staff_id
           WHERE m.month = (SELECT max(month) FROM monthly)
           ORDER BY m.units DESC, 2`,
    params: range,
  },
  /**
   * Q8: unpaid sales receipts by counterparty and currency. A payment is overdue from the day
   * after its payment_date; days overdue count 0 before that.
   */
  unpaidReceivables: {
    sql: `SELECT coalesce(cp.counterparty_legal_name, 'counterparty ' || f.counterparty_id) AS counterparty,
                 ${currencyLabel('c', 'f.currency_id')} AS currency, count(*)::int AS payments, sum(f.payment_amount) AS amount,
                 round(avg(greatest(${TODAY_UTC} - f.payment_date, 0)), 1) AS avg_days_overdue,
                 max(greatest(${TODAY_UTC} - f.payment_date, 0)) AS max_days_overdue
            FROM ${AS_OF}.fact_payment f
            JOIN ${AS_OF}.dim_payment_type pt ON pt.payment_type_id = f.payment_type_id AND pt.payment_type_name = 'SALES_RECEIPT'
            LEFT JOIN ${AS_OF}.dim_counterparty cp ON cp.counterparty_id = f.counterparty_id
            LEFT JOIN ${AS_OF}.dim_currency c ON c.currency_id = f.currency_id
           WHERE NOT f.paid AND ${IN_RANGE}
           GROUP BY 1, 2 ORDER BY sum(f.payment_amount) DESC, 1, 2`,
    params: (f) => [f.from, f.to, f.asOf],
  },
  /** Q9: revenue by day of the week (Monday first), month name and quarter. */
  revenueByWeekday: {
    sql: `WITH ${SALES}
          SELECT d.day_name AS label, sum(f.value) AS value FROM sales f JOIN ${AS_OF}.dim_date d ON d.date_id = f.created_date
           GROUP BY d.day_of_week, d.day_name ORDER BY d.day_of_week`,
    params: rangeAndCurrency,
  },
  revenueByMonthName: {
    sql: `WITH ${SALES}
          SELECT d.month_name AS label, sum(f.value) AS value FROM sales f JOIN ${AS_OF}.dim_date d ON d.date_id = f.created_date
           GROUP BY d.month, d.month_name ORDER BY d.month`,
    params: rangeAndCurrency,
  },
  revenueByQuarter: {
    sql: `WITH ${SALES}
          SELECT 'Q' || d.quarter AS label, sum(f.value) AS value FROM sales f JOIN ${AS_OF}.dim_date d ON d.date_id = f.created_date
           GROUP BY d.quarter ORDER BY d.quarter`,
    params: rangeAndCurrency,
  },
} satisfies Record<string, NamedQuery>;

export type BusinessQueryName = keyof typeof BUSINESS_QUERIES;

/** The currencies the filter offers, and the dates the sales cover (for the date inputs). */
export const CURRENCIES_SQL = `SELECT currency_id AS id, coalesce(currency_code, 'currency ' || currency_id) AS code, currency_name AS name
  FROM ${AS_OF}.dim_currency WHERE NOT is_deleted ORDER BY currency_id`;
export const SALES_EXTENT_SQL = `SELECT min(created_date) AS first, max(created_date) AS last FROM ${AS_OF}.fact_sales_order`;

/**
 * The point the transaction reads at ($1: the as-of day or null), SET LOCAL, so a pooled
 * connection never keeps it: the end of that day UTC, or '' (unset) for the watermark.
 */
export const AS_OF_SETTING_SQL = `SELECT set_config('totes.as_of', coalesce($1::date::text || ' 23:59:59.999999', ''), true)`;

/**
 * The point as_of reads at and its source commit time ($1 as above): the watermark's when
 * unset; a day's last source commit (null before the first). A day past the watermark fails
 * here with the warehouse's message (SQLSTATE AS_OF_REFUSED).
 */
export const AS_OF_POINT_SQL = `SELECT p.lsn::text AS lsn,
       to_char(CASE WHEN $1::date IS NULL THEN f.watermark_commit_time AT TIME ZONE 'UTC' ELSE c.source_commit_time END,
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS commit_time
  FROM totes_as_of_point p CROSS JOIN totes_freshness f LEFT JOIN totes_commits c ON c.source_lsn = p.lsn`;
export const AS_OF_REFUSED = '22023';

/**
 * The last days of the latest months (up to six) that have source commits and have ended
 * by the watermark's month, newest first: one index probe per month, however many commits.
 */
export const MONTH_ENDS_SQL = `WITH RECURSIVE months AS (
    SELECT date_trunc('month', (SELECT max(c.source_commit_time) FROM totes_commits c
                                 WHERE c.source_commit_time < date_trunc('month', f.watermark_commit_time AT TIME ZONE 'UTC'))) AS month, 1 AS n
      FROM totes_freshness f
    UNION ALL
    SELECT date_trunc('month', (SELECT max(c.source_commit_time) FROM totes_commits c WHERE c.source_commit_time < m.month)), m.n + 1
      FROM months m WHERE m.month IS NOT NULL AND m.n < 6)
  SELECT to_char(month + interval '1 month' - interval '1 day', 'YYYY-MM-DD') AS day FROM months WHERE month IS NOT NULL ORDER BY month DESC`;

/** What only the warehouse knows about the pipeline: how far it is complete, and what was loaded. */
export const PIPELINE_QUERIES = {
  freshness: `SELECT watermark_lsn::text,
                     to_char(watermark_commit_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS watermark_commit_time,
                     lag_seconds::float8
                FROM totes_freshness`,
  /** Shards held at records no micro-batch holds (the watermark waits there), oldest first. */
  gaps: `SELECT shard, gap_missing_seq AS missing, gap_resumes_seq AS resumes_at, extract(epoch FROM now() - gap_since)::float8 AS age_seconds
           FROM totes_shard_progress WHERE gap_since IS NOT NULL AND NOT ended ORDER BY gap_since`,
  loads: `SELECT count(*)::float8 AS batches, coalesce(sum(rows), 0)::float8 AS rows,
                 coalesce(sum(rows) FILTER (WHERE loaded_at > now() - interval '1 minute'), 0)::float8 AS rows_last_minute,
                 to_char(max(loaded_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_loaded_at
            FROM totes_load_log`,
  /** Rows loaded per 10 s over the last 5 minutes, empty buckets included. */
  loadsPerInterval: `WITH buckets AS (
                       SELECT to_timestamp(floor(extract(epoch FROM now()) / 10) * 10 - 10 * g) AS bucket FROM generate_series(29, 0, -1) g)
                     SELECT to_char(b.bucket AT TIME ZONE 'UTC', 'HH24:MI:SS') AS bucket, coalesce(sum(l.rows), 0)::float8 AS rows
                       FROM buckets b LEFT JOIN totes_load_log l ON l.loaded_at >= b.bucket AND l.loaded_at < b.bucket + interval '10 seconds'
                      GROUP BY b.bucket ORDER BY b.bucket`,
} as const;
