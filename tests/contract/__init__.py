"""The contract's examples (../shared/api/share-volume-api.md, copied into
sharestore/api/contract_examples.json, which also feeds the schema's examples, with the
list example's unclosed array closed) and a check that a response has every documented key with
the same JSON type."""

from __future__ import annotations

import json
from pathlib import Path

import sharestore.api

EXAMPLES: dict = json.loads((Path(sharestore.api.__file__).parent / "contract_examples.json").read_text())


def _nullable_keys(node, found: set) -> set:
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                found.add(key)
            _nullable_keys(value, found)
    elif isinstance(node, list):
        for item in node:
            _nullable_keys(item, found)
    return found


# Keys the contract itself shows as null somewhere (an empty value): null is their empty form
# everywhere, e.g. `Attr` of a volume attached to no VM.
NULLABLE_KEYS = _nullable_keys([e["response"] for e in EXAMPLES.values()], set())


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(type(value))


def shape_mismatches(actual, example, path: str = "$") -> list[str]:
    """Every place where `actual` lacks a key of `example` or has another JSON type there.

    Where the example shows null, the contract documents an empty value: null or a value is fine.
    AccessPath is keyed by host UUID, so its keys are not compared, only its value types.
    """
    if example is None:
        return []
    problems = []
    if json_type(actual) != json_type(example):
        return [f"{path}: expected {json_type(example)}, got {json_type(actual)} ({actual!r:.80})"]
    if isinstance(example, dict):
        if path.endswith(".AccessPath"):
            return [
                p
                for v in actual.values()
                for p in shape_mismatches(v, next(iter(example.values())), path + ".*")
            ]
        for key, value in example.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            elif actual[key] is None and key in NULLABLE_KEYS:
                continue
            else:
                problems += shape_mismatches(actual[key], value, f"{path}.{key}")
    elif isinstance(example, list) and example:
        # An item may take the shape of any of the example's items (the list example shows one
        # volume with Attr as an object and one with null).
        for index, item in enumerate(actual):
            candidates = [shape_mismatches(item, sample, f"{path}[{index}]") for sample in example]
            problems += min(candidates, key=len)
    return problems


def assert_matches_contract(endpoint: str, body: dict) -> None:
    problems = shape_mismatches(body, EXAMPLES[endpoint]["response"])
    assert not problems, "\n".join(problems)
