#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, resolved from this package. A person at a terminal
// gets readable log lines; pipes and services get JSON.
import { register } from 'tsx/esm/api';

process.env.TOTES_LOG_PRETTY ??= process.stderr.isTTY ? '1' : '0';
register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
