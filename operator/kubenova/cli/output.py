"""Output as kubectl prints it: aligned tables, and objects as JSON or YAML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

#: Spaces between two columns, as kubectl's tabwriter pads them.
_GAP = 3
EMPTY = "-"


def cell(value: Any) -> str:
    """A value fit for one table cell: on one line, ``-`` when there is none."""
    if value is None or value == "":
        return EMPTY
    return " ".join(str(value).split())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Columns padded to their widest cell; the last column is not padded, so a long message
    does not push trailing blanks onto every line."""
    cells = [list(headers), *([cell(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    lines = []
    for line in cells:
        padded = [text.ljust(width + _GAP) for text, width in zip(line[:-1], widths, strict=False)]
        lines.append((indent + "".join(padded) + line[-1]).rstrip())
    return "\n".join(lines)


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Several objects as ``kubectl get -o json`` wraps them."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def dump(obj: Any, fmt: str) -> str:
    """``obj`` as ``-o json`` or ``-o yaml`` prints it (keys sorted, as kubectl's are)."""
    if fmt == "json":
        return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True, allow_unicode=True).rstrip(
        "\n"
    )
