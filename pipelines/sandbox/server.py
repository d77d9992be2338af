"""The sandbox server: one loopback HTTP process serving all five emulated systems.

`SandboxServer` runs in a background thread (tests, in-process use); `spawn_sandbox` runs
`opsmap sandbox serve` as a child process (the pipeline's default, so the emulator and the
extraction use both cores). Both expose the `KEY=value` configuration that points the dlt
sources at the emulator.

Besides the systems, the server answers `GET/PUT /_sandbox/as-of?at=<ISO time>` to move the
world's clock without a restart (tests of successive nightly runs).

For benchmarks, `OPSMAP_SANDBOX_CAPTURE=<dir>` (or `capture_dir=`) writes every response body the
server sends, uncompressed, one file per system (`<dir>/<system>.jsonl`: one JSON body per line;
Mixpanel's export stream as sent): the payload bytes DuckDB's reader is measured against.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from pipelines.sandbox.drift import DriftPlan
from pipelines.sandbox.faults import FaultPlan
from pipelines.sandbox.http import HTTPError, Request, Response, SystemEmulator, json_response
from pipelines.sandbox.world import World

log = logging.getLogger("opsmap.sandbox")

SYSTEM_MODULES: dict[str, str] = {
    "jira": "pipelines.sandbox.jira:JiraEmulator",
    "github": "pipelines.sandbox.github:GitHubEmulator",
    "jenkins": "pipelines.sandbox.jenkins:JenkinsEmulator",
    "datadog": "pipelines.sandbox.datadog:DatadogEmulator",
    "mixpanel": "pipelines.sandbox.mixpanel:MixpanelEmulator",
}


def load_emulators(world: World) -> dict[str, SystemEmulator]:
    """Instantiate every system module; one that is missing or broken is an error, not a skip."""
    emulators: dict[str, SystemEmulator] = {}
    for name, target in SYSTEM_MODULES.items():
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                log.warning("sandbox: no emulator for %s yet (%s missing)", name, module_name)
                continue
            raise
        emulators[name] = getattr(module, class_name)(world)
    return emulators


def parse_as_of(value: str | None) -> datetime | None:
    """`2026-05-01` (end of that day is *not* implied: midnight UTC) or a full ISO timestamp."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SandboxServer:
    """All five emulators behind one ThreadingHTTPServer on loopback."""

    def __init__(
        self,
        world: World,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        as_of: datetime | None = None,
        faults: FaultPlan | None = None,
        drift: DriftPlan | None = None,
        access_log: Path | None = None,
        slow_seconds: float = 1.0,
        capture_dir: Path | None = None,
    ) -> None:
        self.world = world
        self.as_of = as_of or world.default_as_of()
        self.faults = faults or FaultPlan()
        self.drift = drift or DriftPlan()  # schema drift and bad records, for tests (sandbox/drift.py)
        self.slow_seconds = slow_seconds
        self.emulators = load_emulators(world)
        self._log_file = access_log.open("a", encoding="utf-8") if access_log else None
        self._log_lock = threading.Lock()
        self.requests_served = 0
        capture = capture_dir or os.environ.get(CAPTURE_ENV)
        self.capture = PayloadCapture(Path(capture)) if capture else None
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The configuration that points every dlt source at this server."""
        values: dict[str, str] = {}
        for name, emulator in self.emulators.items():
            values[f"SOURCES__{name.upper()}__BASE_URL"] = f"{self.url}/{name}"
            values.update(emulator.env())
        return values

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until `stop()`, or until the process named by `$OPSMAP_SANDBOX_PARENT_PID` is gone."""
        parent = os.environ.get(PARENT_PID_ENV, "").strip()
        if parent.isdigit():
            threading.Thread(
                target=self._stop_when_orphaned, args=(int(parent),), name="sandbox-parent-watch", daemon=True
            ).start()
        self._httpd.serve_forever()

    def _stop_when_orphaned(self, parent_pid: int) -> None:
        # A dead parent's children are re-parented (to init or a subreaper), so the parent pid
        # changes; checking our own parent, not whether `parent_pid` exists, is immune to pid reuse.
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        log.warning("sandbox: the process that started it (pid %d) is gone; stopping", parent_pid)
        self._httpd.shutdown()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._log_file:
            self._log_file.close()
        if self.capture:
            self.capture.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self.requests_served += 1
            if self._log_file:
                self._log_file.write(orjson.dumps(entry).decode() + "\n")
                self._log_file.flush()


PARENT_PID_ENV = "OPSMAP_SANDBOX_PARENT_PID"
"""Set by `SandboxProcess`: the served sandbox stops once this process (the run that started it) is gone."""
PARENT_POLL_S = 0.5

