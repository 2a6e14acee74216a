"""The shared scenario suite: every scenario of scenarios.py on the Vfs (no FUSE) and on a real mount.

Both run against a real server on 127.0.0.1. Per drive kind, one user and one drive run
every scenario, each in its own object folder, comparing the tree after the scenario; the
last test waits until the drive's uploads are done and reads every scenario's tree back
through a second drive of the same kind with an empty cache.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ServerProcess
from tests.scenarios.adaptors import Fs, MountFs, VfsFs
from tests.scenarios.scenarios import SCENARIOS, Tree, differences, read_tree

KINDS = ("vfs", "mount")


@dataclass
class World:
    """One user and one drive of one kind, shared by the module's scenarios."""

    kind: str
    server: ServerProcess
    user: str
    tmp: Path
    fs: Fs = field(init=False)
    expected: dict[str, Tree] = field(default_factory=dict)      # object folder -> tree a scenario left
    drives: int = 0

    def __post_init__(self) -> None:
        self.fs = self.new_drive()

    def new_drive(self) -> Fs:
        """A drive of this kind with a cache of its own (empty)."""
        self.drives += 1
        where = self.tmp / f"drive{self.drives}"
        if self.kind == "vfs":
            return VfsFs(self.server, self.user, where / "cache")
        return MountFs(self.server, self.user, where)


@pytest.fixture(scope="module", params=KINDS)
def world(request: pytest.FixtureRequest, live_server: ServerProcess,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    user = live_server.add_user(f"scen-{request.param}-{uuid.uuid4().hex[:6]}")
    w = World(request.param, live_server, user, tmp_path_factory.mktemp(f"scenarios-{request.param}"))
    try:
        yield w
    finally:
        w.fs.stop()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(world: World, name: str) -> None:
    root = "s-" + name.replace("_", "-")[:60]
    world.fs.mkdir(root)
    want = SCENARIOS[name](world.fs, root)
    problems = differences(want, read_tree(world.fs, root))
    assert not problems, f"{world.kind}: {name}: {problems}"
    world.expected[root] = want


def test_a_second_drive_with_an_empty_cache_reads_what_the_scenarios_left(world: World) -> None:
    if not world.expected:
        pytest.skip("no scenario ran before this test in this session")
    world.fs.settle()
    fresh = world.new_drive()
    try:
        problems = {root: differences(want, read_tree(fresh, root)) for root, want in world.expected.items()}
    finally:
        fresh.stop()
    assert not any(problems.values()), {root: p for root, p in problems.items() if p}
