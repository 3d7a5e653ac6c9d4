/**
 * A small YAML reader for the subset this repository's docker-compose.yml and workflows use
 * (no YAML library is installed): block mappings and sequences, `- key: value` items, plain
 * and quoted scalars, flat flow sequences `[a, "b"]` and mappings `{ k: v }`, `|` and `>`
 * block scalars, comments. Scalars stay strings. Anything else (anchors, aliases, tags,
 * several documents) is an error rather than a silent misreading.
 */
export type YamlValue = string | null | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  indent: number;
  text: string;
  no: number;
}

export class YamlError extends Error {
  override name = 'YamlError';
}

/** The text without a trailing comment (a # after whitespace, outside quotes). */
function stripComment(text: string): string {
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) return text.slice(0, i).trimEnd();
  }
  return text.trimEnd();
}

/** Split flow-collection content at top-level commas, outside quotes. */
function splitFlow(inner: string, no: number): string[] {
  const parts: string[] = [];
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i];
    if (quote) {
      if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '[' || c === '{') throw new YamlError(`line ${no}: nested flow collections are not supported`);
    else if (c === ',') {
      parts.push(inner.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(inner.slice(start));
  return parts.map((p) => p.trim()).filter((p, i, all) => p !== '' || i < all.length - 1);
}

/** A mapping key (plain or quoted) and its colon, at the start of a line's text. */
const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{}[\],&*!|>-][^:]*?)\s*:(?:\s+|$)/;

function scalar(text: string, no: number): YamlValue {
  const t = text.trim();
  if (t === '' || t === '~' || t === 'null') return null;
  if (t.startsWith('"')) {
    if (!t.endsWith('"') || t.length < 2) throw new YamlError(`line ${no}: unterminated double-quoted string`);
    return JSON.parse(t) as string;
  }
  if (t.startsWith("'")) {
    if (!t.endsWith("'") || t.length < 2) throw new YamlError(`line ${no}: unterminated single-quoted string`);
    return t.slice(1, -1).replace(/''/g, "'");
  }
  if (t.startsWith('[')) {
    if (!t.endsWith(']')) throw new YamlError(`line ${no}: unterminated flow sequence`);
    return splitFlow(t.slice(1, -1), no).map((p) => scalar(p, no));
  }
  if (t.startsWith('{')) {
    if (!t.endsWith('}')) throw new YamlError(`line ${no}: unterminated flow mapping`);
    const out: { [key: string]: YamlValue } = {};
    for (const part of splitFlow(t.slice(1, -1), no)) {
      const m = KEY.exec(part);
      if (!m) throw new YamlError(`line ${no}: "${part}" is not a key: value pair`);
      out[scalar(m[1], no) as string] = scalar(part.slice(m[0].length), no);
    }
    return out;
  }
  if (/^[&*!]/.test(t) || t === '---' || t === '...') throw new YamlError(`line ${no}: anchors, aliases, tags and document markers are not supported`);
  return t;
}

export function parseYaml(source: string): YamlValue {
  const raw = source.split(/\r?\n/);
  const lines: Line[] = [];
  const blockScalars = new Map<number, string>();
  for (let i = 0; i < raw.length; i++) {
    if (/^\s*\t/.test(raw[i])) throw new YamlError(`line ${i + 1}: tabs in indentation`);
    const text = stripComment(raw[i]);
    if (text.trim() === '') continue;
    const indent = text.length - text.trimStart().length;
    lines.push({ indent, text: text.trim(), no: i + 1 });
    const block = /(?:^|:\s+|^-\s+)([|>])[-+]?$/.exec(text.trim());
    if (block) {
      // Collect the more-indented lines that follow, verbatim, as this line's value.
      const body: string[] = [];
      let j = i + 1;
      while (j < raw.length && (raw[j].trim() === '' || raw[j].length - raw[j].trimStart().length > indent)) body.push(raw[j++]);
      while (body.length && body[body.length - 1].trim() === '') body.pop();
      const strip = Math.min(...body.filter((l) => l.trim()).map((l) => l.length - l.trimStart().length));
      const lines = body.map((l) => l.slice(strip));
      blockScalars.set(i + 1, block[1] === '|' ? `${lines.join('\n')}\n` : `${lines.join(' ')}\n`);
      i = j - 1;
    }
  }
  let pos = 0;

  const valueAfter = (rest: string, line: Line, parentIndent: number): YamlValue => {
    if (/^[|>][-+]?$/.test(rest)) return blockScalars.get(line.no) ?? '';
    if (rest !== '') return scalar(rest, line.no);
    const next = lines[pos];
    if (next && (next.indent > parentIndent || (next.indent === parentIndent && next.text.startsWith('- ')))) return block(next.indent);
    return null;
  };

  const mapping = (indent: number): { [key: string]: YamlValue } => {
    const out: { [key: string]: YamlValue } = {};
    while (pos < lines.length && lines[pos].indent === indent && !lines[pos].text.startsWith('- ') && lines[pos].text !== '-') {
      const line = lines[pos];
      const m = KEY.exec(line.text);
      if (!m) throw new YamlError(`line ${line.no}: expected "key: value", found "${line.text}"`);
      const key = scalar(m[1], line.no) as string;
      if (key in out) throw new YamlError(`line ${line.no}: duplicate key "${key}"`);
      pos++;
      out[key] = valueAfter(line.text.slice(m[0].length), line, indent);
    }
    return out;
  };

  const sequence = (indent: number): YamlValue[] => {
    const out: YamlValue[] = [];
    while (pos < lines.length && lines[pos].indent === indent && (lines[pos].text.startsWith('- ') || lines[pos].text === '-')) {
      const line = lines[pos];
      const rest = line.text.slice(1).trimStart();
      if (KEY.test(rest)) {
        // "- key: value": a mapping whose keys line up with this first key.
        const keyIndent = indent + (line.text.length - rest.length);
        lines[pos] = { ...line, indent: keyIndent, text: rest };
        out.push(mapping(keyIndent));
      } else {
        pos++;
        out.push(valueAfter(rest, line, indent));
      }
    }
    return out;
  };

  const block = (indent: number): YamlValue => (lines[pos].text.startsWith('- ') || lines[pos].text === '-' ? sequence(indent) : mapping(indent));

  if (lines.length === 0) return null;
  const doc = block(lines[0].indent);
  if (pos < lines.length) throw new YamlError(`line ${lines[pos].no}: unexpected indentation or content "${lines[pos].text}"`);
  return doc;
}
