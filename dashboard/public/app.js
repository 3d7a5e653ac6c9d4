// The dashboard page: polls /api/pipeline and /api/business and redraws in place.
// Every chart is kept in window.__charts (name → Chart), so what a chart carries can be read back.

const PIPELINE_EVERY_MS = 2000;
const BUSINESS_EVERY_MS = 5000;
const DEAD_LETTERS_EVERY_MS = 10000;
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d'];

window.__charts = {};
window.__dashboard = { businessRefreshes: 0, pipelineRefreshes: 0 };

const $ = (id) => document.getElementById(id);
const number = (v) => (v === null || v === undefined ? null : Number(v));
const money = (v) => Number(v).toLocaleString('en-GB', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const whole = (v) => Number(v).toLocaleString('en-GB');

/** One dataset: a label per row and one value per row. */
function single(rows, labelKey, valueKey, seriesLabel) {
  return { labels: rows.map((r) => r[labelKey]), datasets: [{ label: seriesLabel, data: rows.map((r) => number(r[valueKey])) }] };
}

/**
 * One dataset per series (e.g. currency), over `labels` (default: the labels of the rows). A
 * label with rows but none in a series counts 0 there; a label with no row at all is null in
 * every series: a gap, which a line does not join across.
 */
function pivot(rows, labelKey, seriesKey, valueKey, labels = [...new Set(rows.map((r) => r[labelKey]))]) {
  const present = new Set(rows.map((r) => r[labelKey]));
  const series = [...new Set(rows.map((r) => r[seriesKey]))].sort();
  const at = new Map(rows.map((r) => [`${r[labelKey]}\u0000${r[seriesKey]}`, number(r[valueKey])]));
  return {
    labels,
    datasets: series.map((s) => ({ label: s, data: labels.map((l) => at.get(`${l}\u0000${s}`) ?? (present.has(l) ? 0 : null)) })),
  };
}

/** Every calendar month ('YYYY-MM') from the first given to the last: months apart on the axis are months apart in time. */
function calendarMonths(months) {
  const sorted = [...months].sort();
  if (sorted.length === 0) return [];
  const last = sorted[sorted.length - 1];
  let [year, month] = sorted[0].split('-').map(Number);
  const all = [];
  for (let label = sorted[0]; label <= last; label = `${year}-${String(month).padStart(2, '0')}`) {
    all.push(label);
    month = (month % 12) + 1;
    if (month === 1) year++;
  }
  return all;
}

let currencyCode = '';
const CHARTS = {
  salesByMonth: {
    type: 'line',
    build: (rows) => pivot(rows, 'month', 'currency', 'value', calendarMonths(rows.map((r) => r.month))),
  },
  salesByCountry: { type: 'bar', build: (rows) => single(rows, 'country', 'value', `Sales value (${currencyCode})`) },
  topDesigns: { type: 'bar', horizontal: true, build: (rows) => single(rows, 'design', 'value', `Sales value (${currencyCode})`) },
  topCounterparties: { type: 'bar', horizontal: true, build: (rows) => single(rows, 'counterparty', 'value', `Sales value (${currencyCode})`) },
  salesByDepartment: {
    type: 'bar',
    build: (rows) =>
      single(
        rows.map((r) => ({ ...r, label: `${r.department} (${r.location})` })),
        'label',
        'value',
        `Sales value (${currencyCode})`,
      ),
  },
  salesByStaff: {
    type: 'bar',
    build: (rows) =>
      single(
        rows.map((r) => ({ ...r, label: `${r.staff} · ${r.department ?? '?'}, ${r.location ?? '?'}` })),
        'label',
        'value',
        `Sales value (${currencyCode})`,
      ),
  },
  unpaidReceivables: { type: 'bar', build: (rows) => pivot(rows, 'counterparty', 'currency', 'amount') },
  revenueByWeekday: { type: 'bar', build: (rows) => single(rows, 'label', 'value', `Revenue (${currencyCode})`) },
  revenueByMonthName: { type: 'bar', build: (rows) => single(rows, 'label', 'value', `Revenue (${currencyCode})`) },
  revenueByQuarter: { type: 'bar', build: (rows) => single(rows, 'label', 'value', `Revenue (${currencyCode})`) },
  loadsPerInterval: { type: 'bar', build: (rows) => single(rows, 'bucket', 'rows', 'Rows loaded') },
};

function draw(name, rows) {
  const spec = CHARTS[name];
  const data = spec.build(rows);
  data.datasets.forEach((d, i) => {
    d.backgroundColor = spec.type === 'line' ? PALETTE[i % PALETTE.length] : `${PALETTE[i % PALETTE.length]}cc`;
    d.borderColor = PALETTE[i % PALETTE.length];
  });
  const existing = window.__charts[name];
  if (existing) {
    existing.data = data;
    existing.update('none');
    return;
  }
  window.__charts[name] = new Chart($(name), {
    type: spec.type,
    data,
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      indexAxis: spec.horizontal ? 'y' : 'x',
      plugins: { legend: { display: data.datasets.length > 1 } },
      scales: { [spec.horizontal ? 'x' : 'y']: { beginAtZero: true } },
    },
  });
}

