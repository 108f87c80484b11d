"""``kubectl nova console NAME`` in a real terminal, on a guest the agent booted.

An Instance created through the kube-apiserver boots the tiny guest on this host's libvirtd,
its first serial port a unix socket in its instance directory. The agent (restarted here with
its serial console server on a port of this module's own, with the host's QEMU console
certificate) serves it over TLS; ``kubenova-subresources``, run here behind its APIService,
reaches it with the console proxy's client certificate from the cluster's CA. The verb runs in
tmux, as a person runs it: it connects, a line typed is answered by the guest's root shell,
the agent's death is reported and the console comes back once the agent is up again, and
Ctrl-] leaves with exit status 0.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import shlex
import subprocess
import uuid as uuidlib
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client

from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from kubenova.k8s import client as kube
from kubenova.subresources import app, cmd, consoleurl, serial, server, streams
from tests.e2e.conftest import (
    AGENT,
    HOST,
    KUBECONFIG,
    KUBECTL,
    STATE,
    api_configuration,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)
from tests.e2e.console_browser_support import (
    registered_apiservice,
    wait_for_console_line,
    write_proxy_x509_dir,
)
from tests.support.subresources_tls import write_subresources_tls

pytestmark = pytest.mark.e2e

INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)
# Ports of this module: the agent's serial console server and kubenova-subresources.
SERIAL_PORT = 16106
SUBRESOURCES_PORT = 16107
GUEST = "serial-guest"
READY = "kubenova-guest: ready"
CONNECTED = f"Connected to {GUEST} (escape character is ^])"


@pytest.fixture(scope="module")
def session_factory(stack: dict[str, str]) -> Iterator[db_engine.SessionFactory]:
    engine = db_engine.create_engine(stack["KUBENOVA_DB_URL"])
    try:
        yield db_engine.make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def agent_with_serial_consoles(stack: dict[str, str]) -> Iterator[None]:
    """The stack's agent, started again with its serial console server on
    :data:`SERIAL_PORT` and the host's QEMU console certificate (hack/lib/console_tls.sh)."""
    x509_dir = STATE / "console-pki" / "hosts" / HOST
    if not (x509_dir / "server-cert.pem").exists():
        pytest.fail(f"{x509_dir} has no host certificate: run hack/services.sh libvirt-up")
    original = dict(AGENT.env)
    AGENT.stop()
    AGENT.start(
        dict(
            original,
            KUBENOVA_SERIAL_CONSOLE_PORT=str(SERIAL_PORT),
            KUBENOVA_SERIAL_CONSOLE_X509_DIR=str(x509_dir),
        )
    )
    try:
        yield
    finally:
        AGENT.stop()
        AGENT.start(original)


@pytest.fixture(scope="module")
def guest(stack: dict[str, str], agent_with_serial_consoles: None) -> Iterator[tuple[str, str]]:
    """The tiny guest booted to ``ready``; yields its namespace and uuid."""
    namespace = f"e2e-serial-{uuidlib.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    try:
        apply(flavor_manifest("e2e-nano", 1, 128, 1))
        # On this host: the stack may have other hosts (a second libvirtd, simulated ones).
        apply(instance_manifest(GUEST, namespace, "e2e-nano", forcedHost=HOST))
        uid: str = wait_for(
            "the Instance to be Running",
            lambda: (
                (obj := get("instances", GUEST, namespace) or {}).get("status", {}).get("phase")
                == "Running"
                and obj["metadata"]["uid"]
            ),
            timeout=180,
        )
        wait_for_console_line(INSTANCES_PATH / uid / "console.log", READY, timeout=150)
        yield namespace, uid
    finally:
        kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=90s", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def subresources(
    session_factory: db_engine.SessionFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """``kubenova-subresources`` with ``instances/console`` wired as cmd.py wires it, behind
    its APIService."""
    tls_dir = tmp_path_factory.mktemp("subresources")
    tls = write_subresources_tls(tls_dir, "kn-subresources-serial")
    api_client = k8s_client.ApiClient(api_configuration())
    request_headers = cmd.read_request_header_config(api_client)
    reader = kube.KubeClient(api_client)
    urls = consoleurl.ConsoleUrls(reader, session_factory, "https://127.0.0.1:1", 600)
    x509 = proxy_settings.ProxySettings(x509_dir=write_proxy_x509_dir(tls_dir / "x509"))
    stream_subresources = serial.with_console(
        streams.Streams(request_headers, {}),
        request_headers,
        reader,
        session_factory,
        x509,
        SERIAL_PORT,
    )
    running = server.serve(
        app.App(request_headers, urls),
        tls.context(request_headers.client_ca_pem),
        "0.0.0.0",
        SUBRESOURCES_PORT,
        stream_subresources,
    )
    try:
        with registered_apiservice(tls.system, SUBRESOURCES_PORT, tls.ca.cert_pem()):
            yield
    finally:
        running.stop()


