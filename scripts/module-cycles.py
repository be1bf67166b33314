#!/usr/bin/env python3
"""Reports module cycles per crate: module A names an item of sibling B and B of A.

Edges are taken from `crate::` and `super::` paths (use lines and inline paths), mapped
to the children of the two modules' common ancestor; references to an ancestor are
skipped. Tests (`#[cfg(test)] mod tests`) are ignored."""
import os, re, sys, itertools

def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            p = os.path.join(root, f); rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[-1] in ('mod',): rel = rel[:-1]
            if rel in (['lib'], ['main']): rel = []
            if rel and rel[0] == 'bin': continue
            mods[tuple(rel)] = p
    return mods

def refs(text):
    text = text.split('#[cfg(test)]\nmod tests')[0]
    text = re.sub(r'//[^\n]*', '', text)
    out = []
    for m in re.finditer(r'\b((?:crate|super)(?:::super)*)::\{?\s*([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?', text):
        out.append((m.group(1), m.group(2), m.group(3)))
    # braces: use crate::{a::X, b::Y}
    for m in re.finditer(r'\b((?:crate|super)(?:::super)*)::\{([^}]*)\}', text, re.S):
        for part in re.findall(r'(?:^|,)\s*([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?', m.group(2)):
            out.append((m.group(1), part[0], part[1] or None))
    return out

def main(crate_src):
    mods = modules(crate_src); edges = set()
    for mod, path in mods.items():
        for base, a, b in refs(open(path).read()):
            if base == 'crate': start = ()
            else:
                ups = base.count('super')
                # a file module's `super` is its parent
                start = mod[:len(mod) - ups] if len(mod) >= ups else ()
            target = start + (a,)
            if target not in mods: continue
            if b and target + (b,) in mods: target = target + (b,)
            if mod[:len(target)] == target: continue  # ancestor (or self)
            i = 0
            while i < min(len(mod), len(target)) and mod[i] == target[i]: i += 1
            if i >= len(mod): continue  # a parent naming its own child
            edges.add((mod[:i + 1], target[:i + 1]))
    found = False
    for (a, b) in sorted(edges):
        if (b, a) in edges and a < b:
            found = True
            print(f"  {'::'.join(a)} <-> {'::'.join(b)}")
    # longer cycles: strongly connected components
    graph = {}
    for a, b in edges: graph.setdefault(a, set()).add(b)
    index = {}; low = {}; stack = []; on = set(); sccs = []; n = [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    for v in list(graph):
        if v not in index: strong(v)
    for comp in sccs:
        found = True
        print("  cycle:", ", ".join(sorted('::'.join(c) for c in comp)))
    return found

if __name__ == '__main__':
    any_found = False
    for src in sys.argv[1:]:
        print(src)
        any_found |= main(src)
    sys.exit(1 if any_found else 0)
