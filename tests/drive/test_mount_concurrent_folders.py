"""Issue 12 item 9, through a real mount: folders and files created here never vanish from the view
while the change feed applies remote changes (of another object and of the same one).

A bounded, seeded randomized run (``OAIOFS_STRESS_SEED`` replays one; ``OAIOFS_STRESS_STEPS`` sets
the length, default 40 steps per mount thread). Each step checks that every folder and file this
mount created is still there; the end compares everything with a second mount with an empty cache.
"""
from __future__ import annotations

import os
import random
import threading

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import mount_status

pytestmark = pytest.mark.timeout(600)

REMOTE_FILES = 150


def test_local_folders_never_vanish_while_remote_changes_arrive(live_server, make_user, api_for, mounted_drive):
    seed = int(os.environ.get("OAIOFS_STRESS_SEED") or random.randrange(1 << 30))
    steps = int(os.environ.get("OAIOFS_STRESS_STEPS") or 40)
    print(f"seed {seed}, {steps} steps")                           # shown on failure: replay with the seed
    user = make_user("folders")
    api = api_for(user)
    busy = api.create_object({"_name": "Busy"})["oaio_id"]
    drive = mounted_drive(live_server, user, extra_args=("--attr-timeout", "0", "--entry-timeout", "0"))
    fresh = drive.path("Fresh")
    os.mkdir(fresh)                                                  # a new object folder, made here
    stop = threading.Event()
    errors: list[str] = []
    remote: dict[str, bytes] = {}

    def remote_changes() -> None:
        fresh_id = None
        for i in range(REMOTE_FILES):
            if stop.is_set():
                return
            try:
                if fresh_id is None and i % 10 == 0:
                    fresh_id = next((o["oaio_id"] for o in api.list_objects()[0]
                                     if o["values"].get("_name") == "Fresh"), None)
                if fresh_id is not None and i % 7 == 0:              # some land in the object being edited
                    name = f"remote-{i}.txt"
                    api.put_file(fresh_id, name, name.encode())
                    remote[name] = name.encode()
                else:
                    api.put_file(busy, f"r/{i // 50}/f{i}.txt", b"x" * (i % 300))
            except Exception as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(f"remote writer: {exc!r}")
                return

    made_dirs: list[str] = []
    made_files: dict[str, bytes] = {}
    lock = threading.Lock()

    def check_all(who: str) -> None:
        with lock:
            dirs, files = list(made_dirs), dict(made_files)
        for d in dirs:
            if not os.path.isdir(fresh / d):
                errors.append(f"{who}: folder {d} vanished")
        for f in files:
            if not os.path.isfile(fresh / f):
                errors.append(f"{who}: file {f} vanished")

    def local_worker(name: str, rng: random.Random) -> None:
        try:
            for step in range(steps):
                if errors or stop.is_set():
                    return
                with lock:
                    dirs = list(made_dirs)
                action = rng.random()
                if action < 0.4 or not dirs:                        # makedirs, then a file in it at once
                    parent = rng.choice(dirs) + "/" if dirs and rng.random() < 0.3 else ""
                    d = f"{parent}{name}-d{step}"
                    os.makedirs(fresh / d)
                    with lock:
                        made_dirs.append(d)
                    f, data = f"{d}/f.txt", f"{name} {step}".encode()
                    with open(fresh / f, "wb") as fh:               # ENOENT here was the bug
                        fh.write(data)
                    with lock:
                        made_files[f] = data
                elif action < 0.8:                                  # a file in an existing folder
                    f, data = f"{rng.choice(dirs)}/{name}-g{step}.txt", os.urandom(rng.randrange(1, 5000))
                    (fresh / f).write_bytes(data)
                    with lock:
                        made_files[f] = data
                else:                                               # a file at the object's top
                    f, data = f"{name}-top{step}.txt", b"top"
                    (fresh / f).write_bytes(data)
                    with lock:
                        made_files[f] = data
                check_all(name)
        except OSError as exc:
            errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=remote_changes, name="remote")]
    threads += [threading.Thread(target=local_worker, args=(n, random.Random(f"{seed}-{n}")), name=n)
                for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(timeout=400)
    stop.set()
    threads[0].join(timeout=120)
    assert not errors, f"seed {seed}: {errors[:5]}"
    check_all("end")
    assert not errors, f"seed {seed}: {errors[:5]}"

    wait_until(lambda: not mount_status(drive.mountpoint)["ops"], timeout=240, message="journal drained")
    other = mounted_drive(live_server, user)                         # empty cache: the server's truth
    for d in made_dirs:
        assert other.path("Fresh", d).is_dir(), (seed, d)
    for f, data in {**made_files, **remote}.items():
        assert other.path("Fresh", f).read_bytes() == data, (seed, f)
    assert not [n for n in os.listdir(other.path("Fresh")) if "conflict" in n]   # one writer: no copies
