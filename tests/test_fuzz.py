"""Fuzzing with hypothesis (issue 23, 6): every bad input is one line naming the field or file, never a traceback.

Job documents (``parse_job``, ``load_job`` and ``stylecomp job validate``), submissions to a real
server on 127.0.0.1 with its token, CLI arguments, and EXR headers mutated from the shared plates
(read in a worker process, so a crash or a hang is caught and reported as such). The profile comes
from $HYPOTHESIS_PROFILE: ``ci`` (the default, fast) or ``long`` (``make fuzz``); see conftest.py.
$STYLECOMP_FUZZ_LOG, when set, gets one line per case run (``kind outcome``) for the reliability
benchmark.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from stylecomp.cli import cli
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.errors import JobError
from stylecomp.jobspec import Job, load_job, parse_job
from stylecomp.render.cache import RenderCache
from stylecomp.server.access_token import load_or_create_token
from stylecomp.server.app import EngineServer
from tests.tiny_jobs import job_document, write_plates

# Text as users and attackers type it: control characters, newlines, path tricks, format braces, long runs.
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "..",
            "../../etc/passwd",
            "~",
            "$HOME",
            "${X}",
            "{{",
            "%d",
            "a\nb",
            "\r\n",
            "\x00",
            "####",
            "#" * 300,
            "/",
            "\u202e",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    TEXT,
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**9, 1e308]),
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def record(kind: str, outcome: str) -> None:
    """Count a case for the reliability benchmark (only when $STYLECOMP_FUZZ_LOG names a file)."""
    log = os.environ.get("STYLECOMP_FUZZ_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"{kind} {outcome}\n")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a JSON value, the value's own (empty) path first."""
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    """A valid document with 1-4 fields replaced by any JSON value, deleted, or joined by an unknown key."""
    value = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 4))):
        paths = [path for path in _paths(value) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "unknown"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(TEXT)] = draw(JSON)
    return value


