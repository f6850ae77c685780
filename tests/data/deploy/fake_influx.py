#!/usr/bin/env python3
# A stand-in for the influx CLI (bucket list, auth list/create/delete; JSON as the real one prints it, one
# field a line) for tests/test_deploy.py: state in $FAKE_INFLUX_DIR, every argv logged there.
import json
import os
import secrets
import sys
from pathlib import Path

here = Path(os.environ["FAKE_INFLUX_DIR"])
st = here / "state.json"
s = json.loads(st.read_text()) if st.exists() else {"auths": []}
a = sys.argv[1:]
with (here / "argv.log").open("a") as log:
    log.write(" ".join(a) + "\n")
assert os.environ["INFLUX_TOKEN"] == "OPERATOR", "no operator token"


def opt(n):
    return a[a.index(n) + 1]


def dump(v):
    print(json.dumps(v, indent="\t"))


if a[:2] == ["bucket", "list"]:
    print("0123456789abcdef\tdistrictpulse\t2160h0m0s\tn/a\tfedcba9876543210\timplicit")
elif a[:2] == ["auth", "list"]:
    dump(s["auths"])
elif a[:2] == ["auth", "create"]:
    perms = []
    for i, x in enumerate(a):
        if x in ("--read-bucket", "--write-bucket"):
            perms.append(f"{x[2:-7]}:orgs/fedcba9876543210/buckets/{a[i + 1]}")
    t = {
        "id": secrets.token_hex(8),
        "description": opt("--description"),
        "token": secrets.token_urlsafe(64),
        "status": "active",
        "userName": "admin",
        "userID": "1",
        "permissions": perms,
    }
    s["auths"].append(t)
    dump(t)
elif a[:2] == ["auth", "delete"]:
    i = opt("--id")
    s["auths"] = [x for x in s["auths"] if x["id"] != i]
    print("deleted tok...")
st.write_text(json.dumps(s))
