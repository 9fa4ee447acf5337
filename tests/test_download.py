"""claptune.download: checksums, atomic placement, resume with HTTP Range, fast clear failures.
Only file:// URLs and a server on 127.0.0.1 are used; nothing leaves the machine."""

from __future__ import annotations

import hashlib
import http.server
import socket
import tarfile
import threading
import time
import zipfile

import pytest

from claptune.download import download, extract_archive
from claptune.errors import ClaptuneError

PAYLOAD = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of the read chunk


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _RangeHandler.ranges = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_file_url_with_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    got = download(src.as_uri(), dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert not dest.with_name("file.bin.part").exists()


def test_checksum_mismatch_writes_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "file.bin"
    with pytest.raises(ClaptuneError, match="md5"):
        download(src.as_uri(), dest, md5="0" * 32, progress=False)
    assert not dest.exists() and not dest.with_name("file.bin.part").exists()


def test_resume_uses_range(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(PAYLOAD[:300_000])
    download(f"{server}/file.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == ["bytes=300000-"]


def test_existing_good_file_is_not_fetched(tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    url = f"http://127.0.0.1:{_closed_port()}/file.bin"  # would fail if contacted
    assert download(url, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest()) == dest


def test_existing_bad_file_is_replaced(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    download(f"{server}/f", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_unreachable_fails_fast_with_where_to_put_it(tmp_path):
    dest = tmp_path / "data" / "archive.zip"
    t0 = time.perf_counter()
    with pytest.raises(ClaptuneError) as err:
        download(
            f"http://127.0.0.1:{_closed_port()}/archive.zip",
            dest,
            timeout=5,
            hint="or pass --root",
            progress=False,
        )
    assert time.perf_counter() - t0 < 5
    message = str(err.value)
    assert "\n" not in message and str(dest) in message and "--root" in message
    assert not dest.exists()


def test_extract_zip_and_tar(tmp_path):
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("top/meta/x.csv", "a,b\n")
    tpath = tmp_path / "b.tar.gz"
    inner = tmp_path / "inner.txt"
    inner.write_text("hello")
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(inner, arcname="top/audio/y.txt")
    root = tmp_path / "root"
    extract_archive(zpath, root)
    extract_archive(tpath, root)  # merges into the existing tree
    assert (root / "top/meta/x.csv").read_text() == "a,b\n"
    assert (root / "top/audio/y.txt").read_text() == "hello"


def test_extract_refuses_path_traversal(tmp_path):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(ClaptuneError, match="outside"):
        extract_archive(zpath, tmp_path / "root")
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_refuses_links_in_tar(tmp_path):
    """Links are refused whether or not this Python has tarfile's "data" filter."""
    tpath = tmp_path / "links.tar"
    with tarfile.open(tpath, "w") as tf:
        link = tarfile.TarInfo("top/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(ClaptuneError, match="not a plain file"):
        extract_archive(tpath, tmp_path / "root")
    assert not (tmp_path / "root" / "top" / "passwd").exists()
