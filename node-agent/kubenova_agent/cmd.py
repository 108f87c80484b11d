"""``kubenova-agent``: run the node-agent for one host, or for many simulated ones."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import sys
import tempfile
import types

from kubenova import log
from kubenova_agent import credentials, fleet, host_certificate, serial_console, service
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt import driver as virt_driver

LOG = logging.getLogger(__name__)


def _label(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--label wants KEY=VALUE, got {raw!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubenova-agent", description="Run the Kubenova node-agent (nova-compute) for a host."
    )
    parser.add_argument("--host", help="host name (default: $KUBENOVA_HOST or the short hostname)")
    parser.add_argument(
        "--driver",
        choices=("libvirt", "test"),
        default="libvirt",
        help="libvirt drives qemu:///system; test simulates a host on libvirt's test:///default",
    )
    parser.add_argument(
        "--amqp-url-file",
        help="file holding this agent's AMQP URL (its own RabbitMQ user); default: from the "
        "operator when $KUBENOVA_AGENT_CREDENTIALS_URL is set (in a cluster), else "
        "$KUBENOVA_AGENT_AMQP_URL, else $KUBENOVA_STATE/agents/HOST.amqp-url of the local stack",
    )
    parser.add_argument("--vcpus", type=int, default=8, help="test driver: simulated vCPUs")
    parser.add_argument("--memory-mib", type=int, default=16384, help="test driver: memory")
    parser.add_argument("--disk-gib", type=int, default=200, help="test driver: disk")
    parser.add_argument(
        "--label", type=_label, action="append", default=[], help="KEY=VALUE host label"
    )
    parser.add_argument(
        "--fail-builds",
        metavar="REASON",
        help="test driver: every build fails on this host with REASON, as a broken host's "
        "would (fault injection for rescheduling)",
    )
    parser.add_argument(
        "--test-hypervisor",
        metavar="URI",
        help="test driver: the test hypervisor to simulate on (default: test:///default of this "
        "process, or with --hosts-file a private one for each host); test+unix:///default keeps "
        "the domains in libvirtd, so that they outlive this process as a real host's guests "
        "outlive its agent",
    )
    parser.add_argument(
        "--hosts-file",
        help="test driver: simulate every host this file lists, one line each: HOST URL-FILE "
        "[KEY=VALUE]... (its name, the file of its AMQP URL, labels of its own), in this one "
        "process; --host and --amqp-url-file do not apply then",
    )
    parser.add_argument("--log-level", default=os.environ.get("KUBENOVA_LOG_LEVEL", "INFO"))
    return parser


def _local_stack_url_file(host: str) -> str | None:
    """The local stack's URL file for ``host`` (hack/rabbitmq-agent-user.sh writes it).

    Used only when neither --amqp-url-file nor $KUBENOVA_AGENT_AMQP_URL says otherwise, so
    an agent started by hand on the local stack connects as its own RabbitMQ user.
    """
    if os.environ.get("KUBENOVA_AGENT_AMQP_URL"):
        return None
    state = os.environ.get("KUBENOVA_STATE", ".kubenova")
    candidate = os.path.join(state, "agents", f"{host}.amqp-url")
    return candidate if os.path.exists(candidate) else None


def _amqp_url_from_operator(host: str, url_file: str | None) -> str | None:
    """In a cluster ($KUBENOVA_AGENT_CREDENTIALS_URL set, no --amqp-url-file): this node's own
    AMQP URL, from the operator in exchange for the pod's token; kept in memory only."""
    if url_file or not credentials.configured():
        return None
    try:
        issued = credentials.fetch_from_env()
    except credentials.CredentialsError as exc:
        LOG.error("no RabbitMQ credentials: %s", exc)
        raise SystemExit(f"kubenova-agent: {exc}") from exc
    # The operator answers for the node the token is bound to; an agent that calls itself
    # something else would listen on a queue its user may not read.
    _require_node("credentials", issued.node, host)
    return issued.amqp_url


