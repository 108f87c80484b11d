"""Snapshots in the chart: the image server takes uploads with a token the agents share, on a
volume of their own, and the operator knows where it is."""

from __future__ import annotations

from tests.unit.chart.chartlib import NAMESPACE, container, env_of, volumes_of

SERVER = "kubenova-image-server"
TOKEN_FILE = "/etc/kubenova/image-upload/upload-token"


def _mounts(spec):
    return {mount["name"]: mount for mount in spec.get("volumeMounts", [])}


def test_should_run_kubenova_image_server_with_the_upload_token(render) -> None:
    rendered = render()
    server = rendered.get("Deployment", SERVER)
    spec = container(server, "image-server")
    assert spec["args"] == [
        "--directory=/srv/images",
        "--bind=0.0.0.0",
        "--port=8080",
        f"--token-file={TOKEN_FILE}",
    ]
    mounts = _mounts(spec)
    assert mounts["upload-token"]["mountPath"] == "/etc/kubenova/image-upload"
    assert mounts["snapshots"]["mountPath"] == "/srv/images/snapshots"
    volumes = volumes_of(server)
    assert volumes["upload-token"]["secret"]["secretName"] == SERVER
    assert volumes["snapshots"] == {"name": "snapshots", "emptyDir": {}}
    secret = rendered.get("Secret", SERVER)
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert len(secret["stringData"]["upload-token"]) == 32


def test_should_keep_snapshots_on_the_claim_given(render) -> None:
    server = render({"imageServer": {"snapshots": {"existingClaim": "snapshots-pvc"}}}).get(
        "Deployment", SERVER
    )
    assert volumes_of(server)["snapshots"]["persistentVolumeClaim"] == {
        "claimName": "snapshots-pvc"
    }


def test_should_give_the_agents_the_token_and_a_place_for_their_copies(render) -> None:
    agent = render().get("DaemonSet", "kubenova-agent")
    spec = container(agent, "agent")
    env = env_of(spec)
    assert env["KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE"]["value"] == TOKEN_FILE
    assert env["KUBENOVA_SNAPSHOT_PATH"]["value"] == "/var/lib/kubenova/snapshots"
    assert _mounts(spec)["image-upload-token"]["readOnly"] is True
    assert volumes_of(agent)["image-upload-token"]["secret"]["secretName"] == SERVER


def test_should_tell_the_operator_where_the_image_server_is(render) -> None:
    operator = container(render().get("Deployment", "kubenova-operator"), "operator")
    assert env_of(operator)["KUBENOVA_IMAGE_SERVER_URL"]["value"] == (
        f"http://{SERVER}.{NAMESPACE}.svc:8080/"
    )


def test_should_leave_all_of_it_out_without_the_image_server(render) -> None:
    rendered = render({"imageServer": {"enabled": False}})
    assert rendered.find("Secret", SERVER) is None
    agent = rendered.get("DaemonSet", "kubenova-agent")
    assert "KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE" not in env_of(container(agent, "agent"))
    assert "image-upload-token" not in volumes_of(agent)
    operator = container(rendered.get("Deployment", "kubenova-operator"), "operator")
    assert "KUBENOVA_IMAGE_SERVER_URL" not in env_of(operator)
