"""Load (issue item 5): a mixed workload across 10 tenants at total concurrency 32 for
EVIDENCE_LOAD_SECONDS (default 60) against the release build. Four wrk processes run at the same
time, one per endpoint (8 connections each), each rotating tenants and paths through a Lua script, so
p50/p99 are per endpoint while the load is mixed. Writes load.json into the evidence dir argv[1]."""

import json
import os
import random
import subprocess
import sys
import threading
import time

import evlib
from evlib import log, request

EV = sys.argv[1]
SECONDS = int(os.environ.get("EVIDENCE_LOAD_SECONDS", "60"))
TENANTS = 10
DOCS_PER_TENANT = 50

LUA_COMMON = r"""
local tenants = dofile("%(data)s")
local counter = 0
local function pick()
  counter = counter + 1
  return tenants[(counter %% #tenants) + 1], counter
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('EVJSON {"requests": %%d, "duration_us": %%d, "p50_ms": %%.3f, "p90_ms": %%.3f, "p99_ms": %%.3f, "max_ms": %%.3f, "mean_ms": %%.3f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

REQUESTS = {
    "GET /api/v1/documents/{id}": r"""
request = function()
  local t, n = pick()
  local doc = t.docs[(n %% #t.docs) + 1]
  return wrk.format("GET", "/api/v1/documents/" .. doc, {["Authorization"] = "Bearer " .. t.token})
end
""",
    "GET /api/v1/documents?limit=20": r"""
request = function()
  local t = pick()
  return wrk.format("GET", "/api/v1/documents?limit=20", {["Authorization"] = "Bearer " .. t.token})
end
""",
    "POST /api/v1/documents/search": r"""
local body = io.open("%(search)s"):read("*a")
request = function()
  local t = pick()
  return wrk.format("POST", "/api/v1/documents/search",
    {["Authorization"] = "Bearer " .. t.token, ["Content-Type"] = "application/json"}, body)
end
""",
    "POST /api/v1/documents": r"""
local emb = io.open("%(emb)s"):read("*a")
local tid = math.random(1000000)
request = function()
  local t, n = pick()
  local body = '{"filename": "load-' .. tid .. '-' .. n .. '.pdf", "s3_key": "load/' .. tid .. '/' .. n ..
    '", "s3_bucket": "load", "embedding": ' .. emb .. '}'
  return wrk.format("POST", "/api/v1/documents",
    {["Authorization"] = "Bearer " .. t.token, ["Content-Type"] = "application/json"}, body)
end
""",
}


def main():
    base = evlib.scratch_dir("load")
    result = {"cases": [], "seconds": SECONDS}
    try:
        cluster = evlib.Cluster(base)
        cluster.init()
        env = evlib.Env(cluster)
        env.cli("migrate", "up")
        tenants = [env.tenant(f"load-{i}") for i in range(TENANTS)]
        serve = evlib.Serve(env, evlib.free_port(), os.path.join(base, "serve.log")).start()
        rng = random.Random(5)
        lock = threading.Lock()

        def seed(t):
            t["docs"] = []
            r = random.Random(t["id"])
            for j in range(DOCS_PER_TENANT):
                st, body, _, _ = request(serve.port, "POST", "/api/v1/documents", t["token"],
                                         {"filename": f"seed-{j}.pdf", "s3_key": f"seed/{j}", "s3_bucket": "load",
                                          "embedding": evlib.embedding(r)}, keep=True)
                assert st == 201, (st, body)
                t["docs"].append(body["id"])
        ts = [threading.Thread(target=seed, args=(t,)) for t in tenants]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        with open(os.path.join(base, "tenants.lua"), "w") as f:
            f.write("return {\n")
            for t in tenants:
                f.write('  {token = "%s", docs = {%s}},\n' % (t["token"], ", ".join(f'"{d}"' for d in t["docs"])))
            f.write("}\n")
        with open(os.path.join(base, "search.json"), "w") as f:
            json.dump({"embedding": evlib.embedding(rng), "limit": 10, "threshold": -1.0}, f)
        with open(os.path.join(base, "emb.json"), "w") as f:
            json.dump(evlib.embedding(rng), f)
        fill = {"data": os.path.join(base, "tenants.lua"), "search": os.path.join(base, "search.json"),
                "emb": os.path.join(base, "emb.json")}
        docs_before = int(cluster.psql("SELECT count(*) FROM documents"))
        rss_before = serve.rss_kib()
        procs = []
        for i, (name, lua) in enumerate(REQUESTS.items()):
            path = os.path.join(base, f"load{i}.lua")
            with open(path, "w") as f:
                f.write(LUA_COMMON % fill + lua % fill)
            procs.append((name, subprocess.Popen(
                ["wrk", "-t1", "-c8", f"-d{SECONDS}s", "--timeout", "10s", "-s", path,
                 f"http://127.0.0.1:{serve.port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        log(f"wrk: 4 processes x 8 connections for {SECONDS} s")
        rss_peak = rss_before
        while any(p.poll() is None for _, p in procs):
            rss_peak = max(rss_peak, serve.rss_kib() or 0)
            time.sleep(1)
        rss_after = serve.rss_kib()
        total_errors = 0
        for name, p in procs:
            out = p.stdout.read()
            line = next((l for l in out.splitlines() if l.startswith("EVJSON ")), None)
            if line is None:
                result["cases"].append({"endpoint": name, "error": out[-500:]})
                total_errors += 1
                continue
            fig = json.loads(line[len("EVJSON "):])
            fig["rps"] = round(fig["requests"] / (fig["duration_us"] / 1e6), 1)
            errors = fig["connect"] + fig["read"] + fig["write"] + fig["status"] + fig["timeout"]
            fig["errors"] = errors
            total_errors += errors
            result["cases"].append({"endpoint": name, **fig})
        docs_after = int(cluster.psql("SELECT count(*) FROM documents"))
        created = next((c["requests"] for c in result["cases"] if c["endpoint"] == "POST /api/v1/documents"), 0)
        result.update({"rss_before_kib": rss_before, "rss_after_kib": rss_after, "rss_peak_kib": rss_peak,
                       "tenants": TENANTS, "docs_per_tenant": DOCS_PER_TENANT, "concurrency": 32,
                       "documents_written": docs_after - docs_before, "total_errors": total_errors,
                       "passed": total_errors == 0 and all("error" not in c for c in result["cases"])})
        log(f"load: errors {total_errors}, rss {rss_before} -> {rss_after} KiB; docs written {docs_after - docs_before}"
            f" (wrk counted {created} POSTs started)")
    except Exception as e:
        result["error"] = str(e)
        result["passed"] = False
    finally:
        evlib.release(base)
        evlib.write_json(os.path.join(EV, "load.json"), result)


if __name__ == "__main__":
    main()