def _require_node(what: str, node: str, host: str) -> None:
    """Stop unless the operator issued ``what`` for this agent's own host."""
    if node != host:
        raise SystemExit(
            f"kubenova-agent: the operator issued {what} for node {node!r}, but this agent "
            f"runs as host {host!r}: set KUBENOVA_HOST to the node's name"
        )


def _host_certificate(
    host: str, console_address: str | None
) -> host_certificate.HostCertificate | None:
    """In a cluster ($KUBENOVA_HOST_CERTIFICATE_DIR set): this host's console certificate,
    from the operator, written before any guest starts (libvirt refuses to start a guest whose
    TLS console has no certificate). Its request asks for the address consoles are reached at."""
    directory = os.environ.get(host_certificate.DIR_ENV)
    if not directory:
        return None
    url = host_certificate.url_from_env()
    if not url:
        raise SystemExit(
            f"kubenova-agent: {host_certificate.DIR_ENV} is set but neither "
            f"{host_certificate.URL_ENV} nor {credentials.URL_ENV} says where the operator is"
        )
    certificate = host_certificate.HostCertificate(
        pathlib.Path(directory),
        url,
        node=host,
        addresses=(console_address,) if console_address else (),
        ca_file=os.environ.get(credentials.CA_ENV) or credentials.DEFAULT_CA_FILE,
        token_file=os.environ.get(credentials.TOKEN_ENV) or credentials.DEFAULT_TOKEN_FILE,
    )
    try:
        issued = certificate.obtain()
    except (credentials.CredentialsError, OSError) as exc:
        LOG.error("no host certificate: %s", exc)
        raise SystemExit(f"kubenova-agent: no host certificate: {exc}") from exc
    _require_node("a console certificate", issued.node, host)
    return certificate


def make_driver(args: argparse.Namespace, settings: AgentSettings) -> virt_driver.ComputeDriver:
    if args.driver == "test":
        from kubenova_agent.virt import testdriver

        test_driver = testdriver.TestDriver(
            hostname=settings.host,
            vcpus=args.vcpus,
            memory_mib=args.memory_mib,
            disk_gib=args.disk_gib,
            uri=args.test_hypervisor or testdriver.DEFAULT_URI,
        )
        if args.fail_builds:
            test_driver.simulate_host_failure(args.fail_builds)
        return test_driver
    if args.fail_builds or args.test_hypervisor:
        raise SystemExit(
            "kubenova-agent: --fail-builds and --test-hypervisor are for the test driver only"
        )
    from kubenova_agent.virt.libvirt import domain_xml
    from kubenova_agent.virt.libvirt import driver as libvirt_driver

    return libvirt_driver.LibvirtDriver(
        uri=settings.libvirt_uri,
        instances_path=settings.instances_path,
        image_cache_path=settings.image_cache_path,
        virt_type=settings.virt_type,
        hostname=settings.host,
        graphics=domain_xml.Graphics(
            listen=settings.console_listen,
            tls=settings.console_tls,
            spice_listen=settings.spice_listen,
            spice_ticket_key=settings.spice_ticket_key,
        ),
        console_address=settings.console_address,
        starting_guests_first=settings.starting_guests_first,
    )


def read_settings(host: str | None = None, amqp_url: str | None = None) -> AgentSettings:
    """The agent's settings from the environment; a bad value stops the agent, naming it."""
    try:
        return AgentSettings.from_env(host=host, amqp_url=amqp_url)
    except ValueError as exc:
        raise SystemExit(f"kubenova-agent: {exc}") from exc


