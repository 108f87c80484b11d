"""``kubectl nova ec2-credentials``: access keys of the EC2 API (``openstack ec2 credentials``).

``create`` makes a key for the namespace and prints the environment lines AWS tools read, so
``eval "$(kubectl nova ec2-credentials create)"`` is followed by ``aws ec2 describe-instances``
or a boto3 script, unchanged. ``list`` and ``delete`` manage the namespace's keys.

A key is a Secret in the namespace it acts in, labelled ``ec2.kubenova.io/access-key-id``
(what kubenova-ec2-api finds it by; the plugin speaks to the kube-apiserver only, so the
names are repeated here, and a unit test keeps them equal to the server's). Making one needs
the right to create Secrets there, and nothing else.

Where the EC2 API is: ``--endpoint``/``--region``/``--ca-bundle``, else the ConfigMap
``kube-public/kubenova-ec2-api`` (keys ``endpoint``, ``region`` and, for an HTTPS endpoint
signed by a private CA, ``ca.crt``), which the installation publishes for every user to read.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import os
import pathlib
import secrets
import shlex
import sys
from typing import Any, TextIO, cast
from urllib.parse import urlsplit

from kubernetes import client as k8s_client

from kubenova.cli import kube, output

ACCESS_KEY_LABEL = "ec2.kubenova.io/access-key-id"
ACCESS_KEY_ID_FIELD = "accessKeyId"
SECRET_ACCESS_KEY_FIELD = "secretAccessKey"
SECRET_TYPE = "kubenova.io/ec2-credentials"
SECRET_NAME_PREFIX = "ec2-credentials-"
ENDPOINT_CONFIGMAP_NAMESPACE = "kube-public"
ENDPOINT_CONFIGMAP_NAME = "kubenova-ec2-api"
#: Where a CA read from the ConfigMap is written, for AWS_CA_BUNDLE to name (a path).
CA_CACHE = pathlib.Path("~/.kube/cache/kubenova")
_ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TIMEOUT = (10.0, 60.0)


def new_access_key_id() -> str:
    """``AKIA`` and 16 random base32 characters: AWS's own shape of a long-term key id."""
    return "AKIA" + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    """40 random characters, as AWS's secret keys have (240 bits)."""
    return secrets.token_urlsafe(30)


def secret_body(access_key_id: str, secret_access_key: str) -> dict[str, Any]:
    def encoded(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": SECRET_NAME_PREFIX + access_key_id.lower(),
            "labels": {
                ACCESS_KEY_LABEL: access_key_id,
                "app.kubernetes.io/managed-by": "kubectl-nova",
            },
        },
        "data": {
            ACCESS_KEY_ID_FIELD: encoded(access_key_id),
            SECRET_ACCESS_KEY_FIELD: encoded(secret_access_key),
        },
    }


def environment_lines(
    access_key_id: str,
    secret_access_key: str,
    region: str,
    endpoint: str,
    ca_bundle: str | None,
) -> str:
    """The ``export`` lines of ``create``, quoted for a POSIX shell's eval."""
    values = [
        ("AWS_ACCESS_KEY_ID", access_key_id),
        ("AWS_SECRET_ACCESS_KEY", secret_access_key),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_ENDPOINT_URL_EC2", endpoint),
    ]
    if ca_bundle:
        values.append(("AWS_CA_BUNDLE", ca_bundle))
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values)


def _endpoint(cluster: kube.Cluster, options: argparse.Namespace) -> tuple[str, str, str | None]:
    """(endpoint, region, CA bundle path or None) from the flags, else the ConfigMap."""
    published: dict[str, str] = {}
    if not (options.endpoint and options.region):
        published = _published(cluster)
    endpoint = options.endpoint or published.get("endpoint", "")
    region = options.region or published.get("region", "")
    if not endpoint or not region:
        raise kube.CommandError(
            "error: where the EC2 API is is not known: give --endpoint and --region, or ask the"
            f" administrator to publish the ConfigMap {ENDPOINT_CONFIGMAP_NAMESPACE}/"
            f"{ENDPOINT_CONFIGMAP_NAME} (keys endpoint, region, ca.crt)"
        )
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise kube.CommandError(f"error: --endpoint must be an http(s) URL, not {endpoint!r}")
    ca_bundle: str | None = None
    if urlsplit(endpoint).scheme == "https":
        if options.ca_bundle:
            ca_bundle = os.path.abspath(os.path.expanduser(options.ca_bundle))
        elif published.get("ca.crt"):
            ca_bundle = str(_cache_ca(published["ca.crt"]))
    return endpoint, region, ca_bundle


