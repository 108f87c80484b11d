"""EC2 key pairs kept as Secrets in the namespace of the access key that made them.

A key pair is a Secret of type ``kubenova.io/ec2-key-pair``, labelled
``ec2.kubenova.io/key-pair-id=key-<17 hex digits>``, holding the key's name, type, public key
(an OpenSSH line) and fingerprint. Never the private key: as on EC2, it is handed out once by
CreateKeyPair and kept by nobody else.

The Secret's name is derived from the key's name (``ec2-key-pair-`` and a digest), so the
kube-apiserver itself refuses a second key of one name, even two CreateKeyPair racing each
other, with no read-then-write window; the id is drawn at random when the key is made, so a key
deleted and made again under its old name gets a new id, as on EC2. docs/ec2.md says why a
Secret and not a custom object.

A key pair's EC2 tags are the Secret's annotation ``ec2.kubenova.io/tags``, the JSON object an
Instance's tags are (:mod:`tags`), rather than a key of its ``data``:

- tags are no secret: EC2 shows them to whoever may describe the key pair, and ``kubectl get
  secret`` shows an annotation as it is, where ``data`` is base64;
- one form and one way of writing them for every resource: a merge patch of the annotation
  carrying the resourceVersion read, refused (409) when anything changed the Secret meanwhile
  (:mod:`tag_store`); ``data`` stays what the key is, written once when it is made;
- EC2's most (50 tags, keys of 128 and values of 256 characters) is under 80 KB even in 4-byte
  UTF-8, well within the 256 KiB the kube-apiserver allows an object's annotations.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import secrets
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import errors, ids, key_material, tags
from kubenova.ec2.context import Context

SECRET_TYPE = "kubenova.io/ec2-key-pair"
KEY_PAIR_ID_LABEL = "ec2.kubenova.io/key-pair-id"
#: On an Instance run with a KeyName: the key's name, which DescribeInstances shows.
KEY_NAME_ANNOTATION = "ec2.kubenova.io/key-name"
KEY_PAIR_PREFIX = "key-"
#: EC2's bound on a key pair's name (ASCII characters).
MAX_NAME = 255
_SECRET_NAME_PREFIX = "ec2-key-pair-"

INVALID_KEY_PAIR_NOT_FOUND = "InvalidKeyPair.NotFound"
INVALID_KEY_PAIR_DUPLICATE = "InvalidKeyPair.Duplicate"
INVALID_KEY_FORMAT = "InvalidKey.Format"


@dataclasses.dataclass(frozen=True)
class KeyPair:
    key_pair_id: str
    name: str
    key_type: str
    #: The OpenSSH public key line, without a comment.
    public_key: str
    fingerprint: str
    created: datetime.datetime | None
    #: The Secret's, to delete it only while it is still this key pair.
    secret_name: str
    uid: str
    tags: tags.Tags = dataclasses.field(default_factory=dict)
    #: The Secret's as read: a change of the tags is written only onto the Secret as it was.
    resource_version: str = ""

    def authorized_key(self) -> str:
        return key_material.authorized_key(self.public_key, self.name)


def require_name(name: str, parameter: str = "KeyName") -> None:
    """EC2's rule for a key pair's name: 1 to 255 ASCII characters (printable ones here, since
    the name ends up as the comment of the guest's authorized key)."""
    if not name:
        raise errors.missing(parameter)
    if len(name) > MAX_NAME:
        raise errors.invalid(parameter, f"a key pair name has at most {MAX_NAME} characters")
    if not all(" " <= char <= "~" for char in name):
        raise errors.invalid(parameter, "a key pair name holds printable ASCII characters only")


def not_found(what: str) -> errors.Ec2Error:
    return errors.Ec2Error(INVALID_KEY_PAIR_NOT_FOUND, f"The key pair '{what}' does not exist")


def all_in(ctx: Context) -> list[KeyPair]:
    """The namespace's key pairs, by name."""
    found = ctx.cluster.secrets(ctx.namespace, KEY_PAIR_ID_LABEL)
    pairs = [pair for secret in found if (pair := _from_secret(secret)) is not None]
    return sorted(pairs, key=lambda pair: pair.name)


def by_name(ctx: Context, name: str) -> KeyPair | None:
    return next((pair for pair in all_in(ctx) if pair.name == name), None)


def by_id(ctx: Context, key_pair_id: str) -> KeyPair | None:
    return next((pair for pair in all_in(ctx) if pair.key_pair_id == key_pair_id), None)


def save(
    ctx: Context, name: str, public: key_material.PublicKey, key_tags: tags.Tags | None = None
) -> KeyPair:
    """Keep a new key pair, with its tags from the start; InvalidKeyPair.Duplicate when the
    name is taken."""
    key_pair_id = KEY_PAIR_PREFIX + secrets.token_hex(9)[:17]
    metadata: dict[str, Any] = {
        "name": _SECRET_NAME_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:40],
        "labels": {KEY_PAIR_ID_LABEL: key_pair_id},
    }
    if key_tags:
        metadata["annotations"] = {tags.TAGS_ANNOTATION: tags.encode(key_tags)}
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": metadata,
        "stringData": {
            "keyName": name,
            "keyType": public.key_type,
            "publicKey": public.openssh,
            "fingerprint": public.fingerprint,
        },
    }
    try:
        created = ctx.cluster.create_secret(ctx.namespace, body)
    except k8s_exceptions.ApiException as exc:
        if exc.status == 409:
            raise errors.Ec2Error(
                INVALID_KEY_PAIR_DUPLICATE, f"The keypair '{name}' already exists."
            ) from None
        raise
    made = _from_secret(created)
    if made is None:  # the apiserver gave back something else than it was given
        raise errors.Ec2Error(errors.INTERNAL_ERROR, "The key pair was not kept; try again.")
    return made


