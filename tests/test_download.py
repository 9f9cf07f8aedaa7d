"""`evorec data download`: checksums, unpacking, and resuming a broken download."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from evorec.data.download import SOURCES, DownloadSource, download
from evorec.data.schema import DataError


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    """A zip in MovieLens's shape: one top folder holding the files."""
    path = tmp_path / "served" / "ml-tiny.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as packed:
        packed.writestr("ml-tiny/u.data", "1\t10\t4\t881250949\n" * 2000)
        packed.writestr("ml-tiny/u.item", "10|Toy Story (1995)|||" + "|0" * 19 + "\n")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_url_is_fetched_checked_and_unpacked(
    tmp_path: Path, archive: tuple[Path, str]
) -> None:
    path, digest = archive
    source = DownloadSource("ml-tiny", path.as_uri(), digest)
    folder = download(source, tmp_path / "raw")
    assert folder == tmp_path / "raw" / "ml-tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.item"]
    assert not list((tmp_path / "raw").glob("*.part"))
    # Already there with the right checksum: not fetched again.
    path.unlink()
    assert download(source, tmp_path / "raw") == folder


def test_a_wrong_checksum_keeps_nothing(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, _ = archive
    with pytest.raises(DataError, match=r"SHA-256 .* is not the expected 000"):
        download(DownloadSource("ml-tiny", path.as_uri(), "0" * 64), tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with support for `Range: bytes=N-`, as real download servers do."""

    requests: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        RangeHandler.requests.append(self.headers.get("Range"))
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        start = (
            int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        )
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server(archive: tuple[Path, str]) -> Iterator[str]:
    directory = str(archive[0].parent)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: RangeHandler(*a, directory=directory)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RangeHandler.requests = []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_broken_download_resumes_where_it_stopped(
    tmp_path: Path, archive: tuple[Path, str], http_server: str
) -> None:
    path, digest = archive
    raw = tmp_path / "raw"
    raw.mkdir()
    head = path.read_bytes()[:1000]
    (raw / "ml-tiny.zip.part").write_bytes(head)
    seen: list[tuple[int, int | None]] = []
    folder = download(
        DownloadSource("ml-tiny", f"{http_server}/ml-tiny.zip", digest),
        raw,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert RangeHandler.requests == ["bytes=1000-"]
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert (folder / "u.data").exists()


def test_the_known_datasets_have_checksums_and_sizes() -> None:
    assert {"ml-100k", "ml-1m", "ml-latest-small"} <= set(SOURCES)
    for source in SOURCES.values():
        assert len(source.sha256) == 64
        assert source.size
