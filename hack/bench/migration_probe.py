"""Live migration straight through libvirt, between this machine's two libvirt daemons: the
figures Kubenova's live migration is compared with.

    hack/services.sh libvirt2-up          # the second daemon, once
    .venv/bin/python hack/bench/migration_probe.py [--moves 6] [--memory-mib 192]

One tiny guest (``$KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2``, served here over loopback HTTP)
is built on the first daemon with the agent's own libvirt driver, under a host name no agent
has, and boots; on each daemon the destination's files are made as the agent makes them
(``pre_live_migration``: an empty standalone qcow2 and the config drive). Each move, there
and back ``--moves`` times, is then one ``virDomainMigrate3`` with the flags Kubenova uses
(live, persist on the destination, undefine on the source, copy the root disk: storage is not
shared), the destination's paths in its XML. Timed per move: the call itself, as a client
sees it ("wall"), and libvirt's completed job statistics on the destination: ``time_elapsed``
("libvirt") and ``downtime``. The guest's console counter (its ``count`` switch) must keep one
boot id throughout. The guest and its files are removed at the end, also after an error.

The last line is one JSON object of medians: direct_wall_s, direct_libvirt_s,
direct_downtime_ms, and the moves made.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

import libvirt

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import second_host  # noqa: E402

from kubenova_agent.virt import driver as virt_driver  # noqa: E402
from kubenova_agent.virt.libvirt import driver as libvirt_driver  # noqa: E402
from kubenova_agent.virt.libvirt import migration_xml  # noqa: E402

FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_NON_SHARED_DISK
)
_COUNT = re.compile(r"kubenova-guest: count (\d+) boot=(\S*)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=6, help="migrations, alternating")
    parser.add_argument("--memory-mib", type=int, default=192)
    return parser.parse_args(argv)


def serve(directory: pathlib.Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def counts(console: pathlib.Path) -> list[tuple[int, str]]:
    text = console.read_text(errors="replace") if console.exists() else ""
    return [(int(n), boot) for n, boot in _COUNT.findall(text)]


def wait_counting(
    console: pathlib.Path, above: int, timeout: float = 150.0
) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = counts(console)
        if found and found[-1][0] > above:
            return found
        time.sleep(0.5)
    raise SystemExit(f"the guest's counter did not go above {above} on {console}")


def run(args: argparse.Namespace) -> dict[str, object]:
    images = pathlib.Path(os.environ.get("KUBENOVA_IMAGES_DIR", ROOT / ".kubenova/images"))
    image = images / "kubenova-tiny.qcow2"
    if not image.exists():
        raise SystemExit(f"{image} is missing: run hack/guest/build.sh")
    reason = second_host.reachable()
    if reason is not None:
        raise SystemExit(reason)
    work = pathlib.Path(tempfile.mkdtemp(prefix="kubenova-migration-probe-", dir="/var/tmp"))
    work.chmod(0o711)
    server = serve(images)
    run_id = uuid.uuid4().hex[:8]
    uris = ["qemu:///system", second_host.uri()]
    hosts = [
        libvirt_driver.LibvirtDriver(
            uri=uri,
            instances_path=str(work / f"host{index}"),
            image_cache_path=str(work / f"base{index}"),
            virt_type="qemu",
            hostname=f"migration-probe-{index}-{run_id}",
        )
        for index, uri in enumerate(uris)
    ]
    spec = virt_driver.InstanceSpec(
        uuid=str(uuid.uuid4()), name="migration probe", hostname="migration-probe", vcpus=1,
        memory_mib=args.memory_mib, disk_gib=1, user_data=b"#kubenova-guest: count\n",
        image=virt_driver.ImageRef(
            name="kubenova-tiny", url=f"http://127.0.0.1:{server.server_address[1]}/{image.name}",
            sha256=(images / f"{image.name}.sha256").read_text().split()[0], disk_format="qcow2",
        ),
    )  # fmt: skip
    connections = [libvirt.open(uri) for uri in uris]
    walls: list[float] = []
    elapsed: list[float] = []
    downtimes: list[int] = []
    try:
        for host in hosts:
            host.init_host()
        hosts[0].spawn(spec)
        console = hosts[0].instances_path / spec.uuid / "console.log"
        seen = wait_counting(console, above=2)
        boot = seen[0][1]
        log(f"guest {spec.uuid} counting on host 0 (boot {boot})")
        for move in range(args.moves):
            source, destination = move % 2, (move + 1) % 2
            hosts[destination].pre_live_migration(spec)
            domain = connections[source].lookupByUUIDString(spec.uuid)
            xml = migration_xml.destination_xml(
                domain.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                source_dir=str(hosts[source].instances_path / spec.uuid),
                destination_dir=str(hosts[destination].instances_path / spec.uuid),
                host=hosts[destination].hostname,
            )
            params = {
                libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml,
                libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"],
            }
            started = time.monotonic()
            domain.migrate3(connections[destination], params, FLAGS)
            walls.append(time.monotonic() - started)
            stats = (
                connections[destination]
                .lookupByUUIDString(spec.uuid)
                .jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            )
            elapsed.append(stats["time_elapsed"] / 1000.0)
            downtimes.append(int(stats["downtime"]))
            shutil.rmtree(hosts[source].instances_path / spec.uuid)
            console = hosts[destination].instances_path / spec.uuid / "console.log"
            seen = wait_counting(console, above=seen[-1][0])
            if {b for _, b in seen} != {boot}:
                raise SystemExit(f"the guest rebooted during move {move + 1}: {seen}")
            log(
                f"move {move + 1}: host {source} -> {destination}: wall {walls[-1]:.3f} s, "
                f"libvirt {elapsed[-1]:.3f} s, downtime {downtimes[-1]} ms"
            )
    finally:
        for host in hosts:
            try:
                host.destroy(spec.uuid)
            except Exception as exc:  # the other host has it, or it is gone
                log(f"cleanup on {host.hostname}: {exc}")
        for conn in connections:
            conn.close()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "direct_wall_s": round(statistics.median(walls), 3),
        "direct_libvirt_s": round(statistics.median(elapsed), 3),
        "direct_downtime_ms": statistics.median(downtimes),
        # What the call adds to libvirt's own job, move by move: the job's length varies far
        # more between moves than this does.
        "direct_added_s": round(
            statistics.median(w - e for w, e in zip(walls, elapsed, strict=True)), 3
        ),
        "moves": len(walls),
    }


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
