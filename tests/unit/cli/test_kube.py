import json

import pytest
import urllib3
import yaml
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import kube


def write_kubeconfig(path, current="one", namespaces=None):
    namespaces = namespaces or {"one": "ns-one", "two": None}
    contexts = []
    for name, namespace in namespaces.items():
        context = {"cluster": "c", "user": "u"}
        if namespace:
            context["namespace"] = namespace
        contexts.append({"name": name, "context": context})
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": contexts,
                "current-context": current,
            }
        )
    )
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return tmp_path


def test_the_namespace_is_the_flags_else_the_contexts_else_default(home):
    config = write_kubeconfig(home / "config")

    assert kube.connect(str(config), None, None).namespace == "ns-one"
    assert kube.connect(str(config), None, "mine").namespace == "mine"
    assert kube.connect(str(config), "two", None).namespace == "default"


def test_the_context_flag_chooses_the_server_and_namespace(home):
    config = write_kubeconfig(home / "config", namespaces={"one": "a", "two": "b"})

    cluster = kube.connect(str(config), "two", None)

    assert cluster.namespace == "b"
    assert cluster.server == "https://127.0.0.1:6443"


def test_kubeconfig_comes_from_the_env_list_then_home(home, monkeypatch):
    (home / ".kube").mkdir()
    write_kubeconfig(home / ".kube" / "config", namespaces={"one": "from-home"})
    assert kube.connect(None, None, None).namespace == "from-home"

    env_config = write_kubeconfig(home / "env-config", namespaces={"one": "from-env"})
    monkeypatch.setenv("KUBECONFIG", f"{home / 'missing'}:{env_config}")
    assert kube.kubeconfig_files(None) == str(env_config)
    assert kube.connect(None, None, None).namespace == "from-env"


def test_an_unknown_context_is_refused_in_kubectls_words(home):
    config = write_kubeconfig(home / "config")

    with pytest.raises(kube.CommandError) as raised:
        kube.connect(str(config), "nope", None)

    assert str(raised.value) == "error: context was not found for specified context: nope"


def test_a_missing_kubeconfig_file_is_an_error(home):
    with pytest.raises(kube.CommandError, match="stat /no/such: no such file or directory"):
        kube.connect("/no/such", None, None)


def test_without_any_kubeconfig_outside_a_pod_the_error_says_so(home, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    with pytest.raises(kube.CommandError, match="no kubeconfig file"):
        kube.connect(None, None, None)


def api_error(status, body):
    return k8s_exceptions.ApiException(status=status, reason="x", body=json.dumps(body))


def test_server_errors_read_as_kubectl_prints_them():
    not_found = api_error(
        404,
        {
            "kind": "Status",
            "status": "Failure",
            "reason": "NotFound",
            "message": 'instances.compute.kubenova.io "web-1" not found',
            "code": 404,
        },
    )

    assert kube.describe_error(not_found, "https://h:6443") == (
        'Error from server (NotFound): instances.compute.kubenova.io "web-1" not found'
    )


def test_an_error_without_a_status_body_still_names_its_reason():
    missing_crd = k8s_exceptions.ApiException(status=404, reason="Not Found")

    assert kube.describe_error(missing_crd, "") == (
        "Error from server (NotFound): the server could not find the requested resource"
    )


def test_a_refused_connection_reads_as_kubectls():
    refused = urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "Connection refused")
    )

    assert kube.describe_error(refused, "https://127.0.0.1:6443") == (
        "The connection to the server 127.0.0.1:6443 was refused - "
        "did you specify the right host or port?"
    )
