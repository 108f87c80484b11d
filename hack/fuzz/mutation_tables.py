"""The mutations of each family, for each kind: the edits the generator (:mod:`mutations`)
draws from.

Families, for every kind (Instance has ``reference`` too):

    wrong_type         a field of another JSON type (a string for an integer, a list for an
                       object, null)
    missing_required   a required field removed
    out_of_range       numbers past the CRD's bounds, strings past maxLength, values outside
                       an enum, too many entries, a CEL rule broken
    huge               1 MiB user data and URLs, 100,000-character descriptions, names and
                       label values, 300 KiB of annotations (and 64 Ki characters of user data,
                       at the cap)
    unicode            RTL overrides, zero-width characters, emoji, NUL, lone surrogates
    xml_injection      text that would close and open domain XML elements, CDATA, entities
    shell_injection    $(reboot), backticks, ; rm -rf /, newlines with commands
    invalid_dns        names that are not RFC 1123 names where names go
    quantity           negative and huge numbers (beyond 32 and 64 bits, 1e308, fractions)
    unknown_field      fields the schema does not have
    api_version_kind   a wrong or missing apiVersion or kind
    metadata_abuse     bad label keys and values, huge or hostile annotations, bad finalizers,
                       owner references, namespaces, generateName, timestamps, managed fields,
                       and (Instance) hostile values in the annotations kopf keeps its state in
    reference          an Instance naming another fuzzed Flavor, Image or ServerGroup, or one
                       that does not exist; a forced fuzz host; a power state, reboot or resize
                       confirmation asked at creation

Values of the hostile families come from :mod:`hostile_values`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import hostile_values as hv
import metadata_edits
import schema_edits
import value_edits
from edits import Edit, drawn_from
from manifests import INSTANCE, KINDS, Kind

WRONG_TYPE = "wrong_type"
MISSING_REQUIRED = "missing_required"
OUT_OF_RANGE = "out_of_range"
HUGE = "huge"
UNICODE = "unicode"
XML_INJECTION = "xml_injection"
SHELL_INJECTION = "shell_injection"
INVALID_DNS = "invalid_dns"
QUANTITY = "quantity"
UNKNOWN_FIELD = "unknown_field"
API_VERSION_KIND = "api_version_kind"
METADATA_ABUSE = "metadata_abuse"
REFERENCE = "reference"

#: The families every kind gets, in the order a kind's manifests go through them.
FAMILIES: tuple[str, ...] = (
    WRONG_TYPE,
    MISSING_REQUIRED,
    OUT_OF_RANGE,
    HUGE,
    UNICODE,
    XML_INJECTION,
    SHELL_INJECTION,
    INVALID_DNS,
    QUANTITY,
    UNKNOWN_FIELD,
    API_VERSION_KIND,
    METADATA_ABUSE,
)


def families_of(kind: Kind) -> tuple[str, ...]:
    """The families of ``kind``'s manifests, in the order they are sent."""
    return (*FAMILIES, REFERENCE) if kind is INSTANCE else FAMILIES


def _by_kind(make: Callable[[Kind], Sequence[Edit]]) -> dict[str, list[Edit]]:
    return {kind.name: list(make(kind)) for kind in KINDS}


def _hostile(values: Sequence[str]) -> Callable[[Kind], list[Edit]]:
    return lambda kind: drawn_from(values, value_edits.text_positions(kind))


def _invalid_dns(kind: Kind) -> list[Edit]:
    return [
        *drawn_from(hv.INVALID_DNS_NAMES, value_edits.dns_positions(kind)),
        value_edits.generate_name,
    ]


#: Family -> kind -> the edits a manifest of that family and kind is made with.
EDITS: dict[str, dict[str, list[Edit]]] = {
    WRONG_TYPE: _by_kind(schema_edits.wrong_types),
    MISSING_REQUIRED: _by_kind(schema_edits.missing),
    OUT_OF_RANGE: _by_kind(lambda kind: schema_edits.OUT_OF_RANGE[kind.name]),
    HUGE: _by_kind(schema_edits.huge),
    UNICODE: _by_kind(_hostile(hv.UNICODE)),
    XML_INJECTION: _by_kind(_hostile(hv.XML_INJECTION)),
    SHELL_INJECTION: _by_kind(_hostile(hv.SHELL_INJECTION)),
    INVALID_DNS: _by_kind(_invalid_dns),
    QUANTITY: _by_kind(value_edits.quantities),
    UNKNOWN_FIELD: _by_kind(schema_edits.unknown_fields),
    API_VERSION_KIND: _by_kind(schema_edits.api_version_kind),
    METADATA_ABUSE: _by_kind(metadata_edits.metadata_abuse),
    REFERENCE: {INSTANCE.name: metadata_edits.REFERENCES},
}
