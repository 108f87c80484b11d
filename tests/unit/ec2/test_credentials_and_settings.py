"""The plugin's access keys as the server reads them, the lines ``create`` prints, and the
server's settings."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess

import pytest
from kubernetes import client as k8s_client

from kubenova.cli import ec2_credentials, kubectl_nova
from kubenova.ec2 import keys, settings


def test_the_plugin_writes_keys_where_and_as_the_server_finds_them():
    assert ec2_credentials.ACCESS_KEY_LABEL == keys.ACCESS_KEY_LABEL
    key_id, secret = ec2_credentials.new_access_key_id(), ec2_credentials.new_secret_access_key()
    body = ec2_credentials.secret_body(key_id, secret)
    assert body["metadata"]["labels"][keys.ACCESS_KEY_LABEL] == key_id
    stored = k8s_client.V1Secret(
        metadata=k8s_client.V1ObjectMeta(name=body["metadata"]["name"], namespace="team-a"),
        data=body["data"],
    )
    assert keys.from_secret(stored) == keys.AccessKey(key_id, secret, "team-a")


def test_key_ids_have_awss_shape_and_secrets_are_not_repeated():
    key_ids = {ec2_credentials.new_access_key_id() for _ in range(50)}
    assert len(key_ids) == 50
    assert all(re.fullmatch(r"AKIA[A-Z2-7]{16}", key_id) for key_id in key_ids)
    assert all(keys.ACCESS_KEY_ID_PATTERN.match(key_id) for key_id in key_ids)
    assert len(ec2_credentials.new_secret_access_key()) == 40


def test_a_secret_without_a_whole_key_is_no_key():
    empty = k8s_client.V1Secret(metadata=k8s_client.V1ObjectMeta(namespace="x"), data={})
    assert keys.from_secret(empty) is None


def test_environment_lines_are_what_a_shell_evals():
    lines = ec2_credentials.environment_lines(
        "AKIAAAAAAAAAAAAAAAAA", "s3cr/t+'x", "kubenova", "https://ec2.example:8788", "/tmp/ca.pem"
    )
    evaluated = subprocess.run(
        ["sh", "-c", f"{lines}\nenv"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "AWS_SECRET_ACCESS_KEY=s3cr/t+'x" in evaluated
    assert "AWS_ENDPOINT_URL_EC2=https://ec2.example:8788" in evaluated
    assert "AWS_DEFAULT_REGION=kubenova" in evaluated
    assert "AWS_CA_BUNDLE=/tmp/ca.pem" in evaluated
    plain = ec2_credentials.environment_lines("A", "B", "r", "http://h:1", None)
    assert "AWS_CA_BUNDLE" not in plain
    assert shlex.split(plain.splitlines()[0]) == ["export", "AWS_ACCESS_KEY_ID=A"]


def test_the_verbs_parse_with_the_namespace_after_them():
    parser = kubectl_nova.build_parser()
    options = parser.parse_args(
        ["ec2-credentials", "create", "-n", "team-a", "--endpoint", "http://h:1", "--region", "r"]
    )
    assert (options.namespace, options.endpoint, options.run) == (
        "team-a",
        "http://h:1",
        ec2_credentials.run_create,
    )
    deleting = parser.parse_args(["ec2-credentials", "delete", "AKIAAAAAAAAAAAAAAAAA"])
    assert deleting.access_key_id == "AKIAAAAAAAAAAAAAAAAA"
    with pytest.raises(SystemExit):
        parser.parse_args(["ec2-credentials"])


def test_settings_from_the_environment():
    assert settings.Ec2Settings.from_env({}) == settings.Ec2Settings()
    tls = settings.Ec2Settings.from_env(
        {"KUBENOVA_EC2_TLS_CERT": "/c", "KUBENOVA_EC2_TLS_KEY": "/k", "KUBENOVA_EC2_PORT": "9000"}
    )
    assert tls.tls
    assert tls.endpoint(9000) == "https://localhost:9000"
    public = settings.Ec2Settings(public_url="https://ec2.example.com")
    assert public.endpoint(8788) == "https://ec2.example.com"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KUBENOVA_EC2_TLS_CERT": "/c"}, "KUBENOVA_EC2_TLS_KEY"),
        ({"KUBENOVA_EC2_PORT": "http"}, "KUBENOVA_EC2_PORT"),
        ({"KUBENOVA_EC2_PORT": "70000"}, "KUBENOVA_EC2_PORT"),
        ({"KUBENOVA_EC2_REGION": "Region One"}, "KUBENOVA_EC2_REGION"),
        ({"KUBENOVA_EC2_PUBLIC_URL": "ec2.example.com"}, "KUBENOVA_EC2_PUBLIC_URL"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(ValueError, match=named):
        settings.Ec2Settings.from_env(env)


def test_create_without_a_known_endpoint_says_what_to_give(monkeypatch):
    monkeypatch.setattr(ec2_credentials, "_published", lambda cluster: {})
    options = argparse.Namespace(endpoint=None, region=None, ca_bundle=None)
    with pytest.raises(Exception, match="--endpoint and --region"):
        ec2_credentials.run_create(object(), options)  # type: ignore[arg-type]


class _Secrets:
    """CoreV1Api's list of Secrets across namespaces, answering from a list."""

    def __init__(self, secrets: list[k8s_client.V1Secret]) -> None:
        self.secrets = secrets
        self.selectors: list[str] = []

    def list_secret_for_all_namespaces(self, label_selector: str, **_: object):
        self.selectors.append(label_selector)
        key_id = label_selector.partition("=")[2]
        return k8s_client.V1SecretList(
            items=[
                s
                for s in self.secrets
                if s.metadata and (s.metadata.labels or {}).get(keys.ACCESS_KEY_LABEL) == key_id
            ]
        )


def _stored(namespace: str, key_id: str, secret: str) -> k8s_client.V1Secret:
    body = ec2_credentials.secret_body(key_id, secret)
    return k8s_client.V1Secret(
        metadata=k8s_client.V1ObjectMeta(
            name=body["metadata"]["name"], namespace=namespace, labels=body["metadata"]["labels"]
        ),
        data=body["data"],
    )


def test_the_server_finds_a_key_by_its_label_and_refuses_an_id_claimed_twice():
    core = _Secrets(
        [
            _stored("team-a", "AKIAAAAAAAAAAAAAAAAA", "a"),
            _stored("team-b", "AKIABBBBBBBBBBBBBBBB", "b"),
            _stored("team-c", "AKIABBBBBBBBBBBBBBBB", "c"),
        ]
    )
    lookup = keys.SecretKeys()
    lookup._core = core  # type: ignore[assignment]
    assert lookup("AKIAAAAAAAAAAAAAAAAA") == keys.AccessKey("AKIAAAAAAAAAAAAAAAAA", "a", "team-a")
    assert lookup("AKIABBBBBBBBBBBBBBBB") is None
    assert lookup("AKIACCCCCCCCCCCCCCCC") is None
    # An id that is not one is not put into a selector at all.
    assert lookup("AKIA,x!=y") is None
    assert core.selectors == [
        f"{keys.ACCESS_KEY_LABEL}=AKIAAAAAAAAAAAAAAAAA",
        f"{keys.ACCESS_KEY_LABEL}=AKIABBBBBBBBBBBBBBBB",
        f"{keys.ACCESS_KEY_LABEL}=AKIACCCCCCCCCCCCCCCC",
    ]
