"""Calls every operation of the API through one generated Python client (run by clients.py, inside the
evidence venv, with the generated package on PYTHONPATH).

    client_calls.py GENERATOR OPERATIONS_JSON RESULT_JSON

GENERATOR is `openapi-python-client` (package `carevault_client`) or `openapi-generator` (package
`carevault_oag`); OPERATIONS_JSON lists the document's operationIds. The server and the tokens come
from CV_BASE_URL, CV_TENANT_TOKEN (the demo admin) and CV_PLATFORM_TOKEN, never from the command
line, and no token is written to the result. The result records whether the package and every module
of it import, which operations the client has, and one entry per call: the operation, the status,
whether it gave the documented success with the expected content, and the error otherwise.

Both generators name a method after its operationId in snake case and build request models with
`Model.from_dict`; each adapter below hides the rest (opc: a module per operation with
`sync_detailed`; oag: one class per tag with `<name>_with_http_info`, raising on an error status)."""

import importlib
import json
import os
import pkgutil
import re
import sys
import traceback
import uuid

SECRETS = [os.environ.get("CV_TENANT_TOKEN", ""), os.environ.get("CV_PLATFORM_TOKEN", "")]


def snake(operation_id):
    """`createDocumentsBatch` -> `create_documents_batch`, as both generators name their methods."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", operation_id).lower()


def redact(text):
    """`text` with the tokens replaced."""
    for secret in SECRETS:
        if secret:
            text = text.replace(secret, "***")
    return text


def import_all(package):
    """Imports `package` and every module in it; returns the names of those that failed, with why."""
    failed = []
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        try:
            importlib.import_module(module.name)
        except Exception as error:  # any error is a broken generated package
            failed.append(f"{module.name}: {type(error).__name__}: {error}")
    return failed


class Adapter:
    """What both generators' clients share: models built from dicts, enums from values."""

    def model(self, name, value):
        return getattr(self.models, name).from_dict(value)

    def enum(self, name, value):
        return getattr(self.models, name)(value)


class OpenapiPythonClient(Adapter):
    """openapi-python-client: `api/<tag>/<operation>.py` with `sync_detailed(client=..., **params)`."""

    package = "carevault_client"

    def __init__(self, base, tenant_token, platform_token):
        pkg = importlib.import_module(self.package)
        self.models = importlib.import_module(self.package + ".models")
        # raise_on_unexpected_status: a status the document does not list raises instead of parsing None.
        self.clients = {"anonymous": pkg.Client(base_url=base, raise_on_unexpected_status=True),
                        "tenant": pkg.AuthenticatedClient(base_url=base, token=tenant_token,
                                                          raise_on_unexpected_status=True),
                        "platform": pkg.AuthenticatedClient(base_url=base, token=platform_token,
                                                            raise_on_unexpected_status=True)}
        api = importlib.import_module(self.package + ".api")
        self.functions = {}
        for module in pkgutil.walk_packages(api.__path__, prefix=self.package + ".api."):
            loaded = importlib.import_module(module.name)
            if hasattr(loaded, "sync_detailed"):
                self.functions[module.name.rsplit(".", 1)[1]] = loaded.sync_detailed

    def has(self, operation_id):
        return snake(operation_id) in self.functions

    def call(self, operation_id, auth, body=None, **params):
        """(status, parsed body, headers) of one call."""
        if body is not None:
            params["body"] = self.model(*body)
        response = self.functions[snake(operation_id)](client=self.clients[auth], **params)
        return response.status_code, response.parsed, response.headers


class OpenapiGenerator(Adapter):
    """openapi-generator's `python`: `<Tag>Api(ApiClient(Configuration(...))).<operation>_with_http_info`."""

    package = "carevault_oag"

    def __init__(self, base, tenant_token, platform_token):
        pkg = importlib.import_module(self.package)
        self.models = importlib.import_module(self.package + ".models")

        def client(token):
            return pkg.ApiClient(pkg.Configuration(host=base, access_token=token))
        self.clients = {"anonymous": client(None), "tenant": client(tenant_token), "platform": client(platform_token)}
        self.apis = [cls for name, cls in vars(pkg).items() if name.endswith("Api") and isinstance(cls, type)]

    def _method(self, operation_id, auth):
        for cls in self.apis:
            if hasattr(cls, snake(operation_id) + "_with_http_info"):
                return getattr(cls(self.clients[auth]), snake(operation_id) + "_with_http_info")
        return None

    def has(self, operation_id):
        return self._method(operation_id, "anonymous") is not None

    def call(self, operation_id, auth, body=None, **params):
        """(status, deserialized body, headers) of one call; an error status raises ApiException."""
        if body is not None:
            params[snake(body[0])] = self.model(*body)  # the body parameter is named after its schema
        response = self._method(operation_id, auth)(**params)
        return response.status_code, response.data, response.headers or {}


