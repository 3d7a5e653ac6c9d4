/**
 * The capture task's health check (the template's interval, retries and start period) against
 * capture's own health rule (capture/capture-health.ts), over a day as it runs on AWS: a Kinesis
 * outage of 10 minutes, then the catch-up of what was written meanwhile. ECS replaces a task
 * after `retries` failed checks in a row past its start period; a task making progress must
 * never be replaced, and one that has not yet written to the stream must never pass.
 */
import { describe, expect, it } from 'vitest';
import { ProgressWatch } from '../capture/capture-health.ts';
import { ENV } from '../lib/config.ts';
import { inspect, RUNNING, synthesize } from './testing.ts';

const { resources, logicalIdOf } = inspect(synthesize(RUNNING).template);
const captureTask = logicalIdOf('AWS::ECS::TaskDefinition', (p) => p.ContainerDefinitions[0].Name === 'capture');
const container = resources('AWS::ECS::TaskDefinition')[captureTask].Properties.ContainerDefinitions[0];
const env: Record<string, string> = Object.fromEntries(container.Environment.map((e: { Name: string; Value: string }) => [e.Name, e.Value]));
const check = { interval: container.HealthCheck.Interval, retries: container.HealthCheck.Retries, startPeriod: container.HealthCheck.StartPeriod };
const heartbeatSeconds = Number(env[ENV.heartbeatSeconds]);
const maxStallSeconds = Number(env[ENV.maxHealthyLagSeconds]);

/** What the stream has accepted by second `t` of a task's life: heartbeats and events. */
type Accepted = (t: number) => { heartbeats: number; acceptedThrough: number };

/** The second of its life at which ECS replaces a task, or null when it lives to `until`. */
function replacedAt(accepted: Accepted, until: number): number | null {
  const watch = new ProgressWatch(maxStallSeconds);
  let failures = 0;
  for (let t = 0; t <= until; t += check.interval) {
    const { healthy } = watch.check({ state: t >= 5 ? 'streaming' : 'starting', walStatus: 'reserved', ...accepted(t) }, t * 1000);
    failures = healthy ? 0 : failures + 1;
    if (t >= check.startPeriod && failures >= check.retries) return t;
  }
  return null;
}

describe("capture's health as the task definition checks it", () => {
  it('is read from the template', () => {
    expect(check.interval).toBeGreaterThan(0);
    expect(heartbeatSeconds).toBeGreaterThan(0);
    expect(maxStallSeconds).toBeGreaterThan(heartbeatSeconds);
  });

  it('keeps a task that catches up after a 10-minute Kinesis outage, writing old heartbeats at three times their pace', () => {
    const outage = 600;
    // the task starts when the outage ends (its predecessor was replaced during it): the backlog's heartbeats come first
    const backlog = outage / heartbeatSeconds;
    const accepted: Accepted = (t) => {
      const caughtUp = Math.min(backlog, Math.floor((t * 3) / heartbeatSeconds));
      const live = t * 3 >= outage ? Math.floor((t - outage / 3) / heartbeatSeconds) : 0;
      return { heartbeats: caughtUp + live, acceptedThrough: (caughtUp + live) * 10 };
    };
    expect(replacedAt(accepted, 3_600)).toBeNull();
  });

  it('keeps a task streaming through a quiet source (heartbeats only)', () => {
    expect(replacedAt((t) => ({ heartbeats: Math.floor(t / heartbeatSeconds), acceptedThrough: -1 }), 3_600)).toBeNull();
  });

  it('replaces a task the stream has accepted nothing from (Postgres reachable, Kinesis not) once its start period is over', () => {
    const at = replacedAt(() => ({ heartbeats: 0, acceptedThrough: -1 }), 3_600);
    expect(at).not.toBeNull();
    expect(at!).toBeLessThanOrEqual(check.startPeriod + check.interval * check.retries);
  });

  it('replaces a task whose writes stop for longer than the stall bound, and only then', () => {
    const stopsAt = 1_200;
    const at = replacedAt((t) => ({ heartbeats: Math.floor(Math.min(t, stopsAt) / heartbeatSeconds), acceptedThrough: -1 }), 3_600);
    expect(at).not.toBeNull();
    expect(at!).toBeGreaterThan(stopsAt + maxStallSeconds);
    expect(at!).toBeLessThanOrEqual(stopsAt + maxStallSeconds + check.interval * (check.retries + 1));
  });
});