def _published(cluster: kube.Cluster) -> dict[str, str]:
    core = k8s_client.CoreV1Api(cluster.api)
    try:
        found: Any = core.read_namespaced_config_map(
            ENDPOINT_CONFIGMAP_NAME, ENDPOINT_CONFIGMAP_NAMESPACE, _request_timeout=_TIMEOUT
        )
    except k8s_client.exceptions.ApiException as exc:
        if exc.status in (403, 404):
            return {}
        raise
    return dict(cast(dict[str, str], found.data or {}))


def _cache_ca(pem: str) -> pathlib.Path:
    """Write the CA where AWS_CA_BUNDLE can name it; named by its digest, so each CA once."""
    folder = CA_CACHE.expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ec2-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
    if not path.exists():
        path.write_text(pem)
    return path


def run_create(cluster: kube.Cluster, options: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    endpoint, region, ca_bundle = _endpoint(cluster, options)
    access_key_id, secret_access_key = new_access_key_id(), new_secret_access_key()
    # The client takes a plain dict for a body as well as its V1Secret.
    body: Any = secret_body(access_key_id, secret_access_key)
    k8s_client.CoreV1Api(cluster.api).create_namespaced_secret(
        cluster.namespace, body, _request_timeout=_TIMEOUT
    )
    print(
        environment_lines(access_key_id, secret_access_key, region, endpoint, ca_bundle), file=out
    )
    return 0


def _key_secrets(cluster: kube.Cluster, access_key_id: str | None = None) -> list[Any]:
    selector = f"{ACCESS_KEY_LABEL}={access_key_id}" if access_key_id else ACCESS_KEY_LABEL
    found: Any = k8s_client.CoreV1Api(cluster.api).list_namespaced_secret(
        cluster.namespace, label_selector=selector, _request_timeout=_TIMEOUT
    )
    return list(found.items or [])


def run_list(cluster: kube.Cluster, options: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    found = _key_secrets(cluster)
    if not found:
        print(f"No EC2 credentials found in {cluster.namespace} namespace.", file=sys.stderr)
        return 0
    rows = [
        (
            (item.metadata.labels or {}).get(ACCESS_KEY_LABEL),
            item.metadata.name,
            _created(item.metadata.creation_timestamp),
        )
        for item in sorted(found, key=lambda item: str(item.metadata.creation_timestamp))
    ]
    print(output.table(["ACCESS KEY ID", "SECRET", "CREATED"], rows), file=out)
    return 0


def _created(moment: Any) -> str:
    if isinstance(moment, datetime.datetime):
        return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return output.cell(moment)


def run_delete(cluster: kube.Cluster, options: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    found = _key_secrets(cluster, options.access_key_id)
    if not found:
        raise kube.CommandError(
            f'Error from server (NotFound): ec2-credentials "{options.access_key_id}" not found'
            f" in namespace {cluster.namespace}"
        )
    core = k8s_client.CoreV1Api(cluster.api)
    for item in found:
        core.delete_namespaced_secret(
            item.metadata.name, cluster.namespace, _request_timeout=_TIMEOUT
        )
    print(f"ec2-credentials {options.access_key_id} deleted", file=out)
    return 0


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "ec2-credentials",
        parents=common,
        help="access keys of the EC2 API (create, list, delete)",
        description=(
            "Access keys of Kubenova's EC2-compatible API, one namespace each. "
            "'create' prints the environment lines of AWS tools:\n"
            '  eval "$(kubectl nova ec2-credentials create -n prod)"\n'
            "  aws ec2 describe-instances"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="ec2_credentials", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        parents=common,
        help="make an access key for the namespace and print its environment lines",
    )
    create.add_argument("--endpoint", help="the EC2 API's URL (default: as published)")
    create.add_argument("--region", help="the EC2 API's region (default: as published)")
    create.add_argument(
        "--ca-bundle",
        metavar="PATH",
        help="the CA file of an HTTPS endpoint, for AWS_CA_BUNDLE (default: as published)",
    )
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", parents=common, help="the namespace's access keys")
    listing.set_defaults(run=run_list)
    delete = actions.add_parser("delete", parents=common, help="delete an access key")
    delete.add_argument("access_key_id", metavar="ACCESS_KEY_ID")
    delete.set_defaults(run=run_delete)
