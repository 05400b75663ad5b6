"""Generated clients (issue 13): two mainstream generators turn the running server's /openapi.json into
Python clients, and each client calls every operation against that server.

`carevault serve` runs on the embedded default (scratch CAREVAULT_DATA_DIR) with the platform API on. Its
/openapi.json goes to openapi-python-client and to openapi-generator (`-g python`, the jar its PyPI
package ships, run on the machine's Java), both pinned and installed into the evidence venv by
scripts/evidence.sh; the runtime dependencies the openapi-generator package declares (requirements.txt)
are installed into the same venv from PyPI. For each generator it records what the generator warned about, which of the
document's operations the client has, whether every module of the package imports, and the outcome of
one call per operation (client_calls.py, run in the venv: the tenant API as the demo admin, the platform
API on its token). Writes clients.json into argv[1]; exits 1 when an operation is missing, a module does
not import or a call fails. Usage: clients.py EVIDENCE_DIR VENV_DIR"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import evlib
from evlib import log, request

EV = sys.argv[1]
VENV = sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
# Generator output lines worth reporting: openapi-python-client's warnings name what it skipped;
# openapi-generator logs `[main] WARN`/`ERROR` lines.
NOTABLE = re.compile(r"WARN|ERROR|Unable|will not be generated|Could not|Failure")


def tool(name):
    return os.path.join(VENV, "bin", name)


def version(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return (r.stdout.strip() or r.stderr.strip()).splitlines()[-1] if r.returncode == 0 else f"? (exit {r.returncode})"


def generate(cmd, package_root):
    """Runs one generator; returns (exit code, seconds, notable output lines), the output under package_root."""
    shutil.rmtree(package_root, ignore_errors=True)
    os.makedirs(package_root)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [line.strip() for line in (r.stdout + r.stderr).splitlines() if NOTABLE.search(line)]
    return r.returncode, round(time.time() - t0, 1), sorted(set(lines))


def openapi_python_client(document, out):
    """openapi-python-client into out/opc/carevault_client (no post hooks: ruff is not installed)."""
    config = os.path.join(out, "opc-config.json")
    with open(config, "w") as f:
        json.dump({"post_hooks": []}, f)
    root = os.path.join(out, "opc")
    rc, seconds, notes = generate([tool("openapi-python-client"), "generate", "--path", document, "--output-path",
                                   os.path.join(root, "carevault_client"), "--meta", "none", "--config", config,
                                   "--overwrite"], root)
    return {"exit_code": rc, "seconds": seconds, "warnings": notes, "pythonpath": root,
            "version": version([tool("openapi-python-client"), "--version"]),
            "command": "openapi-python-client generate --path openapi.json --meta none"}


def openapi_generator(document, out):
    """openapi-generator's python generator into out/oag (package carevault_oag), without tests and docs."""
    root = os.path.join(out, "oag")
    rc, seconds, notes = generate([tool("openapi-generator-cli"), "generate", "-g", "python", "-i", document, "-o",
                                   root, "--package-name", "carevault_oag", "--global-property",
                                   "apiTests=false,modelTests=false,apiDocs=false,modelDocs=false"], root)
    requirements = os.path.join(root, "requirements.txt")
    if rc == 0 and os.path.exists(requirements):
        # The generated package declares its runtime dependencies (urllib3, pydantic, python-dateutil, ...),
        # as a user installing it would get them.
        r = subprocess.run([tool("pip"), "install", "-q", "-r", requirements], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            notes.append(f"pip install -r requirements.txt: exit {r.returncode}: {r.stderr.strip()[-300:]}")
            rc = r.returncode
    return {"exit_code": rc, "seconds": seconds, "warnings": notes, "pythonpath": root,
            "version": "openapi-generator " + version([tool("openapi-generator-cli"), "version"]),
            "command": "openapi-generator-cli generate -g python -i openapi.json --package-name carevault_oag"}


GENERATORS = {"openapi-python-client": openapi_python_client, "openapi-generator": openapi_generator}


def exercise(name, generated, operations_file, out, port, tokens):
    """Runs client_calls.py for one generated client; returns its result."""
    result_file = os.path.join(out, f"calls-{name}.json")
    env = {**os.environ, "PYTHONPATH": generated["pythonpath"], "CV_BASE_URL": f"http://127.0.0.1:{port}",
           "CV_TENANT_TOKEN": tokens["tenant"], "CV_PLATFORM_TOKEN": tokens["platform"]}
    r = subprocess.run([tool("python"), os.path.join(HERE, "client_calls.py"), name, operations_file, result_file],
                       env=env, capture_output=True, text=True, timeout=300)
    if not os.path.exists(result_file):
        stderr = r.stderr
        for secret in tokens.values():
            stderr = stderr.replace(secret, "***")
        return {"error": f"client_calls.py exited {r.returncode}: {stderr[-800:]}", "calls": []}
    with open(result_file) as f:
        return json.load(f)


def summarize(name, generated, called, operations):
    """One generator's line of clients.json, with `passed` when nothing is missing or failing."""
    calls = called.get("calls", [])
    have = called.get("generated", [])
    ok_ops = sorted({c["operation"] for c in calls if c["ok"]} - {c["operation"] for c in calls if not c["ok"]})
    summary = {
        "generator": name, "version": generated["version"], "command": generated["command"],
        "generate_exit_code": generated["exit_code"], "generate_seconds": generated["seconds"],
        "warnings": generated["warnings"][:20], "operations_in_document": len(operations),
        "operations_generated": len(have), "missing": sorted(set(operations) - set(have)),
        "import_ok": bool(called.get("import_ok")), "import_failures": called.get("import_failures", [])[:10],
        "calls": len(calls), "operations_called_ok": len(ok_ops),
        "not_called": sorted(set(operations) - {c["operation"] for c in calls}),
        "failed_calls": [c for c in calls if not c["ok"]], "error": called.get("error"),
    }
    summary["passed"] = (summary["generate_exit_code"] == 0 and not summary["missing"] and summary["import_ok"]
                         and not summary["failed_calls"] and not summary["not_called"] and not summary["error"]
                         and summary["operations_called_ok"] == len(operations))
    return summary


def main():
    base = evlib.scratch_dir("clients")
    result = {"ran": False}
    try:
        tokens = {"platform": "clients-platform-" + os.urandom(24).hex()}
        env = evlib.EmbeddedEnv(base, tokens["platform"])
        serve = evlib.Serve(env, evlib.free_port(), os.path.join(base, "serve.log")).start(timeout=180)
        tokens["tenant"] = env.demo_admin_token()
        # A signed checkpoint of the demo tenant's audit chain, for GET /audit-logs/checkpoints/latest.
        env.cli("audit", "seal")
        status, _, _, raw = request(serve.port, "GET", "/openapi.json")
        if status != 200:
            raise RuntimeError(f"/openapi.json answered {status}")
        document = os.path.join(base, "openapi.json")
        with open(document, "wb") as f:
            f.write(raw)
        operations = [op["operationId"] for item in json.loads(raw)["paths"].values() for op in item.values()
                      if isinstance(op, dict) and "operationId" in op]
        operations_file = os.path.join(base, "operations.json")
        evlib.write_json(operations_file, operations)
        generators = []
        for name, run in GENERATORS.items():
            log(f"generating the {name} client")
            generated = run(document, base)
            log(f"calling every operation through the {name} client")
            called = exercise(name, generated, operations_file, base, serve.port, tokens)
            generators.append(summarize(name, generated, called, operations))
        serve.stop()
        result = {"ran": True, "operations": len(operations), "generators": generators,
                  "passed": all(g["passed"] for g in generators)}
    except Exception as e:
        result = {"ran": False, "error": str(e)}
    finally:
        evlib.release(base)
        evlib.write_json(os.path.join(EV, "clients.json"), result)
    return 0 if result.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
