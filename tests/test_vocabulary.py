"""The vocabulary (docs/conventions.md) on what users read: *density* = kept fraction (kept / size), *sparsity* =
1 − density, *compression* = size / kept, *rate* = the fraction of the remaining weights pruned at one level.

Checked on the ``--help`` of every command and on the JSON and CSV columns of ``info``, ``sparsity``,
``overlap``, ``structure``, ``intersect`` and ``fairness --what fit`` run on the shipped example tickets: every
column name comes from :data:`VOCABULARY` (so a new, possibly ambiguous name fails until it is added here with its
meaning), its values are of the kind the vocabulary says, and the defining relations hold row by row.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from ticketlab.cli import COMMANDS, build_parser, main

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
LENET_S0 = str(EXAMPLES / "lenet300_rewind-init_s0.h5")
LENET_S1 = str(EXAMPLES / "lenet300_rewind-init_s1.h5")
FINETUNE = str(EXAMPLES / "lenet300_finetune_s0.h5")
LENET5 = str(EXAMPLES / "lenet5_rewind-init_s0.h5")

# Kinds of values: what a column may hold.
TEXT, INT, COUNT, FRACTION, RATIO, NONNEG, NUMBER, BOOL, NESTED = (
    "text", "integer", "count", "fraction", "ratio", "non-negative number", "number", "bool", "nested")

#: Every column name the commands may print, with the kind of its values and its meaning.
VOCABULARY: dict[str, tuple[tuple[str, ...], str]] = {
    # what a row is about
    "file": ((TEXT,), "a ticket file"), "a": ((TEXT,), "first file of a pair"), "b": ((TEXT,), "second file"),
    "model": ((TEXT,), "model name"), "method": ((TEXT,), "how the ticket was made"),
    "dataset": ((TEXT,), "dataset name"), "name": ((TEXT,), "tensor name"), "layer": ((TEXT,), "tensor name"),
    "kind": ((TEXT,), "tensor kind: linear, conv, other"), "shape": ((TEXT, NESTED), "tensor shape"),
    "branch": ((TEXT,), "control branch of a level"), "status": ((TEXT,), "complete or running"),
    "created": ((TEXT,), "time stamp"), "updated": ((TEXT,), "time stamp"), "mode": ((TEXT,), "intersect mode"),
    "grouping": ((TEXT,), "output, input or kernel groups"), "p_method": ((TEXT,), "how p_value was computed"),
    "seed": ((INT,), "the run's seed"), "level": ((INT,), "pruning level"), "level_a": ((INT,), "level of a"),
    "level_b": ((INT,), "level of b"), "schema_version": ((INT,), "ticket-file schema"),
    "versions": ((NESTED,), "library versions"), "tensors": ((NESTED,), "tensor table"),
    "checkpoints": ((NESTED,), "stored weight checkpoints"), "levels": ((NESTED,), "level table"),
    "layers": ((NESTED,), "per-layer table"),
    **{f"{lib}_version": ((TEXT,), f"{lib} version") for lib in ("ticketlab", "torch", "numpy", "h5py", "hdf5",
                                                                  "python")},
    # counts (of weights unless said otherwise)
    "size": ((COUNT,), "weights in the tensor(s)"), "kept": ((COUNT,), "weights kept"),
    "kept_a": ((COUNT,), "weights a keeps"), "kept_b": ((COUNT,), "weights b keeps"),
    "effective_kept": ((COUNT,), "kept weights on a path from input to output"),
    "intersection": ((COUNT,), "kept by both"), "union": ((COUNT,), "kept by either"),
    "hamming": ((COUNT,), "kept by exactly one mask (a count)"), "groups": ((COUNT,), "groups of a grouping"),
    "group_size": ((COUNT,), "weights per group"), "in_units": ((COUNT,), "input units"),
    "out_units": ((COUNT,), "output units"), "inactive_in_units": ((COUNT,), "input units with no path"),
    "inactive_out_units": ((COUNT,), "output units with no path"), "dof": ((COUNT,), "degrees of freedom"),
    "iterations": ((COUNT,), "training iterations"), "early_stop_iteration": ((COUNT,), "min validation loss"),
    "num_classes": ((COUNT,), "classes"), "test_examples": ((COUNT,), "test examples"),
    "min_votes": ((COUNT,), "vote mode: masks that must keep a weight"),
    # fractions in [0, 1]
    "density": ((FRACTION,), "kept / size"), "density_a": ((FRACTION,), "kept_a / size"),
    "density_b": ((FRACTION,), "kept_b / size"), "effective_density": ((FRACTION,), "effective_kept / size"),
    "expected_density": ((FRACTION,), "density expected by chance"),
    "min_input_density": ((FRACTION,), "smallest input density"),
    "max_input_density": ((FRACTION,), "largest input density"), "sparsity": ((FRACTION,), "1 - density"),
    "accuracy": ((FRACTION,), "test accuracy"), "jaccard": ((FRACTION,), "intersection / union"),
    "dice": ((FRACTION,), "2 intersection / (kept_a + kept_b)"),
    "overlap_coefficient": ((FRACTION,), "intersection / min(kept_a, kept_b)"),
    "expected_jaccard": ((FRACTION,), "Jaccard expected by chance"), "jaccard_overlap": ((FRACTION,), "= jaccard"),
    "jaccard_distance": ((FRACTION,), "1 - jaccard"), "dice_overlap": ((FRACTION,), "= dice"),
    "cosine_overlap": ((FRACTION,), "cosine of the masks"), "hamming_fraction": ((FRACTION,), "hamming / size"),
    "containment": ((FRACTION,), "fraction of a's kept weights b keeps"),
    "fully_pruned_fraction": ((FRACTION,), "groups keeping nothing / groups"),
    "expected_fully_pruned_fraction": ((FRACTION,), "the same expected by chance"),
    "p_value": ((FRACTION,), "a probability"),
    # ratios and other numbers
    "compression": ((RATIO,), "size / kept"), "effective_compression": ((RATIO,), "size / effective_kept"),
    "ratio": ((NONNEG,), "observed / expected by chance"),
    "expected_intersection": ((NONNEG,), "intersection expected by chance"),
    "expected_fully_pruned_sd": ((NONNEG,), "sd of fully_pruned_fraction by chance"),
    "dispersion": ((NONNEG,), "index of dispersion"), "chi2": ((NONNEG,), "chi-square statistic"),
    "loss": ((NONNEG,), "test loss"), "wall_time": ((NONNEG,), "seconds"),
    # fairness: the intensification fit (per run and level, OLS of class accuracy on dense class accuracy)
    "fit": ((NESTED,), "the fit section of fairness --json"),
    "run": ((TEXT,), "a run (file) of a population"), "population": ((TEXT,), "the runs of one method"),
    "n_classes": ((COUNT,), "classes in the fit"), "slope": ((NUMBER,), "OLS slope"),
    "slope_stderr": ((NONNEG,), "its standard error"), "slope_ci_low": ((NUMBER,), "its 95% CI"),
    "slope_ci_high": ((NUMBER,), "its 95% CI"), "intercept": ((NUMBER,), "OLS intercept"),
    "intercept_stderr": ((NONNEG,), "its standard error"), "intercept_ci_low": ((NUMBER,), "its 95% CI"),
    "intercept_ci_high": ((NUMBER,), "its 95% CI"), "r": ((NUMBER,), "correlation coefficient"),
    "p_slope_1": ((FRACTION,), "p-value of slope = 1"),
    "reliability": ((FRACTION,), "var(true) / var(observed) of the dense class accuracies"),
    "null_slope": ((FRACTION,), "the slope a uniform shift gives under the noise"),
    "p_slope_null": ((FRACTION,), "p-value of slope = null_slope"), "caveat": ((TEXT,), "what a result cannot show"),
    # flags
    "pruned": ((BOOL,), "tensor is pruned"), "untouched": ((BOOL,), "tensor keeps everything"),
    # sparsity: the tensor keeps nothing; structure: groups keeping nothing (a count, with fully_pruned_fraction)
    "fully_pruned": ((BOOL, COUNT), "keeps nothing (tensor) / groups keeping nothing"),
}

#: Names with "rate" in them may only mean a per-level pruning fraction.
RATE_COLUMNS = {"rate", "output_rate", "layer_rates"}

#: Claims that were true once and no longer are.
STALE_CLAIMS = ["about 3 minutes", "runs/quickstart.h5"]

#: Phrases that use a word of the vocabulary for what another word means.
_DEFINED_AS = (r"\s*(?:\(|=|:|is\b|means\b)\s*(?:the\s+)?"
               r"(?:(?:fraction|share|proportion)\s+(?:of\s+(?:the\s+)?weights\s+)?)?")
MISUSES = [
    (r"\bsparsity" + _DEFINED_AS + r"(?:kept|remaining|surviving|non-?zero|unpruned)\b",
     "sparsity defined as a kept fraction"),
    (r"\b(?:kept|remaining|surviving) fraction\s*\(\s*sparsity", "a kept fraction called sparsity"),
    (r"\bdensity" + _DEFINED_AS + r"(?:pruned|removed|zeroed|1\s*[-−])", "density defined as a pruned fraction"),
    (r"\b(?:pruned|removed) fraction\s*\(\s*density", "a pruned fraction called density"),
    (r"\bcompression\s*(?:\(|=)\s*kept\s*/", "compression defined as kept / size"),
    (r"\b(?:sparsity|density|compression|kept|keep) rate\b", "rate used for something else than a per-level "
     "pruning fraction"),
]


# ------------------------------------------------------------------------------------------------- running
def _run(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0, args
    return out.getvalue()


def _help_texts() -> Iterator[tuple[str, str]]:
    """``(command line, --help output)`` for ``ticketlab`` and every command and sub-command."""

    def paths(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from paths(sub, (*path, name))

    all_paths = list(paths(build_parser(), ()))
    assert {p[0] for p in all_paths if p} == set(COMMANDS)
    for path in all_paths:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        assert exit_.value.code == 0
        yield " ".join(("ticketlab", *path)), out.getvalue()


def _value(text: str) -> Any:
    """A CSV cell as the JSON value it stands for."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _records(output: str, fmt: str) -> list[dict[str, Any]]:
    """Every dict in a JSON output (nested ones included), or the rows of a CSV output."""
    if fmt == "csv":
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(output))]
    found: list[dict[str, Any]] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            found.append(obj)
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(json.loads(output))
    return found