CAPTURE_ENV = "OPSMAP_SANDBOX_CAPTURE"
CAPTURE_MAX_ENV = "OPSMAP_SANDBOX_CAPTURE_MAX_MB"


class PayloadCapture:
    """Appends response bodies to `<dir>/<system>.jsonl` (benchmarks only; off unless configured).

    A JSON body goes on one line (the emulators render compact JSON); a streamed body (Mixpanel's
    JSONL export, whose chunks end with a newline) is written as sent. Error answers (status >= 400)
    are not captured. Past `max_bytes` per system (`OPSMAP_SANDBOX_CAPTURE_MAX_MB`) bodies are only
    counted, not written; `close` writes the byte counts to `<dir>/_bytes.json`.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if max_bytes is None and os.environ.get(CAPTURE_MAX_ENV):
            max_bytes = int(float(os.environ[CAPTURE_MAX_ENV]) * 1e6)
        self.max_bytes = max_bytes
        self.seen: dict[str, int] = {}
        self.written: dict[str, int] = {}
        self._files: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _write(self, system: str, data: bytes) -> None:
        self.seen[system] = self.seen.get(system, 0) + len(data)
        if self.max_bytes is not None and self.written.get(system, 0) + len(data) > self.max_bytes:
            return
        if system not in self._files:
            self._files[system] = (self.folder / f"{system}.jsonl").open("ab")
        self._files[system].write(data)
        self.written[system] = self.written.get(system, 0) + len(data)

    def body(self, system: str, body: bytes) -> None:
        with self._lock:
            self._write(system, body.replace(b"\n", b" ") + b"\n")

    def stream(self, system: str, chunks: Any) -> Any:
        """Pass `chunks` through, keeping a copy (Mixpanel's source streams one range at a time, so
        streams of one system do not interleave)."""
        for chunk in chunks:
            with self._lock:
                self._write(system, chunk)
            yield chunk

    def close(self) -> None:
        with self._lock:
            for fh in self._files.values():
                fh.close()
            self._files.clear()
            summary = {"seen": self.seen, "written": self.written}
            (self.folder / "_bytes.json").write_text(json.dumps(summary), encoding="utf-8")


def _make_handler(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients page through thousands of requests
        # Headers and body go out in separate writes; with Nagle's algorithm on, each keep-alive
        # request waits ~40 ms for the delayed ACK. TCP_NODELAY makes it ~1 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return  # the JSON access log replaces the stderr log

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)  # request bodies are not needed by any emulated read endpoint
            system, _, rest = parts.path.lstrip("/").partition("/")
            path = "/" + rest
            if system == "_sandbox":
                self._admin(method, path, query)
                return
            emulator = server.emulators.get(system)
            if emulator is None:
                self._send(json_response({"message": f"unknown system {system!r}"}, 404))
                return
            received = datetime.now(UTC)
            request = Request(
                system,
                method,
                path,
                query,
                self.headers,
                f"{server.url}/{system}",
                server.world.visible(server.as_of),
                received_at=received,
            )
            faults: frozenset[str] = frozenset()
            response: Response
            try:
                route, groups = _match(emulator, method, path)
                if not emulator.authorized(request):
                    response = emulator.unauthorized(request)
                else:
                    key = f"{method} {system}{path}?{_canonical(query)}"
                    faults = server.faults.decide(key)
                    request.faults = faults
                    if "slow" in faults:
                        time.sleep(server.slow_seconds)
                    if "rate_limit" in faults:
                        response = emulator.rate_limited(request, 1)
                    elif "server_error" in faults:
                        response = Response(
                            503, b"<html><body>503 Service Unavailable</body></html>", content_type="text/html"
                        )
                    else:
                        response = route.handler(request, **groups)
                        response.headers = {**emulator.common_headers(request), **response.headers}
                        response = server.drift.apply(request, response)
            except HTTPError as exc:
                response = emulator.error(request, exc)
            except Exception as exc:  # an emulator bug: answer 500 and say so in the log
                log.exception("sandbox %s %s failed", method, self.path)
                response = json_response({"message": f"sandbox error: {exc}"}, 500)
            server.record(
                {
                    "ts": received.isoformat(),
                    "system": system,
                    "method": method,
                    "path": path,
                    "query": {k: v if len(v) > 1 else v[0] for k, v in query.items()},
                    "status": response.status,
                    "faults": sorted(faults),
                }
            )
            if server.capture and response.status < 400:
                if response.streamed:
                    response.body = server.capture.stream(system, response.body)
                else:
                    server.capture.body(system, bytes(response.body))  # type: ignore[arg-type]
            self._send(response, truncate="truncate" in faults)

        def _admin(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if path.rstrip("/") == "/as-of":
                if method in ("PUT", "POST"):
                    at = parse_as_of((query.get("at") or [""])[0])
                    if at is None:
                        self._send(json_response({"message": "give ?at=<ISO time>"}, 400))
                        return
                    server.as_of = at
                self._send(json_response({"as_of": server.as_of.isoformat()}))
                return
            if path.rstrip("/") == "/env":
                self._send(json_response(server.env()))
                return
            self._send(json_response({"message": "unknown sandbox admin path"}, 404))

        def _send(self, response: Response, truncate: bool = False) -> None:
            gzip_it = response.gzip_ok and "gzip" in (self.headers.get("Accept-Encoding") or "")
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for k, v in response.headers.items():
                self.send_header(k, v)
            if response.streamed:
                self.send_header("Transfer-Encoding", "chunked")
                if gzip_it:
                    self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                self._stream(response.body, gzip_it, truncate)  # type: ignore[arg-type]
                return
            body = bytes(response.body)  # type: ignore[arg-type]
            if gzip_it and len(body) > 1400:  # Mixpanel compresses responses over 1400 bytes
                body = gzip.compress(body, compresslevel=1)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if truncate:  # the connection drops mid-body
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def _stream(self, chunks: Any, gzip_it: bool, truncate: bool) -> None:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip_it else None
            sent = 0
            for chunk in chunks:
                data = compressor.compress(chunk) if compressor else chunk
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    sent += 1
                if truncate and sent >= 2:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.wfile.flush()
                        self.connection.shutdown(2)
                    return
            if compressor:
                tail = compressor.flush()
                if tail:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def _match(emulator: SystemEmulator, method: str, path: str) -> tuple[Any, dict[str, str]]:
    allowed = False
    for route in emulator.route_table():
        m = route.pattern.match(path)
        if m:
            if route.method == method:
                return route, m.groupdict()
            allowed = True
    raise HTTPError(405 if allowed else 404, "Method Not Allowed" if allowed else "Not Found")


def _canonical(query: dict[str, list[str]]) -> str:
    return "&".join(f"{k}={v}" for k in sorted(query) for v in query[k])


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write KEY=value lines atomically (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in env.items())
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


class SandboxProcess:
    """`opsmap sandbox serve` as a child process; `env` is its configuration once it is up."""

    def __init__(self, args: list[str], env_file: Path, timeout: float = 60.0) -> None:
        self.env_file = env_file
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "sandbox",
                "serve",
                "--port",
                "0",
                "--env-file",
                str(env_file),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # `stop()` never runs if this process is SIGKILLed: the child then stops by itself,
            # instead of serving (and holding its port and its world in memory) forever.
            env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
        )
        deadline = time.monotonic() + timeout
        while not env_file.exists():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"the sandbox failed to start:\n{err}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the sandbox did not start within {timeout:.0f} s")
            time.sleep(0.05)
        self.env = read_env_file(env_file)

    @property
    def url(self) -> str:
        base = self.env["SOURCES__GITHUB__BASE_URL"]
        return base.rsplit("/", 1)[0]

    def as_of(self) -> str:
        """The world's present, as the server reports it."""
        from urllib.request import urlopen

        with urlopen(f"{self.url}/_sandbox/as-of", timeout=10) as response:
            return str(json.loads(response.read())["as_of"])

    def set_as_of(self, at: str) -> None:
        from urllib.request import Request as UrlRequest
        from urllib.request import urlopen

        with urlopen(UrlRequest(f"{self.url}/_sandbox/as-of?at={at}", method="PUT"), timeout=10):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_timeout(scale: float) -> float:
    """Seconds to wait for a sandbox to serve: generating its world grows with the scale (≈ 10 s at
    scale 1, minutes at scale 10)."""
    return 60.0 * max(1.0, scale)


@contextlib.contextmanager
def spawn_sandbox(
    *,
    seed: int = 42,
    scale: float = 1.0,
    as_of: str | None = None,
    faults: str | None = None,
    access_log: Path | None = None,
    workdir: Path | None = None,
) -> Iterator[SandboxProcess]:
    """Run the sandbox in a child process for the duration of the block."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        args = ["--seed", str(seed), "--scale", str(scale)]
        if as_of:
            args += ["--as-of", as_of]
        if faults:
            args += ["--faults", faults]
        if access_log:
            args += ["--access-log", str(access_log)]
        proc = SandboxProcess(args, Path(tmp) / "sandbox.env", timeout=start_timeout(scale))
        try:
            yield proc
        finally:
            proc.stop()
