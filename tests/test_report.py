"""The HTML report (ticketlab.report, ``ticketlab report``) and its checks (scripts/check_report.py).

The page is checked as a reader would see it: statically (every image an inline PNG that decodes, tables in
scrolling boxes, no external references) and, when Chromium is on PATH, in a headless browser (images decoded,
nothing wider than the window, every section parsed, a non-blank full-page screenshot).
"""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from test_plots import LR, REWIND, write_run
from ticketlab import store
from ticketlab.cli import main
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.masks import TensorInfo
from ticketlab.report import ReportPage, build_report, write_report

ROOT = Path(__file__).resolve().parents[1]


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_report", ROOT / "scripts" / "check_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_report = _load_checker()
CHROMIUM = check_report.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install "
                                    "chromium); the browser check of the report needs it")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, list[Path]]:
    d = tmp_path_factory.mktemp("report")
    rewind = [write_run(d / f"rewind_s{s}.h5", REWIND, s, branches=("reinit",)) for s in (0, 1)]
    lr = [write_run(d / "lr_s0.h5", LR, 0)]
    return {"rewind": rewind, "lr": lr, "all": rewind + lr}


@pytest.fixture(scope="module")
def report(files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    return write_report(files["all"], out)


def plain(text: str) -> str:
    """The page without the line-break hints (<wbr>) that tables put into long names."""
    return text.replace("<wbr>", "")


def section_ids(text: str) -> list[str]:
    return re.findall(r'<h2 id="([^"]+)"', text)


def test_report_has_every_section_that_applies(report):
    text = plain(report.read_text())
    assert section_ids(text) == ["runs", "accuracy", "sparsity", "overlap", "structure", "fairness"]
    assert "Sections left out" not in text
    for phrase in ("rewind-init / reinit", "rewind-init, seed 1", "lr-rewind, seed 0", "Jaccard",
                   "Pruning-identified exemplars per class", "Direct and effective density", "conv1.weight"):
        assert phrase in text, phrase
    assert '<nav class="toc">' in text and 'href="#fairness"' in text


def test_report_is_self_contained_and_images_decode(report):
    text = report.read_text()
    assert check_report.static_problems(text, ["runs", "accuracy", "sparsity", "overlap", "structure",
                                               "fairness"]) == []
    images = re.findall(r'<img src="([^"]+)"', text)
    # accuracy, early stopping, layer heatmap and lines, Jaccard vs level and matrix, fully pruned, kernels,
    # and per method (rewind-init with 2 seeds, lr-rewind with 1): class drops, intensification, (PIEs)
    assert len(images) == 2 + 2 + 2 + 2 + 2 * 2 + 1
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == check_report.PNG_SIGNATURE for src in images)
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_tables_scroll_and_long_names_wrap(report):
    text = report.read_text()
    assert text.count("<table>") == text.count('<div class="table-wrap"><table>') > 0
    assert ".table-wrap { overflow-x: auto;" in text
    assert "<td>conv1.weight</td>" in text  # short names stay whole (long ones: test_report_page_wraps_tables)
    assert '<td class="num">0.' in text  # numbers are untouched


def test_report_page_wraps_tables():
    page = ReportPage("t")
    page.section("a", "A")
    page.table([{"layer": "layer1.0.conv1.weight", "file": "run_s0.h5", "density": 0.5}])
    html = page.render()
    assert '<div class="table-wrap"><table>' in html and "layer1.<wbr>0.<wbr>conv1.<wbr>weight" in html
    assert "<td>run_s0.h5</td>" in html and '<td class="num">0.5000</td>' in html
    assert '<h2 id="a">A</h2>' in html and html.count("<nav") == 1
    assert page.render() == html  # rendering twice does not add a second table of contents


def test_one_file_report(files, tmp_path):
    text = plain(write_report(files["lr"], tmp_path / "one.html").read_text())
    assert section_ids(text) == ["runs", "accuracy", "sparsity", "overlap", "structure", "fairness"]
    assert "levels of lr-rewind, seed 0" in text           # one file: the overlap of its levels
    assert "Pruning-identified exemplars per class" not in text  # PIEs need two seeds
    assert check_report.static_problems(text) == []


def test_sections_left_out_say_why(tmp_path):
    """Masks without evaluations and a single level: no accuracy, overlap or fairness; the page says why."""
    path = write_run(tmp_path / "masks.h5", "imported masks", 3, evaluate=False, levels=0)
    text = write_report([path], tmp_path / "masks.html").read_text()
    assert section_ids(text) == ["runs", "sparsity", "structure"]
    assert "Sections left out" in text
    for why in ("accuracy: no level of any file has a test-set evaluation", "overlap: needs two or more files",
                "fairness: needs level 0"):
        assert why in text, why
    assert check_report.static_problems(text) == []


