/**
 * Structured logs: JSON lines to stdout (CloudWatch Logs Insights queries the fields);
 * pretty single lines when a person watches a terminal (TOTES_LOG_PRETTY=1, set by the CLI).
 *
 * Several services share a process locally (`npm start`), all logging through `log`: each runs
 * as a component (asComponent), and every line logged while it runs, and by whatever it starts
 * (timers, sockets, promises), names it in `component`, without a logger handed to every
 * module it uses.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pino from 'pino';

export type Logger = pino.Logger;

const running = new AsyncLocalStorage<string>();

/** Runs `fn` as component `name`: each line it logs, now or later, says `component: name`. */
export function asComponent<T>(name: string, fn: () => T): T {
  return running.run(name, fn);
}

/** The process's logger; `destination` replaces stdout (tests). */
export function createLogger(destination?: pino.DestinationStream): Logger {
  const level = process.env.TOTES_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info';
  const mixin = () => {
    const component = running.getStore();
    return component ? { component } : {};
  };
  if (process.env.TOTES_LOG_PRETTY === '1' && !destination) {
    return pino(
      { level, mixin },
      pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }),
    );
  }
  return pino({ level, mixin, base: { service: 'totes-cdc' } }, destination);
}

export const log: Logger = createLogger();
