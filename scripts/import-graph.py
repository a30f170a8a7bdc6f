#!/usr/bin/env python3
"""The import graph of src/: one edge per file that names another through a
`crate::` or `super::` path, outside comments and test code (from
`#[cfg(test)]` on, and files named tests.rs). Fails on a cycle (Tarjan) or
on an import against the layers of src/lib.rs: cli, serve -> commands (dump,
restore, verify, inspect) -> shared model (plan, catalog) -> stages
(source, sink) -> foundations (archive, cluster, retry, aws, job).

Usage: scripts/import-graph.py [src]"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs') and f != 'tests.rs':
            p = os.path.join(d, f)
            files[p] = open(p).read()

def module_of(path):
    rel = os.path.relpath(path, root)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib', 'main'):
        parts = parts[:-1]
    return parts

mods = {tuple(module_of(p)): p for p in files}

def resolve(parts):
    # longest prefix that is a module file
    for n in range(len(parts), -1, -1):
        if tuple(parts[:n]) in mods:
            return mods[tuple(parts[:n])]
    return None

def strip(src):
    # drop test modules (from #[cfg(test)] to end: they are last by convention) and comments
    i = src.find('#[cfg(test)]')
    if i >= 0:
        src = src[:i]
    src = re.sub(r'//[^\n]*', '', src)
    return src

edges = {p: set() for p in files}
for p, src in files.items():
    me = module_of(p)
    src = strip(src)
    for m in re.finditer(r'\b(crate|super)((?:::\w+)+)', src):
        head, path = m.group(1), m.group(2).split('::')[1:]
        if head == 'crate':
            parts = path
        else:
            base = me[:]
            # a mod.rs file's `super` is its parent; a plain file's `super` is its folder's module
            # module_of already maps a mod.rs to its folder's module.
            parts = base[:-1] + path
            # handle super::super
            while parts and parts[0] == 'super':
                parts = parts[1:]
        t = resolve(parts)
        if t and t != p:
            edges[p].add(t)

# Tarjan
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in edges:
    if v not in index: strong(v)
print(f"{len(files)} files, {sum(len(e) for e in edges.values())} edges, {len(sccs)} cycles")
for c in sccs: print("CYCLE:", sorted(c))

commands = ['dump', 'restore', 'verify', 'inspect']
def top(p):
    return module_of(p)[0] if module_of(p) else 'lib'
bad = 0
for p, ts in edges.items():
    a = top(p)
    for t in ts:
        b = top(t)
        if a in commands and b in commands and a != b:
            print("COMMAND->COMMAND:", p, '->', t); bad += 1
        if a == 'archive' and b in ('source', 'sink'):
            print("ARCHIVE->STAGE:", p, '->', t); bad += 1
        # Front ends: cli and serve (serve may reuse the command line's
        # option parsing); nothing else may import either.
        if a not in ('cli', 'serve', 'main', 'lib') and b == 'cli':
            print("ENGINE->CLI:", p, '->', t); bad += 1
        if a not in ('serve', 'main', 'lib') and b == 'serve':
            print("->SERVE:", p, '->', t); bad += 1
        if a in ('archive', 'cluster', 'retry', 'aws', 'job', 'errors') and b in commands + ['plan', 'catalog', 'source', 'sink']:
            print("FOUNDATION->UP:", p, '->', t); bad += 1
print(f"{bad} layer violations")
sys.exit(1 if sccs or bad else 0)