def _read_url_file(path: str, host: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise SystemExit(
            f"kubenova-agent: cannot read the AMQP URL file of host {host!r}, {path}: "
            f"{exc.strerror}"
        ) from exc


def _fleet_services(args: argparse.Namespace, directory: str) -> list[service.AgentService]:
    """One AgentService per host of ``--hosts-file``, each on a test hypervisor of its own."""
    try:
        hosts = fleet.read_hosts_file(args.hosts_file)
    except fleet.HostsFileError as exc:
        raise SystemExit(f"kubenova-agent: {exc}") from exc
    from kubenova_agent.virt import testdriver

    uri = args.test_hypervisor or testdriver.private_hypervisor_uri(directory)
    services = []
    for host in hosts:
        settings = read_settings(
            host=host.name, amqp_url=_read_url_file(host.amqp_url_file, host.name)
        )
        test_driver = testdriver.TestDriver(
            hostname=settings.host,
            vcpus=args.vcpus,
            memory_mib=args.memory_mib,
            disk_gib=args.disk_gib,
            uri=uri,
            # What hosts in processes of their own report: the simulated migrations reach
            # nothing through it.
            migration_uri=testdriver.DEFAULT_URI,
        )
        if args.fail_builds:
            test_driver.simulate_host_failure(args.fail_builds)
        services.append(
            service.AgentService(settings, test_driver, {**dict(args.label), **host.labels})
        )
    return services


def run_fleet(args: argparse.Namespace) -> int:
    """Simulate every host of ``--hosts-file`` until SIGTERM or SIGINT."""
    if args.driver != "test":
        raise SystemExit("kubenova-agent: --hosts-file is for the test driver only")
    if args.host or args.amqp_url_file:
        raise SystemExit(
            "kubenova-agent: --hosts-file names each host and its URL file; "
            "leave out --host and --amqp-url-file"
        )
    with tempfile.TemporaryDirectory(prefix="kubenova-agent-") as directory:
        hosts = fleet.Fleet(_fleet_services(args, directory))
        sys.setswitchinterval(fleet.switch_interval_s(len(hosts.services)))

        def _terminate(signum: int, frame: types.FrameType | None) -> None:
            del frame
            LOG.info("signal %d: stopping %d simulated hosts", signum, len(hosts.services))
            hosts.stop()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        LOG.info("simulating %d hosts with the test driver", len(hosts.services))
        hosts.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log.setup("kubenova-agent", args.log_level, thread_names=bool(args.hosts_file))
    if args.hosts_file:
        return run_fleet(args)
    # Read before anything else, so that a bad value stops the agent before it connects anywhere.
    host = read_settings(host=args.host).host
    amqp_url = _amqp_url_from_operator(host, args.amqp_url_file)
    url_file = None if amqp_url else args.amqp_url_file or _local_stack_url_file(host)
    if url_file:
        amqp_url = _read_url_file(url_file, host)
    amqp_url = amqp_url or os.environ.get("KUBENOVA_AGENT_AMQP_URL")
    if not amqp_url:
        print(
            f"kubenova-agent: no AMQP URL for host {host!r}: pass --amqp-url-file, set "
            "KUBENOVA_AGENT_AMQP_URL, or create the local stack's user with "
            f"hack/rabbitmq-agent-user.sh {host}",
            file=sys.stderr,
        )
        return 2
    settings = read_settings(host=host, amqp_url=amqp_url)
    certificate = (
        _host_certificate(host, settings.console_address) if args.driver == "libvirt" else None
    )
    compute_driver = make_driver(args, settings)
    agent = service.AgentService(settings, compute_driver, dict(args.label))
    if certificate is not None:
        # Running guests take a renewed certificate up at once; the serial console server
        # at its next connection (it watches the files).
        certificate.start_renewing(on_renewed=compute_driver.reload_console_certificates)
        signal.signal(signal.SIGHUP, lambda signum, frame: certificate.renew_soon())

    def _terminate(signum: int, frame: types.FrameType | None) -> None:
        del frame
        LOG.info("signal %d: stopping", signum)
        agent.consumer.stop()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    LOG.info("agent for host %s starting with the %s driver", settings.host, args.driver)
    # Guests' serial consoles, on threads of their own (the test driver's guests have none).
    consoles = (
        serial_console.start_from_settings(
            settings.serial_console_listen,
            settings.serial_console_port,
            settings.serial_console_x509_dir,
            settings.instances_path,
        )
        if args.driver == "libvirt"
        else None
    )
    try:
        agent.run()
    finally:
        agent.stop()
        if certificate is not None:
            certificate.stop()
        if consoles is not None:
            consoles.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
