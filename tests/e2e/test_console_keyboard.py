"""Keystrokes typed in a browser's console page reach a real guest that the agent booted.

An Instance created through the kube-apiserver boots the tiny guest (hack/guest) on this host's
libvirtd; a user's ``kubectl nova vnc NAME --url`` (and ``spice``) asks the real kube-apiserver,
which hands the request to ``kubenova-subresources`` (run here, behind its APIService); the URL
opens in Debian's Chromium (Playwright with ``executable_path``) through the real console proxy
(over HTTPS, VNC and SPICE to QEMU over TLS with the cluster's CA; SPICE's password given by
the proxy, never by the browser). Once the canvas shows the
guest's screen, Playwright types a line of its own; the guest copies each line typed on its
first virtual terminal to its serial console (``kubenova-guest: typed=<line>``), which the
host writes to the instance directory's ``console.log``. Screenshots are kept under
``$KUBENOVA_STATE/artifacts/<test>``; docs/images/console-novnc.png is the noVNC one.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright import sync_api

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.console import spice_ticket
from kubenova.console.proxy import server as proxy_server
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from tests.e2e.conftest import (
    HOST,
    ROOT,
    STATE,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)
from tests.e2e.console_browser_support import (
    CANVAS_SHOWS_SCREEN,
    console_url,
    served_subresources,
    wait_for_console_line,
    write_proxy_x509_dir,
)
from tests.integration.console.proxy_support import running_proxy

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)
# Ports of this module: the console proxy and kubenova-subresources.
PROXY_PORT = 16104
SUBRESOURCES_PORT = 16102
PROXY_URL = f"https://127.0.0.1:{PROXY_PORT}"
GUEST = "kbd-guest"
READY = "kubenova-guest: ready"
# Under TCG a keystroke takes a moment to reach the guest; typing slower than a person does
# keeps none of them from being dropped.
KEY_DELAY_MS = 60


@pytest.fixture(scope="module")
def session_factory(stack: dict[str, str]) -> Iterator[db_engine.SessionFactory]:
    """The stack's own database: where the agent recorded the guest's console ports."""
    engine = db_engine.create_engine(stack["KUBENOVA_DB_URL"])
    try:
        yield db_engine.make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def guest(stack: dict[str, str]) -> Iterator[tuple[str, pathlib.Path]]:
    """A tiny guest booted to ``ready`` in a namespace of this module's own; yields the
    namespace and the guest's console log."""
    namespace = f"e2e-kbd-{uuidlib.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    try:
        apply(flavor_manifest("e2e-nano", 1, 128, 1))
        apply(instance_manifest(GUEST, namespace, "e2e-nano"))
        uid = wait_for(
            "the Instance to be Running",
            lambda: (
                (obj := get("instances", GUEST, namespace) or {}).get("status", {}).get("phase")
                == "Running"
                and obj["metadata"]["uid"]
            ),
            timeout=180,
        )
        console_log = INSTANCES_PATH / uid / "console.log"
        wait_for_console_line(console_log, READY, timeout=120)
        yield namespace, console_log
    finally:
        kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=90s", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def subresources(
    session_factory: db_engine.SessionFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    with served_subresources(
        session_factory, PROXY_URL, SUBRESOURCES_PORT, tmp_path_factory.mktemp("subresources")
    ):
        yield


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The pages as hack/console/assets.sh installs them (cached after the first run)."""
    directory = tmp_path_factory.mktemp("web") / "web"
    cache = STATE / "console" / "web"
    subprocess.run([str(ROOT / "hack/console/assets.sh"), str(cache)], check=True)
    shutil.copytree(cache, directory)
    return directory


@pytest.fixture(scope="module")
def proxy(
    session_factory: db_engine.SessionFactory,
    web_dir: pathlib.Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[proxy_server.ConsoleProxyServer]:
    """The console proxy, serving HTTPS with a certificate of its own (the browser is told to
    accept it) and reaching QEMU with a client certificate from the cluster's CA."""
    directory = tmp_path_factory.mktemp("proxy")
    serving_ca = authority.issue_ca("kubenova-console-e2e-serving-ca")
    serving = console_certs.issue_host_cert(serving_ca, "localhost", ["127.0.0.1"])
    (directory / "serving-cert.pem").write_bytes(serving.cert_pem())
    (directory / "serving-key.pem").write_bytes(serving.key_pem())
    settings = proxy_settings.ProxySettings(
        listen_host="127.0.0.1",
        listen_port=PROXY_PORT,
        tls_cert_file=directory / "serving-cert.pem",
        tls_key_file=directory / "serving-key.pem",
        x509_dir=write_proxy_x509_dir(directory / "x509"),
        web_dir=web_dir,
        # The agent gives every guest's SPICE a password from this key (hack/lib/env.sh).
        spice_ticket_key=spice_ticket.read_key(
            os.environ["KUBENOVA_SPICE_TICKET_KEY_FILE"], "KUBENOVA_SPICE_TICKET_KEY_FILE"
        ),
    )
    with running_proxy(settings, session_factory) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: hack/services.sh installs it", pytrace=False)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> pathlib.Path:
    directory: pathlib.Path = STATE / "artifacts" / str(request.node.name)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _type_and_prove(
    page: sync_api.Page, canvas: str, console_log: pathlib.Path, artifacts: pathlib.Path
) -> str:
    """Type a line of its own into the console's canvas and wait for the guest to say it read
    it; returns the line. Screenshots before typing and after the guest answered."""
    page.wait_for_function(CANVAS_SHOWS_SCREEN, arg=canvas, timeout=60_000)
    page.screenshot(path=str(artifacts / "before.png"))
    line = f"hello from chromium {uuidlib.uuid4().hex[:8]}"
    # A click gives the canvas the keyboard focus, as a user's click does.
    page.click(canvas)
    page.keyboard.type(line, delay=KEY_DELAY_MS)
    page.keyboard.press("Enter")
    wait_for_console_line(console_log, f"kubenova-guest: typed={line}", timeout=60)
    # The guest shows the line on its screen as it prints it on the serial console; the
    # picture reaches the page a moment later.
    page.wait_for_timeout(2000)
    page.screenshot(path=str(artifacts / "typed.png"))
    return line


