#!/usr/bin/python3
"""vitaled's structural lint, run by `make lint` (and so by `make check`).

  lint.py includes  ROOT            include lines go down the layers, never up
  lint.py funclen   ROOT [MAX]      no function longer than MAX lines (150)
  lint.py guards    ROOT            every header has an include guard
  lint.py symbols   ROOT OBJDIR     object-level: no reference from a layer to a
                                    symbol defined in a higher one, and no
                                    cycle in the object graph outside
                                    daemon/main and daemon/modules
  lint.py selftest                  plants an upward include, a 200-line
                                    function, a header without a guard and an
                                    upward call in a scratch tree, and checks
                                    that each is caught

The layers and what each may use are in LAYERS below; README "Layout" says
the same in words. Exit 0 clean, 1 findings, 2 usage.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# layer -> the layers it may use directly (uses are transitive)
LAYERS = {
    "lib": [],
    "protocol": ["lib"],
    "conf": ["lib"],
    "storage": ["lib", "protocol"],
    "drivers": ["lib", "protocol", "conf"],
    "daemon/core": ["lib", "protocol", "conf"],
    "daemon/cards": ["daemon/core", "drivers", "storage"],
    "daemon/pin": ["daemon/cards"],
    "daemon/sheets": ["daemon/pin"],
    "daemon/upload": ["daemon/sheets"],
    "daemon": ["daemon/upload"],          # main.c, modules.c: everything
    "client": ["lib", "protocol"],
    "web": ["lib", "protocol", "conf", "client"],  # vitaled-web, the local web bridge
}
SOURCE_DIRS = list(LAYERS)


def allowed(layer):
    seen = set()
    pending = [layer]
    while pending:
        l = pending.pop()
        if l in seen:
            continue
        seen.add(l)
        pending.extend(LAYERS.get(l, []))
    return seen


def layer_of(path):
    """The layer of a path relative to the root (longest prefix), or None."""
    d = os.path.dirname(path)
    best = None
    for l in LAYERS:
        if d == l or d.startswith(l + "/"):
            if best is None or len(l) > len(best):
                best = l
    return best


def sources(root, exts=(".c", ".h")):
    for l in SOURCE_DIRS:
        p = os.path.join(root, l)
        if not os.path.isdir(p):
            continue
        for f in sorted(os.listdir(p)):
            if f.endswith(exts):
                yield os.path.join(l, f)


INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def check_includes(root):
    bad = []
    for rel in sources(root):
        src = layer_of(rel)
        ok = allowed(src)
        with open(os.path.join(root, rel), errors="replace") as f:
            text = f.read()
        for m in INC.finditer(text):
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            if "/" not in inc:
                bad.append(f"{rel}:{line}: include \"{inc}\" does not name its folder")
                continue
            dst = layer_of(inc)
            if dst is None:
                continue        # generated or outside the layers
            if dst not in ok:
                bad.append(f"{rel}:{line}: {src} includes \"{inc}\" from {dst}: "
                           f"{src} may only use {', '.join(sorted(ok))}")
    return bad


FUNC_START = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def check_funclen(root, maxlen=150):
    """House style puts a function's name at column 0 and its braces at
    column 0, so a body is the lines from a '{' line to the next '}' line."""
    bad = []
    for rel in sources(root, (".c",)):
        with open(os.path.join(root, rel), errors="replace") as f:
            lines = f.read().split("\n")
        name = None
        start = None
        for i, ln in enumerate(lines):
            m = FUNC_START.match(ln)
            if m and not ln.rstrip().endswith(";"):
                name = m.group(1)
            if ln.startswith("{") and name:
                start = i
            elif ln.startswith("}") and start is not None:
                n = i - start + 1
                if n > maxlen:
                    bad.append(f"{rel}:{start + 1}: {name}() is {n} lines (at most {maxlen})")
                start = None
                name = None
    return bad


def check_guards(root):
    bad = []
    for rel in sources(root, (".h",)):
        with open(os.path.join(root, rel), errors="replace") as f:
            text = f.read()
        m = re.search(r"^\s*#\s*ifndef\s+(\w+)\s*\n\s*#\s*define\s+(\w+)", text, re.M)
        if not m or m.group(1) != m.group(2) or not re.search(r"#\s*endif\s*(/\*.*\*/)?\s*$", text):
            bad.append(f"{rel}: no include guard (#ifndef X / #define X ... #endif)")
    return bad


def nm(path, defined):
    args = ["nm", "--defined-only" if defined else "--undefined-only", "-P", path]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    syms = set()
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) < 2:
            continue
        if defined and parts[1] not in "TDRBVWGSC" and parts[1].upper() not in "TDRBVWGSC":
            continue
        if defined and parts[1].islower():
            continue    # local symbol
        syms.add(parts[0])
    return syms


def objects(root, objdir):
    for dp, _, fs in os.walk(objdir):
        for f in fs:
            if f.endswith(".o"):
                full = os.path.join(dp, f)
                rel = os.path.relpath(full, objdir)[:-2] + ".c"
                if layer_of(rel) is not None and os.path.exists(os.path.join(root, rel)):
                    yield rel, full   # objects of removed sources are stale


def check_symbols(root, objdir):
    objs = dict(objects(root, objdir))
    defs = {}
    for rel, full in objs.items():
        for s in nm(full, True):
            defs.setdefault(s, rel)
    edges = {rel: set() for rel in objs}
    bad = []
    for rel, full in objs.items():
        src = layer_of(rel)
        ok = allowed(src)
        for s in sorted(nm(full, False)):
            d = defs.get(s)
            if d is None or d == rel:
                continue
            edges[rel].add(d)
            dst = layer_of(d)
            if dst not in ok:
                bad.append(f"{rel[:-2]}.o calls {s} in {d[:-2]}.o: {src} may not use {dst}")
    top = {"daemon/main.c", "daemon/modules.c"}
    for scc in sccs(edges):
        members = [m for m in scc if m not in top]
        if len(members) > 1:
            bad.append("cycle between objects: " + " -> ".join(sorted(m[:-2] for m in members)))
    return bad


def sccs(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def report(name, bad):
    for b in bad:
        print(f"lint {name}: {b}")
    print(f"lint {name}: {'ok' if not bad else str(len(bad)) + ' finding(s)'}")
    return 1 if bad else 0


def selftest():
    tmp = tempfile.mkdtemp(prefix="vitaled-lint.")
    try:
        def w(rel, text):
            p = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        w("lib/ok.h", "#ifndef OK_H\n#define OK_H\nint ok(void);\n#endif\n")
        w("lib/ok.c", '#include "lib/ok.h"\nint\nok(void)\n{\n\treturn 1;\n}\n')
        w("daemon/core/up.h", "#ifndef UP_H\n#define UP_H\nint up(void);\n#endif\n")
        w("daemon/core/up.c", '#include "daemon/core/up.h"\n#include "lib/ok.h"\nint\nup(void)\n{\n\treturn ok();\n}\n')
        assert not check_includes(tmp), check_includes(tmp)
        assert not check_funclen(tmp)
        assert not check_guards(tmp)
        # planted: an upward include
        w("lib/bad.c", '#include "daemon/core/up.h"\nint\nbad(void)\n{\n\treturn up();\n}\n')
        f = check_includes(tmp)
        assert any("lib/bad.c:1" in x for x in f), f
        # planted: a 200-line function
        w("protocol/long.c", "int\nlong_one(void)\n{\n" + "\t;\n" * 198 + "\treturn 0;\n}\n")
        f = check_funclen(tmp)
        assert any("long_one()" in x for x in f), f
        # planted: a header without a guard
        w("storage/noguard.h", "int noguard(void);\n")
        f = check_guards(tmp)
        assert any("noguard.h" in x for x in f), f
        # planted: an upward call and a cycle, at the object level
        obj = os.path.join(tmp, "obj")
        for rel in ("lib/ok.c", "lib/bad.c", "daemon/core/up.c"):
            o = os.path.join(obj, rel[:-2] + ".o")
            os.makedirs(os.path.dirname(o), exist_ok=True)
            subprocess.run(["cc", "-c", "-I", tmp, "-o", o, os.path.join(tmp, rel)], check=True)
        f = check_symbols(tmp, obj)
        assert any("lib/bad.o calls up" in x for x in f), f
        w("lib/bad.c", '#include "lib/ok.h"\nint bad2(void);\nint\nbad(void)\n{\n\treturn bad2();\n}\n')
        w("lib/bad2.c", "int bad(void);\nint bad2(void);\nint\nbad2(void)\n{\n\treturn bad();\n}\n")
        for rel in ("lib/bad.c", "lib/bad2.c"):
            subprocess.run(["cc", "-c", "-o", os.path.join(obj, rel[:-2] + ".o"),
                            "-I", tmp, os.path.join(tmp, rel)], check=True)
        f = check_symbols(tmp, obj)
        assert any(x.startswith("cycle") and "lib/bad2" in x for x in f), f
        print("lint selftest: ok (upward include, 200-line function, missing guard, "
              "upward call, cycle: each caught)")
        return 0
    except AssertionError as e:
        print(f"lint selftest: FAILED: {e}")
        return 1
    finally:
        shutil.rmtree(tmp)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd = argv[1]
    if cmd == "selftest":
        return selftest()
    if len(argv) < 3:
        print(__doc__)
        return 2
    root = argv[2]
    if cmd == "includes":
        return report("includes", check_includes(root))
    if cmd == "funclen":
        return report("funclen", check_funclen(root, int(argv[3]) if len(argv) > 3 else 150))
    if cmd == "guards":
        return report("guards", check_guards(root))
    if cmd == "symbols" and len(argv) > 3:
        return report("symbols", check_symbols(root, argv[3]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
