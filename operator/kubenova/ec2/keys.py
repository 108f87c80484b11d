"""Access keys of the EC2 API, kept as Kubernetes Secrets in the namespace they act in.

A key is a Secret labelled ``ec2.kubenova.io/access-key-id=<id>`` holding ``accessKeyId`` and
``secretAccessKey``; ``kubectl nova ec2-credentials create`` writes it. The namespace a key acts
in is the namespace of its Secret, never something the Secret says: whoever may write Secrets
in a namespace may make keys for it and for no other, with Kubernetes' own RBAC, and deleting
the namespace takes its keys with it (docs/ec2.md says why not one central namespace).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
from typing import Any, cast

from kubernetes import client as k8s_client

LOG = logging.getLogger(__name__)

#: The label that marks a Secret as an EC2 access key, its value the access key id.
ACCESS_KEY_LABEL = "ec2.kubenova.io/access-key-id"
ACCESS_KEY_ID_FIELD = "accessKeyId"
SECRET_ACCESS_KEY_FIELD = "secretAccessKey"
#: What an access key id looks like (AWS's own shape: 20 upper-case letters and digits), checked
#: before the id goes into a label selector.
ACCESS_KEY_ID_PATTERN = re.compile(r"^[A-Z0-9]{16,128}$")


@dataclasses.dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)
    #: The namespace the key acts in: its Secret's.
    namespace: str


class SecretKeys:
    """Finds an access key by its id among the labelled Secrets of every namespace."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._core = k8s_client.CoreV1Api(api_client)

    def __call__(self, access_key_id: str) -> AccessKey | None:
        if not ACCESS_KEY_ID_PATTERN.match(access_key_id):
            return None
        found = self._core.list_secret_for_all_namespaces(
            label_selector=f"{ACCESS_KEY_LABEL}={access_key_id}", _request_timeout=(5.0, 15.0)
        )
        keys = [key for item in found.items if (key := from_secret(item)) is not None]
        matching = [key for key in keys if key.access_key_id == access_key_id]
        if len(matching) > 1:
            # Two namespaces claiming one id: trust neither rather than pick one.
            LOG.warning("access key %s is in %d Secrets; refused", access_key_id, len(matching))
            return None
        return matching[0] if matching else None


def from_secret(secret: Any) -> AccessKey | None:
    """The key a Secret (the client's V1Secret) holds; None when it is not a whole key."""
    data = cast(dict[str, str], secret.data or {})
    try:
        key_id = base64.b64decode(data.get(ACCESS_KEY_ID_FIELD, "")).decode()
        secret_key = base64.b64decode(data.get(SECRET_ACCESS_KEY_FIELD, "")).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not key_id or not secret_key:
        return None
    return AccessKey(key_id, secret_key, str(secret.metadata.namespace))
