"""The chaos suite's tools (hack/chaos): the TCP proxy that stands for a host's network (on
real loopback sockets), the fault plan and command line, the simulated hosts' helpers and the
processes it finds by pid file."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import threading
import time

import pytest

from tests.support.chaos import chaos_module

tcpproxy = chaos_module("tcpproxy")
plan = chaos_module("plan")
topology = chaos_module("topology")
processes = chaos_module("processes")
faults = chaos_module("faults")
chaos = chaos_module("chaos")

HOST = "chaos-001"


# -- the TCP proxy --------------------------------------------------------------------------


@pytest.fixture
def echo_server():
    """A loopback server that echoes what it gets; yields (address, connections accepted)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    def echo(connection):
        with connection:
            while data := connection.recv(1024):
                connection.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname(), accepted
    server.close()


def exchange(port, payload=b"ping"):
    """What the proxy's answer to ``payload`` is: the echo, or b"" / None when cut (the reset
    may come as early as the connect)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(payload)
            return client.recv(1024)
    except ConnectionError:
        return None


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_proxy_forwards_cuts_live_and_new_connections_and_restores(echo_server):
    upstream, accepted = echo_server
    with tcpproxy.TcpProxy(upstream) as proxy:
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        live.sendall(b"hello")
        assert live.recv(1024) == b"hello"
        assert proxy.live_connections() == 1

        proxy.cut()
        with contextlib.suppress(ConnectionError):
            assert live.recv(1024) == b""
        live.close()
        assert exchange(proxy.port) in (b"", None)
        assert (len(accepted), proxy.forwarded()) == (1, 1)

        proxy.restore()
        assert exchange(proxy.port, b"again") == b"again"
        wait_until(lambda: len(accepted) == 2)


def test_the_proxy_resets_a_client_when_the_upstream_refuses():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    with tcpproxy.TcpProxy(("127.0.0.1", closed_port)) as proxy:
        assert exchange(proxy.port) in (b"", None)
        assert proxy.forwarded() == 0


# -- plan, command line, hosts --------------------------------------------------------------


def test_faults_are_taken_in_the_order_given_once_each():
    assert plan.parse_faults("network-drop, agent-kill,network-drop") == [
        "network-drop",
        "agent-kill",
    ]
    with pytest.raises(ValueError, match="unknown fault 'disk-full'"):
        plan.parse_faults("agent-kill,disk-full")


def test_the_command_line_defaults_to_every_fault_on_200_instances_and_20_hosts():
    args = plan.parse_args([])
    assert (args.faults, args.instances, args.hosts, args.timeout) == (
        list(plan.FAULT_NAMES),
        200,
        20,
        300,
    )


@pytest.mark.parametrize(
    "argv",
    [["--hosts", "1"], ["--processes", "20"], ["--instances", "1"], ["--timeout", "0"]],
)
def test_the_command_line_refuses_what_cannot_run(argv, capsys):
    with pytest.raises(SystemExit):
        plan.parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_settings_come_from_the_operators_environment_with_its_defaults():
    settings = plan.stack_settings({"KUBENOVA_AUDIT_INTERVAL": "20"})
    assert (settings.service_down_time_s, settings.audit_interval_s) == (60, 20.0)
    assert (settings.settle_s(None), settings.settle_s(7), settings.network_hold_s()) == (45, 7, 75)
    with pytest.raises(ValueError, match="KUBENOVA_SERVICE_DOWN_TIME"):
        plan.stack_settings({"KUBENOVA_SERVICE_DOWN_TIME": "soon"})


def test_the_plan_names_each_fault_and_holds_the_network_cut_past_service_down_time():
    args = plan.parse_args(["--faults", "network-drop,operator-kill-real", "--hold", "3"])
    text = "\n".join(plan.plan_lines(args, plan.StackSettings(30, 60.0), "test"))
    assert "1. network-drop: 200 instances" in text
    assert "hold 45s" in text
    assert "hold 3s" in text
    assert f"2. operator-kill-real: 4 real guests forced onto {args.real_host}" in text
    assert "counts unchanged for 125s" in text


def test_every_planned_fault_is_built():
    from kubernetes import client

    class Core:
        api_client = client.ApiClient()

    hosts = topology.ChaosHosts(3, 2)
    for name in plan.FAULT_NAMES:
        assert faults.build(name, hosts, Core()).name == name


def test_the_proxied_url_keeps_the_user_password_and_vhost():
    url = "amqp://agent-chaos-net-001:s3cret@127.0.0.1:5672/kubenova"
    assert topology.proxied_url(url, 40001) == (
        "amqp://agent-chaos-net-001:s3cret@127.0.0.1:40001/kubenova"
    )
    assert topology.url_endpoint(url) == ("127.0.0.1", 5672)
    assert topology.url_endpoint("amqp://u:p@mq/v") == ("mq", 5672)


def test_the_process_killed_is_the_lowest_of_the_prefixs_own():
    names = ["sim-chaos-3.pid", "sim-chaos-1.pid", "sim-chaos-big-2.pid", "operator.pid"]
    assert topology.process_indexes(names, "chaos") == [1, 3]
    assert topology.choose_process({3: 30, 5: 50}) == 3
    with pytest.raises(Exception, match="no agent process"):
        topology.choose_process({})


def test_a_service_not_started_by_the_stack_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(faults, "RUN_DIR", tmp_path)
    mine = processes.comm(os.getpid())
    fault = faults.ServiceRestart("mariadb-restart", "mariadb", mine, "MariaDB")
    assert "was not started by hack/services.sh" in fault.unavailable()
    (tmp_path / "mariadb.pid").write_text(f"{os.getpid()}\n")
    assert fault.unavailable() is None
    other = faults.ServiceRestart("mariadb-restart", "mariadb", "mariadbd", "MariaDB")
    assert "no live mariadbd" in other.unavailable()


def test_processes_are_found_by_pid_file_and_program(tmp_path):
    pidfile = tmp_path / "kube.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    argv0 = pathlib.Path(f"/proc/{os.getpid()}/cmdline").read_bytes().split(b"\0")[0]
    assert processes.launcher_pid(pidfile, pathlib.Path(os.fsdecode(argv0))) == os.getpid()
    assert processes.launcher_pid(pidfile, tmp_path / "kubenova-kube") is None
    assert processes.parse_environ(b"A=1\0B=x=y\0\0junk\0") == {"A": "1", "B": "x=y"}


def test_instances_of_an_earlier_run_on_the_chaos_hosts_are_found():
    items = [
        {"metadata": {"namespace": "old"}, "status": {"host": HOST}},
        {"metadata": {"namespace": "other"}, "status": {"host": "vm"}},
        {"metadata": {"namespace": "pending"}},
    ]
    assert chaos.namespaces_on(items, [HOST]) == ["old"]


# -- the fault in the middle of the burst ---------------------------------------------------


class SlowApi:
    """Creates Instances a little slowly, as an apiserver under a burst answers."""

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_):
        time.sleep(0.02)
        return {"metadata": {"uid": f"uid-{body['metadata']['name']}"}}


class RecordingFault:
    name = "recording"

    def __init__(self, creator, fails=False):
        self.creator = creator
        self.fails = fails
        self.answered_at_inject: int | None = None
        self.recovered = False

    def inject(self):
        self.answered_at_inject = len(self.creator.created())
        if self.fails:
            raise RuntimeError("could not stop it")

    def recover(self):
        self.recovered = True


def burst_of(names, creator):
    burst = chaos_module("burst")
    observe = chaos_module("observe")
    ctx = burst.Context(None, None, None, workers=2, timeout=30, settle=0, free_timeout=1)
    spec = burst.Burst(
        fault="recording",
        guests="simulated",
        namespace="ns",
        names=names,
        make_creator=lambda ns: creator,
        scope=observe.Scope("ns", [HOST], [HOST]),
        free_hosts=[HOST],
        hold_s=0,
    )
    return burst, ctx, spec


def test_the_fault_comes_when_half_the_creates_are_answered_and_the_rest_follow():
    creator = chaos_module("bench_creates").Creator(SlowApi(), "ns", "f", "chaos")
    names = [f"i-{n}" for n in range(40)]
    fault = RecordingFault(creator)
    burst, ctx, spec = burst_of(names, creator)
    injected_at, recovered_at = burst._break_mid_burst(ctx, fault, spec, creator)
    # Half answered, and the burst not over: the rest are created while the fault lasts.
    assert 20 <= fault.answered_at_inject < 40
    assert fault.recovered
    assert recovered_at >= injected_at
    assert sorted(creator.created()) == sorted(names)


def test_a_failed_injection_is_still_recovered_and_reported():
    creator = chaos_module("bench_creates").Creator(SlowApi(), "ns", "f", "chaos")
    fault = RecordingFault(creator, fails=True)
    burst, ctx, spec = burst_of([f"i-{n}" for n in range(4)], creator)
    with pytest.raises(RuntimeError, match="could not stop it"):
        burst._break_mid_burst(ctx, fault, spec, creator)
    assert fault.recovered
