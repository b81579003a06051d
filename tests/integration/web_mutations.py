#!/usr/bin/python3
"""Prove that each security check of the web bridge is tested: remove the
check from web/*.c (one at a time, in place), rebuild vitaled-web, run the
browser test that covers it, and expect that test to FAIL; then restore the
source. Not part of `make check` (about 3 minutes): run it with
`make web-mutations` after changing web/.

Exit 0 when every mutation was caught, 1 otherwise (or if a source could not
be restored: then `git checkout web/` puts it back).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
B = os.environ.get("B", "build")

# (what is removed, file, text, replacement, test, test function or None: all of them)
MUTATIONS = [
    ("Host must be a loopback name", "web/policy.c",
     "\tif (!host || strlen(host) > 64)\n\t\treturn false;",
     "\treturn true; /* MUTATION */", "test_web.py", "t_rebinding_host"),
    ("Host check for the kiosk page", "web/policy.c",
     "\tif (!host || strlen(host) > 64)\n\t\treturn false;",
     "\treturn true; /* MUTATION */", "test_web_kiosk.py", "t_hostile"),
    ("Origin allow-list", "web/policy.c",
     "\tif (!origin || !*origin || !strcmp(origin, \"null\"))\n\t\treturn false;\n\tfor",
     "\tif (origin && *origin)\n\t\treturn true; /* MUTATION */\n\tfor", "test_web.py", "t_hostile_origin"),
    ("preflight only for allowed origins", "web/http.c",
     "\tif (!g->origin_allowed)\n\t\treturn refuse(g, WEB_REF_ORIGIN, MHD_HTTP_FORBIDDEN, \"OriginNotAllowed\",\n\t\t              \"this Origin is not in [web] allowed_origins\");\n\tstruct MHD_Response *r = MHD_create_response_from_buffer(0",
     "\tstruct MHD_Response *r = MHD_create_response_from_buffer(0", "test_web.py", "t_private_network"),
    ("private-network preflight answer", "web/http.c",
     "\t\tMHD_add_response_header(r, \"Access-Control-Allow-Private-Network\", \"true\");",
     "\t\t/* MUTATION */", "test_web.py", "t_private_network"),
    ("kiosk feed for its own origin only", "web/http.c",
     "\tif ((g->origin && !g->origin_own) ||",
     "\tif (0 && (g->origin && !g->origin_own) ||", "test_web_kiosk.py", "t_hostile"),
    ("handed-over sockets on loopback only", "web/main.c",
     "\t\t} else if (loopback_fd(fd) && *nhttp < MAX_FDS) {",
     "\t\t} else if (*nhttp < MAX_FDS) { /* MUTATION */", "test_web.py", "t_socket_activation"),
    ("token required", "web/tokens.c",
     "\tif (!authorization || strncmp(authorization, \"Bearer \", 7) != 0)\n\t\treturn WEB_AUTH_MISSING;",
     "\tif (!authorization || strncmp(authorization, \"Bearer \", 7) != 0) {\n\t\t*scope = WEB_SCOPE_PIN; /* MUTATION */\n\t\treturn WEB_AUTH_OK;\n\t}",
     "test_web.py", "t_missing_token"),
    ("revocation", "web/tokens.c",
     "\t\tif (all || !strcmp(s->tokens[i].id, id))\n\t\t\tn++;\n\t\telse\n\t\t\ts->tokens[out++] = s->tokens[i];",
     "\t\tif (all || !strcmp(s->tokens[i].id, id))\n\t\t\tn++;\n\t\ts->tokens[out++] = s->tokens[i]; /* MUTATION */",
     "test_web.py", "t_revoked_token"),
    ("token bound to its origin", "web/tokens.c",
     "\t\tif (!origin || strcmp(origin, t->origin) != 0) {",
     "\t\tif (0) { /* MUTATION */", "test_web.py", "t_other_origin"),
    ("scope", "web/http.c", "\tif (have < need) {", "\tif (0) { /* MUTATION */", "test_web.py", "t_wrong_scope"),
    ("methods never forwarded", "web/policy.c",
     "\treturn WEB_SCOPE_NONE;\n}\n\nbool\nweb_method_name_ok",
     "\treturn WEB_SCOPE_READ; /* MUTATION */\n}\n\nbool\nweb_method_name_ok", "test_web.py", "t_wrong_scope"),
    ("kiosk feed sends the state only", "web/kiosk.c",
     "\tif (!strcmp(k->state, \"welcome\") && k->first_name[0])",
     "\tif (k->pending_name[0]) /* MUTATION */\n\t\tjson_object_set_new(m, \"given_name_raw\", json_string(k->pending_name));\n\tif (!strcmp(k->state, \"welcome\") && k->first_name[0])",
     "test_web_kiosk.py", None),   # the whole kiosk test: the feed check needs the flows before it
]


def build():
    r = subprocess.run(["make", "-s", "B=" + B, os.path.join(B, "vitaled-web")], cwd=TOP,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("build failed:\n" + r.stdout + r.stderr)


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else None
    missed = []
    for what, path, old, new, test, fn in MUTATIONS:
        if only and only not in what:
            continue
        full = os.path.join(TOP, path)
        with open(full) as f:
            orig = f.read()
        if orig.count(old) != 1:
            print("?? %s: the text to remove is not (once) in %s" % (what, path))
            missed.append(what)
            continue
        try:
            with open(full, "w") as f:
                f.write(orig.replace(old, new))
            build()
            env = dict(os.environ, B=B, ONLY=fn or "")
            r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, test)], cwd=TOP, env=env,
                               capture_output=True, text=True, timeout=300)
            fails = [l.strip() for l in r.stdout.splitlines() if l.strip().startswith("FAIL")]
            if r.returncode != 0 and fails:
                print("caught  %-40s %s" % (what, fails[0][:150]))
            else:
                print("MISSED  %-40s %s %s passed with the check removed" % (what, test, fn))
                missed.append(what)
        finally:
            with open(full, "w") as f:
                f.write(orig)
    build()
    print("%d mutation(s) missed" % len(missed) if missed else "every mutation was caught")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