def plain(data):
    """A generated model as JSON-like data (both generators give models a `to_dict`)."""
    return json.loads(json.dumps(data.to_dict(), default=str))


def if_match(headers):
    """`If-Match` with the ETag a read answered (both clients name the header parameter `if_match`)."""
    etag = headers.get("etag") if headers else None
    return {"if_match": etag} if etag else {}


def close_to(vector):
    """A check that the answer's embedding is `vector` (pgvector stores float32: equal within 1e-6)."""
    def check(data):
        got = plain(data).get("embedding") or []
        if len(got) == len(vector) and all(abs(a - b) < 1e-6 for a, b in zip(got, vector)):
            return None
        return f"embedding of {len(got)} values differs from the one sent"
    return check


class Scenario:
    """Every operation once, in an order where each finds what it needs; records each call."""

    def __init__(self, client):
        self.client = client
        self.calls = []

    def step(self, operation_id, auth, expect, check=None, body=None, **params):
        """One call: ok when the status is `expect` and `check(data)` (if any) returns None, else a reason."""
        entry = {"operation": operation_id, "ok": False, "status": None}
        self.calls.append(entry)
        if not self.client.has(operation_id):
            entry["error"] = "the generated client has no method for it"
            return None, {}
        try:
            status, data, headers = self.client.call(operation_id, auth, body=body, **params)
            entry["status"] = status
            problem = f"expected {expect}" if status != expect else (check(data) if check else None)
            if problem is None and data is None:
                problem = "no parsed body"
            entry["ok"] = problem is None
            if problem:
                entry["error"] = problem
            return (data if entry["ok"] else None), headers
        except Exception as error:  # the client raised: an error status, a parse or validation failure
            entry["status"] = getattr(error, "status", None) or getattr(error, "status_code", None)
            entry["error"] = redact(f"{type(error).__name__}: {error}")[:600]
            return None, {}

    def needs(self, value, operation_id):
        """Records a call that cannot be made because an earlier one failed; True when it can be made."""
        if value is None:
            self.calls.append({"operation": operation_id, "ok": False, "status": None,
                               "error": "not called: an earlier call it depends on failed"})
        return value is not None

    def run(self, generator):
        tag = f"{generator}-{uuid.uuid4().hex[:8]}"
        equal = lambda expected, key: lambda d: None if plain(d).get(key) == expected else \
            f"{key}: {plain(d).get(key)!r}, expected {expected!r}"
        self.step("getLiveness", "anonymous", 200)
        self.step("getReadiness", "anonymous", 200)
        self.step("validateToken", "tenant", 200)
        self.step("getCurrentTenant", "tenant", 200, equal("Demo Clinic", "name"))
        self.users(tag, equal)
        self.documents(tag, equal)
        self.platform(tag, equal)

    def users(self, tag, equal):
        c = self.client
        user, _ = self.step("createUser", "tenant", 201, body=("CreateUserRequest", {
            "email": f"{tag}@example.test", "role": "member", "full_name": "Client User"}))
        self.step("listUsers", "tenant", 200, deleted=c.enum("DeletedFilter", "include"), limit=5)
        if not self.needs(user, "getUser"):
            return [self.needs(None, op) for op in ("updateUser", "deleteUser", "restoreUser")]
        uid = str(user.id)
        _, headers = self.step("getUser", "tenant", 200, equal(uid, "id"), id=uid)
        self.step("updateUser", "tenant", 200, equal("Renamed", "full_name"), id=uid, **if_match(headers),
                  body=("UpdateUserRequest", {"full_name": "Renamed"}))
        self.step("deleteUser", "tenant", 200, id=uid)
        self.step("restoreUser", "tenant", 200, id=uid)

    def documents(self, tag, equal):
        c = self.client
        vector = [((i * 37) % 101 - 50) / 50 for i in range(1024)]
        metadata = {"ward": "cardiology", "codes": [1, 2.5, 2 ** 40, None, True, {"icd": ["I10"]}],
                    "deep": {"a": {"b": {"c": "d"}}}, "empty": {}}
        document = {"filename": f"{tag}.pdf", "s3_key": f"k/{tag}", "s3_bucket": "b", "content_type":
                    "application/pdf", "size_bytes": 1234, "status": "processing", "metadata": metadata,
                    "embedding": vector}
        created, _ = self.step("createDocument", "tenant", 201, equal(metadata, "metadata"),
                               body=("CreateDocumentRequest", document))
        self.step("listDocuments", "tenant", 200, status=c.enum("DocumentStatusName", "processing"), limit=5)
        self.step("searchDocuments", "tenant", 200, body=("SearchRequest", {"embedding": vector, "limit": 3}))
        batch = [{"filename": f"{tag}-{i}.txt", "s3_key": f"k/{tag}/{i}", "s3_bucket": "b",
                  "metadata": {"i": i}} for i in range(2)]
        self.step("createDocumentsBatch", "tenant", 201, body=("BatchCreateRequest", {"documents": batch}))
        if not self.needs(created, "getDocument"):
            return [self.needs(None, op) for op in ("updateDocument", "deleteDocument", "restoreDocument",
                                                    "listAuditLogs", "getLatestAuditCheckpoint")]
        did = str(created.id)
        _, headers = self.step("getDocument", "tenant", 200, close_to(vector), id=did,
                               include=c.enum("DocumentInclude", "embedding"))
        # A JSON Merge Patch (RFC 7396): `null` removes a member, so the client must send it.
        patch = {"deep": None, "ward": "oncology", "added": {"x": [1]}}
        merged = {"ward": "oncology", "codes": metadata["codes"], "empty": {}, "added": {"x": [1]}}
        self.step("updateDocument", "tenant", 200, equal(merged, "metadata"), id=did, **if_match(headers),
                  body=("UpdateDocumentRequest", {"metadata": patch, "status": "completed"}))
        self.step("deleteDocument", "tenant", 200, id=did)
        self.step("restoreDocument", "tenant", 200, id=did)
        self.step("listAuditLogs", "tenant", 200, lambda d: None if len(plain(d)["items"]) >= 4 else
                  f"{len(plain(d)['items'])} audit rows for the document", resource_id=did, limit=50)
        # clients.py signed a checkpoint (`carevault audit seal`) before the calls.
        self.step("getLatestAuditCheckpoint", "tenant", 200, lambda d: None if plain(d)["seq"] >= 1 and
                  len(plain(d)["signature"]) == 128 else f"not a signed checkpoint: {plain(d)}")

    def platform(self, tag, equal):
        c = self.client
        tenant, _ = self.step("createTenant", "platform", 201, equal(f"Tenant {tag}", "name"),
                              body=("CreateTenantRequest", {"name": f"Tenant {tag}"}))
        self.step("listTenants", "platform", 200, limit=5)
        if not self.needs(tenant, "suspendTenant"):
            return [self.needs(None, op) for op in ("activateTenant", "setTenantJitEmailDomains")]
        tid = str(tenant.id)
        self.step("suspendTenant", "platform", 200, equal("suspended", "status"), id=tid)
        self.step("activateTenant", "platform", 200, equal("active", "status"), id=tid)
        self.step("setTenantJitEmailDomains", "platform", 200, equal(["clinic.example"], "jit_email_domains"), id=tid,
                  body=("JitEmailDomainsRequest", {"domains": ["Clinic.Example"]}))


ADAPTERS = {"openapi-python-client": OpenapiPythonClient, "openapi-generator": OpenapiGenerator}


def main():
    generator, operations_file, result_file = sys.argv[1:4]
    with open(operations_file) as f:
        operations = json.load(f)
    adapter = ADAPTERS[generator]
    result = {"generator": generator, "package": adapter.package, "import_ok": False, "calls": []}
    try:
        result["import_failures"] = import_all(adapter.package)
        result["import_ok"] = not result["import_failures"]
        client = adapter(os.environ["CV_BASE_URL"], os.environ["CV_TENANT_TOKEN"], os.environ["CV_PLATFORM_TOKEN"])
        result["generated"] = [op for op in operations if client.has(op)]
        scenario = Scenario(client)
        scenario.run(generator)
        result["calls"] = scenario.calls
    except Exception:  # recorded, so that clients.py reports it
        result["error"] = redact(traceback.format_exc())[-2000:]
    with open(result_file, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
