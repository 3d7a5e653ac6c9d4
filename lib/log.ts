/**
 * Structured logs: JSON lines to stdout (CloudWatch Logs Insights queries the fields);
 * pretty single lines when a person watches a terminal (TOTES_LOG_PRETTY=1, set by the CLI).
 */
import pino from 'pino';

export type Logger = pino.Logger;

function build(): Logger {
  const level = process.env.TOTES_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info';
  if (process.env.TOTES_LOG_PRETTY === '1') {
    return pino({ level }, pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }));
  }
  return pino({ level, base: { service: 'totes-cdc' } });
}

export const log: Logger = build();
