"""A Redis Cluster over TLS only (``rediss+cluster://``): three cluster-enabled masters
with ``--port 0 --tls-port N --tls-cluster yes`` (client certificate required),
certificates made with trustme; built from the helpers of ``tests/_clusters.py``.
Blocking, for fixtures; stops exactly the pids it starts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests._clusters import (
    READY_TIMEOUT,
    Node,
    Processes,
    TLSFiles,
    _cluster_scope,
    _info,
    _redis_node,
    _run,
    _starting,
    _text,
    free_ports,
    make_tls_files,
    redis_call,
    wait_until,
)
from tests._private import require_binary

__all__ = ["RedisTLSCluster", "redis_tls_cluster_running"]


@dataclass
class RedisTLSCluster:
    """Three TLS-only cluster masters holding all 16384 slots; ``tls`` has the files."""

    nodes: list[Node]
    tls: TLSFiles
    processes: Processes = field(repr=False)
    start_seconds: float = 0.0

    @property
    def url(self) -> str:
        """``rediss+cluster://127.0.0.1:N1,127.0.0.1:N2,127.0.0.1:N3``."""
        return "rediss+cluster://" + ",".join(n.address for n in self.nodes)

    @property
    def pids(self) -> list[int]:
        """Every pid started for it."""
        return self.processes.pids

    def state_ok(self) -> bool:
        """``CLUSTER INFO`` says ``cluster_state:ok`` on every node (over TLS)."""
        context = self.tls.client_context()
        for node in self.nodes:
            try:
                info = _text(redis_call(node.address, "CLUSTER", "INFO", tls=context))
            except (OSError, RuntimeError):
                return False
            if "cluster_state:ok" not in info:
                return False
        return True


@contextlib.contextmanager
def redis_tls_cluster_running(size: int = 3) -> Iterator[RedisTLSCluster]:
    """Start ``size`` TLS-only cluster masters and ``redis-cli --tls --cluster create``
    them; ready when every node says ``cluster_state:ok``."""
    binary = require_binary("redis-server", "Debian package redis-server")
    cli = require_binary("redis-cli", "Debian package redis-tools")
    with _cluster_scope("redis-tls-cluster") as (scratch, processes):
        with _starting("redis-tls-cluster"):
            started = time.monotonic()
            files = make_tls_files(scratch / "tls")
            tls_args = ["--tls-cert-file", str(files.server_cert)]
            tls_args += ["--tls-key-file", str(files.server_key)]
            tls_args += ["--tls-ca-cert-file", str(files.ca), "--tls-cluster", "yes"]
            cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            cluster_args += ["--cluster-node-timeout", "2000"]
            nodes: list[Node] = []
            for i, port in enumerate(free_ports(size, cluster_bus=True), start=1):
                node = _redis_node(binary, f"node{i}", scratch, processes, *cluster_args, port=port)
                node.args[node.args.index("--port") + 1] = "0"  # TLS only
                node.args += ["--tls-port", str(port), *tls_args]
                nodes.append(node)
            for node in nodes:
                node.start()
            context = files.client_context()
            wait_until(
                "TLS cluster: every node answers",
                lambda: all(_info(n.port, "server", tls=context) for n in nodes),
                READY_TIMEOUT,
                nodes,
            )
            tls_cli = ["--tls", "--cacert", str(files.ca)]
            tls_cli += ["--cert", str(files.client_cert), "--key", str(files.client_key)]
            addresses = [n.address for n in nodes]
            create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
            _run([cli, *tls_cli, *create])
            cluster = RedisTLSCluster(nodes, files, processes)
            wait_until("TLS cluster: cluster_state:ok", cluster.state_ok, READY_TIMEOUT, nodes)
            cluster.start_seconds = time.monotonic() - started
        yield cluster
