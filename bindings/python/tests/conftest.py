"""Fixtures: a real flotta-server process (TLS on both listeners, SQLite, manual
approval) on free loopback ports in a temporary directory."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import flotta

REPO = Path(__file__).resolve().parents[3]


def server_binary() -> Path:
    explicit = os.environ.get("FLOTTA_SERVER_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target / "debug" / "flotta-server"


@dataclass
class Server:
    """A running server: its data directory, URLs and PKI file paths."""

    data_dir: Path
    api_url: str
    edge_url: str
    process: subprocess.Popen[bytes]

    @property
    def admin_yaml(self) -> Path:
        return self.data_dir / "admin.yaml"

    @property
    def ca(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    @property
    def register_cert(self) -> Path:
        return self.data_dir / "pki" / "register.crt"

    @property
    def register_key(self) -> Path:
        return self.data_dir / "pki" / "register.key"

    def token(self) -> str:
        match = re.search(r"^token:\s*(\S+)\s*$", self.admin_yaml.read_text(), re.M)
        assert match, "admin.yaml has a token"
        return match.group(1)


def start_server(directory: Path, *, auto_approve: bool) -> Server:
    binary = server_binary()
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it with `cargo build -p flotta-server` first")
    data_dir = directory / "flotta-data"
    log = open(directory / "server.log", "wb")
    env = dict(os.environ, FLOTTA_LOG="warn,flotta_server=info", NO_COLOR="1")
    process = subprocess.Popen(
        [
            str(binary),
            "--data-dir",
            str(data_dir),
            "--api-listen",
            "127.0.0.1:0",
            "--edge-listen",
            "127.0.0.1:0",
            "--auto-approve",
            "true" if auto_approve else "false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    admin = data_dir / "admin.yaml"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flotta-server exited: {(directory / 'server.log').read_text()}")
        if admin.exists() and "Edge API listening" in (directory / "server.log").read_text(errors="replace"):
            text = admin.read_text()
            api = re.search(r"^server:\s*(\S+)", text, re.M)
            edge = re.search(r"^edgeServer:\s*(\S+)", text, re.M)
            if api and edge:
                return Server(data_dir, api.group(1), edge.group(1), process)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("flotta-server did not start within 60 s")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session, with manual approval of devices."""
    running = start_server(tmp_path_factory.mktemp("server"), auto_approve=False)
    yield running
    stop_server(running)


@pytest.fixture
def client(server: Server) -> flotta.Client:
    return flotta.Client.from_config(server.admin_yaml)


@pytest.fixture
def unique() -> str:
    """A fresh name suffix, so tests sharing the server do not collide."""
    return uuid.uuid4().hex[:8]


def eventually(what: str, check, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Polls `check()` until it returns something truthy, and returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def workload(name: str, selector: dict[str, str], image: str = "registry.local/app:1") -> flotta.EdgeWorkload:
    return flotta.EdgeWorkload(
        name,
        labels={"app": name},
        spec={
            "type": "pod",
            "deviceSelector": {"matchLabels": selector},
            "pod": {"spec": {"containers": [{"name": "main", "image": image}]}},
        },
    )
