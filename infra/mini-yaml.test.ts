import { describe, expect, it } from 'vitest';
import { parseYaml, YamlError } from './mini-yaml.ts';

describe('parseYaml', () => {
  it('reads nested mappings, sequences, "- key: value" items, quoted and flow scalars and comments', () => {
    const doc = parseYaml(`# heading
name: demo   # trailing comment
services:
  a:
    command: ["node", 'it''s', plain, "x # not a comment"]
    env:
      URL: http://host:4567
    depends_on:
      b: { condition: service_healthy }
list:
- one
- two: 2
  three: "3"
empty: {}
run: |
  line one
  line two
`);
    expect(doc).toEqual({
      name: 'demo',
      services: {
        a: { command: ['node', "it's", 'plain', 'x # not a comment'], env: { URL: 'http://host:4567' }, depends_on: { b: { condition: 'service_healthy' } } },
      },
      list: ['one', { two: '2', three: '3' }],
      empty: {},
      run: 'line one\nline two\n',
    });
  });

  it('refuses what it does not understand rather than misreading it', () => {
    expect(() => parseYaml('a: &anchor 1\nb: *anchor\n')).toThrow(YamlError);
    expect(() => parseYaml('a: 1\n   b: 2\n')).toThrow(/unexpected indentation/);
    expect(() => parseYaml('a: 1\na: 2\n')).toThrow(/duplicate key/);
    expect(() => parseYaml('a: [1, [2]]\n')).toThrow(/nested flow/);
  });
});
