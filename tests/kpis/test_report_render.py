"""The KPI report opens in headless Chromium without errors and its charts render (a screenshot is taken).

Chromium comes from Debian's packages (`apt-get install chromium`; `.ci/run` installs it).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed for this test: apt-get install chromium (CI installs it)"
    return path


def png_distinct_rows(png: bytes) -> int:
    """How many distinct pixel rows a PNG has (a blank page has one): enough to tell charts were drawn."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, width, height, bpp = 8, b"", 0, 0, 4
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _, color = struct.unpack(">IIBB", chunk[:10])
            bpp = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            data += chunk
        pos += 12 + length
    raw = zlib.decompress(data)
    stride = width * bpp + 1
    return len({raw[r * stride + 1 : (r + 1) * stride] for r in range(height)})


@pytest.fixture(scope="module")
def report(built_warehouse: dict) -> Path:
    path = built_warehouse["paths"].reports / "kpi_report.html"
    assert path.exists(), "the nightly run writes the report"
    return path


def test_the_report_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert html.count("<svg") >= 6, "success, four DORA trends and the waterfall"
    for outside in ("<script", "http://", "https://cdn", "<link "):
        assert outside not in html.replace("http://www.w3.org", ""), f"the report must not load {outside!r}"


def test_the_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") >= 6 and "Success metrics" in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1200,2400", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert png_distinct_rows(shot.read_bytes()) > 200, "the screenshot is (nearly) blank"
