#!/usr/bin/env python3
"""Validates docs/qmp-schema.json with the `jsonschema` package.

usage: validate_qmp_schema.py QMP-SCHEMA.json

Checks that the document is a valid JSON Schema (draft 2020-12), that every
$ref resolves, and that sample QMP messages and argument objects validate or
fail as expected. Exits 0 on success, 1 with a list of failures otherwise,
and 3 when the jsonschema package is not installed.
"""

import json
import sys

try:
    import jsonschema
except ImportError:
    print("jsonschema is not installed (pip install jsonschema)", file=sys.stderr)
    sys.exit(3)


def pointer(doc, ref):
    """Resolves a local '#/...' reference; None when it does not exist."""
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def refs(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from refs(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from refs(v, f"{path}/{i}")


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    failures = []
    cls = jsonschema.Draft202012Validator
    try:
        cls.check_schema(doc)
    except jsonschema.exceptions.SchemaError as e:
        print(f"not a valid draft 2020-12 schema: {e.message}", file=sys.stderr)
        return 1
    if doc.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        failures.append("$schema is not draft 2020-12")
    for where, ref in refs(doc):
        if not ref.startswith("#/") or pointer(doc, ref) is None:
            failures.append(f"{where}: unresolved $ref {ref}")

    def validator(ref):
        return cls({"$ref": ref, "$defs": doc["$defs"]})

    def expect(ref, instance, valid, why):
        errors = list(validator(ref).iter_errors(instance))
        if valid and errors:
            failures.append(f"{why}: expected valid against {ref}, got: {errors[0].message}")
        if not valid and not errors:
            failures.append(f"{why}: expected invalid against {ref}")

    args = "#/$defs/command:blockdev-add/$defs/arguments"
    good = [
        ({"driver": "file", "filename": "/tmp/a.img", "node-name": "f0"}, "file node"),
        ({"driver": "qcow2", "node-name": "q0", "file": "f0"}, "qcow2 over a node name"),
        (
            {"driver": "qcow2", "file": {"driver": "file", "filename": "/x"}, "backing": None},
            "nested definition and null backing",
        ),
        ({"driver": "null-co", "size": 1024, "read-only": True}, "null-co"),
        ({"driver": "raw", "file": "f0", "cache": {"direct": True}}, "raw with cache"),
        ({"driver": "host_device", "filename": "/dev/sda"}, "branch enabled by condition"),
    ]
    bad = [
        ({"driver": "file"}, "missing branch member"),
        ({"filename": "/x"}, "missing discriminator"),
        ({"driver": "no-such-driver", "filename": "/x"}, "unknown driver"),
        ({"driver": "file", "filename": "/x", "bogus": 1}, "unknown member"),
        ({"driver": "file", "filename": "/x", "read-only": "yes"}, "wrong member type"),
        ({"driver": "io_uring", "filename": "/x"}, "branch disabled in the build profile"),
        ({"driver": "null-co", "latency-ns": -1}, "negative uint64"),
        ({"driver": "qcow2", "file": {"driver": "file"}}, "invalid nested definition"),
        ({"driver": "file", "filename": "/x", "cache": {"bogus": True}}, "closed struct member"),
        ([], "not an object"),
    ]
    for inst, why in good:
        expect(args, inst, True, f"blockdev-add arguments, {why}")
    for inst, why in bad:
        expect(args, inst, False, f"blockdev-add arguments, {why}")

    # Whole requests against the document's root.
    root = cls(doc)
    requests = [
        ({"execute": "blockdev-add", "arguments": good[0][0], "id": 7}, True),
        ({"execute": "blockdev-add", "arguments": {"driver": "file"}}, False),
        ({"execute": "blockdev-add"}, False),
        ({"execute": "query-version"}, True),
        ({"execute": "query-version", "arguments": {}}, True),
        ({"execute": "query-version", "arguments": {"x": 1}}, False),
        ({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}, True),
        ({"execute": "qmp_capabilities", "arguments": {"enable": ["nope"]}}, False),
        ({"execute": "no-such-command"}, False),
        ({"execute": "quit", "extra": 1}, False),
        ({"arguments": {}}, False),
    ]
    for inst, valid in requests:
        errors = list(root.iter_errors(inst))
        if valid and errors:
            failures.append(f"request {json.dumps(inst)}: expected valid, got: {errors[0].message}")
        if not valid and not errors:
            failures.append(f"request {json.dumps(inst)}: expected invalid")

    # Return values, events, alternates and integer ranges.
    expect(
        "#/$defs/command:query-version/$defs/return",
        {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""},
        True,
        "query-version return",
    )
    expect("#/$defs/command:query-version/$defs/return", {"qemu": {}}, False, "bad return")
    expect("#/$defs/command:quit/$defs/return", {}, True, "empty return")
    event = {
        "event": "JOB_STATUS_CHANGE",
        "data": {"id": "job0", "status": "running"},
        "timestamp": {"seconds": 1700000000, "microseconds": 12},
    }
    expect("#/$defs/event:JOB_STATUS_CHANGE", event, True, "event")
    expect(
        "#/$defs/event:JOB_STATUS_CHANGE",
        dict(event, data={"id": "job0", "status": "sleeping"}),
        False,
        "event with a bad enum value",
    )
    expect("#/$defs/BlockdevRef", "node0", True, "alternate string branch")
    expect("#/$defs/BlockdevRef", {"driver": "null-co"}, True, "alternate object branch")
    expect("#/$defs/BlockdevRef", 3, False, "alternate without a matching branch")
    expect("#/$defs/StrOrNull", None, True, "alternate null branch")
    for ty, ok, ko in [
        ("int8", [-128, 127], [-129, 128, 1.5, "1"]),
        ("uint8", [0, 255], [-1, 256]),
        ("uint16", [65535], [65536]),
        ("int32", [-(2**31)], [2**31]),
        ("int64", [-(2**63), 2**63 - 1], [2**63]),
        ("uint64", [2**64 - 1], [2**64, -1]),
        ("size", [0, 2**64 - 1], [-1]),
        ("str", ["x"], [1]),
        ("bool", [False], [0]),
        ("number", [1.5, 2], ["1"]),
        ("any", [{"a": [1]}, None], []),
    ]:
        for v in ok:
            expect(f"#/$defs/{ty}", v, True, f"{ty} {v!r}")
        for v in ko:
            expect(f"#/$defs/{ty}", v, False, f"{ty} {v!r}")

    if failures:
        print(f"{len(failures)} failures:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"ok: {len(doc['$defs'])} definitions, {sum(1 for _ in refs(doc))} references")
    return 0


if __name__ == "__main__":
    sys.exit(main())