function cell(text, numeric) {
  const td = document.createElement('td');
  td.textContent = text;
  if (numeric) td.className = 'num';
  return td;
}

function fillTable(id, rows, columns) {
  const body = $(id).querySelector('tbody');
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      tr.append(...columns.map(([key, format, numeric]) => cell(r[key] === null ? '–' : format ? format(r[key]) : String(r[key]), numeric)));
      return tr;
    }),
  );
}

// ---- banner: the page keeps polling whatever happens, and says why data is stale ----

const problems = { business: null, pipeline: null };

function setProblem(source, problem) {
  problems[source] = problem;
  const current = problems.pipeline ?? problems.business;
  const banner = $('banner');
  banner.hidden = !current;
  banner.dataset.state = current ? current.state : 'ok';
  banner.textContent = current ? current.message : '';
}

function problemFrom(body, status) {
  if (status === 0) return { state: 'server-down', message: 'The dashboard server is not answering. Retrying every few seconds…' };
  if (body && body.reachable === false)
    return { state: 'unreachable', message: `The warehouse is unreachable (${body.error}). Showing the last data received; retrying every few seconds…` };
  return { state: 'query-error', message: `The warehouse answered with an error: ${body ? body.error : `HTTP ${status}`}` };
}

async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { cache: 'no-store' });
  } catch {
    return { status: 0, body: null };
  }
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

// ---- business ----

const filter = { from: '', to: '', currency: '', asOf: '' };

function businessQuery() {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v) params.set(k, v);
  return params.toString();
}

const MONTH = new Intl.DateTimeFormat('en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' });
const shownTime = (t) => t.replace('T', ' ').replace(/Z$/, ' UTC');

/** What point the figures are as of, and a button per month end (the end of the last months with data). */
function showAsOf(data) {
  const { lsn, commitTime, monthEnds } = data.asOf;
  const day = data.filter.asOf;
  $('asOfShown').textContent = !day
    ? `as of ${commitTime ? shownTime(commitTime) : 'an unknown time'} (LSN ${lsn}): the newest source commit the whole warehouse has loaded`
    : `as of the end of ${day} (UTC): ${commitTime ? `the last source commit then, ${shownTime(commitTime)} (LSN ${lsn})` : 'before the first source commit loaded'}`;
  const presets = $('asOfPresets');
  const days = ['', ...monthEnds].join(',');
  if (presets.dataset.days !== days) {
    presets.replaceChildren(
      ...['', ...monthEnds].map((d) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.dataset.asOf = d;
        button.textContent = d ? `end of ${MONTH.format(new Date(`${d}T00:00:00Z`))}` : 'Now';
        return button;
      }),
    );
    presets.dataset.days = days;
  }
  for (const button of presets.querySelectorAll('button')) button.setAttribute('aria-pressed', String(button.dataset.asOf === (day ?? '')));
}

function showBusiness(data) {
  showAsOf(data);
  const chosen = data.currencies.find((c) => c.id === data.filter.currencyId);
  currencyCode = chosen ? chosen.code : '';
  const select = $('currency');
  const options = data.currencies.map((c) => `${c.id}:${c.code}`).join(',');
  if (select.dataset.options !== options) {
    select.replaceChildren(...data.currencies.map((c) => new Option(c.name ? `${c.code} · ${c.name}` : c.code, String(c.id))));
    select.dataset.options = options;
  }
  select.value = String(data.filter.currencyId);
  document.querySelectorAll('#business .currency').forEach((el) => {
    el.textContent = currencyCode ? `(${currencyCode})` : '';
  });
  $('extent').textContent = data.extent.first ? `orders from ${data.extent.first} to ${data.extent.last}` : 'no orders loaded yet';
  for (const name of Object.keys(CHARTS)) if (name in data.results) draw(name, data.results[name]);
  fillTable('receivablesTable', data.results.unpaidReceivables, [
    ['counterparty'],
    ['currency'],
    ['payments', whole, true],
    ['amount', money, true],
    ['avg_days_overdue', null, true],
    ['max_days_overdue', null, true],
  ]);
  fillTable('topDesignsPerCountry', data.results.topDesignsPerCountry, [['country'], ['rank', null, true], ['design'], ['value', money, true]]);
  fillTable('staffUnitsLatestMonth', data.results.staffUnitsLatestMonth, [
    ['staff'],
    ['units', whole, true],
    ['share_percent', (v) => `${v}%`, true],
    ['growth_percent', (v) => `${Number(v) > 0 ? '+' : ''}${v}%`, true],
  ]);
  const month = data.results.staffUnitsLatestMonth[0];
  $('staffMonth').textContent = month ? `(${month.month})` : '';
}

