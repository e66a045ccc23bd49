"""``DIR/manifest.json``: what a study directory holds, and the rules for running it again.

The manifest records the spec (parsed, and its TOML text), the chains (name, axis values, ticket file, run
config) and, per chain, what the runner saw: ``status`` (``pending``, ``complete`` or ``failed``), the last
``error``, ``attempts`` and the runner's ``wall_time``. Levels done are *not* copied here: the ticket files are the
one source of truth for them (:func:`ticketlab.study.status.study_status` reads them).

Only the process running the study writes the manifest (never a worker), always through
:func:`ticketlab.outputs.atomic_output`, so a kill at any moment leaves the previous complete manifest. One runner
at a time per directory: :class:`StudyLock`.

Running a directory again with a spec is allowed when the spec's identity is unchanged; with ``extend`` it may
also add values to an axis (new chains) or raise ``levels`` (every chain prunes further). Anything else is
refused, naming the first difference.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from ticketlab._version import __version__
from ticketlab.errors import ConfigError
from ticketlab.outputs import atomic_output
from ticketlab.study.spec import Chain, StudySpec, value_label

MANIFEST = "manifest.json"
FORMAT = "ticketlab-study"
VERSION = 1
CHAIN_DIR = "chains"


def manifest_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / MANIFEST


def read_manifest(directory: str | os.PathLike, *, required: bool = True) -> dict[str, Any] | None:
    """The manifest of a study directory (``None`` if there is none and not ``required``)."""
    path = manifest_path(directory)
    if not path.exists():
        if required:
            what = "no such directory" if not Path(directory).is_dir() else f"no {MANIFEST}"
            raise ConfigError(f"{directory}: not a study directory ({what}); create one with 'ticketlab study run "
                              "SPEC --out DIR'")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: unreadable study manifest: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a ticketlab study manifest")
    if int(data.get("version", 0)) > VERSION:
        raise ConfigError(f"{path}: study manifest version {data['version']} is newer than this ticketlab "
                          f"({__version__}) reads; upgrade ticketlab")
    return data


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> None:
    manifest["updated"] = _now()
    with atomic_output(manifest_path(directory), tag="manifest") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def chain_file(directory: str | os.PathLike, entry: dict[str, Any]) -> Path:
    return Path(directory) / entry["file"]


def chain_entry(chain: Chain) -> dict[str, Any]:
    return {"name": chain.name, "file": f"{CHAIN_DIR}/{chain.stem}.h5", "axes": dict(chain.axes),
            "config": chain.config.to_dict(), "status": "pending", "error": None, "attempts": 0, "wall_time": 0.0}


def new_manifest(spec: StudySpec, chains: list[Chain]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "ticketlab": __version__, "created": _now(), "updated": _now(),
            "source": spec.source, "spec": spec.to_dict(), "identity": spec.identity(), "spec_text": spec.text,
            "chains": [chain_entry(c) for c in chains]}


# ----------------------------------------------------------------------------------------------------------
# Running again


def spec_difference(old: dict[str, Any], new: dict[str, Any], *, extend: bool) -> str | None:
    """The first difference between two spec identities that ``extend`` does not allow, described; or None."""
    if old.get("preset") != new.get("preset"):
        return f"preset: {old.get('preset')!r} in the study, {new.get('preset')!r} now"
    og, ng = old.get("grid", {}), new.get("grid", {})
    for axis in og:
        if axis not in ng:
            return f"grid.{axis}: an axis of the study, missing now"
    for axis in ng:
        if axis not in og:
            return f"grid.{axis}: a new axis (a study's axes cannot change; use a new --out)"
    if list(og) != list(ng):
        return f"grid: axes in another order ({', '.join(og)} in the study, {', '.join(ng)} now)"
    for axis in og:
        old_v, new_v = [value_label(v) for v in og[axis]], [value_label(v) for v in ng[axis]]
        gone = [v for v in old_v if v not in new_v]
        if gone:
            return f"grid.{axis}: value {gone[0]!r} is in the study but not in the spec"
        added = [v for v in new_v if v not in old_v]
        if added and not extend:
            return f"grid.{axis}: new value {added[0]!r} (add it with --extend)"
    os_, ns = old.get("set", {}), new.get("set", {})
    for key in dict.fromkeys([*os_, *ns]):
        a, b = os_.get(key), ns.get(key)
        if a == b:
            continue
        if key == "levels" and extend and isinstance(a, int) and isinstance(b, int) and b > a:
            continue
        if key == "levels" and isinstance(a, int) and isinstance(b, int) and b > a:
            return f"set.levels: {a} in the study, {b} now (prune further with --extend)"
        return f"set.{key}: {_shown(a)} in the study, {_shown(b)} now"
    return None


def _shown(value: Any) -> str:
    return "unset" if value is None else repr(value)


def merge(manifest: dict[str, Any], spec: StudySpec, chains: list[Chain], directory: str | os.PathLike,
          *, extend: bool) -> bool:
    """Bring an existing manifest in line with ``spec``; returns whether anything changed.

    Refuses (:class:`ConfigError`) a spec whose identity differs in a way ``extend`` does not allow.
    """
    diff = spec_difference(manifest["identity"], spec.identity(), extend=extend)
    if diff:
        raise ConfigError(f"{directory} was made from another spec ({diff}); run it with the spec it was made "
                          "from, or choose a new --out")
    changed = manifest["identity"] != spec.identity()
    by_name = {e["name"]: e for e in manifest["chains"]}
    entries = []
    for chain in chains:
        entry = by_name.get(chain.name)
        if entry is None:
            entries.append(chain_entry(chain))
            changed = True
            continue
        config = chain.config.to_dict()
        if entry["config"] != config:  # more levels (extend); placement (data_dir) may differ too
            if entry["config"].get("levels") != config.get("levels"):
                entry["status"] = "pending"
            entry["config"] = config
            changed = True
        entries.append(entry)
    if changed:
        manifest.update(spec=spec.to_dict(), identity=spec.identity(), spec_text=spec.text, source=spec.source,
                        chains=entries)
    return changed


# ----------------------------------------------------------------------------------------------------------
# One runner per directory


class StudyLock:
    """An exclusive lock on a study directory (``DIR/.lock``), released when the holder exits or dies.

    Uses ``fcntl.flock`` where it exists (POSIX); elsewhere no lock is taken.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "StudyLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is being run by another process (pid {holder}); wait for it "
                              "or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


@contextlib.contextmanager
def chain_lock(path: Path) -> Iterator[None]:
    """Serialise runs of one chain file (``.<name>.lock`` beside it): a task resubmitted while an orphan of an
    earlier attempt still runs waits for it, then resumes from what it wrote."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
