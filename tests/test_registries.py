"""Every :class:`~ticketlab.registry.Registry` in ticketlab, found by walking the package (so a registry added
tomorrow is tested without being named here): names, lookups, one-line errors that list the choices and suggest
a near miss; then cheap smoke checks of the entries of registries whose entries can be exercised."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import ticketlab
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.registry import Registry

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"


def _find_registries() -> dict[str, tuple[str, Registry]]:
    """``{test id: (where it was found, registry)}`` for every Registry held by a module attribute."""
    found: dict[int, tuple[str, Registry]] = {}
    for info in pkgutil.walk_packages(ticketlab.__path__, "ticketlab."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # running it would run the command line
            continue
        module = importlib.import_module(info.name)
        for attr, obj in vars(module).items():
            if isinstance(obj, Registry):
                found.setdefault(id(obj), (f"{info.name}.{attr}", obj))
    out: dict[str, tuple[str, Registry]] = {}
    for where, reg in sorted(found.values(), key=lambda x: x[0]):
        key = reg.kind.replace(" ", "_")
        out[key if key not in out else f"{key}@{where}"] = (where, reg)
    return out


REGISTRIES = _find_registries()
ALL = pytest.mark.parametrize("reg", [r for _, r in REGISTRIES.values()], ids=list(REGISTRIES))


def test_the_walk_finds_the_registries_we_know_of():
    kinds = {reg.kind for _, reg in REGISTRIES.values()}
    assert {"model", "import kind", "export format", "weights choice", "command"} <= kinds, kinds


# ----------------------------------------------------------------------------------------- every registry
@ALL
def test_names_are_non_empty_and_listed_in_choices(reg: Registry):
    names = reg.names()
    assert names, f"{reg!r} is empty"
    assert len(names) == len(set(names)) == len(reg)
    for name in names:
        assert isinstance(name, str) and name.strip() == name and name, repr(name)
    assert reg.choices() == ", ".join(names)
    assert list(reg) == names


@ALL
def test_every_name_resolves(reg: Registry):
    for name in reg.names():
        assert name in reg
        assert reg.canonical(name) == name
        assert reg.get(name) is not None
    assert [n for n, _ in reg.items()] == reg.names()


@ALL
def test_unknown_name_is_a_one_line_config_error_listing_the_choices(reg: Registry):
    unknown = "no-such-" + reg.kind.replace(" ", "-")
    assert unknown not in reg
    with pytest.raises(ConfigError) as err:
        reg.get(unknown)
    message = str(err.value)
    assert "\n" not in message
    assert reg.kind in message and repr(unknown) in message
    assert reg.choices() in message


@ALL
def test_near_miss_gets_did_you_mean(reg: Registry):
    for name in reg.names():
        near = next(name + c for c in "xqz_" if name + c not in reg)
        with pytest.raises(ConfigError) as err:
            reg.get(near)
        message = str(err.value)
        assert "\n" not in message
        match = re.search(r"\(did you mean '([^']+)'\?\)$", message)
        assert match, message
        assert match[1] in reg, message


# ------------------------------------------------------------------------- smoke checks of single registries
def _registry(kind: str) -> Registry:
    matches = [reg for _, reg in REGISTRIES.values() if reg.kind == kind]
    assert len(matches) == 1, f"expected one registry of kind {kind!r}, found {len(matches)}"
    return matches[0]


def _parsers(parser: argparse.ArgumentParser, path=()):
    """``(command path, parser)`` for the parser and every sub-parser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


@pytest.mark.parametrize("name", _registry("model").names())
def test_every_model_builds_and_runs_a_forward_pass(name: str):
    from ticketlab.models import create_model, get_model_spec, prunable_tensors

    spec = get_model_spec(name)
    assert spec.factory is not None and spec.description and spec.reference
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *spec.input_shape))
    assert out.shape == (2, 3)
    assert prunable_tensors(model)


def test_every_command_has_a_parser_and_help(capsys):
    from ticketlab.cli import COMMANDS, build_parser, main

    top = dict(_parsers(build_parser()))
    for name in COMMANDS:
        assert (name,) in top, f"command {name!r} registered no parser"
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        assert f"ticketlab {name}" in capsys.readouterr().out


