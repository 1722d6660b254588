#!/usr/bin/env python3
"""Checks the shape of lib/: the file-level call graph has no cycle, and no
function is longer than MAX_LINES lines.

Functions are found by a small C scanner (comments, strings and preprocessor
lines removed; a definition is a top-level `name(...) {`).  A call is an
identifier followed by `(` inside a function body that names a function
defined in another lib/ file.  Static inline helpers in lib/*.h are not
files of the graph (they call nothing in lib/*.c).

Usage: check_lib_graph.py LIBDIR [--max-lines N] [--dot]
Exit status 1 with a message on a cycle or an over-long function.
"""
import os
import re
import sys

MAX_LINES = 80


def strip(src):
    """Blanks comments, string/char literals and preprocessor lines, keeping
    line numbers."""
    out = []
    i, n = 0, len(src)
    at_line_start = True
    while i < n:
        c = src[i]
        if at_line_start and c == '#':
            # preprocessor line (with continuations)
            while i < n and src[i] != '\n':
                if src[i] == '\\' and i + 1 < n and src[i + 1] == '\n':
                    out.append('\n')
                    i += 2
                    continue
                i += 1
            continue
        if c == '/' and src.startswith('/*', i):
            j = src.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', src[i:j]))
            i = j
            continue
        if c == '/' and src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            i = j
            continue
        if c in '"\'':
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == '\\' else 1
            out.append(c + ' ' * (j - i - 1) + c)
            i = j + 1
            continue
        if c == '\n':
            at_line_start = True
        elif not c.isspace():
            at_line_start = False
        out.append(c)
        i += 1
    return ''.join(out)


DEF_RE = re.compile(r'([A-Za-z_]\w*)\s*\([^;{}]*\)\s*(?:__attribute__\s*\(\(.*?\)\)\s*)?\{', re.S)
KEYWORDS = {'if', 'for', 'while', 'switch', 'return', 'sizeof', 'do', 'else',
            '_Static_assert', '_Alignas', '_Alignof', 'defined', '__attribute__'}


def functions(path):
    """Yields (name, first_line, last_line, body) of each function defined
    at top level."""
    src = strip(open(path, encoding='utf-8').read())
    depth = 0
    i = 0
    n = len(src)
    top_start = 0
    while i < n:
        c = src[i]
        if c == '{':
            if depth == 0:
                head = src[top_start:i + 1]
                m = None
                for m in DEF_RE.finditer(head):
                    pass
                # the match must end at this brace
                if m and m.end() == len(head) and m.group(1) not in KEYWORDS:
                    j, d = i, 0
                    while j < n:
                        if src[j] == '{':
                            d += 1
                        elif src[j] == '}':
                            d -= 1
                            if d == 0:
                                break
                        j += 1
                    first = src.count('\n', 0, top_start + m.start(1)) + 1
                    last = src.count('\n', 0, j) + 1
                    yield m.group(1), first, last, src[i:j + 1]
                    i = j + 1
                    top_start = i
                    continue
            depth += 1
        elif c == '}':
            depth -= 1
        elif c == ';' and depth == 0:
            top_start = i + 1
        i += 1


def main(argv):
    libdir = argv[1]
    max_lines = MAX_LINES
    if '--max-lines' in argv:
        max_lines = int(argv[argv.index('--max-lines') + 1])
    files = sorted(f for f in os.listdir(libdir) if f.endswith('.c'))
    listed = os.path.join(libdir, 'SOURCES')
    if os.path.exists(listed):
        with open(listed) as fh:
            names = sorted(l.strip() for l in fh if l.strip())
        if names != files:
            print('lib/SOURCES lists %s but lib/ has %s: both builds compile lib/SOURCES'
                  % (' '.join(names), ' '.join(files)))
            return 1
    defs = {}      # function -> file (non-static names may be called across files)
    bodies = []    # (file, name, first, last, body)
    for f in files:
        for name, first, last, body in functions(os.path.join(libdir, f)):
            defs.setdefault(name, f)
            bodies.append((f, name, first, last, body))
    edges = {f: {} for f in files}
    ident = re.compile(r'\b([A-Za-z_]\w*)\s*\(')
    for f, name, first, last, body in bodies:
        for callee in ident.findall(body):
            g = defs.get(callee)
            if g and g != f:
                edges[f].setdefault(g, set()).add('%s -> %s' % (name, callee))
    errors = []
    for f, name, first, last, body in bodies:
        if last - first + 1 > max_lines:
            errors.append('%s:%d: %s is %d lines (limit %d)' %
                          (f, first, name, last - first + 1, max_lines))
    # cycle search (DFS with colours), reporting one cycle per back edge
    colour = {f: 0 for f in files}
    stack = []

    def dfs(u):
        colour[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if colour[v] == 1:
                cyc = stack[stack.index(v):] + [v]
                why = '; '.join(sorted(edges[cyc[-2]][v]))
                errors.append('cycle: %s (closing edge: %s)' % (' -> '.join(cyc), why))
            elif colour[v] == 0:
                dfs(v)
        stack.pop()
        colour[u] = 2

    for f in files:
        if colour[f] == 0:
            dfs(f)
    if '--dot' in argv:
        print('digraph lib {')
        for f in files:
            for g in sorted(edges[f]):
                print('  "%s" -> "%s";' % (f, g))
        print('}')
    else:
        for f in files:
            print('%-14s -> %s' % (f, ' '.join(sorted(edges[f])) or '-'))
    longest = max(bodies, key=lambda b: b[3] - b[2])
    print('longest function: %s (%s) %d lines' %
          (longest[1], longest[0], longest[3] - longest[2] + 1))
    for e in errors:
        print('ERROR ' + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
