"""``oaiofs quickstart``: a local server, a demo user, demo objects and a mounted drive.

Idempotent: a server already answering on the port is reused, an existing demo
user and existing demo objects are kept, and a mountpoint that is already an
oaiofs mount is left as it is. Everything runs on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import platformdirs

from . import protocol
from .errors import OaioError, Unauthorized
from .spawn import oaiofs_argv

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
DEMO_OBJECTS = [
    ({"_name": "Welcome", "purpose": "a first oaio", "tags": ["demo"]},
     {"README.txt": b"This folder is an oaio object: edit values.json or any file here.\n"}),
    ({"_name": "Photos", "album": "holidays", "year": 2026},
     {"2026/beach.txt": b"(a photo would be here)\n", "2026/mountains.txt": b"(another one)\n"}),
    ({"_name": "Shopping list", "shop": "market"},
     {"list.md": b"- apples\n- bread\n- cheese\n"}),
]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``quickstart`` sub-command."""
    data_default = Path(platformdirs.user_data_dir("oaiofs"))
    p = sub.add_parser("quickstart", help="start a local server with demo data and mount it")
    p.add_argument("--data", type=Path, default=data_default, help=f"server data folder ({data_default})")
    p.add_argument("--port", type=int, default=protocol.DEFAULT_PORT)
    p.add_argument("--mountpoint", type=Path, default=Path.home() / "oaiofs",
                   help="where to mount the drive (~/oaiofs)")
    p.add_argument("--user", default=DEMO_USER)
    p.set_defaults(func=run)


def _server_up(url: str) -> bool:
    import requests
    try:
        return requests.get(url + protocol.PATH_STAMP, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def start_server(data: Path, port: int) -> str:
    """Start ``oaiofs serve`` in the background (or reuse a running one); return its URL."""
    url = f"http://127.0.0.1:{port}"
    if _server_up(url):
        log.info("reusing the server already running at %s", url)
        return url
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "server.log", "ab") as out:
        proc = subprocess.Popen(oaiofs_argv("serve", "--data", str(data),
                                            "--host", "127.0.0.1", "--port", str(port)),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (data / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {data / 'server.log'}")
        if _server_up(url):
            return url
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer within 60 s; see {data / 'server.log'}")


def ensure_user(data: Path, url: str, user: str, password: str) -> None:
    """Create the demo user unless it can already log in."""
    from .client.api import ApiClient
    try:
        ApiClient(url, user, password).whoami()
        return
    except Unauthorized:
        pass
    subprocess.run(oaiofs_argv("user", "add", user, "--data", str(data)),
                   check=True, env=dict(os.environ, OAIOFS_PASSWORD=password))


def ensure_demo_objects(url: str, user: str, password: str) -> None:
    """Create the demo objects the user does not have yet (matched by ``_name``)."""
    from .client.api import ApiClient
    api = ApiClient(url, user, password, app_id="quickstart", device_id="local")
    objects, _cursor = api.list_objects()
    names = {obj["values"].get("_name") for obj in objects}
    for values, files in DEMO_OBJECTS:
        if values["_name"] in names:
            continue
        doc = api.create_object(values)
        for path, content in files.items():
            api.put_file(doc["oaio_id"], path, content)


def mount(url: str, user: str, password: str, mountpoint: Path, data: Path) -> None:
    """Mount the drive in the background unless the mountpoint is already mounted."""
    if os.path.ismount(mountpoint):
        log.info("%s is already mounted", mountpoint)
        return
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(oaiofs_argv("mount", str(mountpoint), "--server", url,
                               "--user", user, "--cache", str(data / f"cache-{user}")),
                   check=True, env=dict(os.environ, OAIOFS_PASSWORD=password))


def run(args: argparse.Namespace) -> int:
    """Start everything and say how to use it."""
    password = os.environ.get("OAIOFS_PASSWORD", DEMO_PASSWORD)
    try:
        url = start_server(args.data, args.port)
        ensure_user(args.data, url, args.user, password)
        ensure_demo_objects(url, args.user, password)
        mount(url, args.user, password, args.mountpoint, args.data)
    except (OaioError, subprocess.CalledProcessError) as exc:
        print(f"oaiofs quickstart failed: {exc}", file=sys.stderr)
        return 1
    print(f"oaiofs server: {url} (data in {args.data})\n"
          f"drive mounted at {args.mountpoint} as user {args.user!r} (password {password!r})\n"
          f"try: ls -l {args.mountpoint}; cat {args.mountpoint}/Welcome/values.json\n"
          f"stop: oaiofs umount {args.mountpoint}; kill $(cat {args.data / 'server.pid'})")
    return 0
