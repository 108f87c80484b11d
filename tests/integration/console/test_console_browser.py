"""A real Chromium opens Kubenova's noVNC page through the proxy (served over TLS) and shows
the guest's screen: the page spends the token, its websocket goes in on the session cookie,
VNC reaches QEMU over VeNCrypt/TLS, and the canvas fills with what the guest draws.

Debian's chromium, driven by Playwright (``executable_path``): Playwright's own browser
download is not used. The screenshot is kept under ``$KUBENOVA_STATE/artifacts``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from playwright import sync_api

from kubenova.console import auth
from kubenova.console.proxy import server as proxy_server
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from tests.integration.console.helpers import instance_on, report_console_ports
from tests.integration.console.proxy_support import (
    HOST,
    PROXY_PORT,
    X509,
    make_x509,
    qemu_with_tls_vnc,
    running_proxy,
)

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ROOT = pathlib.Path(__file__).resolve().parents[3]

# True once the noVNC canvas holds a pixel that is not black: the guest's screen arrived.
_CANVAS_SHOWS_SCREEN = """() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || canvas.width < 2 || canvas.height < 2) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] || pixels[i + 1] || pixels[i + 2]) return true;
  }
  return false;
}"""


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The pages as hack/console/assets.sh installs them (cached after the first run)."""
    directory = tmp_path_factory.mktemp("web") / "web"
    cache = pathlib.Path(os.environ.get("KUBENOVA_STATE", ROOT / ".kubenova")) / "console/web"
    subprocess.run([str(ROOT / "hack/console/assets.sh"), str(cache)], check=True)
    shutil.copytree(cache, directory)
    return directory


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> pathlib.Path:
    state = pathlib.Path(os.environ.get("KUBENOVA_STATE", ROOT / ".kubenova"))
    directory = state / "artifacts" / request.node.name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def x509(tmp_path_factory: pytest.TempPathFactory) -> X509:
    return make_x509(tmp_path_factory.mktemp("x509"))


@pytest.fixture
def proxy(
    x509: X509, web_dir: pathlib.Path, db_session_factory: db_engine.SessionFactory
) -> Iterator[proxy_server.ConsoleProxyServer]:
    settings = proxy_settings.ProxySettings(
        listen_host="127.0.0.1",
        listen_port=PROXY_PORT,
        tls_cert_file=x509.serving_cert,
        tls_key_file=x509.serving_key,
        x509_dir=x509.proxy_dir,
        web_dir=web_dir,
    )
    with running_proxy(settings, db_session_factory) as running:
        yield running


@pytest.fixture
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


def test_chromium_shows_the_guests_screen_through_the_proxy(
    proxy, x509, db_session_factory, browser, artifacts, tmp_path
):
    uuid = instance_on(db_session_factory, HOST)
    with qemu_with_tls_vnc(x509.host_dir, tmp_path / "qemu.log") as vnc_port:
        report_console_ports(db_session_factory, uuid, vnc_port=vnc_port)
        token = auth.mint(
            db_session_factory, uuid, auth.ConsoleType.NOVNC, HOST, vnc_port, None, None
        ).token
        # The browser trusts Kubenova's CA through the test's own exception, not the system's.
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.goto(f"https://127.0.0.1:{PROXY_PORT}/vnc.html?token={token}&instance={uuid}")

        page.wait_for_function("document.body.dataset.state === 'connected'", timeout=60_000)
        page.wait_for_function(_CANVAS_SHOWS_SCREEN, timeout=60_000)
        page.screenshot(path=str(artifacts / "novnc.png"))
        cookies = context.cookies()
        context.close()

    (cookie,) = cookies
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert (artifacts / "novnc.png").stat().st_size > 0
