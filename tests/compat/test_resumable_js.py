"""The real ``tus-js-client`` 4.x (npm, under node) uploads with tus 1.0 and both IETF resumable-upload drafts."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from oaiofs import protocol
from tests.conftest import PASSWORD

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node") or shutil.which("nodejs")
pytestmark = pytest.mark.skipif(NODE is None or not (JS_DIR / "node_modules" / "tus-js-client").is_dir(),
                                reason="node or tests/js/node_modules missing (run scripts/install --test)")


def _run(server, user: str, src: Path, protocol_name: str, metadata: dict[str, str], **options) -> dict:
    auth = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    args = dict({"endpoint": server.url + protocol.PATH_UPLOADS, "authorization": auth, "file": str(src),
                 "protocol": protocol_name, "metadata": metadata, "chunkSize": 64 * 1024}, **options)
    out = subprocess.run([NODE, str(JS_DIR / "tus_upload.js"), json.dumps(args)], cwd=JS_DIR, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol_name,during_creation", [
    ("tus-v1", False), ("ietf-draft-03", False), ("ietf-draft-05", False), ("ietf-draft-05", True),
    ("ietf-draft-03", True)])
def test_tus_js_client_uploads_interrupted_and_resumed(live_server, make_user, api_for, tmp_path: Path,
                                                      protocol_name: str, during_creation: bool):
    user = make_user("js")
    data = random.Random(protocol_name).randbytes(5 * 64 * 1024 + 777)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    oaio_id = f"js-{hashlib.sha1(user.encode()).hexdigest()[:10]}"
    digest = hashlib.sha256(data).hexdigest()
    meta = {"oaio_id": oaio_id, "path": f"js/{protocol_name}/ü.bin", "sha256": digest}

    first = _run(live_server, user, src, protocol_name, meta, stopAfter=2 * 64 * 1024,
                 dataDuringCreation=during_creation)
    assert first.get("error") is None and first["done"] is False and first["url"], first
    status = requests.head(first["url"], auth=(user, PASSWORD), timeout=30,
                           headers={"Tus-Resumable": "1.0.0"})
    kept = int(status.headers["Upload-Offset"])
    assert 0 < kept < len(data)

    second = _run(live_server, user, src, protocol_name, meta, uploadUrl=first["url"])
    assert second.get("error") is None and second["done"] is True, second
    assert second["offsetAtStart"] == kept and second["bytesSent"] == len(data) - kept   # resumed, not restarted
    files = {f["path"]: f for f in api_for(user).get_object(oaio_id)["files"]}
    assert files[meta["path"]]["sha256"] == digest
    assert api_for(user).get_file(oaio_id, meta["path"]) == data


def test_ietf_wrong_offset_rights_and_sha256(live_server, make_user, api_for):
    owner, reader = make_user("ietf-owner"), make_user("ietf-reader")
    api = api_for(owner)
    oaio_id = api.create_object({}, f"ietf-{owner[-8:]}")["oaio_id"]
    api.set_subscription(oaio_id, reader, "r")
    url = live_server.url + protocol.PATH_UPLOADS
    meta = protocol.encode_upload_metadata({"oaio_id": oaio_id, "path": "x.bin"})
    hdr = {"Upload-Draft-Interop-Version": "6", "Upload-Metadata": meta}
    res = requests.post(url, headers=dict(hdr, **{"Upload-Complete": "?0"}), auth=(reader, PASSWORD), timeout=30)
    assert res.status_code == 403                                           # a reader may not upload
    res = requests.post(url, headers=dict(hdr, **{"Upload-Draft-Interop-Version": "2"}), auth=(owner, PASSWORD),
                        timeout=30)
    assert res.status_code == 400                                           # unknown interop version
    res = requests.post(url, headers=dict(hdr, **{"Upload-Complete": "?0", "Content-Type": PARTIAL}),
                        data=b"abc", auth=(owner, PASSWORD), timeout=30)
    assert res.status_code == 201 and res.headers["Upload-Offset"] == "3" and res.headers["Upload-Complete"] == "?0"
    loc = live_server.url + res.headers["Location"]
    res = requests.patch(loc, headers={"Upload-Draft-Interop-Version": "6", "Upload-Offset": "5",
                                       "Upload-Complete": "?1", "Content-Type": PARTIAL}, data=b"def",
                         auth=(owner, PASSWORD), timeout=30)
    assert res.status_code == 409 and res.headers["Upload-Offset"] == "3"  # the server's offset
    res = requests.patch(loc, headers={"Upload-Draft-Interop-Version": "6", "Upload-Offset": "3",
                                       "Upload-Complete": "maybe"}, data=b"def", auth=(owner, PASSWORD), timeout=30)
    assert res.status_code == 400
    res = requests.patch(loc, headers={"Upload-Draft-Interop-Version": "6", "Upload-Offset": "3",
                                       "Upload-Complete": "?1", "Content-Type": PARTIAL}, data=b"def",
                         auth=(owner, PASSWORD), timeout=30)
    assert res.status_code == 204 and res.headers["Upload-Complete"] == "?1"     # length fixed by the last part
    assert res.headers[protocol.HEADER_UPLOAD_RESULT_SHA256] == hashlib.sha256(b"abcdef").hexdigest()
    assert api.get_file(oaio_id, "x.bin") == b"abcdef"
    head = requests.head(loc, headers={"Upload-Draft-Interop-Version": "6"}, auth=(owner, PASSWORD), timeout=30)
    assert head.status_code == 204 and head.headers["Upload-Complete"] == "?1" and head.headers["Upload-Offset"] == "6"

    bad = protocol.encode_upload_metadata({"oaio_id": oaio_id, "path": "y.bin", "sha256": "0" * 64})
    res = requests.post(url, headers={"Upload-Draft-Interop-Version": "5", "Upload-Metadata": bad,
                                      "Upload-Complete": "?1"}, data=b"payload", auth=(owner, PASSWORD), timeout=30)
    assert res.status_code == 460 and res.json()["error"] == "checksum_mismatch", res.text
    assert "y.bin" not in [f["path"] for f in api.get_object(oaio_id)["files"]]   # a wrong sha256 commits nothing


PARTIAL = "application/partial-upload"