def names_a_field(problem: str) -> bool:
    """One line, ``field: reason``."""
    field, _, reason = problem.partition(": ")
    return "\n" not in problem and "\r" not in problem and bool(field) and bool(reason)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root folder with two demo plates and a model folder (never loaded: accepted jobs fail at once)."""
    root = tmp_path_factory.mktemp("fuzz")
    write_plates(root / "plates", 2)
    (root / "model").mkdir()
    return root


@pytest.fixture(scope="module")
def document(workspace: Path) -> dict[str, Any]:
    return job_document(workspace / "plates", workspace / "model", str(workspace / "out" / "demo.####.exr"), 2)


def test_job_documents_are_a_job_or_one_line_per_field(document: dict[str, Any], workspace: Path) -> None:
    @given(mutated(document))
    def check(value: Any) -> None:
        try:
            job = parse_job(json.dumps(value), "job.json", workspace)
        except JobError as exc:
            assert exc.problems and all(names_a_field(problem) for problem in exc.problems), exc.problems
            record("job", "refused")
        else:
            assert isinstance(job, Job)
            record("job", "valid")

    check()


@settings(max_examples=max(settings().max_examples // 2, 10))
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.integers(1, 100_000).map(lambda depth: b"[" * depth),
    )
)
def test_job_files_of_any_bytes_are_one_line(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "bytes.json"
    path.write_bytes(data)
    try:
        load_job(path)
    except JobError as exc:
        assert exc.problems and all("\n" not in problem for problem in exc.problems), exc.problems
        record("job", "refused")
    else:
        record("job", "valid")


def test_job_validate_exits_0_or_2_with_one_line_per_field(document: dict[str, Any], workspace: Path) -> None:
    job_file = workspace / "fuzzed.json"

    @given(mutated(document), st.booleans())
    def check(value: Any, overwrite: bool) -> None:
        job_file.write_text(json.dumps(value), encoding="utf-8")
        result = CliRunner().invoke(cli, ["job", "validate", str(job_file)] + ["--overwrite"] * overwrite)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
        if result.exit_code == 2:
            lines = result.stderr.splitlines()
            assert lines and all(
                line.startswith(f"error: {job_file}: ") and names_a_field(line.split(": ", 2)[2]) for line in lines
            ), result.stderr
        record("job", "valid" if result.exit_code == 0 else "refused")

    check()


def test_validating_a_huge_frame_range_takes_no_memory(document: dict[str, Any], workspace: Path) -> None:
    """Found by the fuzzer: `last: 1000000000` made `job validate` list a billion frames (gigabytes, minutes)."""
    shot = document["shots"][0] | {"frames": {"first": 0, "last": 10**9}, "handles": 10**6}
    job_file = workspace / "huge.json"
    job_file.write_text(json.dumps(document | {"shots": [shot]}), encoding="utf-8")
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["job", "validate", str(job_file)])
    assert result.exit_code == 0 and time.monotonic() - started < 10, result.output


@pytest.fixture(scope="module")
def server(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    """A real server on 127.0.0.1 confined to the workspace, its token and queue in a folder of its own."""
    home = tmp_path_factory.mktemp("server")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STYLECOMP_CACHE_DIR", str(home / "cache"))
        patch.setenv("STYLECOMP_CONFIG_DIR", str(home / "config"))
        engine = EngineServer(
            ("127.0.0.1", 0), load_or_create_token()[0], PipelinePool("cpu"), RenderCache(), roots=[workspace]
        )
        engine.start()
        yield engine
        engine.stop()


def post(engine: EngineServer, body: bytes) -> tuple[int, Any]:
    """POST /jobs with the server's token: the status and the JSON answer (a dropped connection raises)."""
    request = urllib.request.Request(
        engine.url + "/jobs", data=body, method="POST", headers={"Authorization": f"Bearer {engine.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.load(refused)


def test_submissions_get_201_or_4xx_with_one_line_per_field(
    server: EngineServer, document: dict[str, Any], workspace: Path
) -> None:
    fields = st.fixed_dictionaries(
        {},
        optional={
            "base_dir": st.one_of(TEXT, st.just(str(workspace)), JSON),
            "shots": st.one_of(st.just(["demo"]), JSON),
            "frames": st.one_of(st.lists(st.integers(-(2**40), 2**40), max_size=3), JSON),
            "label": JSON,
            "overwrite": JSON,
            "unknown": JSON,
        },
    )
    submissions = st.one_of(
        st.builds(lambda job, extra: json.dumps({"job": job} | extra).encode(), mutated(document), fields),
        st.builds(lambda extra: json.dumps(extra).encode(), JSON),
        st.binary(max_size=100),
    )

    @given(submissions)
    def check(body: bytes) -> None:
        status, answer = post(server, body)
        assert status == 201 or 400 <= status < 500, (status, answer)
        if status != 201:
            assert isinstance(answer.get("error"), str) and "\n" not in answer["error"], answer
            assert all(names_a_field(problem) for problem in answer.get("problems", [])), answer
        record("submission", "accepted" if status == 201 else "refused")

    check()


def _cli_arguments() -> st.SearchStrategy[list[str]]:
    """A command (those that neither serve, train nor start a cluster) with any of its options and values."""
    skip = {"serve", "demo", "model", "animatic"}
    commands: list[tuple[list[str], click.Command]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, command in group.commands.items():
            if name in skip:
                continue
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])
            else:
                commands.append(([*prefix, name], command))

    walk(cli, [])
    values = st.one_of(
        TEXT.filter(lambda text: "\x00" not in text),
        st.integers(-5, 10**6).map(str),
        st.sampled_from(["fuzzed.json", "missing.json", "plate.exr", "1001-1002", "-1", "ray:x"]),
    )

    def arguments(entry: tuple[list[str], click.Command]) -> st.SearchStrategy[list[str]]:
        path, command = entry
        options = [option for param in command.params if isinstance(param, click.Option) for option in param.opts]
        options = [option for option in options if option not in ("--executor", "--address")]  # no Ray cluster
        words = st.one_of(st.sampled_from(options or ["--help"]), values)
        return st.lists(words, max_size=6).map(lambda rest: path + rest)

    return st.sampled_from(commands).flatmap(arguments)


def test_cli_arguments_exit_0_1_or_2_never_a_traceback(
    document: dict[str, Any], workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "fuzzed.json").write_text(json.dumps(document), encoding="utf-8")
    shutil.copyfile(workspace / "plates" / "demo.1001.exr", folder / "plate.exr")

    @settings(max_examples=max(settings().max_examples // 2, 10))
    @given(_cli_arguments())
    def check(arguments: list[str]) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            patch.setenv("STYLECOMP_CACHE_DIR", str(folder / "cache"))
            result = CliRunner().invoke(cli, arguments)
        assert result.exception is None or isinstance(result.exception, SystemExit), (arguments, result.exception)
        assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output, (arguments, result.output)
        if result.exit_code == 2 and not result.stderr.startswith("Usage:"):  # a group without its command: help
            errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
            assert errors, (arguments, result.stderr)
        record("cli", str(result.exit_code))

    check()


# The EXR header mutator. Seeds: the shared plates (copied first: the shared folder is read-only).
SEEDS = (
    "plates/beachball/singlepart.0001.exr",
    "plates/blender_street/street.1001.exr",
    "exr/DisplayWindow_t01.exr",
    "exr/MultiResolution_ColorCodedLevels.exr",
)
MUTANT_TIMEOUT = 30.0  # seconds one mutant may take to read: longer is a hang
WORKER = r"""
import json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a huge header fails to allocate, not to swap
from click.testing import CliRunner
from stylecomp.cli import cli
from stylecomp.errors import PlateError
from stylecomp.io.plates import read_plate
for path in sys.stdin:
    path = path.rstrip("\n")
    result = CliRunner().invoke(cli, ["inspect", path])
    answer = {"exit": result.exit_code, "stderr": result.stderr, "inspect_exception": None, "read": "ok"}
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        answer["inspect_exception"] = "".join(traceback.format_exception(result.exception))
    try:
        read_plate(path)
    except PlateError as exc:
        answer["read"] = "error: " + str(exc)
    except BaseException:
        answer["read"] = "traceback: " + traceback.format_exc()
    print(json.dumps(answer), flush=True)
"""


class PlateReader:
    """A worker process that inspects and reads EXRs; a crash or a hang is an answer too, and a new worker starts."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def read(self, path: Path) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], MUTANT_TIMEOUT + 20)  # + the worker's start
        if not ready:
            self.close()
            return {"hang": True}
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.process = None
            return {"crash": code}
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _attributes(data: bytes) -> list[tuple[int, int, int, int]]:
    """(start of the type name, of the size field, of the value; value size) of each attribute of the first header."""
    found, at = [], 8
    while at < len(data) and data[at] != 0:
        at = data.index(b"\0", at) + 1  # name
        type_at = at
        at = data.index(b"\0", at) + 1  # type
        size = struct.unpack_from("<i", data, at)[0]
        if size < 0:
            raise ValueError(f"attribute size {size}")
        found.append((type_at, at, at + 4, size))
        at += 4 + size
    return found


def _parses(data: bytes) -> bool:
    """Whether the header's attribute list can still be walked (after a size or type change)."""
    try:
        return bool(_attributes(data))
    except (ValueError, struct.error):
        return False


BOUNDARIES = [0, 1, -1, 2**31 - 1, -(2**31), 2**16, 65535, 0x7FFF0000]
EXR_TYPES = [b"box2i", b"int", b"float", b"string", b"chlist", b"compression", b"v2f", b"tiledesc", b"x"]


@st.composite
def exr_mutants(draw: st.DrawFn, seeds: tuple[Path, ...]) -> bytes:
    """A seed with 1-3 header mutations (attribute values, sizes and types, version flags, the offset table, a bit
    flip), then perhaps cut short."""
    data = bytearray(draw(st.sampled_from(seeds)).read_bytes())
    attributes = _attributes(bytes(data))
    for _ in range(draw(st.integers(1, 3))):
        header_end = attributes[-1][2] + attributes[-1][3] + 1
        type_at, size_at, value_at, size = draw(st.sampled_from(attributes))
        action = draw(st.sampled_from(["value_int", "value_bytes", "size", "type", "version", "offsets", "flip"]))
        if action == "value_int" and size >= 4:
            offset = value_at + 4 * draw(st.integers(0, size // 4 - 1))
            number = draw(st.sampled_from(BOUNDARIES) | st.integers(-(2**31), 2**31 - 1))
            data[offset : offset + 4] = struct.pack("<i", number)
        elif action == "value_bytes" and size > 0:
            offset = value_at + draw(st.integers(0, size - 1))
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[offset : offset + len(chunk)] = chunk
        elif action == "size":
            data[size_at : size_at + 4] = struct.pack("<i", draw(st.sampled_from(BOUNDARIES)))
        elif action == "type":
            data[type_at:size_at] = draw(st.sampled_from(EXR_TYPES)) + b"\0"
        elif action == "version":
            data[4 + draw(st.integers(0, 3))] ^= 1 << draw(st.integers(0, 7))
        elif action == "offsets" and header_end + 8 <= len(data):
            offset = header_end + 8 * draw(st.integers(0, min(64, (len(data) - header_end) // 8 - 1)))
            data[offset : offset + 8] = struct.pack("<q", draw(st.sampled_from([0, -1, 1, 2**62, len(data) - 1])))
        elif action == "flip":
            data[draw(st.integers(0, min(header_end + 512, len(data) - 1)))] ^= 1 << draw(st.integers(0, 7))
        if not _parses(bytes(data)):
            break  # the attribute list no longer walks: later mutations would land anywhere
        attributes = _attributes(bytes(data))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data) - 1)) :]
    return bytes(data)


def test_exr_header_mutants_give_one_line_never_a_traceback_or_hang(
    testdata: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("mutants")
    seeds = tuple(Path(shutil.copyfile(testdata / seed, folder / Path(seed).name)) for seed in SEEDS)
    mutant = folder / "mutant.exr"
    reader = PlateReader()

    @settings(max_examples=max(settings().max_examples // 2, 10))
    @given(exr_mutants(seeds))
    def check(data: bytes) -> None:
        mutant.write_bytes(data)
        answer = reader.read(mutant)
        assert "hang" not in answer and "crash" not in answer, answer
        assert answer["inspect_exception"] is None and not answer["read"].startswith("traceback"), answer
        assert answer["exit"] in (0, 2), answer
        if answer["exit"] == 2:
            assert answer["stderr"].startswith(f"error: {mutant}: ") and answer["stderr"].count("\n") == 1, answer
        record("exr", "read" if answer["exit"] == 0 else "refused")

    try:
        check()
    finally:
        reader.close()