def test_every_import_kind_is_in_import_help_and_has_its_options(capsys):
    from ticketlab.cli import build_parser, main
    from ticketlab.io import IMPORT_KINDS

    with pytest.raises(SystemExit):
        main(["import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    parsers = dict(_parsers(build_parser()))
    cli_only = {"help", "src", "out", "json", "layers"}
    for name, kind in IMPORT_KINDS.items():
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} missing from import --help"
        assert " ".join(kind.summary.split()) in text
        assert kind.reads in top
        sub = parsers[("import", name)]
        # every option of the kind reaches its importer under the same name
        dests = {a.dest for a in sub._actions} - cli_only
        assert dests <= set(kind.options()), (name, dests - set(kind.options()))
        assert "overwrite" in kind.options() and callable(kind.importer)


@pytest.mark.parametrize("fmt", _registry("export format").names())
def test_every_export_format_round_trips_the_masks(fmt: str):
    from ticketlab.io import export_state_dict, normalise_state_dict
    from ticketlab.store import TicketFile

    path = EXAMPLES / "lenet5_rewind-init_s0.h5"
    sd, note = export_state_dict(path, 1, format=fmt)
    assert note
    with TicketFile(path) as t:
        masks = t.masks(1)
    if fmt == "state-dict":
        for name, m in masks.items():
            assert not sd[name].numpy()[~m].any()
    else:
        norm = normalise_state_dict(sd, "export")
        for name, m in masks.items():
            np.testing.assert_array_equal(norm.masks[name].numpy().astype(bool), m)


@pytest.mark.parametrize("choice", _registry("weights choice").names())
def test_every_weights_choice_loads_or_says_why_not(choice: str):
    from ticketlab.io.export import WEIGHT_CHOICES, ticket_weights
    from ticketlab.store import TicketFile

    assert WEIGHT_CHOICES.get(choice).description
    with TicketFile(EXAMPLES / "lenet300_rewind-init_s0.h5") as t:
        try:
            arrays, dtypes, note = ticket_weights(t, 1, weights=choice)
        except TicketFileError as err:  # e.g. rewind: the example is a rewind-init run
            assert "\n" not in str(err)
            return
    assert arrays and note


@pytest.mark.parametrize("name", _registry("preset").names())
def test_every_preset_builds_a_config(name: str):
    from ticketlab.presets import build_config

    assert build_config(name) is not None


# ------------------------------------------------------------------------------- help texts and registries
def _entry(word: str, reg: Registry) -> str | None:
    word = word.strip(".:;'\"")
    return reg.canonical(word) if word in reg else None


def _longest_list(text: str, reg: Registry) -> list[str]:
    """The longest run of ``reg``'s entries written as a list in ``text`` ("a, b or c", "a,b,c"; a parenthesis
    after an entry is allowed), as registered names (aliases resolved)."""
    chunks = re.split(r"\s*(?:,\s*(?:or|and)\b|,|\bor\b|\band\b)\s*", re.sub(r"\s*\([^()]*\)", "", text))
    best: list[str] = []
    run: list[str] = []
    for chunk in chunks:
        words = chunk.split()
        first = _entry(words[0], reg) if words else None
        if len(words) == 1 and first:
            run.append(first)
            continue
        if first and run:
            run.append(first)
        best = max(best, run, key=len)
        last = _entry(words[-1], reg) if words else None
        run = [last] if last else []
    return list(dict.fromkeys(max(best, run, key=len)))


def test_option_help_that_lists_a_registry_lists_all_of_it():
    """An option's help that lists most entries of a registry (e.g. '--optimizer: sgd, adam or adamw') was
    written by hand; it must name every entry, so that a new entry cannot be missing from it. (Where a help lists
    entries of several registries, it is taken to be about the one it covers best.)"""
    from ticketlab.cli import build_parser

    registries = [reg for _, reg in REGISTRIES.values() if len(reg) >= 2]
    problems = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                continue
            words = re.findall(r"[\w:.\-]+", action.help)
            candidates = []
            for reg in registries:
                if len(_longest_list(action.help, reg)) >= 2:
                    named = list(dict.fromkeys(e for w in words if (e := _entry(w, reg))))
                    candidates.append((len(named) / len(reg), reg, named))
            if not candidates:
                continue
            share, reg, named = max(candidates, key=lambda c: c[0])
            if 0.5 <= share < 1:  # fewer: a help naming the entries it applies to ("accuracy, early-stop: ...")
                missing = [n for n in reg.names() if n not in named]
                problems.append(f"ticketlab {' '.join(path)} {'/'.join(action.option_strings) or action.dest}: "
                                f"lists {reg.kind}s {named} but not {missing}")
    assert not problems, "\n".join(problems)
