"""A study spec: a preset, a grid of axes and overrides, read from TOML and expanded into named chains.

    preset = "lth-lenet300"

    [grid]                      # every combination of these values is one IMP chain
    reset = ["rewind-init", "rewind:1000", "lr-rewind", "finetune"]
    seed = [0, 1, 2, 3, 4]

    [set]                       # applied to every chain
    controls = "reinit,random"
    eval-every = 0

Keys are ``ticketlab train`` flags without their dashes (:mod:`ticketlab.study.flags`); ``preset`` may also be an
axis, and ``device`` (where chains run, not what they compute) may be set in ``[set]``. The spec is checked
completely before anything runs: every chain's config is built, and every error is one line naming the file and
the key at fault (an axis value, a [set] key, else the chain). Two chains with the same config are an error.

Chains are named by their axis values in the grid's order (``reset=rewind:1000,seed=0``); the name's file stem
(``reset=rewind-1000,seed=0``) keeps only characters every file system accepts.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ticketlab.errors import ConfigError
from ticketlab.study.flags import canonical_flag, flag_values, parse_flag

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Top-level keys of a spec file.
SPEC_KEYS = ("preset", "description", "grid", "set")
#: Keys that choose where a chain runs rather than what it computes: never an axis, not part of the identity.
PLACEMENT_KEYS = ("device", "data-dir")


@dataclass(frozen=True)
class Chain:
    """One IMP chain of a study.

    Attributes
    ----------
    name : str
        Its axis values, ``"reset=rewind-init,seed=0"``.
    stem : str
        The file-system-safe form of the name (the ticket file is ``chains/<stem>.h5``).
    axes : dict
        Axis → value, in the grid's order (values as parsed from the spec).
    config : RunConfig
    device : str
    """

    name: str
    stem: str
    axes: dict[str, Any]
    config: Any
    device: str = "auto"


@dataclass(frozen=True)
class StudySpec:
    """A parsed, validated study spec. Build one with :func:`load_spec`, :func:`parse_spec` or :meth:`from_mapping`.

    ``grid`` and ``settings`` use canonical flag names (``eval-every``) and parsed values.
    """

    preset: str | None
    grid: dict[str, list[Any]]
    settings: dict[str, Any]
    description: str = ""
    source: str = "<spec>"
    text: str = field(default="", compare=False)

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<spec>", text: str = "") -> "StudySpec":
        """Validate a spec given as a mapping (what TOML gives); errors are one line naming ``source`` and the key."""
        where = f"{source}: "
        for key in data:
            if key not in SPEC_KEYS:
                raise ConfigError(f"{where}unknown key {key!r}; a study spec has: {', '.join(SPEC_KEYS)}")
        preset = data.get("preset")
        if preset is not None:
            preset = _check_preset(preset, f"{where}preset: ")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where}description must be a string; got {description!r}")
        grid_in = _table(data, "grid", where)
        if not grid_in:
            raise ConfigError(f"{where}[grid] is empty; give at least one axis, e.g. seed = [0, 1, 2]")
        grid: dict[str, list[Any]] = {}
        for key, values in grid_in.items():
            axis = _key(key, f"{where}[grid]: ")
            if axis in PLACEMENT_KEYS:
                raise ConfigError(f"{where}grid.{key}: {axis} chooses where chains run, not what they compute; "
                                  "give it in [set] or on the command line")
            if axis in grid:
                raise ConfigError(f"{where}grid.{key}: axis {axis!r} given twice")
            if not isinstance(values, list):
                raise ConfigError(f"{where}grid.{key} must be a list of values (one per chain); for one value "
                                  "use [set]")
            if not values:
                raise ConfigError(f"{where}grid.{key} is an empty list; give at least one value")
            parsed = [_value(axis, v, f"{where}grid.{key}: ") for v in values]
            seen = set()
            for v in parsed:
                if value_label(v) in seen:
                    raise ConfigError(f"{where}grid.{key}: value {value_label(v)!r} is listed twice")
                seen.add(value_label(v))
            grid[axis] = parsed
        settings: dict[str, Any] = {}
        for key, value in _table(data, "set", where).items():
            name = _key(key, f"{where}[set]: ")
            if name == "preset":
                raise ConfigError(f"{where}set.preset: give the preset at the top of the spec (preset = \"...\")")
            if name in settings:
                raise ConfigError(f"{where}set.{key}: {name!r} given twice")
            if name in grid:
                raise ConfigError(f"{where}set.{key}: {name!r} is also an axis of [grid]; give it in one place")
            settings[name] = _value(name, value, f"{where}set.{key}: ")
        spec = cls(preset, grid, settings, description, source, text)
        spec._validate()
        return spec

    def _validate(self) -> None:
        """Build every chain's config; when one fails, name the most specific culprit (:meth:`_blame`), and refuse
        two chains with the same config."""
        where = f"{self.source}: "
        built = self._configs()
        if any(isinstance(c, ConfigError) for _, _, c in built):
            raise ConfigError(f"{where}{self._blame(built)}")
        _check_distinct(built, where)

    def _configs(self) -> list[tuple[str, dict[str, Any], Any]]:
        """``(name, axes, config)`` for every combination of the axes' values (the first axis varying slowest);
        ``config`` is the :class:`ConfigError` of a chain that does not build."""
        out = []
        for combo in itertools.product(*self.grid.values()):
            axes = dict(zip(self.grid, combo))
            try:
                config = self._build({**self.settings, **axes}, "")
            except ConfigError as err:
                config = err
            out.append((chain_name(axes), axes, config))
        return out

    def _blame(self, built: list[tuple[str, dict[str, Any], Any]]) -> str:
        """The error of a spec some of whose chains fail, naming the most specific culprit (one line, no source).

        A culprit of a failing chain is one of its entries (an axis value, a [set] key) without which it builds
        (an axis left out takes the preset's value). In order:

        1. an axis value every chain of which fails, and is a culprit of each: ``grid.<axis> = <value>: ...``;
        2. a [set] key that is a culprit of every failing chain: ``set.<key> = <value>: ...`` (a [set] key that
           some axis values refuse, norm = "l1" with strategy = ["ln_structured", "layer_magnitude"]);
        3. an axis value every chain of which fails while other values of its axis build (it and something else
           are wrong);
        4. a culprit of some failing chain (an axis value first, then a [set] key);
        5. else the first failing chain: ``chain <name>: ...``.
        """
        failing = [(name, axes, err) for name, axes, err in built if isinstance(err, ConfigError)]
        builds = {}

        def ok(flags: dict[str, Any]) -> bool:
            key = repr(sorted(flags.items()))
            if key not in builds:
                try:
                    self._build(flags, "")
                    builds[key] = True
                except ConfigError:
                    builds[key] = False
            return builds[key]

        def culprit(axes: dict[str, Any], key: str) -> bool:
            """Does the chain ``axes`` build without ``key`` (an axis or a [set] key)?"""
            return ok({k: v for k, v in {**self.settings, **axes}.items() if k != key})

        def grid_error(axis: str, value: Any, err: ConfigError) -> str:
            return f"grid.{axis} = {_toml(value)}: {err}"

        def set_error(key: str, err: ConfigError) -> str:
            return f"set.{key} = {_toml(self.settings[key])}: {err}"

        def of_value(axis: str, value: Any) -> list[tuple[str, dict[str, Any], Any]]:
            return [c for c in built if value_label(c[1][axis]) == value_label(value)]

        def all_fail(chains: list) -> bool:
            return all(isinstance(c[2], ConfigError) for c in chains)

        for axis, values in self.grid.items():  # 1
            for v in values:
                chains = of_value(axis, v)
                if all_fail(chains) and all(culprit(axes, axis) for _, axes, _ in chains):
                    return grid_error(axis, v, chains[0][2])
        for key in self.settings:  # 2
            if all(culprit(axes, key) for _, axes, _ in failing):
                return set_error(key, failing[0][2])
        for axis, values in self.grid.items():  # 3
            for v in values:
                chains = of_value(axis, v)
                if all_fail(chains) and not all_fail([c for c in built if all(c is not d for d in chains)]):
                    blamed = [c for c in chains if culprit(c[1], axis)] or chains
                    return grid_error(axis, v, blamed[0][2])
        for _, axes, err in failing:  # 4
            for axis in self.grid:
                if culprit(axes, axis):
                    return grid_error(axis, axes[axis], err)
            for key in self.settings:
                if culprit(axes, key):
                    return set_error(key, err)
        name, _, err = failing[0]  # 5
        return f"chain {name}: {err}"

    def _build(self, flags: Mapping[str, Any], where: str):
        """The RunConfig of the preset plus ``flags`` (spec keys → parsed values); errors prefixed by ``where``."""
        from ticketlab.presets import config_from_flags

        flags = {k: v for k, v in flags.items() if k != "device"}
        preset = flags.pop("preset", self.preset)
        try:
            config = config_from_flags(preset, flag_values(flags))
            _check_names(config)
        except ConfigError as err:
            raise ConfigError(f"{where}{err}") from None
        return config

    # -- expansion ---------------------------------------------------------------------------------------

    def chains(self) -> list[Chain]:
        """Every combination of the axes' values, the first axis varying slowest."""
        device = self.settings.get("device", "auto")
        out = []
        for name, axes, config in self._configs():
            if isinstance(config, ConfigError):
                raise ConfigError(f"{self.source}: chain {name}: {config}")
            out.append(Chain(name, "", axes, config, device))
        stems = file_stems([c.name for c in out])
        return [Chain(c.name, s, c.axes, c.config, c.device) for c, s in zip(out, stems)]

    def identity(self) -> dict[str, Any]:
        """What a study directory is bound to: preset, grid and settings (placement keys left out), JSON-ready."""
        return {
            "preset": self.preset,
            "grid": {k: list(v) for k, v in self.grid.items()},
            "set": {k: v for k, v in self.settings.items() if k not in PLACEMENT_KEYS},
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole spec (placement keys included), JSON-ready; :meth:`from_mapping` reads it back."""
        d: dict[str, Any] = {"preset": self.preset} if self.preset else {}
        if self.description:
            d["description"] = self.description
        d["grid"] = {k: list(v) for k, v in self.grid.items()}
        d["set"] = dict(self.settings)
        return d


# ----------------------------------------------------------------------------------------------------------
# Reading


def parse_spec(text: str, source: str = "<spec>") -> StudySpec:
    """Parse and validate a TOML spec given as text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from None
    return StudySpec.from_mapping(data, source, text)


def load_spec(path: str | Path) -> StudySpec:
    """Read, parse and validate a TOML spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study spec") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the study spec: {err}") from None
    return parse_spec(text, str(path))


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}{key} must be a table ([{key}]); got {table!r}")
    return table


def _key(key: str, where: str) -> str:
    return canonical_flag(key, where)


def _value(key: str, value: Any, where: str) -> Any:
    if key == "preset":
        return _check_preset(value, where)
    if key == "device":
        if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ConfigError(f"{where}device must be auto, cpu, cuda, cuda:N or mps; got {value!r}")
        return value
    return parse_flag(key, value, where)


def _check_preset(value: Any, where: str) -> str:
    from ticketlab.presets import get_preset

    if not isinstance(value, str):
        raise ConfigError(f"{where}a preset is a name; got {value!r}")
    try:
        get_preset(value)
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
    return value


def _check_distinct(built: list[tuple[str, dict[str, Any], Any]], where: str) -> None:
    """Two chains with the same config would be one run twice (``classes = ["0-4", "0,1,2,3,4"]``): an error naming
    both, and the axis when they differ in one."""
    seen: dict[Any, tuple[str, dict[str, Any]]] = {}
    for name, axes, config in built:
        try:
            hash(config)
            key = config
        except TypeError:  # pragma: no cover - RunConfig is frozen, its fields hashable
            key = repr(config)
        if key not in seen:
            seen[key] = (name, axes)
            continue
        first, first_axes = seen[key]
        differ = [a for a in axes if value_label(axes[a]) != value_label(first_axes[a])]
        if len(differ) == 1:
            a = differ[0]
            raise ConfigError(f"{where}grid.{a}: {_toml(first_axes[a])} and {_toml(axes[a])} give the same config "
                              f"(chains {first} and {name}); drop one")
        raise ConfigError(f"{where}chains {first} and {name} have the same config; drop one")


def _check_names(config: Any) -> None:
    """Model and dataset must be registry names: a study runs them by name."""
    from ticketlab.datasets import get_dataset_spec
    from ticketlab.models import get_model_spec

    get_model_spec(config.model)
    get_dataset_spec(config.dataset)


# ----------------------------------------------------------------------------------------------------------
# Names


def value_label(value: Any) -> str:
    """A value as it appears in a chain name: lists joined with '+', booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "+".join("=".join(map(value_label, x)) if isinstance(x, list) else value_label(x) for x in value)
    return str(value)


def _toml(value: Any) -> str:
    """A value as TOML writes it, for messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return value_label(value)


def chain_name(axes: Mapping[str, Any]) -> str:
    """``{"reset": "rewind:1000", "seed": 0}`` → ``"reset=rewind:1000,seed=0"``."""
    return ",".join(f"{k}={value_label(v)}" for k, v in axes.items())


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]+")


def file_stems(names: list[str], max_length: int = 120) -> list[str]:
    """File-system-safe, distinct stems for chain names (characters outside ``A-Za-z0-9._+=,-`` become ``-``;
    a name that would collide with another, or is too long, gets a short hash of itself appended)."""
    stems = [_UNSAFE.sub("-", n).strip("-.") or "chain" for n in names]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for name, s in zip(names, stems):
        if counts[s] > 1 or len(s) > max_length:
            s = f"{s[:max_length - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        out.append(s)
    return out
