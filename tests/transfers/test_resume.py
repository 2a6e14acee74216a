"""Interrupted uploads resume at the server's offset instead of starting over."""
from __future__ import annotations

import base64
import hashlib
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from tests.conftest import PASSWORD, wait_until

from oaiofs import protocol
from oaiofs.client.api import ApiClient
from oaiofs.client.uploads import TusUploader
from oaiofs.errors import InvalidValue

from .helpers import basic_session, cut_patch, new_id, sha256, tus_create, write_random

UNIT = protocol.CHUNK_UNIT

KILLED_CLIENT = textwrap.dedent("""
    import sys, threading
    from oaiofs import protocol
    from oaiofs.client.api import ApiClient
    from oaiofs.client.uploads import TusUploader
    base, user, password, src, oaio_id, url_file, stop_at = sys.argv[1:]
    uploader = TusUploader(ApiClient(base, user, password), chunk_size=protocol.CHUNK_UNIT)

    def on_url(url):
        with open(url_file, "w") as handle:
            handle.write(url)

    def on_progress(done, total):
        if done >= int(stop_at):
            threading.Event().wait()     # stuck until the test kills this process

    uploader.upload_file(src, oaio_id, "big.bin", on_url=on_url, on_progress=on_progress)
""")


class StopUpload(Exception):
    """Raised from a progress callback to abandon an upload mid-way."""


def test_client_process_killed_mid_upload_resumes_from_persisted_url(live_server, make_user, api_for,
                                                                      tmp_path: Path):
    user = make_user("resume")
    src = tmp_path / "big.bin"
    data = write_random(src, 8 * UNIT + 777)
    oaio_id, url_file = new_id(), tmp_path / "upload-url"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, live_server.url, user, PASSWORD, str(src),
                             oaio_id, str(url_file), str(3 * UNIT)])
    try:
        uploader = TusUploader(api_for(user), chunk_size=UNIT)
        wait_until(lambda: url_file.exists() and url_file.read_text(), message="the persisted upload URL")
        url = url_file.read_text()
        wait_until(lambda: uploader.offset(url) >= 3 * UNIT, message="3 chunks on the server")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at_kill = uploader.offset(url)
    assert 3 * UNIT <= at_kill < len(data)

    result = uploader.upload_file(src, oaio_id, "big.bin", url=url)
    assert uploader.bytes_sent == len(data) - at_kill          # only the rest went over the wire
    assert result["sha256"] == sha256(data) and result["size"] == len(data)
    assert api_for(user).get_file(oaio_id, "big.bin") == data


def test_connection_cut_mid_patch_keeps_received_bytes(live_server, make_user, api_for, tmp_path: Path):
    user = make_user("cut")
    src = tmp_path / "cut.bin"
    data = write_random(src, 5 * UNIT + 4321)
    oaio_id = new_id()
    created = tus_create(basic_session(user), live_server.url, oaio_id, "cut.bin", len(data), sha256=sha256(data))
    path = created.headers["Location"]
    sent = 3 * UNIT + 123                                      # not a multiple of any buffer size
    cut_patch(live_server.port, user, path, data, sent)
    uploader = TusUploader(api_for(user), chunk_size=UNIT)
    url = live_server.url + path
    wait_until(lambda: uploader.offset(url) == sent, message="the server to keep the bytes of the cut PATCH")

    result = uploader.upload_file(src, oaio_id, "cut.bin", url=url)
    assert uploader.bytes_sent == len(data) - sent
    assert result["sha256"] == sha256(data)
    assert api_for(user).get_file(oaio_id, "cut.bin") == data


def test_cut_chunk_with_checksum_is_dropped_whole(live_server, make_user, api_for):
    user = make_user("cutsum")
    data = b"q" * (2 * UNIT)
    oaio_id = new_id()
    path = tus_create(basic_session(user), live_server.url, oaio_id, "q.bin", len(data)).headers["Location"]
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    cut_patch(live_server.port, user, path, data, UNIT, {"Upload-Checksum": f"sha256 {digest}"})
    uploader = TusUploader(api_for(user), chunk_size=UNIT)
    url = live_server.url + path
    # requests on one upload run one at a time: a 1-byte chunk at offset 0 lands after the cut one,
    # and would be swallowed as a re-send if the cut chunk's bytes had been kept
    assert uploader.send_chunk(url, 0, data[:1])[0] == 1
    assert uploader.offset(url) == 1


def test_upload_resumes_after_server_restart(server_factory, tmp_path: Path):
    server = server_factory()
    user = server.add_user("restarter")
    src = tmp_path / "r.bin"
    data = write_random(src, 6 * UNIT + 99)
    oaio_id, urls = new_id(), []

    def stop_after_two(done: int, _total: int) -> None:
        if done >= 2 * UNIT:
            raise StopUpload()

    first = TusUploader(ApiClient(server.url, user, PASSWORD), chunk_size=UNIT)
    with pytest.raises(StopUpload):
        first.upload_file(src, oaio_id, "r.bin", on_url=urls.append, on_progress=stop_after_two)
    server.restart()

    api = ApiClient(server.url, user, PASSWORD)
    second = TusUploader(api, chunk_size=UNIT)
    assert second.offset(urls[0]) == 2 * UNIT
    result = second.upload_file(src, oaio_id, "r.bin", url=urls[0])
    assert second.bytes_sent == len(data) - 2 * UNIT
    assert result["sha256"] == sha256(data)
    assert api.get_file(oaio_id, "r.bin") == data
    api.close()