def test_keys_typed_in_novnc_reach_the_guest(
    stack: dict[str, str],
    guest: tuple[str, pathlib.Path],
    subresources: None,
    proxy: proxy_server.ConsoleProxyServer,
    browser: sync_api.Browser,
    artifacts: pathlib.Path,
) -> None:
    namespace, console_log = guest
    url = console_url(stack, namespace, GUEST, "vnc")
    assert url.startswith(f"{PROXY_URL}/vnc.html?")

    context = browser.new_context(ignore_https_errors=True, viewport={"width": 800, "height": 480})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.state === 'connected'", timeout=60_000)
        _type_and_prove(page, "#screen canvas", console_log, artifacts)
    finally:
        context.close()
    assert (artifacts / "typed.png").stat().st_size > 0


def test_keys_typed_in_spice_html5_reach_the_guest(
    stack: dict[str, str],
    guest: tuple[str, pathlib.Path],
    subresources: None,
    proxy: proxy_server.ConsoleProxyServer,
    browser: sync_api.Browser,
    artifacts: pathlib.Path,
) -> None:
    namespace, console_log = guest
    url = console_url(stack, namespace, GUEST, "spice")
    assert url.startswith(f"{PROXY_URL}/spice/spice_auto.html?")

    context = browser.new_context(ignore_https_errors=True, viewport={"width": 800, "height": 480})
    try:
        page = context.new_page()
        page.goto(url)
        _type_and_prove(page, "#spice-screen canvas", console_log, artifacts)
    finally:
        context.close()
    assert (artifacts / "typed.png").stat().st_size > 0


def test_the_guest_was_placed_on_this_host(
    guest: tuple[str, pathlib.Path], session_factory: db_engine.SessionFactory
) -> None:
    """The consoles above are those of the guest on this host's libvirtd, not of a stand-in."""
    namespace, console_log = guest
    uid = console_log.parent.name
    with db_engine.transaction(session_factory) as session:
        row = session.execute(
            sa.text("SELECT host, vnc_port, spice_tls_port FROM instances WHERE uuid = :u"),
            {"u": uid},
        ).one()
    assert row.host == HOST
    assert row.vnc_port is not None
    assert row.spice_tls_port is not None
    assert (get("instances", GUEST, namespace) or {})["status"]["host"] == HOST
