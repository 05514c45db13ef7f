"""YAML read strictly: UTF-8 text only, no key given twice, and numbers as people write them.

PyYAML follows YAML 1.1, where `1e-4` (no dot, no sign on the exponent) is a string; YAML 1.2
and every user read it as 0.0001, so floats are resolved by the 1.2 rule here. A key given twice
is an error that names the key and its line (PyYAML keeps the last silently).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int):
        self.key, self.line = key, line
        super().__init__(f"key {key!r} is given twice (again at line {line})")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys and reads YAML 1.2 floats."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # a list or a mapping as a key
                raise yaml.constructor.ConstructorError(None, None, "found an unhashable key", key_node.start_mark) from None
            if repeated:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Integers keep PyYAML's resolver (it runs first for digits-only text); these add 1.2's floats.
StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for first in "-+.0123456789":
    StrictLoader.yaml_implicit_resolvers[first] = [
        (tag, regexp) for tag, regexp in StrictLoader.yaml_implicit_resolvers.get(first, []) if tag != "tag:yaml.org,2002:float"
    ]
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


def load(data: bytes) -> Any:
    """Parse UTF-8 YAML text (UnicodeDecodeError if it is not UTF-8; yaml.YAMLError if not YAML)."""
    return yaml.load(data.decode("utf-8"), Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
