"""EC2-shaped identifiers of Kubenova objects, and EC2's instance states.

An id is a prefix and 17 lower-case hex digits (``i-0123456789abcdef0``), the first 17 hex digits
of the SHA-256 of the object's uid: stable for the object's life, the same from every replica,
computed without storing anything, and different for an object deleted and made again under
its old name (a new uid). Instances the EC2 API creates also carry it as the label
``ec2.kubenova.io/instance-id``, so ``kubectl get instances -l ec2.kubenova.io/instance-id=i-…``
finds them. An Image made by a snapshot takes its id from the InstanceSnapshot's uid instead
(:func:`image_id`), which CreateImage knows before the Image exists.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from kubenova.k8s import resources

INSTANCE_ID_LABEL = "ec2.kubenova.io/instance-id"
RESERVATION_ID_LABEL = "ec2.kubenova.io/reservation-id"
CLIENT_TOKEN_LABEL = "ec2.kubenova.io/client-token"
#: The ClientToken itself, which DescribeInstances gives back (a label holds only its digest).
CLIENT_TOKEN_ANNOTATION = "ec2.kubenova.io/client-token"
#: Which of its reservation's instances an Instance is (EC2's AmiLaunchIndex, from 0).
LAUNCH_INDEX_LABEL = "ec2.kubenova.io/launch-index"

INSTANCE_PREFIX = "i-"
IMAGE_PREFIX = "ami-"
RESERVATION_PREFIX = "r-"
_HEX_DIGITS = 17
_ID = re.compile(r"^(?P<prefix>[a-z]+-)(?P<hex>[0-9a-f]{17})$")


def derive(prefix: str, uid: str) -> str:
    """``prefix`` and 17 hex digits of the SHA-256 of ``uid``."""
    return prefix + hashlib.sha256(uid.encode()).hexdigest()[:_HEX_DIGITS]


def instance_id(obj: dict[str, Any]) -> str:
    return derive(INSTANCE_PREFIX, str(obj["metadata"]["uid"]))


def image_id(obj: dict[str, Any]) -> str:
    """An Image's AMI id: from the uid of the InstanceSnapshot that made it, when one did (the
    id CreateImage answered before the Image existed), else from its own uid."""
    annotations = obj["metadata"].get("annotations") or {}
    snapshot_uid = annotations.get(resources.SNAPSHOT_UID_ANNOTATION)
    if isinstance(snapshot_uid, str) and snapshot_uid:
        return derive(IMAGE_PREFIX, snapshot_uid)
    return derive(IMAGE_PREFIX, str(obj["metadata"]["uid"]))


def snapshot_image_id(snapshot: dict[str, Any]) -> str:
    """The AMI id of the Image an InstanceSnapshot makes, known as soon as it is created."""
    return derive(IMAGE_PREFIX, str(snapshot["metadata"]["uid"]))


def reservation_id(obj: dict[str, Any]) -> str:
    """The reservation a RunInstances call made the Instance in (its label), else one of its
    own (an Instance made with kubectl is a reservation of one)."""
    labels = obj["metadata"].get("labels") or {}
    label = labels.get(RESERVATION_ID_LABEL)
    if isinstance(label, str) and well_formed(label, RESERVATION_PREFIX):
        return label
    return derive(RESERVATION_PREFIX, str(obj["metadata"]["uid"]))


def well_formed(value: str, prefix: str) -> bool:
    """Whether ``value`` is ``prefix`` and 17 lower-case hex digits."""
    match = _ID.match(value)
    return match is not None and match.group("prefix") == prefix


def client_token_label(token: str) -> str:
    """The label value a ClientToken is found by: a digest, since a token may hold up to 64
    characters of any kind and a label value may not."""
    return hashlib.sha256(token.encode()).hexdigest()[:40]
