/**
 * CloudWatch Embedded Metric Format: one JSON log line that CloudWatch turns into metrics, so
 * the Fargate task and the Lambdas publish metrics without an API call or extra permission.
 */
export const METRIC_NAMESPACE = 'TotesCdc';

export type Unit = 'Count' | 'Count/Second' | 'Bytes' | 'Bytes/Second' | 'Seconds' | 'Milliseconds' | 'Megabytes';

export function emfLine(service: string, metrics: Record<string, { value: number; unit: Unit }>, now = Date.now()): string {
  const values: Record<string, number> = {};
  for (const [name, m] of Object.entries(metrics)) values[name] = m.value;
  return JSON.stringify({
    _aws: {
      Timestamp: now,
      CloudWatchMetrics: [
        { Namespace: METRIC_NAMESPACE, Dimensions: [['Service']], Metrics: Object.entries(metrics).map(([Name, m]) => ({ Name, Unit: m.unit })) },
      ],
    },
    Service: service,
    ...values,
  });
}

export function emitMetrics(service: string, metrics: Record<string, { value: number; unit: Unit }>): void {
  process.stdout.write(`${emfLine(service, metrics)}\n`);
}