def test_several_models_get_one_part_each(files, tmp_path):
    other = tmp_path / "mlp.h5"
    tensors = [TensorInfo("fc1.weight", (20, 12), "linear"), TensorInfo("fc2.weight", (10, 20), "linear")]
    store.create(other, tensors=tensors, model="mlp", method="IMP layer_magnitude 30%/level, reset rewind-init",
                 config={}, seed=0)
    w = store.TicketWriter(other)
    rng = np.random.default_rng(0)
    for level in range(3):
        w.write_level(level, {t.name: rng.random(t.shape) < 0.7 ** level for t in tensors})
    text = plain(write_report(files["lr"] + [other], tmp_path / "two.html").read_text())
    assert "<h3>Model toy</h3>" in text and "<h3>Model mlp</h3>" in text
    assert "toy: lr-rewind, seed 0" in text and "mlp: rewind-init, seed 0" in text  # the runs table
    assert check_report.static_problems(text) == []


def test_report_errors(files, tmp_path):
    with pytest.raises(ConfigError, match="no ticket files"):
        build_report([])
    with pytest.raises(ConfigError, match="more than once"):
        build_report([files["lr"][0], files["lr"][0]])
    with pytest.raises(TicketFileError, match="no such file"):
        build_report([tmp_path / "missing.h5"])
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(files["lr"], tmp_path / "missing" / "r.html")


def test_cli_report(files, tmp_path, capsys):
    out = tmp_path / "cli.html"
    assert main(["report", *map(str, files["all"]), "--out", str(out), "--level", "2", "--title", "My runs"]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    text = out.read_text()
    assert "<title>My runs</title>" in text and "level 2" in text
    assert main(["report", str(files["lr"][0]), "--out", str(tmp_path / "r.txt")]) == 2
    assert ".html" in capsys.readouterr().err


# -- the checker finds what it is meant to find ---------------------------------------------------------------


def _page(body: str) -> str:
    return f"<!DOCTYPE html>\n<html><head><title>t</title></head><body>{body}</body></html>"


GOOD_IMG = None


def _png() -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    import io

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=20)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_static_check_finds_problems():
    good = _png()
    assert check_report.static_problems(_page(f'<img src="{good}"><div class="table-wrap"><table></table></div>'
                                              )) == []
    truncated = good[:len(good) // 2]
    problems = check_report.static_problems(_page(
        f'<img src="{truncated}"><img src="https://example.org/x.png"><table></table><script>1</script>'), ["runs"])
    text = "\n".join(problems)
    assert "image 1: PNG does not decode" in text or "image 1: base64" in text
    assert "image 2: not an inline PNG" in text and "external reference <img src=" in text
    assert "not inside <div class=\"table-wrap\">" in text and "<script>" in text
    assert "missing section(s): runs" in text


@needs_chromium
def test_report_in_a_browser(report, tmp_path):
    shot = tmp_path / "report.png"
    problems, found = check_report.browser_problems(
        report, CHROMIUM, sections=["runs", "accuracy", "sparsity", "overlap", "structure", "fairness"],
        screenshot_path=shot)
    assert problems == [], problems
    assert found["images"] > 0 and found["broken_images"] == 0
    assert found["page_width"] <= found["viewport"] and found["unwrapped_tables"] == 0
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == check_report.WIDTH and im.size[1] > 2000


@needs_chromium
def test_browser_check_finds_broken_images_and_wide_pages(tmp_path):
    wide = "<table><tr>" + "".join(f"<td>{'x' * 30}</td>" for _ in range(60)) + "</tr></table>"
    page = tmp_path / "bad.html"
    page.write_text(_page(f'<h2 id="runs">Runs</h2><img src="data:image/png;base64,iVBORw0KGgo=">{wide}'))
    problems, found = check_report.browser_problems(page, CHROMIUM, sections=["runs", "fairness"])
    text = "\n".join(problems)
    assert found["broken_images"] == 1 and "did not load or decode" in text
    assert "scrolls sideways" in text and "not in a box with overflow-x" in text
    assert "no section fairness" in text


def test_check_script_runs_without_a_browser(report, monkeypatch, capsys):
    monkeypatch.setenv("CHROMIUM", "/nonexistent/chromium")
    assert check_report.main([str(report)]) == 0
    out = capsys.readouterr()
    assert "static check only" in out.err and out.out.strip().endswith("ok")
    assert check_report.main([str(report), "--require-browser"]) == 1
