#!/usr/bin/env bash
# Baseline HTTP load test of the release build, for docs/PERFORMANCE.md.
#
# Starts `carevault serve` on a fresh embedded data directory, loads 1,000 documents with
# embeddings into the demo tenant through the API, then runs wrk (Debian package `wrk`) at
# concurrency 16 against three endpoints, the same run for all three:
#   GET  /api/v1/health/live          no I/O: the ceiling of this machine + server
#   GET  /api/v1/documents/{id}       authenticated read: JWT, tenant + user lookup, read, audit row
#   POST /api/v1/documents/search     authenticated similarity search (1,000 rows: exact scan)
# Usage: scripts/bench-api.sh [duration, default 30s]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${1:-30s}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release -p carevault
BIN="$PWD/target/release/carevault"
# Under /var/tmp, not root's home: as root PostgreSQL runs as the system user `carevault`.
DATA="$(mktemp -d /var/tmp/carevault-bench.XXXXXX)"
chmod 755 "$DATA"
export CAREVAULT_DATA_DIR="$DATA"
# One user sends thousands of requests a minute: measure the server, not the rate limiter.
export RATE_LIMIT_USER_PER_MINUTE=0 RATE_LIMIT_TENANT_PER_MINUTE=0
PORT=18080
BASE="http://127.0.0.1:$PORT"

"$BIN" serve --listen "127.0.0.1:$PORT" >"$DATA/serve.log" 2>&1 &
SERVER=$!
cleanup() {
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 240); do
    curl -sf "$BASE/api/v1/health/ready" >/dev/null && break
    sleep 0.5
done
curl -sf "$BASE/api/v1/health/ready" >/dev/null || { cat "$DATA/serve.log" >&2; exit 1; }

TENANT="$("$BIN" tenant list --json | python3 -c 'import json,sys; print(next(t["id"] for t in json.load(sys.stdin) if t["name"] == "Demo Clinic"))')"
TOKEN="$("$BIN" token mint --tenant "$TENANT" --sub demo-member)"
export TOKEN BASE DATA

python3 - <<'PY'
import json, os, random, urllib.request
random.seed(42)
base, token = os.environ["BASE"], os.environ["TOKEN"]
def post(path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)
for i in range(1000):
    post("/api/v1/documents", {"filename": f"bench-{i}.pdf", "s3_key": f"bench/{i}", "s3_bucket": "bench",
        "embedding": [random.uniform(-1, 1) for _ in range(1024)]})
query = {"embedding": [random.uniform(-1, 1) for _ in range(1024)], "limit": 10, "threshold": -1.0}
open(os.environ["DATA"] + "/search.json", "w").write(json.dumps(query))
PY
DOC="$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/documents?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')"

cat >"$DATA/search.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
local f = io.open("$DATA/search.json")
wrk.body = f:read("*a")
f:close()
LUA

echo "== $(date -u +%FT%TZ) $(nproc) cores, wrk -t2 -c16 -d$DURATION"
echo "== GET /api/v1/health/live"
wrk -t2 -c16 -d"$DURATION" --latency "$BASE/api/v1/health/live"
echo "== GET /api/v1/documents/{id}"
wrk -t2 -c16 -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/documents/$DOC"
echo "== POST /api/v1/documents/search"
wrk -t2 -c16 -d"$DURATION" --latency -s "$DATA/search.lua" "$BASE/api/v1/documents/search"
