"""CreateKeyPair, ImportKeyPair, DescribeKeyPairs and DeleteKeyPair, on the key pairs of the
access key's namespace (:mod:`key_pairs` keeps them; :mod:`key_material` does the
cryptography). RunInstances' KeyName reads them through :func:`authorized_key`."""

from __future__ import annotations

import logging
from typing import Any

from kubenova.ec2 import errors, filters, ids, key_material, key_pairs, tag_store, tags
from kubenova.ec2.context import Context

LOG = logging.getLogger(__name__)

#: DescribeKeyPairs' filters (besides the tag filters), read from each key pair as described.
_FIELDS: dict[str, filters.Read] = {
    "key-name": lambda info: str(info["KeyName"]),
    "key-pair-id": lambda info: str(info["KeyPairId"]),
    "fingerprint": lambda info: str(info["KeyFingerprint"]),
    "key-type": lambda info: str(info["KeyType"]),
}


def create_key_pair(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = str(params.get("KeyName") or "")
    key_pairs.require_name(name)
    key_type = str(params.get("KeyType") or key_material.RSA)
    if key_type not in key_material.KEY_TYPES:
        raise errors.invalid("KeyType", f"{key_type!r} is not one of rsa, ed25519")
    key_format = str(params.get("KeyFormat") or "pem")
    if key_format != "pem":
        raise errors.invalid("KeyFormat", f"only pem is served, not {key_format!r}")
    key_tags = tags.from_specifications(params.get("TagSpecifications"), tag_store.KEY_PAIR)
    made = key_material.create(key_type)
    saved = key_pairs.save(ctx, name, made.public, key_tags)
    LOG.info("CreateKeyPair made %s in %s as %s", name, ctx.namespace, saved.key_pair_id)
    return {
        "KeyName": saved.name,
        "KeyPairId": saved.key_pair_id,
        "KeyFingerprint": saved.fingerprint,
        "KeyMaterial": made.private_pem,
        "Tags": tags.as_output(saved.tags),
    }


def import_key_pair(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = str(params.get("KeyName") or "")
    key_pairs.require_name(name)
    material = params.get("PublicKeyMaterial")
    if not isinstance(material, bytes) or not material:
        raise errors.missing("PublicKeyMaterial")
    key_tags = tags.from_specifications(params.get("TagSpecifications"), tag_store.KEY_PAIR)
    try:
        public = key_material.import_openssh(material)
    except key_material.KeyFormatError as refused:
        raise errors.Ec2Error(
            key_pairs.INVALID_KEY_FORMAT,
            f"Key is not in valid OpenSSH public key format: {refused}",
        ) from None
    saved = key_pairs.save(ctx, name, public, key_tags)
    LOG.info("ImportKeyPair kept %s in %s as %s", name, ctx.namespace, saved.key_pair_id)
    return {
        "KeyName": saved.name,
        "KeyPairId": saved.key_pair_id,
        "KeyFingerprint": saved.fingerprint,
        "Tags": tags.as_output(saved.tags),
    }


def describe_key_pairs(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    names = [str(value) for value in params.get("KeyNames") or []]
    key_pair_ids = [str(value) for value in params.get("KeyPairIds") or []]
    parsed = filters.parse(params.get("Filters"), _FIELDS, tag_filters=True)
    every = key_pairs.all_in(ctx)
    known_names = {pair.name for pair in every}
    known_ids = {pair.key_pair_id for pair in every}
    missing = [value for value in names if value not in known_names]
    missing += [value for value in key_pair_ids if value not in known_ids]
    if missing:
        raise key_pairs.not_found(missing[0])
    include_public = bool(params.get("IncludePublicKey"))
    described = [
        _info(pair, include_public)
        for pair in every
        if (not names or pair.name in names)
        and (not key_pair_ids or pair.key_pair_id in key_pair_ids)
    ]
    return {"KeyPairs": filters.chosen(described, parsed)}


def delete_key_pair(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete by KeyName or KeyPairId. A name that names no key pair succeeds, as on EC2 (a
    delete is done once the key is gone); so does an id of the right shape."""
    name = str(params.get("KeyName") or "")
    key_pair_id = str(params.get("KeyPairId") or "")
    if not name and not key_pair_id:
        raise errors.missing("KeyName")
    if key_pair_id and not ids.well_formed(key_pair_id, key_pairs.KEY_PAIR_PREFIX):
        raise key_pairs.not_found(key_pair_id)
    for pair in key_pairs.all_in(ctx):
        if (name and pair.name != name) or (key_pair_id and pair.key_pair_id != key_pair_id):
            continue
        ctx.cluster.delete_secret(ctx.namespace, pair.secret_name, pair.uid)
        LOG.info("DeleteKeyPair deletes %s in %s", pair.name, ctx.namespace)
        return {"Return": True, "KeyPairId": pair.key_pair_id}
    return {"Return": True}


def authorized_key(ctx: Context, name: str) -> str:
    """The authorized-key line of the key pair ``name``, for RunInstances' KeyName;
    InvalidKeyPair.NotFound when the namespace has no such key pair."""
    key_pairs.require_name(name)
    pair = key_pairs.by_name(ctx, name)
    if pair is None:
        raise key_pairs.not_found(name)
    return pair.authorized_key()


def _info(pair: key_pairs.KeyPair, include_public: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "KeyPairId": pair.key_pair_id,
        "KeyName": pair.name,
        "KeyFingerprint": pair.fingerprint,
        "KeyType": pair.key_type,
        "Tags": tags.as_output(pair.tags),
        "CreateTime": pair.created,
    }
    if include_public:
        info["PublicKey"] = pair.authorized_key()
    return info