async function refreshBusiness() {
  const query = businessQuery();
  const { status, body } = await getJson(`/api/business?${query}`);
  if (query !== businessQuery()) return; // the filter changed while this was in flight
  if (status === 200) {
    $('filterError').hidden = true;
    $('asOfError').hidden = true;
    showBusiness(body);
    setProblem('business', null);
    $('business').classList.remove('stale');
    window.__dashboard.businessRefreshes++;
    window.__dashboard.business = body;
  } else if (status === 400 && body.asOfRefused) {
    // the last figures stay, dimmed, under the heading that says which point they are as of
    $('asOfError').hidden = false;
    $('asOfError').textContent = `${body.error}${body.hint ? ` (${body.hint})` : ''}`;
    $('business').classList.add('stale');
  } else if (status === 400) {
    $('filterError').hidden = false;
    $('filterError').textContent = body.error;
  } else {
    setProblem('business', problemFrom(body, status));
    $('business').classList.add('stale');
  }
}

// ---- pipeline ----

function age(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function metric(name, text, value) {
  const el = document.querySelector(`[data-metric="${name}"]`);
  el.textContent = text;
  if (value === undefined || value === null) delete el.dataset.value;
  else el.dataset.value = String(value);
}

function fillLog(id, entries, render) {
  const list = $(id);
  if (!entries.length) {
    list.innerHTML = '<li class="muted">none</li>';
    return;
  }
  list.replaceChildren(
    ...entries.map((e) => {
      const li = document.createElement('li');
      if (e.at) {
        const time = document.createElement('time');
        time.textContent = e.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
        li.append(time);
      }
      li.append(render(e));
      return li;
    }),
  );
}

function showPipeline(data) {
  const w = data.warehouse;
  if (w.ok) {
    const f = w.freshness;
    if (f && f.lag_seconds !== null) {
      metric('freshness', age(f.lag_seconds), f.lag_seconds);
      metric('watermark', `newest commit loaded ${f.watermark_commit_time.replace('T', ' ')} (LSN ${f.watermark_lsn})`, f.watermark_commit_time);
    } else {
      metric('freshness', 'no heartbeat yet', null);
      metric('watermark', 'nothing loaded to measure from', null);
    }
    const gaps = w.gaps;
    const oldest = gaps[0];
    metric('gaps', oldest ? `${gaps.length} shard${gaps.length > 1 ? 's' : ''}, ${age(oldest.age_seconds)}` : 'none', gaps.length);
    metric(
      'gapDetail',
      oldest
        ? `${oldest.shard}: record ${oldest.missing} is in no micro-batch (batches resume at ${oldest.resumes_at}); the watermark waits there`
        : 'records no micro-batch holds',
      oldest ? oldest.age_seconds : null,
    );
    $('gapTile').classList.toggle('bad', gaps.length > 0);
    metric('rowsLoaded', whole(w.loads.rows), w.loads.rows);
    metric(
      'loads',
      `${whole(w.loads.batches)} batches · ${whole(w.loads.rows_last_minute)} rows in the last minute${w.loads.last_loaded_at ? ` · last ${w.loads.last_loaded_at.slice(11, 19)} UTC` : ''}`,
      w.loads.batches,
    );
    draw('loadsPerInterval', w.loadsPerInterval);
  }
  const p = data.pipeline;
  const unavailable = 'unavailable';
  metric('slotLag', p && p.slotLagBytes !== null ? bytes(p.slotLagBytes) : unavailable, p ? p.slotLagBytes : null);
  metric('changesPerSecond', !p ? unavailable : p.changesPerSecond === null ? 'measuring…' : p.changesPerSecond.toFixed(1), p ? p.changesPerSecond : null);
  metric('captured', p && p.captured !== null ? `${whole(p.captured)} read from the WAL` : 'read from the WAL', p ? p.captured : null);
  metric('deadLetters', p && p.deadLetters !== null ? whole(p.deadLetters) : unavailable, p ? p.deadLetters : null);
  fillLog('errors', data.errors, (e) => document.createTextNode(`${e.source}: ${e.message}`));
}

async function refreshPipeline() {
  const { status, body } = await getJson('/api/pipeline');
  if (status === 200) {
    showPipeline(body);
    setProblem('pipeline', body.warehouse.ok ? null : problemFrom(body.warehouse, 503));
    $('pipeline').classList.toggle('stale', !body.warehouse.ok);
    $('updated').textContent = `updated ${new Date().toLocaleTimeString('en-GB')}`;
    window.__dashboard.pipelineRefreshes++;
    window.__dashboard.pipeline = body;
  } else {
    setProblem('pipeline', problemFrom(body, status));
    $('pipeline').classList.add('stale');
  }
}

// ---- dead letters: one row per set-aside event ----

/** A value as the server shows it: itself, or { notOpened: why } for a personal value left sealed. */
function valueItem(column, value, atFault) {
  const li = document.createElement('li');
  const sealed = value !== null && typeof value === 'object';
  li.textContent = `${column}: ${sealed ? `<${value.notOpened}>` : JSON.stringify(value)}`;
  if (sealed) li.className = 'sealed';
  if (atFault) li.classList.add('at-fault');
  return li;
}

function valuesCell(event) {
  const td = document.createElement('td');
  const list = document.createElement('ul');
  list.className = 'values';
  if (event.text !== undefined) list.append(valueItem('not an event', event.text, true));
  else list.append(...Object.entries(event.values ?? {}).map(([c, v]) => valueItem(c, v, c === event.column)));
  td.append(list);
  return td;
}

function showDeadLetters(body) {
  const problem = $('deadLetterProblem');
  problem.hidden = body.letters !== null;
  problem.textContent = body.letters === null ? body.problem : '';
  const rows = (body.letters ?? []).flatMap((d) =>
    d.events.map((e) => {
      const tr = document.createElement('tr');
      const key = e.key
        ? Object.entries(e.key)
            .map(([c, v]) => `${c}=${v}`)
            .join(' ')
        : '–';
      tr.append(
        cell(d.at.replace('T', ' ').replace(/\.\d+Z$/, '')),
        cell(`${d.shard} · ${d.sequenceNumber}`),
        cell(d.reason),
        cell(e.table ?? '–'),
        cell(e.op ?? '–'),
        cell(key),
        valuesCell(e),
      );
      return tr;
    }),
  );
  if (!rows.length) {
    const none = cell('none');
    none.colSpan = 7;
    none.className = 'muted';
    rows.push(document.createElement('tr'));
    rows[0].append(none);
  }
  $('deadLetterTable')
    .querySelector('tbody')
    .replaceChildren(...rows);
}

async function refreshDeadLetters() {
  const { status, body } = await getJson('/api/dead-letters');
  if (status === 200) {
    showDeadLetters(body);
    window.__dashboard.deadLetters = body;
  } else {
    $('deadLetterProblem').hidden = false;
    $('deadLetterProblem').textContent = `dead letters unavailable: ${body ? body.error : `HTTP ${status}`}`;
  }
}

/** Poll forever, one request at a time, whatever the last one returned. */
function poll(refresh, everyMs) {
  const next = () =>
    refresh()
      .catch((err) => console.error(err))
      .finally(() => setTimeout(next, everyMs));
  next();
}

$('filter').addEventListener('submit', (event) => {
  event.preventDefault();
  filter.from = $('from').value;
  filter.to = $('to').value;
  filter.currency = $('currency').value;
  refreshBusiness();
});
$('allTime').addEventListener('click', () => {
  $('from').value = '';
  $('to').value = '';
  filter.from = '';
  filter.to = '';
  refreshBusiness();
});

function showAsOfDay(day) {
  $('asOf').value = day;
  filter.asOf = day;
  refreshBusiness();
}
$('asOfForm').addEventListener('submit', (event) => {
  event.preventDefault();
  showAsOfDay($('asOf').value);
});
$('asOfPresets').addEventListener('click', (event) => {
  const button = event.target.closest('button');
  if (button) showAsOfDay(button.dataset.asOf);
});

poll(refreshPipeline, PIPELINE_EVERY_MS);
poll(refreshBusiness, BUSINESS_EVERY_MS);
poll(refreshDeadLetters, DEAD_LETTERS_EVERY_MS);
