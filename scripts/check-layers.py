#!/usr/bin/env python3
"""check-layers.py - the runtime's module graph, read from the symbols of its object files.

    scripts/check-layers.py BUILD_DIR [--src RUNTIME_DIR] [--graph]

The runtime is built as one static library per layer (CMakeLists.txt): libchatgw_common.a,
libchatgw_core.a, libchatgw_net.a, libchatgw_vm.a and libchatgw_app.a, lowest first. Each object
file is a module, except that the files of one folder that include "<name>_internal.h" form the
module <name> (their split is internal: http_*, ws_*). A module depends on another when it uses
(nm: U) a symbol the other defines. The check fails, printing why, when

  - a module uses a module of a higher layer (an upward call: headers cannot be included
    upward, but an extern declaration written by hand still links), or
  - the module graph has a cycle (within a layer as well: modules of one layer call each other
    one way only).

--graph prints every edge. Exit status: 0 clean, 1 violations, 2 usage or missing files.
"""
import argparse
import os
import re
import subprocess
import sys

LAYERS = ["common", "core", "net", "vm", "app"]
LAYER_DIR = {"common": "common", "core": "core", "net": "net", "vm": "vm", "app": "."}
INTERNAL = re.compile(r'^\s*#\s*include\s+"(\w+)_internal\.h"', re.M)


def module_names(src_dir, layer):
    """object stem -> module name for the .c files of a layer's folder."""
    names = {}
    folder = os.path.join(src_dir, LAYER_DIR[layer])
    if not os.path.isdir(folder):
        return names
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".c"):
            continue
        stem = f[:-2]
        with open(os.path.join(folder, f), encoding="utf-8", errors="replace") as fh:
            m = INTERNAL.search(fh.read())
        names[stem] = m.group(1) if m else stem
    return names


def read_symbols(archive):
    """[(member, kind, symbol)] of a static library, through nm."""
    out = subprocess.run(["nm", "-A", archive], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        # "lib.a:member.c.o:0000000000000000 T name" or "lib.a:member.c.o:                 U name"
        head, _, rest = line.rpartition(":")
        parts = rest.split()
        if len(parts) < 2:
            continue
        member = head.split(":")[-1]
        rows.append((member, parts[-2], parts[-1]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--src", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime"))
    ap.add_argument("--graph", action="store_true")
    a = ap.parse_args()

    defined = {}  # symbol -> (layer index, module)
    uses = []  # (layer index, module, symbol)
    found = 0
    for li, layer in enumerate(LAYERS):
        archive = os.path.join(a.build_dir, "libchatgw_%s.a" % layer)
        if not os.path.exists(archive):
            continue
        found += 1
        names = module_names(a.src, layer)
        for member, kind, sym in read_symbols(archive):
            stem = re.sub(r"\.c\.o$|\.o$", "", member)
            mod = "%s/%s" % (layer, names.get(stem, stem))
            if kind == "U":
                uses.append((li, mod, sym))
            elif kind in ("T", "D", "B", "R", "C", "V", "W"):  # global definitions
                defined.setdefault(sym, (li, mod))
    if not found:
        print("check-layers: no libchatgw_*.a in %s (build first)" % a.build_dir, file=sys.stderr)
        return 2

    edges = {}  # module -> {module: example symbol}
    problems = []
    for li, mod, sym in uses:
        d = defined.get(sym)
        if not d or d[1] == mod:
            continue
        dl, dmod = d
        edges.setdefault(mod, {}).setdefault(dmod, sym)
        if dl > li:
            problems.append("upward call: %s uses %s from %s (layer %s is above %s)"
                            % (mod, sym, dmod, LAYERS[dl], LAYERS[li]))

    if a.graph:
        for mod in sorted(edges):
            for dmod, sym in sorted(edges[mod].items()):
                print("%s -> %s (%s)" % (mod, dmod, sym))

    # Cycles: depth-first search, reporting each cycle once by its smallest rotation.
    seen_cycles = set()
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, {})):
            if state.get(n) == 1:
                cyc = stack[stack.index(n):]
                k = min(range(len(cyc)), key=lambda i: cyc[i])
                key = tuple(cyc[k:] + cyc[:k])
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    path = list(key) + [key[0]]
                    hops = ["%s -(%s)-> %s" % (path[i], edges[path[i]][path[i + 1]], path[i + 1])
                            for i in range(len(path) - 1)]
                    problems.append("cycle: " + ", ".join(hops))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)

    for p in problems:
        print("check-layers: " + p)
    if problems:
        return 1
    nmods = len({m for m in edges} | {d for e in edges.values() for d in e})
    print("check-layers: ok (%d modules, %d edges, no upward call, no cycle)"
          % (nmods, sum(len(e) for e in edges.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
