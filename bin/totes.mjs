#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, resolved from this package. A person at a terminal
// gets readable log lines; pipes and services get JSON.
import { register } from 'tsx/esm/api';

// Node 20 is deliberate here (see README); the SDK's notice about Node 22 is said there once.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.TOTES_LOG_PRETTY ??= process.stderr.isTTY ? '1' : '0';
register();
const { main } = await import('../cli/main.ts');
const code = await main(process.argv.slice(2));
// a failed service may still hold sockets and timers open: its one line is written, so end here
if (code !== 0) process.exit(code);
