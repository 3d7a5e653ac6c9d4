#!/usr/bin/env node
// Runs the TypeScript bench through tsx, resolved from this package (as bin/totes.mjs runs the CLI).
import { register } from 'tsx/esm/api';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// The table is the output; service logs would bury it.
process.env.TOTES_LOG_LEVEL ??= 'warn';
process.env.TOTES_LOG_PRETTY ??= '0';
register();
const { main } = await import('../bench/bench.ts');
// Exit when done: SDK keep-alive sockets and pool timers would otherwise hold the process open.
process.exit(await main(process.argv.slice(2)));
