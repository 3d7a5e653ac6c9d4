/**
 * CloudWatch Embedded Metric Format: one JSON log line that CloudWatch turns into metrics, so
 * the Fargate task and the Lambdas publish metrics without an API call or extra permission.
 */
export const METRIC_NAMESPACE = 'TotesCdc';

export type Unit = 'Count' | 'Count/Second' | 'Bytes' | 'Bytes/Second' | 'Seconds' | 'Milliseconds' | 'Megabytes';

/**
 * Every metric the services publish, by service (the `Service` dimension), with its unit. The
 * names are typed at both ends: each service's line is a MetricLine, a figure for every name
 * (so a name here that its emitter does not fill fails the type check there), and the alarms and
 * the dashboard (infra/constructs/monitoring.ts) can name only these.
 */
export const METRICS = {
  capture: {
    ChangesPerSecond: 'Count/Second',
    BytesPerSecond: 'Bytes/Second',
    PutRecordsRetries: 'Count',
    PutRecordsLatency: 'Milliseconds',
    SchemaIssues: 'Count',
    SourceUnreachable: 'Count',
    SlotLagSeconds: 'Seconds',
    SlotLagBytes: 'Bytes',
    SafeWalSizeBytes: 'Bytes',
    SlotWalStatus: 'Count',
  },
  processor: { Events: 'Count', DeadLetters: 'Count', BatchFailures: 'Count' },
  loader: {
    BatchesLoaded: 'Count',
    LoaderGapAgeSeconds: 'Seconds',
    WarehouseFreshnessSeconds: 'Seconds',
    WarehouseUnreachable: 'Count',
    UnprovenJunctions: 'Count',
    Truncates: 'Count',
    RowsEnded: 'Count',
  },
} as const satisfies Record<string, Record<string, Unit>>;

export type MetricService = keyof typeof METRICS;
export type MetricName<S extends MetricService> = keyof (typeof METRICS)[S] & string;
/** One interval's figures of a service: null where there is none (unknown is not zero), which leaves the metric out of the line. */
export type MetricLine<S extends MetricService> = Record<MetricName<S>, number | null>;

export function emfLine<S extends MetricService>(service: S, line: MetricLine<S>, now = Date.now()): string {
  const units: Record<string, Unit> = METRICS[service];
  const values = Object.fromEntries(Object.entries<number | null>(line).filter((e): e is [string, number] => e[1] !== null));
  return JSON.stringify({
    _aws: {
      Timestamp: now,
      CloudWatchMetrics: [
        { Namespace: METRIC_NAMESPACE, Dimensions: [['Service']], Metrics: Object.keys(values).map((Name) => ({ Name, Unit: units[Name] })) },
      ],
    },
    Service: service,
    ...values,
  });
}

export function emitMetrics<S extends MetricService>(service: S, line: MetricLine<S>): void {
  process.stdout.write(`${emfLine(service, line)}\n`);
}
