#!/usr/bin/python3
"""The man pages: rendered without a warning, dated, and complete.

    mancheck.py BUILD_DIR

- every docs/*.[1-8]: `groff -ww -z -man` prints nothing; `mandoc -Tlint`
  reports nothing at WARNING level or above (STYLE notes, such as lines
  over 80 bytes, are not failures); `.TH` carries a full date (YYYY-MM-DD);
- vitaled.8 names every option `vitaled --help` lists;
- vitalectl.1 names every global option of `vitalectl --help`, every
  command of its table, every subcommand its help line lists
  ("sheet create|draft|...", "web pair ...|deny ...|list"), and every
  option string ("--reader" ...) in client/vitalectl*.c;
- vitaled.conf.5 has a section for every [section] that
  `vitaled --check-config` prints, and names every key of it there.

So a new option, subcommand or configuration key without its paragraph
fails `make lint` (and so `make check`). Exit 0 when all holds; otherwise
one line per problem and exit 1.
"""
import glob
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
problems = []


def bad(msg):
    problems.append(msg)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def plain(text):
    """The page's source with roff escapes for - and fonts taken out, so that
    \\fB\\-\\-reader\\fR reads --reader."""
    t = text.replace("\\-", "-").replace("\\(hy", "-").replace("\\e", "\\")
    t = re.sub(r"\\f[BIRP]", "", t)
    t = re.sub(r"\\f\(..", "", t)
    t = re.sub(r"^\.(B|I|BR|IR|RB|BI|IB|RI)\s+", "", t, flags=re.M)
    return t.replace('"', "")


def render_checks(page):
    rc, out = run(["groff", "-ww", "-z", "-man", page])
    if rc != 0 or out.strip():
        bad("%s: groff -ww: %s" % (page, out.strip() or "exit %d" % rc))
    rc, out = run(["mandoc", "-Tlint", "-W", "warning", page])
    if out.strip():
        for line in out.strip().splitlines():
            bad("%s: mandoc -Tlint: %s" % (page, line))
    with open(page) as f:
        first = [l for l in f.read().splitlines() if l.startswith(".TH")]
    if not first:
        bad("%s: no .TH line" % page)
        return
    m = re.match(r'\.TH\s+\S+\s+\S+\s+"?(\S+?)"?(\s|$)', first[0])
    if not m or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", m.group(1)):
        bad("%s: .TH date is not a full date (YYYY-MM-DD): %s" % (page, first[0]))


def options_in(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def check_vitaled(build, page):
    _, out = run([os.path.join(build, "vitaled"), "--help"])
    text = plain(open(page).read())
    opts = options_in(out)
    if len(opts) < 5:
        bad("vitaled --help lists only %s" % sorted(opts))
    for o in sorted(opts):
        if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), text):
            bad("%s: option %s (vitaled --help) is not documented" % (page, o))


def check_vitalectl(build, page):
    _, out = run([os.path.join(build, "vitalectl"), "--help"])
    text = plain(open(page).read())

    def has(word):
        return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text)

    usage = out.split("\n\n")[0]
    for o in sorted(options_in(usage) | {"--help", "--version"}):
        if not has(o):
            bad("%s: global option %s is not documented" % (page, o))
    cmds = re.findall(r"^  ([a-z][a-z-]*)\s{2,}(.*)$", out, flags=re.M)
    if len(cmds) < 10:
        bad("vitalectl --help lists only %d commands" % len(cmds))
    for name, help_ in cmds:
        # a command is documented as a .TP entry starting with its name
        if not re.search(r"^%s(\s|$)" % re.escape(name), text, flags=re.M):
            bad("%s: command '%s' has no entry" % (page, name))
        # subcommands the help line lists: "name a|b|c" or "name a X|b Y|c"
        m = re.search(r"(?:^|: )%s ([a-z][a-z]*(?: [^|]*)?(?:\|[a-z][^|]*)+)" % re.escape(name), help_)
        if m:
            for alt in m.group(1).split("|"):
                sub = alt.split()[0]
                if sub.isupper():
                    continue
                if not re.search(r"^%s(\s+\[[^\n]*\])?\s+%s(\s|$)" % (re.escape(name), re.escape(sub)),
                                 text, flags=re.M) and \
                        not re.search(r"^%s .*?\b%s\b" % (re.escape(name), re.escape(sub)), text, flags=re.M):
                    bad("%s: subcommand '%s %s' has no entry" % (page, name, sub))
    srcs = glob.glob(os.path.join(TOP, "client", "vitalectl*.c"))
    for src in sorted(srcs):
        code = open(src).read()
        for o in sorted(set(re.findall(r'"(--[a-z][a-z0-9-]*)[="]', code))):
            if not has(o):
                bad("%s: option %s (%s) is not documented" % (page, o, os.path.basename(src)))


def check_conf(build, page):
    _, out = run([os.path.join(build, "vitaled"), "--check-config", "--config", "/dev/null"])
    src = open(page).read()
    sections = {}
    cur = None
    for line in src.splitlines():
        m = re.match(r"\.SH\s+\"?\[([a-z_]+)\]\"?\s*$", line)
        if m:
            cur = m.group(1)
            sections[cur] = []
            continue
        if line.startswith(".SH"):
            cur = None
        if cur:
            sections[cur].append(line)
    sect = None
    nkeys = 0
    for line in out.splitlines():
        m = re.match(r"^\[([a-z_]+)\]$", line)
        if m:
            sect = m.group(1)
            if sect not in sections:
                bad("%s: no section [%s]" % (page, sect))
            continue
        m = re.match(r"^([a-z_][a-z0-9_]*) =", line)
        if m and sect in sections:
            nkeys += 1
            body = plain("\n".join(sections[sect]))
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(m.group(1)), body):
                bad("%s: key [%s] %s is not documented in its section" % (page, sect, m.group(1)))
    if nkeys < 20:
        bad("vitaled --check-config printed only %d keys" % nkeys)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "build")
    pages = sorted(glob.glob(os.path.join(TOP, "docs", "*.[1-8]")))
    for p in pages:
        render_checks(p)
    check_vitaled(build, os.path.join(TOP, "docs", "vitaled.8"))
    check_vitalectl(build, os.path.join(TOP, "docs", "vitalectl.1"))
    check_conf(build, os.path.join(TOP, "docs", "vitaled.conf.5"))
    for p in problems:
        print("man: " + p.replace(TOP + "/", ""))
    if problems:
        print("man: %d problems" % len(problems))
        return 1
    print("man: ok (%d pages render without warnings; every option, command, subcommand "
          "and configuration key documented)" % len(pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
