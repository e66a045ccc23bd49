"""scripts/reproduce.py: the list of reproductions, and --check recomputing the stated claims from the shipped
files in data/studies/ (and failing when a claim is tampered with)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module
    spec.loader.exec_module(module)
    return module


def _shipped(module) -> list[str]:
    return [name for name, item in module.ITEMS.items()
            if (module.SHIPPED / item.study / "manifest.json").exists()
            or (module.SHIPPED / item.study / "runs.json").exists()]


def test_list_prints_names_one_per_line(reproduce):
    out = subprocess.run([sys.executable, str(SCRIPT), "--list"], capture_output=True, text=True, check=True)
    names = out.stdout.split()
    assert names == list(reproduce.ITEMS)
    assert out.stdout == "".join(f"{n}\n" for n in names)
    assert {"lth", "effective", "fairness", "renda", "transfer"} <= set(names)


def test_unknown_name_is_refused():
    out = subprocess.run([sys.executable, str(SCRIPT), "nosuch", "--check"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown reproduction" in out.stderr


def test_check_of_shipped_files_passes(reproduce):
    names = _shipped(reproduce)
    if not names:
        pytest.skip("no reproduction shipped under data/studies/")
    out = subprocess.run([sys.executable, str(SCRIPT), "--check", *names], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILS" not in out.stdout
    assert out.stdout.count("[holds]") == sum(len(reproduce.ITEMS[n].claims) for n in names)
    assert "measured:" in out.stdout


def test_tampered_claim_fails(reproduce, monkeypatch, capsys):
    names = _shipped(reproduce)
    if "lth" not in names:
        pytest.skip("data/studies/lth is not shipped")
    item = reproduce.ITEMS["lth"]
    # the paper's claim turned round: the reinit control beats the ticket
    tampered = reproduce.Claim("reinit accuracy > ticket accuracy",
                               reproduce._claim_gap("accuracy", "reinit", *reproduce.LTH_RANGE, "<", 0.0))
    monkeypatch.setattr(item, "claims", [*item.claims, tampered])
    assert reproduce.main(["lth", "--check"]) == 1
    out = capsys.readouterr().out
    assert "[FAILS] reinit accuracy > ticket accuracy" in out


def test_every_study_spec_parses_and_each_reproduction_has_both_protocols(reproduce):
    from ticketlab.study import load_spec

    specs = sorted((ROOT / "studies").glob("*.toml"))
    assert specs
    for path in specs:
        assert load_spec(path).chains(), path      # one-line ConfigError if a spec is broken
    # a study run by a spec (or by the masks runner's two specs) has the reduced form that was run and the
    # paper's protocol one --full away
    studies = {item.study for item in reproduce.ITEMS.values() if item.runner is None}
    studies |= set(reproduce.MASK_SPECS)
    for study in studies:
        for full in (False, True):
            assert reproduce.spec_path(study, full).exists(), reproduce.spec_path(study, full)
