/**
 * What crosses a process or storage boundary (a change event, a manifest, a poller checkpoint,
 * a wal2json message, the deployment's configuration) is declared once, as a valita schema:
 * the declaration gives the TypeScript type (v.Infer) and the check. `check` reads a value
 * with it and, when it does not fit, throws the caller's error saying each problem, each
 * naming the field by its path ("source.lsn", "tables[2].rows").
 */
import type * as v from '@badrap/valita';

type Issue = v.Err['issues'][number];
type Key = string | number;

/**
 * `value` as `schema` types it, or the error `fail` makes of its problems thrown (`message`
 * says them all on one line). 'passthrough' (the default) lets fields the schema does not name
 * through untouched, so a reader takes what a newer writer adds; 'strict' refuses them
 * (settings a person types, where an unknown key is a typo).
 */
export function check<T>(
  schema: v.Type<T>,
  value: unknown,
  fail: (message: string, problems: string[]) => Error,
  mode: 'passthrough' | 'strict' = 'passthrough',
): T {
  const result = schema.try(value, { mode });
  if (result.ok) return result.value;
  const problems = result.issues.flatMap((issue) => describeIssue(issue, value));
  throw fail(problems.join('; '), problems);
}

/** "path: what is wrong" (only what is wrong when it is the whole value), one per field. */
function describeIssue(issue: Issue, root: unknown): string[] {
  return issue.code === 'unrecognized_keys' ? issue.keys.map((k) => at([...issue.path, k], 'unknown field')) : [describeOne(issue, root)];
}

const at = (path: Key[], text: string) => (path.length ? `${pathText(path)}: ${text}` : text);

function describeOne(issue: Exclude<Issue, { code: 'unrecognized_keys' }>, root: unknown): string {
  const got = () => `got ${shown(valueAt(root, issue.path))}`;
  switch (issue.code) {
    case 'invalid_type':
      return at(issue.path, `expected ${issue.expected.join(' or ')}, ${got()}`);
    case 'invalid_literal':
      return at(issue.path, `expected ${issue.expected.map((e) => JSON.stringify(e)).join(' or ')}, ${got()}`);
    case 'missing_value':
      return at(issue.path, 'missing');
    case 'invalid_length':
      return at(
        issue.path,
        `expected ${issue.maxLength === issue.minLength ? issue.minLength : `at least ${issue.minLength}`} items, got ${itemsAt(root, issue.path)}`,
      );
    case 'invalid_union':
      return issue.issues.flatMap((i) => describeIssue(i, root)).join(', or ');
    case 'custom_error': {
      const value = valueAt(root, issue.path);
      const primitive = value === null || typeof value !== 'object';
      return at(issue.path, `${issue.message ?? 'is not valid'}${primitive ? `, ${got()}` : ''}`);
    }
  }
}

/** source.lsn, tables[2].rows */
function pathText(path: Key[]): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}

function valueAt(root: unknown, path: Key[]): unknown {
  let value = root;
  for (const k of path) value = typeof value === 'object' && value !== null ? (value as Record<Key, unknown>)[k] : undefined;
  return value;
}

function itemsAt(root: unknown, path: Key[]): number {
  return (valueAt(root, path) as unknown[]).length;
}

function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  return JSON.stringify(value);
}