def test_chunk_size_must_be_a_multiple_of_1280_kib(live_server, make_user, api_for):
    api = api_for(make_user("cs"))
    for bad in (0, 1 << 20, UNIT + 1, -UNIT):
        with pytest.raises(InvalidValue, match="multiple of 1310720"):
            TusUploader(api, chunk_size=bad)
    assert TusUploader(api, chunk_size=2 * UNIT).chunk_size == 2 * UNIT


def test_uploader_reports_conflicts_and_rights(live_server, make_user, api_for, tmp_path: Path):
    owner, reader = make_user("own"), make_user("reader")
    api = api_for(owner)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    api.set_subscription(oaio_id, reader, "r")
    v1 = api.put_file(oaio_id, "x.txt", b"one")
    src = tmp_path / "x.txt"
    src.write_bytes(b"two")
    from oaiofs.errors import Forbidden, VersionConflict
    with pytest.raises(VersionConflict):
        TusUploader(api).upload_file(src, oaio_id, "x.txt", base_version=v1["version"] - 1)
    with pytest.raises(Forbidden):
        TusUploader(api_for(reader)).upload_file(src, oaio_id, "x.txt")
    progress: list[int] = []
    result = TusUploader(api).upload_file(src, oaio_id, "x.txt", base_version=v1["version"],
                                          on_progress=lambda done, total: progress.append(done))
    assert result["version"] > v1["version"] and progress[-1] == 3
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert TusUploader(api).upload_file(empty, oaio_id, "empty")["size"] == 0
    assert api.get_file(oaio_id, "empty") == b""


def test_upload_continues_on_another_server_process(server_factory, tmp_path: Path):
    first = server_factory(tmp_path / "shared-data")
    second = server_factory(tmp_path / "shared-data")            # same database and blobs, other process
    user = first.add_user("roamer")
    src = tmp_path / "roam.bin"
    data = write_random(src, 3 * UNIT + 5)
    oaio_id, urls = new_id(), []

    def stop_after_one(done: int, _total: int) -> None:
        if done >= UNIT:
            raise StopUpload()

    with pytest.raises(StopUpload):
        TusUploader(ApiClient(first.url, user, PASSWORD), chunk_size=UNIT).upload_file(
            src, oaio_id, "roam.bin", on_url=urls.append, on_progress=stop_after_one)
    api = ApiClient(second.url, user, PASSWORD)
    uploader = TusUploader(api, chunk_size=UNIT)
    result = uploader.upload_file(src, oaio_id, "roam.bin", url=urls[0])   # first's URL, second's API
    assert uploader.bytes_sent == len(data) - UNIT
    assert result["sha256"] == sha256(data)             # hashed from the staged bytes: no running hash here
    assert ApiClient(first.url, user, PASSWORD).get_file(oaio_id, "roam.bin") == data
    api.close()


def test_uploader_retries_through_a_server_outage(server_factory, tmp_path: Path):
    server = server_factory()
    user = server.add_user("outage")
    src = tmp_path / "o.bin"
    data = write_random(src, 5 * UNIT + 17)
    restarter: list[threading.Thread] = []

    def kill_after_two(done: int, _total: int) -> None:
        if done >= 2 * UNIT and not restarter:
            server.stop(kill=True)                      # the server dies between two chunks ...
            restarter.append(threading.Thread(target=server.start))
            restarter[0].start()                        # ... and comes back a few seconds later

    api = ApiClient(server.url, user, PASSWORD)
    uploader = TusUploader(api, chunk_size=UNIT, max_attempts=10, backoff_cap_s=2)
    result = uploader.upload_file(src, new_id(), "o.bin", on_progress=kill_after_two)
    restarter[0].join()
    assert result["sha256"] == sha256(data)
    assert uploader.bytes_sent <= len(data) + UNIT        # at most the chunk in flight was sent twice
    api.close()


def test_resume_url_of_other_bytes_starts_over(live_server, make_user, api_for, tmp_path: Path):
    api = api_for(make_user("changed"))
    src = tmp_path / "c.bin"
    write_random(src, UNIT + 10)
    oaio_id, urls = new_id(), []

    def stop(done: int, _total: int) -> None:
        if done >= UNIT:
            raise StopUpload()

    with pytest.raises(StopUpload):
        TusUploader(api, chunk_size=UNIT).upload_file(src, oaio_id, "c.bin", on_url=urls.append, on_progress=stop)
    data = write_random(src, UNIT + 20)                 # the file changed size before the resume
    uploader = TusUploader(api, chunk_size=UNIT)
    result = uploader.upload_file(src, oaio_id, "c.bin", url=urls[0], on_url=urls.append)
    assert len(urls) == 2 and uploader.bytes_sent == len(data)
    assert result["sha256"] == sha256(data) and api.get_file(oaio_id, "c.bin") == data
    # a completed upload answers for its own bytes only
    again = TusUploader(api, chunk_size=UNIT)
    assert again.upload_file(src, oaio_id, "c.bin", url=urls[1])["version"] == result["version"]
    assert again.bytes_sent == 0
