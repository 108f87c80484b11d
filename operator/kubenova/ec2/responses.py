"""EC2's XML answers, written by the output shape of botocore's EC2 service model.

An answer is ``<{Action}Response xmlns="…/doc/2016-11-15/">`` holding ``requestId`` and the
output's members, each under its ``locationName``; a list's members are ``<item>`` elements
(the list member's ``locationName``). This is what botocore's ``EC2QueryParser`` reads back,
which the unit tests check by parsing every answer with it.

Errors have EC2's own shape:
``<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>``.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any
from xml.etree import ElementTree

from kubenova.ec2 import protocol

XML_NAMESPACE = f"http://ec2.amazonaws.com/doc/{protocol.API_VERSION}/"


def answer(action: str, output: dict[str, Any], request_id: str) -> bytes:
    """The XML answer of ``action`` with ``output`` (keyed by the output shape's member
    names); members the shape does not name are dropped."""
    operation = protocol.operation_model(action)
    root = ElementTree.Element(f"{action}Response", xmlns=XML_NAMESPACE)
    ElementTree.SubElement(root, "requestId").text = request_id
    shape = operation.output_shape
    if shape is not None:
        _members(root, shape, output)
    return _document(root)


def error(code: str, message: str, request_id: str) -> bytes:
    """EC2's error document."""
    root = ElementTree.Element("Response")
    problem = ElementTree.SubElement(ElementTree.SubElement(root, "Errors"), "Error")
    ElementTree.SubElement(problem, "Code").text = code
    ElementTree.SubElement(problem, "Message").text = message
    ElementTree.SubElement(root, "RequestID").text = request_id
    return _document(root)


def _document(root: ElementTree.Element) -> bytes:
    body: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _location_name(shape: Any, default: str) -> str:
    return str(shape.serialization.get("name", default))


def _members(parent: ElementTree.Element, shape: Any, value: dict[str, Any]) -> None:
    for member_name, member_shape in shape.members.items():
        member_value = value.get(member_name)
        if member_value is None:
            continue
        _element(parent, member_shape, _location_name(member_shape, member_name), member_value)


def _element(parent: ElementTree.Element, shape: Any, tag: str, value: Any) -> None:
    kind = shape.type_name
    if kind == "list":
        item_tag = _location_name(shape.member, "member")
        if shape.serialization.get("flattened"):
            for item in value:
                _element(parent, shape.member, tag, item)
            return
        container = ElementTree.SubElement(parent, tag)
        for item in value:
            _element(container, shape.member, item_tag, item)
        return
    node = ElementTree.SubElement(parent, tag)
    if kind == "structure":
        _members(node, shape, value)
    elif kind == "map":
        for key, item in value.items():
            entry = ElementTree.SubElement(node, "entry")
            ElementTree.SubElement(entry, _location_name(shape.key, "key")).text = str(key)
            _element(entry, shape.value, _location_name(shape.value, "value"), item)
    else:
        node.text = _scalar_text(kind, value)


def _scalar_text(kind: str, value: Any) -> str:
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        if isinstance(value, datetime.datetime):
            moment = value.astimezone(datetime.UTC)
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        return str(value)
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode()
    return str(value)
