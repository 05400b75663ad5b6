#!/usr/bin/env python3
"""Verifies an export of carevault's audit chain (`carevault audit export`), written from
docs/AUDIT_FORMAT.md alone: the standard library and the `cryptography` package (Ed25519).

    python3 scripts/verify_audit_export.py FILE.jsonl PUBLIC_KEY_HEX [PUBLIC_KEY_HEX ...]

Checks a whole export (from seq 1; ranges are for `carevault audit verify --file --from`). Prints
`<tenant> intact: N entries, head H, checkpoint C` and exits 0, or the first break
(`<tenant> BROKEN at seq S: KIND`) and exits 1; an entry after the last checkpoint is a break
("not vouched for by a checkpoint").
"""
import hashlib
import json
import struct
import sys
import uuid
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
GENESIS = bytes(32)


def micros(text):
    """RFC 3339 -> microseconds since 1970 (None: a value no real row has)."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def field(value):
    if value is None:
        return b"\x00"
    return b"\x01" + struct.pack(">I", len(value)) + value


def text(value):
    return None if value is None else value.encode("utf-8")


def entry_hash(entry, row):
    """The hash of `entry` over `row`; None when a time is missing (no real entry lacks one)."""
    if entry["sealed_at"] is None or row["created_at"] is None:
        return None
    sealed = micros(entry["sealed_at"])
    fields = [
        b"carevault.audit.v1",
        struct.pack(">q", entry["seq"]),
        struct.pack(">q", sealed),
        uuid.UUID(row["tenant_id"]).bytes,
        uuid.UUID(row["id"]).bytes,
        struct.pack(">q", micros(row["created_at"])),
        None if row["user_id"] is None else uuid.UUID(row["user_id"]).bytes,
        text(row["action"]),
        text(row["resource_type"]),
        uuid.UUID(row["resource_id"]).bytes,
        text(row["ip_address"]),
        text(row["user_agent"]),
        text(row["metadata"]),
    ]
    digest = hashlib.sha256(bytes.fromhex(entry["prev_hash"]))
    for value in fields:
        digest.update(field(value))
    return digest.hexdigest()


def checkpoint_signed(checkpoint, keys):
    key = keys.get(checkpoint["key_id"])
    if key is None:
        return False
    signed_at = datetime.fromisoformat(checkpoint["signed_at"].replace("Z", "+00:00")).astimezone(timezone.utc)
    message = "carevault.checkpoint.v1\n{}\n{}\n{}\n{}\n".format(
        checkpoint["tenant_id"], checkpoint["seq"], checkpoint["head_hash"],
        signed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    try:
        key.verify(bytes.fromhex(checkpoint["signature"]), message.encode("ascii"))
        return True
    except (InvalidSignature, ValueError):
        return False


def first_break(entries, checkpoints, keys):
    """(seq, kind) of the first break of a whole export (from seq 1), or None; and the place the
    last checkpoint vouches for."""
    found = []
    expected_seq, expected_prev = 1, GENESIS.hex()
    hashes = {e["hash"]: i for i, e in enumerate(entries)}
    for i, entry in enumerate(entries):
        if entry["seq"] != expected_seq:
            found.append((min(entry["seq"], expected_seq), "missing row" if entry["seq"] > expected_seq else "inserted row"))
        elif entry["prev_hash"] != expected_prev:
            j = hashes.get(entry["prev_hash"])
            kind = "missing row" if j is None else ("inserted row" if j < i else "reordered rows")
            found.append((entries[j + 1]["seq"] if j is not None and j < i else entry["seq"], kind))
        elif entry["row"] is None:
            found.append((entry["seq"], "missing row"))
        elif entry_hash(entry, entry["row"]) != entry["hash"]:
            found.append((entry["seq"], "altered row"))
        expected_seq, expected_prev = entry["seq"] + 1, entry["hash"]
    head = entries[-1]["seq"] if entries else 0
    at = {e["seq"]: e["hash"] for e in entries}
    vouched, rewritten = 0, False
    for checkpoint in sorted(checkpoints, key=lambda c: c["seq"]):
        if not checkpoint_signed(checkpoint, keys):
            found.append((checkpoint["seq"], "checkpoint signature fails"))
        elif checkpoint["seq"] > head:
            found.append((head + 1, "truncated tail"))
            break
        elif at.get(checkpoint["seq"]) == checkpoint["head_hash"]:
            vouched = max(vouched, checkpoint["seq"])
        elif checkpoint["head_hash"] not in hashes and not rewritten:
            # Held nowhere: the chain was rewritten after the last checkpoint that matches (one
            # held at another place was only moved by entries put in or taken out before it).
            found.append((vouched + 1, "checkpoint does not match"))
            rewritten = True
    if head > vouched and not any(kind.startswith(("checkpoint", "truncated")) for _, kind in found):
        found.append((vouched + 1, "not vouched for by a checkpoint"))
    return (min(found) if found else None), vouched


def main(path, public_keys):
    keys = {}
    for hex_key in public_keys:
        raw = bytes.fromhex(hex_key)
        keys[hashlib.sha256(raw).hexdigest()[:16]] = Ed25519PublicKey.from_public_bytes(raw)
    entries, checkpoints, tenants = [], [], set()
    with open(path, encoding="utf-8") as lines:
        for line in filter(str.strip, lines):
            item = json.loads(line)
            if item.get("type") == "entry":
                entries.append(item)
                if item["row"] is not None:
                    tenants.add(item["row"]["tenant_id"])
            elif item.get("type") == "checkpoint":
                checkpoints.append(item)
                tenants.add(item["tenant_id"])
            else:
                sys.exit(f"not an export line: {line[:80]}")
    if len(tenants) != 1:
        sys.exit("an export holds the chain of exactly one tenant")
    entries.sort(key=lambda e: e["seq"])
    broken, vouched = first_break(entries, checkpoints, keys)
    tenant = tenants.pop()
    if broken:
        print("{} BROKEN at seq {}: {}".format(tenant, *broken))
        return 1
    print("{} intact: {} entries, head {}, checkpoint {}".format(
        tenant, len(entries), entries[-1]["seq"] if entries else "none", vouched))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