def write_tags(ctx: Context, pair: KeyPair, after: tags.Tags) -> bool:
    """Write ``after`` as the key pair's tags onto its Secret as it was read: an ApiException of
    409 when the Secret changed since; False when it is gone."""
    patch = {
        "metadata": {
            "resourceVersion": pair.resource_version,
            "annotations": {tags.TAGS_ANNOTATION: tags.encode(after)},
        }
    }
    return ctx.cluster.patch_secret(ctx.namespace, pair.secret_name, patch) is not None


def _from_secret(secret: dict[str, Any]) -> KeyPair | None:
    """The key pair a Secret holds; None when it is not a whole one (not ours to describe)."""
    meta = secret.get("metadata") or {}
    key_pair_id = str((meta.get("labels") or {}).get(KEY_PAIR_ID_LABEL) or "")
    if secret.get("type") != SECRET_TYPE or not ids.well_formed(key_pair_id, KEY_PAIR_PREFIX):
        return None
    fields = _decoded(secret)
    if fields is None:
        return None
    name, key_type = fields.get("keyName", ""), fields.get("keyType", "")
    public_key, fingerprint = fields.get("publicKey", ""), fields.get("fingerprint", "")
    if not (name and key_type in key_material.KEY_TYPES and public_key and fingerprint):
        return None
    return KeyPair(
        key_pair_id=key_pair_id,
        name=name,
        key_type=key_type,
        public_key=public_key,
        fingerprint=fingerprint,
        created=_timestamp(meta.get("creationTimestamp")),
        secret_name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        tags=tags.of_object(secret),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _decoded(secret: dict[str, Any]) -> dict[str, str] | None:
    # The apiserver answers with ``data``, base64 (``stringData`` is write-only).
    try:
        return {
            str(k): base64.b64decode(str(v)).decode() for k, v in (secret.get("data") or {}).items()
        }
    except (binascii.Error, UnicodeDecodeError):
        return None


def _timestamp(raw: Any) -> datetime.datetime | None:
    if isinstance(raw, datetime.datetime):
        return raw
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
