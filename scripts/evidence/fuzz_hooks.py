"""Schemathesis hooks of the evidence suite's fuzz run (loaded through SCHEMATHESIS_HOOKS by fuzz.py):
they keep generated requests within two rules the OpenAPI document states in descriptions only.

If-Match (PATCH and DELETE of documents and users) must be an ETag that GET answered for the current
version, or `*`; any other value is answered 412 RES_412, as RFC 9110 (13.1.1) prescribes. No schema
can say which string is the current version, and schemathesis counts 412 as neither an acceptance
(ST202) nor a refusal it knows (ST201), so a generated If-Match is replaced by `*`: the precondition
is still parsed and checked on every such request. Mismatches are tested in the API suite
(`crates/carevault-api/tests/api`).

The OpenAPI document states metadata as a free-form object (`additionalProperties: true`) and gives
its rules in the description only (crates/carevault-api/src/schema.rs, `MetadataObject`): no NUL
character in any key or string, every number below 1e300 in magnitude, at most 64 KiB serialized
and 16 levels of nesting. A schema for the first two would have to refer to itself, which client
generators do not follow; size and depth JSON Schema cannot state at all. Schemathesis generates
from the schema alone, so without this hook a "valid" request could carry `"\\u0000"` or 1.7e308 in
its metadata, be refused with 422, and be reported as ST202 (schema-valid request rejected).

`map_case` is used rather than `map_body`: schemathesis 4.32 applies the body hooks only to the
Hypothesis-driven phases, while the case hooks run in every phase (coverage, examples, fuzzing,
stateful). The hook only narrows what metadata carries: a request the schema forbids stays
forbidden (a free-form object has no rule of its own to break but its type, which is left alone),
so ST201 is checked as before.

The limits are the parser's (crates/carevault-db/src/domain/metadata.rs); the size is kept 4 KiB
below the limit because Python and serde_json serialize floats a little differently, and a PATCH
merges its metadata into what is stored.
"""

import json

MAX_DEPTH = 16
MAX_NUMBER = 1e300
SIZE_BUDGET = 64 * 1024 - 4096


def clean_value(value, level):
    """`value` found at nesting `level` (the metadata object is level 1) made to follow the rules.

    >>> clean_value({"a\\x00": ["x\\x00y", 2e300, -1e301, 1.5, True, None]}, 1)
    {'a': ['xy', 0, 0, 1.5, True, None]}
    """
    if isinstance(value, dict):
        if level > MAX_DEPTH:
            return None
        return {key.replace("\x00", ""): clean_value(item, level + 1) for key, item in value.items()}
    if isinstance(value, list):
        if level > MAX_DEPTH:
            return None
        return [clean_value(item, level + 1) for item in value]
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= MAX_NUMBER:
        return 0
    return value


def clean_metadata(metadata):
    """A metadata object within the description's rules; one too large becomes `{}`.

    >>> depth = lambda v: 1 + max(map(depth, v.values()), default=0) if isinstance(v, dict) else 0
    >>> deep = {}
    >>> for _ in range(40):
    ...     deep = {"n": deep}
    >>> depth(clean_metadata(deep)) == MAX_DEPTH
    True
    >>> clean_metadata({"x": "y" * 70000})
    {}
    """
    cleaned = clean_value(metadata, 1)
    size = len(json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False).encode())
    return cleaned if size <= SIZE_BUDGET else {}


def clean_headers(headers):
    """Headers with a generated If-Match replaced by `*` (matches the current version, whatever it is).

    >>> clean_headers({"if-match": "null", "X": "y"})
    {'if-match': '*', 'X': 'y'}
    """
    return {name: "*" if name.lower() == "if-match" else value for name, value in headers.items()}


def clean_body(body):
    """Every `metadata` object in a request body (a document, a batch of them, a patch) cleaned.

    >>> clean_body({"documents": [{"metadata": {"k": "\\x00"}}, {"metadata": "not an object"}]})
    {'documents': [{'metadata': {'k': ''}}, {'metadata': 'not an object'}]}
    """
    if isinstance(body, dict):
        return {key: clean_metadata(value) if key == "metadata" and isinstance(value, dict) else clean_body(value)
                for key, value in body.items()}
    if isinstance(body, list):
        return [clean_body(item) for item in body]
    return body


try:
    import schemathesis
except ImportError:  # imported for its doctests, outside schemathesis's venv
    schemathesis = None

if schemathesis is not None:
    def negative_through_headers(case):
        """Whether the case breaks the schema in its headers on purpose (an `Authorization` left out, a
        bad value): such a request is refused before If-Match is read, and editing its headers would make
        schemathesis revalidate them and relabel the case as positive (and then send the token again)."""
        meta = case.meta
        data = getattr(getattr(meta, "phase", None), "data", None)
        location = getattr(getattr(data, "parameter_location", None), "value", None)
        return meta is not None and meta.generation.mode.is_negative and location == "header"

    @schemathesis.hook
    def map_case(context, case):
        """Keeps every generated request's metadata and If-Match within the descriptions' rules; a case
        is only assigned to when something changes, since schemathesis revalidates what is assigned."""
        if isinstance(case.body, (dict, list)):
            body = clean_body(case.body)
            if body != case.body:
                case.body = body
        if case.headers and not negative_through_headers(case):
            headers = clean_headers(case.headers)
            if headers != dict(case.headers):
                case.headers = headers
        return case


if __name__ == "__main__":
    import doctest

    failed, tried = doctest.testmod()
    print(f"{tried - failed} passed, {failed} failed")
    raise SystemExit(1 if failed else 0)
