#!/usr/bin/env bash
# Bulk import throughput of the release build, for docs/PERFORMANCE.md ("Bulk import").
#
# On a fresh embedded data directory: creates a tenant and a member, writes N documents (default
# 10,000) with random 1024-dimension embeddings to a JSON Lines file, and times
# `carevault documents import` of that file (batches of 1,000, one transaction each). A committed
# document is searchable at once, exactly (a tenant without its own index is searched by an exact
# scan), so the time to the last commit is the time until searchable; the tenant's own index is
# built afterwards by `carevault search reconcile`, timed separately. The fixed cost of a command (opening the
# embedded cluster, checking the schema, the owner check) is measured by importing one line, and
# the rate is given both over the whole command and net of that cost.
# Usage: scripts/bench-import.sh [documents, default 10000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT="${1:-10000}"

cargo build --release -p carevault --bin carevault
BIN="$PWD/target/release/carevault"
# Under /var/tmp, not root's home: as root PostgreSQL runs as the system user `carevault`.
DATA="$(mktemp -d /var/tmp/carevault-bench-import.XXXXXX)"
chmod 755 "$DATA"
export CAREVAULT_DATA_DIR="$DATA"
cleanup() { rm -rf "$DATA"; }
trap cleanup EXIT

TENANT="$("$BIN" tenant create --name "Import Bench")"
USER_ID="$("$BIN" user create --tenant "$TENANT" --email bench@import.test --role member --sub bench)"
export COUNT DATA
python3 - <<'PY'
import json, os, random
random.seed(42)
count, data = int(os.environ["COUNT"]), os.environ["DATA"]
with open(data + "/documents.jsonl", "w") as out:
    for i in range(count):
        out.write(json.dumps({"filename": f"bench-{i}.pdf", "s3_key": f"bench/{i}", "s3_bucket": "bench",
            "content_type": "application/pdf", "size_bytes": 1000 + i, "metadata": {"batch": i // 1000},
            "embedding": [round(random.uniform(-1, 1), 6) for _ in range(1024)]}) + "\n")
with open(data + "/one.jsonl", "w") as out:
    out.write(json.dumps({"filename": "one.pdf", "s3_key": "one", "s3_bucket": "bench"}) + "\n")
PY
echo "== $(date -u +%FT%TZ) $(nproc) cores, $COUNT documents, $(du -h "$DATA/documents.jsonl" | cut -f1) of JSON Lines"

seconds() { python3 -c 'import sys,time; s=time.monotonic(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f"{time.monotonic()-s:.3f}")' "$@"; }
FIXED="$(seconds "$BIN" documents import --tenant "$TENANT" --user "$USER_ID" "$DATA/one.jsonl")"
TOTAL="$(seconds "$BIN" documents import --tenant "$TENANT" --user "$USER_ID" "$DATA/documents.jsonl")"
INDEX="$(seconds "$BIN" search reconcile)"
python3 - "$COUNT" "$FIXED" "$TOTAL" "$INDEX" <<'PY'
import sys
count, fixed, total, index = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"one line (fixed cost): {fixed:.2f} s")
print(f"{count} documents: {total:.2f} s, {count / total:.0f} documents/s over the whole command")
print(f"net of the fixed cost: {total - fixed:.2f} s, {count / (total - fixed):.0f} documents/s")
print(f"then carevault search reconcile (the tenant's own index, built after the load): {index:.2f} s")
PY
