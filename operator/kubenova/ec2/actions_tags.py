"""CreateTags, DeleteTags and DescribeTags, on the instances and key pairs of the access key's
namespace and on images (whose tags are the namespace's own; :mod:`tag_store` says where each is
kept)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from kubenova.ec2 import batch, errors, filters, paging, tag_store, tags
from kubenova.ec2.context import Context

LOG = logging.getLogger(__name__)

#: DescribeTags' filters, each read from one tag as described.
_FIELDS: dict[str, filters.Read] = {
    "resource-id": lambda tag: str(tag["ResourceId"]),
    "resource-type": lambda tag: str(tag["ResourceType"]),
    "key": lambda tag: str(tag["Key"]),
    "value": lambda tag: str(tag["Value"]),
}


def create_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    given = tags.parse(params.get("Tags"), "Tag", values_required=True)
    if not given:
        raise errors.missing("Tag")
    added = {key: value or "" for key, value in given.items()}

    def add(current: tags.Tags) -> tags.Tags:
        return {**current, **added}

    _change_all(ctx, params, add)
    return {}


def delete_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete the tags named (all of them when none is): a tag given with a value goes only
    while it has that value, one given without a value goes whatever its value."""
    given = tags.parse(params.get("Tags"), "Tag", values_required=False)
    if params.get("Tags") is None:
        _change_all(ctx, params, lambda current: {})
        return {}

    def remove(current: tags.Tags) -> tags.Tags:
        return {
            key: value
            for key, value in current.items()
            if key not in given or (given[key] is not None and given[key] != value)
        }

    _change_all(ctx, params, remove)
    return {}


def describe_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Every tag of the namespace's instances and key pairs and of the images it tagged, by
    resource and key, a page at a time (:mod:`paging`): a NextToken names the resource and key
    of the last tag of its page."""
    parsed = filters.parse(params.get("Filters"), _FIELDS)
    size = paging.page_size(params.get("MaxResults"))
    after = _after_token(params.get("NextToken"))
    resources = (
        tag_store.instances(ctx)
        + [image for image in tag_store.images(ctx) if image.tags]
        + tag_store.key_pair_resources(ctx)
    )
    described = [
        {
            "ResourceId": resource.resource_id,
            "ResourceType": resource.resource_type,
            "Key": key,
            "Value": value,
        }
        for resource in sorted(resources, key=lambda resource: resource.resource_id)
        for key, value in sorted(resource.tags.items())
        if after is None or (resource.resource_id, key) > after
    ]
    chosen = filters.chosen(described, parsed)
    output: dict[str, Any] = {}
    if size is not None and len(chosen) > size:
        chosen = chosen[:size]
        output["NextToken"] = paging.token_of((chosen[-1]["ResourceId"], chosen[-1]["Key"]))
    output["Tags"] = chosen
    return output


def _after_token(raw: Any) -> paging.Key | None:
    """The resource id and key a NextToken names; InvalidParameterValue naming NextToken when
    it is not one of ours."""
    if not raw:
        return None
    key = paging.key_of(str(raw), 2)
    if key is None:
        raise errors.invalid("NextToken", f"{raw!r} is not a token this server gave")
    return key


def _change_all(ctx: Context, params: dict[str, Any], how: tag_store.Change) -> None:
    resources = tag_store.resolve(ctx, [str(value) for value in params.get("Resources") or []])

    def check(resource: tag_store.Resource) -> None:
        # The limit as the tags are now; tag_store checks it again as they are when written.
        after = how(dict(resource.tags))
        if len(after) > len(resource.tags):
            tags.require_count(after, resource.resource_id)

    batch.check_all_then_apply(resources, check, functools.partial(tag_store.change, ctx, how=how))
    LOG.info("tags of %s changed in %s", [r.resource_id for r in resources], ctx.namespace)