class Terminal:
    """A tmux session of its own (its own server socket), 200 columns wide."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.socket = f"kn-serial-{uuidlib.uuid4().hex[:8]}"
        self.env = env
        self._tmux("new-session", "-d", "-s", "console", "-x", "200", "-y", "50", command)

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
            timeout=30,
        )
        return result.stdout

    def type(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "console", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", "console", "-S", "-2000")

    def wait_for(self, text: str, timeout: float, count: int = 1) -> str:
        screen: str = wait_for(
            f"{text!r} (x{count}) on the terminal",
            lambda: (shown := self.screen()).count(text) >= count and shown,
            timeout=timeout,
            interval=0.5,
        )
        return screen

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._tmux("kill-server")


def _answered(terminal: Terminal, count: int) -> str:
    """Type a sum on the guest's shell and wait for its total: only the shell's answer holds
    it (the line typed holds the sum)."""
    number = random.randrange(10_000, 1_000_000)
    terminal.type(f"echo hello-$(({number}+1))", "Enter")
    return terminal.wait_for(f"hello-{number + 1}", timeout=60, count=count)


def test_a_user_types_on_the_serial_console_through_drops_until_ctrl_right_bracket(
    stack: dict[str, str], guest: tuple[str, str], subresources: None
) -> None:
    namespace, _ = guest
    env = dict(stack, KUBECONFIG=str(KUBECONFIG))
    verb = shlex.join([str(KUBECTL), "nova", "console", GUEST, "-n", namespace])
    # The exit status stays on the screen after the verb ends.
    terminal = Terminal(f"{verb}; echo EXIT=$?; sleep 600", env)
    try:
        terminal.wait_for(CONNECTED, timeout=60)
        # The guest's shell answers on the serial console.
        terminal.type("Enter")
        _answered(terminal, count=1)

        # The host's agent dies: the verb says the console dropped and keeps trying.
        AGENT.kill()
        screen = terminal.wait_for("dropped", timeout=60)
        assert f"The console of {GUEST} dropped" in screen
        terminal.wait_for("retrying in", timeout=60)
        assert "EXIT=" not in terminal.screen()

        # Back up: connected again, and the shell still answers.
        AGENT.restart()
        terminal.wait_for(CONNECTED, timeout=120, count=2)
        terminal.type("Enter")
        _answered(terminal, count=1)

        terminal.type("C-]")
        screen = terminal.wait_for("EXIT=", timeout=30)
        assert "EXIT=0" in screen, screen[-2000:]
        assert f"Left the console of {GUEST}." in screen
    finally:
        print(terminal.screen()[-4000:])
        terminal.close()


def test_an_instance_that_does_not_exist_is_refused_with_exit_status_1(
    stack: dict[str, str], guest: tuple[str, str], subresources: None
) -> None:
    namespace, _ = guest
    result = subprocess.run(
        [str(KUBECTL), "nova", "console", "no-such-guest", "-n", namespace],
        capture_output=True,
        text=True,
        env=dict(stack, KUBECONFIG=str(KUBECONFIG)),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result
    assert '"no-such-guest" not found' in result.stderr
