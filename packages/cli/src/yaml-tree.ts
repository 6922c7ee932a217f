import { ConfigError } from '@walship/core';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';

/** A YAML node with the line it starts on (1-based) and its key path (`dbs[0].replicas[1].url`). */
export type YNode = YScalar | YSeq | YMap;

interface YBase {
  readonly path: string;
  readonly line: number | undefined;
}

interface YScalar extends YBase {
  readonly kind: 'scalar';
  readonly value: unknown;
  /** The scalar as written (before type resolution), when known. */
  readonly source: string | undefined;
  /** A block scalar (`|` or `>`): its text begins on the line after `line`. */
  readonly block?: boolean;
}

interface YSeq extends YBase {
  readonly kind: 'seq';
  readonly items: readonly YNode[];
}

interface YEntry {
  readonly key: string;
  /** Line of the key itself. */
  readonly keyLine: number | undefined;
  readonly node: YNode;
}

export interface YMap extends YBase {
  readonly kind: 'map';
  readonly entries: ReadonlyMap<string, YEntry>;
}

/** Builds located errors: `<file>:<line>: <key path>: <message>`. */
export class Locator {
  constructor(readonly file: string) {}

  where(path: string, line: number | undefined): string {
    const loc = line === undefined ? this.file : `${this.file}:${line}`;
    return path ? `${loc}: ${path}` : loc;
  }

  error(node: { path: string; line: number | undefined }, message: string): ConfigError {
    return new ConfigError(`${this.where(node.path, node.line)}: ${message}`);
  }
}

function childPath(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

/**
 * Parses YAML text (YAML 1.1 rules like Go's yaml.v2: `yes`/`no`/`on`/`off` booleans, `<<`
 * merge keys) into a located tree. Aliases are resolved; merge keys are applied (explicit keys
 * win). Duplicate keys and syntax errors are ConfigErrors naming the file and line.
 * Returns undefined for an empty document.
 */
export function parseYamlTree(text: string, file: string): YNode | undefined {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, version: '1.1', merge: true, uniqueKeys: true, prettyErrors: false });
  const loc = new Locator(file);
  const first = doc.errors[0];
  if (first) {
    const line = first.linePos?.[0]?.line ?? (first.pos ? lineCounter.linePos(first.pos[0]).line : undefined);
    const msg = first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError(`${loc.where('', line)}: invalid YAML: ${msg}`);
  }
  const lineOf = (n: Node | null | undefined): number | undefined => (n?.range ? lineCounter.linePos(n.range[0]).line : undefined);
  const seen = new Set<Node>();

  const convert = (node: unknown, path: string, depth: number): YNode => {
    if (depth > 64) throw new ConfigError(`${loc.where(path, undefined)}: YAML nested too deeply`);
    let n = node as Node | null | undefined;
    const line = lineOf(n);
    if (n && isAlias(n)) {
      const target = n.resolve(doc as Document) as Node | undefined;
      if (!target) throw new ConfigError(`${loc.where(path, line)}: unknown YAML alias *${n.source}`);
      if (seen.has(target)) throw new ConfigError(`${loc.where(path, line)}: recursive YAML alias *${n.source}`);
      seen.add(target);
      try {
        const resolved = convert(target, path, depth + 1);
        return { ...resolved, line } as YNode;
      } finally {
        seen.delete(target);
      }
    }
    if (n && isMap(n)) {
      const entries = new Map<string, YEntry>();
      const merged: YMap[] = [];
      for (const pair of n.items) {
        const keyNode = pair.key as Node | null;
        const keyValue = keyNode && isScalar(keyNode) ? keyNode.value : keyNode;
        const keyLine = lineOf(keyNode) ?? line;
        if (keyValue === '<<' || (typeof keyValue === 'symbol' && keyValue.description === '<<')) {
          const src = convert(pair.value, path, depth + 1);
          const sources = src.kind === 'seq' ? src.items : [src];
          for (const s of sources) {
            if (s.kind !== 'map') throw new ConfigError(`${loc.where(path, keyLine)}: merge key << needs a mapping or a list of mappings`);
            merged.push(s);
          }
          continue;
        }
        if (keyValue === null || typeof keyValue === 'object') {
          throw new ConfigError(`${loc.where(path, keyLine)}: mapping keys must be plain strings`);
        }
        const key = String(keyValue);
        entries.set(key, { key, keyLine, node: convert(pair.value, childPath(path, key), depth + 1) });
      }
      for (const m of merged) {
        for (const [k, e] of m.entries) if (!entries.has(k)) entries.set(k, { ...e, node: rebase(e.node, childPath(path, k)) });
      }
      return { kind: 'map', path, line, entries };
    }
    if (n && isSeq(n)) {
      return { kind: 'seq', path, line, items: n.items.map((item, i) => convert(item, `${path}[${i}]`, depth + 1)) };
    }
    if (n && isScalar(n)) {
      const block = n.type === 'BLOCK_LITERAL' || n.type === 'BLOCK_FOLDED';
      return {
        kind: 'scalar',
        path,
        line,
        value: n.value,
        source: typeof n.source === 'string' ? n.source : undefined,
        ...(block ? { block } : {}),
      };
    }
    n = undefined;
    return { kind: 'scalar', path, line, value: null, source: undefined };
  };

  if (doc.contents === null || doc.contents === undefined) return undefined;
  const root = convert(doc.contents, '', 0);
  if (root.kind === 'scalar' && root.value === null) return undefined;
  return root;
}

/** Re-labels a subtree copied by a merge key with the key path it is used at. */
function rebase(node: YNode, path: string): YNode {
  if (node.kind === 'map') {
    const entries = new Map<string, YEntry>();
    for (const [k, e] of node.entries) entries.set(k, { ...e, node: rebase(e.node, childPath(path, k)) });
    return { ...node, path, entries };
  }
  if (node.kind === 'seq') return { ...node, path, items: node.items.map((it, i) => rebase(it, `${path}[${i}]`)) };
  return { ...node, path };
}

/** Levenshtein distance (small strings only). */
function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/** The closest of `candidates` to `word`, if close enough to be a likely typo. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const norm = word.toLowerCase().replace(/_/g, '-');
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const d = editDistance(norm, c);
    if (d < bestScore) {
      best = c;
      bestScore = d;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(2, Math.floor(best.length / 3));
  return bestScore <= limit ? best : undefined;
}