def _extra_metrics() -> list[str]:
    """``--metric NAME`` for every overlap metric that is not already a column."""
    from ticketlab.analysis.overlap import METRICS

    default = set(csv.DictReader(io.StringIO(_run("overlap", LENET_S0, LENET_S1, "--csv"))).fieldnames)
    return [arg for name in METRICS.names() if name not in default for arg in ("--metric", name)]


def _outputs(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    metrics = _extra_metrics()
    runs = [
        ["info", LENET_S0], ["info", LENET_S0, "--layers"], ["info", LENET5, "--layers"],
        ["sparsity", LENET_S0], ["sparsity", LENET_S0, LENET_S1, "--level", "2"],
        ["overlap", LENET_S0, LENET_S1, *metrics], ["overlap", f"{LENET_S0}:1", f"{LENET_S0}:3", FINETUNE],
        ["structure", LENET5], ["structure", LENET5, "--all-levels"], ["structure", LENET_S0, "--effective"],
        ["structure", LENET_S0, "--effective", "--all-levels"], ["fairness", LENET_S0, LENET_S1, "--what", "fit"],
        ["fairness", LENET_S0, "--what", "fit"],
    ]
    for mode in ("intersection", "union", "vote"):
        runs.append(["intersect", LENET_S0, LENET_S1, FINETUNE, "--mode", mode, "--out", str(tmp_path / f"{mode}.h5"),
                     "--overwrite"])
    for args in runs:
        for fmt in ("json", "csv"):
            if args[0] == "info" and fmt == "csv":
                continue  # info prints JSON or text tables
            line = " ".join(["ticketlab", *args, f"--{fmt}"])
            yield line, _records(_run(*args, f"--{fmt}"), fmt)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> list[tuple[str, list[dict[str, Any]]]]:
    return list(_outputs(tmp_path_factory.mktemp("vocabulary")))


# ---------------------------------------------------------------------------------------- the checks
def _number(v: Any) -> float | None:
    if v in ("inf", "-inf"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _kind_ok(kind: str, v: Any) -> bool:
    x = _number(v)
    if kind == TEXT:
        return isinstance(v, str)
    if kind == NESTED:
        return isinstance(v, (dict, list))
    if kind == BOOL:
        return isinstance(v, bool)
    if kind == INT:
        return x is not None and x == int(x)
    if kind == COUNT:
        return x is not None and x >= 0 and x == int(x) and not isinstance(v, float)
    if kind == FRACTION:
        return x is not None and 0 <= x <= 1
    if kind == RATIO:
        return x is not None and x >= 1
    if kind == NONNEG:
        return x is not None and x >= 0
    return x is not None


def _close(a: float | None, b: float) -> bool:
    if a is None:
        return False
    if math.isinf(b) or math.isinf(a):
        return a == b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _relations(r: dict[str, Any]) -> list[str]:
    """The defining relations that ``r``'s columns allow checking."""
    problems = []
    n = lambda k: _number(r.get(k))  # noqa: E731

    def expect(key: str, value: float, what: str) -> None:
        if r.get(key) is not None and not _close(n(key), value):
            problems.append(f"{key} = {r[key]!r}, but {what} = {value!r}")

    size = n("size")
    if size:
        for suffix in ("", "_a", "_b"):
            if n(f"kept{suffix}") is not None:
                expect(f"density{suffix}", n(f"kept{suffix}") / size, f"kept{suffix}/size")
        if n("kept") is not None:
            expect("compression", size / n("kept") if n("kept") else math.inf, "size/kept")
            expect("sparsity", 1 - n("kept") / size, "1 - kept/size")
        if n("effective_kept") is not None:
            expect("effective_density", n("effective_kept") / size, "effective_kept/size")
            expect("effective_compression", size / n("effective_kept") if n("effective_kept") else math.inf,
                   "size/effective_kept")
        if n("hamming") is not None:
            expect("hamming_fraction", n("hamming") / size, "hamming/size")
    if n("density") is not None:
        expect("sparsity", 1 - n("density"), "1 - density")
    if n("union") is not None and n("intersection") is not None:
        expect("hamming", n("union") - n("intersection"), "union - intersection")
        if n("union"):
            expect("jaccard", n("intersection") / n("union"), "intersection/union")
    if n("jaccard") is not None:
        expect("jaccard_overlap", n("jaccard"), "jaccard")
        expect("jaccard_distance", 1 - n("jaccard"), "1 - jaccard")
    return problems


def test_every_column_is_in_the_vocabulary_with_values_of_its_kind(outputs):
    problems = []
    for line, records in outputs:
        assert records, f"{line}: printed nothing"
        for r in records:
            for key, value in r.items():
                if key not in VOCABULARY:
                    problems.append(f"{line}: column {key!r} is not in the vocabulary (add it to VOCABULARY with "
                                    "its meaning, or rename it)")
                    continue
                if "rate" in key and key not in RATE_COLUMNS:
                    problems.append(f"{line}: column {key!r}: 'rate' only names per-level pruning fractions")
                kinds, meaning = VOCABULARY[key]
                if value is not None and not any(_kind_ok(k, value) for k in kinds):
                    problems.append(f"{line}: {key} = {value!r} is not a {' or '.join(kinds)} ({meaning})")
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_density_sparsity_and_compression_mean_what_they_say(outputs):
    problems = []
    for line, records in outputs:
        for r in records:
            problems += [f"{line}: {p}" for p in _relations(r)]
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_the_relations_are_actually_checked(outputs):
    """Guard against a check that passes because no row had the columns: each relation meets real rows."""
    seen = {k for _, records in outputs for r in records for k in r}
    for key in ("density", "sparsity", "compression", "density_a", "effective_density", "effective_compression",
                "hamming", "hamming_fraction", "jaccard"):
        assert key in seen, key


def test_help_texts_use_the_vocabulary_and_make_no_stale_claims():
    problems = []
    texts = dict(_help_texts())
    assert len(texts) > len(COMMANDS)
    for line, text in texts.items():
        flat = " ".join(text.split())
        for claim in STALE_CLAIMS:
            if claim in flat:
                problems.append(f"{line} --help: stale claim {claim!r}")
        for pattern, what in MISUSES:
            for m in re.finditer(pattern, flat, flags=re.IGNORECASE):
                problems.append(f"{line} --help: {what}: {flat[max(0, m.start() - 30):m.end() + 30]!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("text, bad", [
    ("sparsity (kept fraction of the weights)", True),
    ("sparsity (1 - density)", False),
    ("sparsity: the fraction of weights kept", True),
    ("density (fraction of weights pruned)", True),
    ("density (pruned fraction)", True),
    ("density (kept fraction of the masked weights)", False),
    ("density (kept/size)", False),
    ("compression (size/kept)", False),
    ("compression = kept/size", True),
    ("the sparsity rate of each layer", True),
    ("fraction of the remaining weights pruned per level (the pruning rate)", False),
])
def test_the_misuse_patterns_catch_what_they_should(text: str, bad: bool):
    assert any(re.search(p, text, flags=re.IGNORECASE) for p, _ in MISUSES) == bad
