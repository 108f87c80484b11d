"""RunInstances of N instances through the EC2 API, against the same N through kubectl.

    .venv/bin/python hack/bench/ec2_bench.py [--instances 100] [--hosts 10] [--runs 3]
        [--operator-pid PID]

It needs the operator of the local stack (`make dev-up`). It starts --hosts simulated hosts
(hack/sim-hosts.sh, prefix ``ec2b``) in an availability zone of their own, so that both paths
place on them and never on a real host; a ``kubenova-ec2-api`` process on a loopback port, as
the chart runs it; a Flavor of 1 vCPU and 128 MiB; and, in a namespace of its own per path, an
access key made the user's way (``kubectl nova ec2-credentials create``).

Each run times both paths, one after the other (the first path alternates between runs, so
that neither always meets the warmer stack):

    ec2       one boto3 ``run_instances`` call: MinCount = MaxCount = N, the tiny image's AMI,
              the Flavor as InstanceType, the zone as Placement.AvailabilityZone
    kubectl   one ``kubectl create -f`` of a List of N Instances with the same flavor, image
              and spec.availabilityZone

Each instance is timed from the moment its path's call was *started* to the moment a watch on
the namespace first sees it Running. Then every instance is deleted and the hosts' usage in
MariaDB must come back to where it was before the run.

It prints each run's figures, then one JSON line:

    instances, hosts           what ran
    ec2, kubectl               per path, the median over the runs of:
        submitted_in_s           call started -> call returned (every Instance object made)
        all_running_s            call started -> last instance seen Running
        p50_s, p95_s             call started -> each instance seen Running
        operator_cpu_s           the operator's CPU time over the path's run
        ec2_api_cpu_s            the EC2 API process's CPU time over the path's run
    ratio_all_running          ec2.all_running_s / kubectl.all_running_s (medians)
    ratio_submitted            ec2.submitted_in_s / kubectl.submitted_in_s (medians)
    runs                       every run's figures

It asserts nothing about timings; it exits 1 when an instance did not reach Running, landed on
a host that is not one of the benchmark's, or its allocations were not freed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import bench_creates
import bench_deletes
import benchlib
import host_usage
import instance_watch
from benchlib import BenchError, log

PREFIX = "ec2b"
ZONE = "kubenova-ec2-bench"
REGION = "kubenova"
FLAVOR_MEMORY_MIB = 128
PATHS = ("ec2", "kubectl")
KUBECTL = benchlib.STATE / "bin" / "kubectl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--operator-pid", type=int)
    parser.add_argument("--timeout", type=float, default=300, help="per path and run, seconds")
    return parser.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def ec2_api() -> Iterator[tuple[str, int]]:
    """A ``kubenova-ec2-api`` on a free loopback port (plain HTTP): (its URL, its pid)."""
    port = _free_port()
    env = dict(
        os.environ,
        KUBECONFIG=str(benchlib.KUBECONFIG),
        KUBENOVA_DB_URL=benchlib.DB_URL,
        KUBENOVA_EC2_LISTEN_HOST="127.0.0.1",
        KUBENOVA_EC2_PORT=str(port),
        KUBENOVA_EC2_REGION=REGION,
    )
    log_path = benchlib.STATE / "logs" / "bench-ec2-api.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            [str(benchlib.ROOT / ".venv" / "bin" / "kubenova-ec2-api")],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise BenchError(f"kubenova-ec2-api exited with {process.returncode}: {log_path}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"kubenova-ec2-api did not listen in 30 s: {log_path}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def ec2_client(namespace: str, endpoint: str) -> Any:
    """boto3 on a key made for ``namespace`` with ``kubectl nova ec2-credentials create``."""
    import boto3
    from botocore.config import Config

    env = dict(os.environ, KUBECONFIG=str(benchlib.KUBECONFIG))
    env["PATH"] = os.pathsep.join(
        [str(KUBECTL.parent), str(benchlib.ROOT / ".venv/bin"), env["PATH"]]
    )
    done = subprocess.run(
        ["kubectl", "nova", "ec2-credentials", "create", "-n", namespace,
         "--endpoint", endpoint, "--region", REGION],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"kubectl nova ec2-credentials create failed: {done.stderr.strip()}")
    exported = dict(shlex.split(line)[1].partition("=")[::2] for line in done.stdout.splitlines())
    return boto3.client(
        "ec2",
        endpoint_url=exported["AWS_ENDPOINT_URL_EC2"],
        region_name=exported["AWS_DEFAULT_REGION"],
        aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"],
        # One call makes every instance: no retry (it would be a second launch's timing), and
        # time enough for N creates.
        config=Config(retries={"max_attempts": 1}, read_timeout=600),
    )


def tiny_ami(ec2: Any) -> str:
    for image in ec2.describe_images()["Images"]:
        if image["Name"] == benchlib.TINY_IMAGE:
            return str(image["ImageId"])
    raise BenchError(f"DescribeImages does not list {benchlib.TINY_IMAGE}")


def kubectl_list(names: list[str], namespace: str, flavor: str) -> str:
    items = [
        {
            "apiVersion": benchlib.API_VERSION,
            "kind": "Instance",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"flavor": flavor, "image": benchlib.TINY_IMAGE, "availabilityZone": ZONE},
        }
        for name in names
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


class Bench:
    def __init__(self, args: argparse.Namespace, custom: Any, engine: Any) -> None:
        self.args = args
        self.custom = custom
        self.engine = engine
        self.hosts = host_usage.host_names(PREFIX, args.hosts)
        self.run_id = uuid.uuid4().hex[:8]
        self.flavor = f"ec2-bench-{self.run_id}"
        self.namespaces = {path: f"ec2-bench-{self.run_id}-{path}" for path in PATHS}
        self.operator_pid = 0
        self.ec2_api_pid = 0
        self.ec2: Any = None
        self.ami = ""

    def launch_ec2(self, run: int) -> None:
        del run
        self.ec2.run_instances(
            ImageId=self.ami,
            InstanceType=self.flavor,
            MinCount=self.args.instances,
            MaxCount=self.args.instances,
            Placement={"AvailabilityZone": ZONE},
        )

    def launch_kubectl(self, run: int) -> None:
        names = [f"kc-{run}-{index:04d}" for index in range(self.args.instances)]
        with tempfile.NamedTemporaryFile("w", suffix=".json") as manifest:
            manifest.write(kubectl_list(names, self.namespaces["kubectl"], self.flavor))
            manifest.flush()
            done = subprocess.run(
                [str(KUBECTL), "--kubeconfig", str(benchlib.KUBECONFIG), "create", "-f",
                 manifest.name, "-o", "name"],
                capture_output=True, text=True, timeout=self.args.timeout, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"kubectl create failed: {done.stderr.strip()}")

    def run_path(self, path: str, run: int) -> dict[str, Any]:
        namespace = self.namespaces[path]
        watch = instance_watch.InstanceWatch(self.custom, namespace)
        watch.start()
        watch.listed.wait(30)
        cpu_before = benchlib.process_cpu_s(self.operator_pid)
        api_before = benchlib.process_cpu_s(self.ec2_api_pid)
        started = time.monotonic()
        try:
            (self.launch_ec2 if path == "ec2" else self.launch_kubectl)(run)
            submitted = time.monotonic() - started
            # wait_running counts the instances seen; the EC2 path's names are the API's own.
            misplaced = bench_creates.wait_running(
                watch, [""] * self.args.instances, set(self.hosts), self.args.timeout,
                self.operator_pid,
            )  # fmt: skip
            running, placed, failed, _ = watch.snapshot()
        finally:
            watch.stop()
        operator_cpu = benchlib.process_cpu_s(self.operator_pid) - cpu_before
        api_cpu = benchlib.process_cpu_s(self.ec2_api_pid) - api_before
        if misplaced:
            raise BenchError(
                f"{path}: instances on hosts that are not the benchmark's: {misplaced}"
            )
        if failed or len(running) < self.args.instances:
            raise BenchError(
                f"{path}: {len(running)}/{self.args.instances} Running; in Error: "
                f"{dict(list(failed.items())[:3])}"
            )
        latencies = [at - started for at in running.values()]
        figures = {
            "submitted_in_s": benchlib.rounded(submitted),
            "all_running_s": benchlib.rounded(max(latencies)),
            "p50_s": benchlib.rounded(benchlib.percentile(latencies, 50)),
            "p95_s": benchlib.rounded(benchlib.percentile(latencies, 95)),
            "operator_cpu_s": benchlib.rounded(operator_cpu),
            "ec2_api_cpu_s": benchlib.rounded(api_cpu),
        }
        log(f"run {run} {path}: {figures} ({len(set(placed.values()))} hosts used)")
        return figures

    def delete_all(self, path: str, before: Any) -> None:
        namespace = self.namespaces[path]
        self.custom.delete_collection_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances"
        )
        deadline = time.monotonic() + self.args.timeout
        while self.custom.list_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances"
        ).get("items"):
            if time.monotonic() > deadline:
                raise BenchError(f"{path}: instances still there after {self.args.timeout:.0f}s")
            time.sleep(1)
        held = host_usage.wait_hosts_free(self.engine, self.hosts, before, 120)
        if held:
            raise BenchError(f"{path}: hosts still hold usage after the deletes: {held[:5]}")


def median_of(runs: list[dict[str, Any]], path: str) -> dict[str, Any]:
    keys = runs[0][path].keys()
    return {
        key: benchlib.rounded(benchlib.median([run[path][key] for run in runs])) for key in keys
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    custom, core = benchlib.kube_api()
    bench = Bench(args, custom, benchlib.db_engine())
    bench.operator_pid = benchlib.operator_pid(args.operator_pid)
    runs: list[dict[str, Any]] = []
    started_hosts = False
    try:
        since = time.time()
        log(f"starting {args.hosts} simulated hosts ({PREFIX}-*) in zone {ZONE}")
        started_hosts = True
        benchlib.sim_hosts("start", str(args.hosts), "--prefix", PREFIX, "--zones", ZONE,
                           "--log-level", "WARNING")  # fmt: skip
        host_usage.wait_for_hosts(custom, bench.hosts, since, 300)
        before = host_usage.node_usage(bench.engine, bench.hosts)
        custom.create_cluster_custom_object(
            benchlib.GROUP, benchlib.VERSION, "flavors",
            {"apiVersion": benchlib.API_VERSION, "kind": "Flavor",
             "metadata": {"name": bench.flavor},
             "spec": {"vcpus": 1, "memoryMiB": FLAVOR_MEMORY_MIB, "diskGiB": 1,
                      "description": "benchmark"}},
        )  # fmt: skip
        for namespace in bench.namespaces.values():
            core.create_namespace({"metadata": {"name": namespace}})
        with ec2_api() as (endpoint, api_pid):
            bench.ec2_api_pid = api_pid
            bench.ec2 = ec2_client(bench.namespaces["ec2"], endpoint)
            bench.ami = tiny_ami(bench.ec2)
            for run in range(1, args.runs + 1):
                order = PATHS if run % 2 else tuple(reversed(PATHS))
                figures: dict[str, Any] = {"run": run, "first": order[0]}
                for path in order:
                    figures[path] = bench.run_path(path, run)
                    bench.delete_all(path, before)
                runs.append(figures)
    finally:
        bench_deletes.cleanup_flavor(custom, bench.flavor)
        for namespace in bench.namespaces.values():
            with contextlib.suppress(Exception):
                core.delete_namespace(namespace)
        if started_hosts:
            benchlib.sim_hosts("retire", "--prefix", PREFIX)
    medians = {path: median_of(runs, path) for path in PATHS}
    result = {
        "instances": args.instances,
        "hosts": args.hosts,
        **medians,
        "ratio_all_running": benchlib.rounded(
            medians["ec2"]["all_running_s"] / medians["kubectl"]["all_running_s"]
        ),
        "ratio_submitted": benchlib.rounded(
            medians["ec2"]["submitted_in_s"] / medians["kubectl"]["submitted_in_s"]
        ),
        "runs": runs,
    }
    for path in PATHS:
        print(f"{path:8s} {medians[path]}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"ec2_bench: {exc}", file=sys.stderr)
        sys.exit(1)
