/** Paths the stack builds from: the Lambda entries, the lockfile and the Docker context. */
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
