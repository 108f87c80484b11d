"""Whether the apiserver's refusal of a manifest names the field that was mutated.

A refusal is a ``Status`` object: its message (``Flavor.compute.kubenova.io "x" is invalid:
spec.vcpus: Invalid value: 0: spec.vcpus in body should be greater than or equal to 1``) and
its causes, each with a ``field`` (``spec.vcpus``). The field counts as named when any of these
holds its path, written as the apiserver writes paths: with ``[0]`` for an item of a list (a
path ``.0`` is accepted too), or one of the mutation's other names for it (``API version``
for ``apiVersion``).

A manifest the apiserver cannot even decode is refused by its JSON decoder, which names Go's
struct fields: ``cannot unmarshal number into Go struct field ObjectMeta.name of type string``.
``ObjectMeta.name`` is how that decoder spells ``metadata.name``, so it counts as naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# An index of a list, as the apiserver writes it: spec.sshAuthorizedKeys[0].
_INDEX = re.compile(r"\[(\d+)\]")
# The Go type of every object's metadata, in the decoder's messages.
_METADATA = "metadata."
_GO_METADATA = "ObjectMeta."


def refusal_text(body: str | bytes | None) -> str:
    """The text of a refusal: the Status's reason, message and its causes' fields and
    messages, one per line; the body as it is when it is not a Status."""
    if body is None:
        return ""
    raw = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(status, dict):
        return raw
    lines = [str(status.get("reason") or ""), str(status.get("message") or "")]
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else []:
        if isinstance(cause, dict):
            lines.append(f"{cause.get('field') or ''}: {cause.get('message') or ''}")
    return "\n".join(line for line in lines if line)


def spellings(field: str, aliases: Iterable[str] = ()) -> list[str]:
    """Every way a refusal may name ``field``: as written, with ``[0]`` as ``.0``, a
    ``metadata.`` field as the Go decoder's ``ObjectMeta.``, and the aliases."""
    found = [field]
    dotted = _INDEX.sub(r".\1", field)
    if dotted != field:
        found.append(dotted)
    if field.startswith(_METADATA):
        found.append(_GO_METADATA + field.removeprefix(_METADATA))
    found.extend(aliases)
    return found


def names_field(text: str, field: str, aliases: Iterable[str] = ()) -> bool:
    """Whether a refusal's text (:func:`refusal_text`) names ``field`` or one of its
    aliases."""
    return any(spelling in text for spelling in spellings(field, aliases) if spelling)
