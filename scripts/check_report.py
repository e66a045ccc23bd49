#!/usr/bin/env python
"""Check a ticketlab HTML report as a reader would see it: complete, self-contained and readable.

Two checks:

1. **Static** (:func:`static_problems`, no browser): the file is one self-contained page — no script, style sheet,
   font or link to fetch; every ``<img>`` is a ``data:image/png;base64,`` URI that decodes to a valid PNG with a
   non-zero size; every table sits in a ``<div class="table-wrap">`` (CSS ``overflow-x: auto``); the expected
   sections (``<h2 id=...>``) are there.
2. **Browser** (:func:`browser_problems`, headless Chromium): a copy of the page with a small probe script is
   loaded and its DOM dumped after the load event; the probe reports images that failed to decode
   (``naturalWidth == 0``), whether anything makes the page wider than the window, whether every table's box
   scrolls sideways, and which sections the browser parsed. Then a screenshot of the whole page is taken and
   checked to be non-blank — look at it.

Usage::

    python scripts/check_report.py report.html --screenshot report.png
    python scripts/check_report.py --from data/examples/*.h5 --out report.html --screenshot report.png

Exit status 0 when the page passes, 1 when it has problems (listed one per line), 2 on bad usage. Chromium is
found as ``chromium``, ``chromium-browser``, ``google-chrome`` or ``$CHROMIUM`` (Debian: ``apt-get install
chromium``); without it only the static check runs, and the script says so.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Sequence

#: Flags for a quiet, offline, throw-away headless Chromium (no network services, no profile left behind).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio"]
#: Page width of the browser check, in CSS pixels (a laptop screen).
WIDTH = 1280
PROBE_ID = "ticketlab-probe"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Runs after the load event, when every image has been decoded; writes its findings into the DOM as JSON.
PROBE = """<script>
window.addEventListener("load", function () {
  var vw = document.documentElement.clientWidth;
  var imgs = Array.prototype.slice.call(document.images);
  var tables = Array.prototype.slice.call(document.querySelectorAll("table"));
  var wide = [];
  Array.prototype.slice.call(document.body.querySelectorAll("*")).forEach(function (el) {
    if (el.closest(".table-wrap")) return;              /* inside a scrolling box: allowed to be wide */
    var r = el.getBoundingClientRect();
    if (r.right > vw + 1) wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : ""));
  });
  var probe = {
    viewport: vw,
    page_width: document.documentElement.scrollWidth,
    page_height: document.documentElement.scrollHeight,
    images: imgs.length,
    broken_images: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length,
    tables: tables.length,
    unwrapped_tables: tables.filter(function (t) {
      var o = getComputedStyle(t.parentElement).overflowX; return o !== "auto" && o !== "scroll";
    }).length,
    scrolling_tables: tables.filter(function (t) {
      return t.parentElement.scrollWidth > t.parentElement.clientWidth;
    }).length,
    wider_than_window: wide.slice(0, 10),
    sections: Array.prototype.slice.call(document.querySelectorAll("h2[id]")).map(function (h) { return h.id; })
  };
  var pre = document.createElement("pre");
  pre.id = "%s";
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>""" % PROBE_ID


# ----------------------------------------------------------------------------------------------------------
# Static check


class _Page(HTMLParser):
    """Collects what the static check needs: images, tables with their parent, sections, external references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.images: list[str] = []
        self.tables_unwrapped = 0
        self.tables = 0
        self.sections: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self.title = ""
        self._in_title = False

    _VOID = {"img", "br", "hr", "meta", "link", "input", "wbr", "source", "col", "area", "base", "embed"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "table":
            self.tables += 1
            parent = self.stack[-1] if self.stack else ("", {})
            if parent[0] != "div" or "table-wrap" not in parent[1].get("class", "").split():
                self.tables_unwrapped += 1
        elif tag == "h2" and a.get("id"):
            self.sections.append(a["id"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "title":
            self._in_title = True
        for key in ("src", "href"):
            v = a.get(key, "")
            if key in a and not v.startswith(("data:", "#")):
                self.external.append(f"<{tag} {key}={v[:60]!r}>")
        if tag not in self._VOID:
            self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self._VOID and self.stack:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        for i in range(len(self.stack) - 1, -1, -1):  # tolerate unclosed tags (<p>, <li>)
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def png_problem(uri: str) -> str | None:
    """Why a ``data:`` URI is not a valid PNG image, or None if it is one."""
    prefix = "data:image/png;base64,"
    if not uri.startswith(prefix):
        return f"not an inline PNG (src starts {uri[:40]!r})"
    try:
        raw = base64.b64decode(uri[len(prefix):], validate=True)
    except (binascii.Error, ValueError) as err:
        return f"base64 does not decode ({err})"
    if not raw.startswith(PNG_SIGNATURE):
        return "decoded data is not a PNG (bad signature)"
    try:
        from PIL import Image  # Pillow is a dependency of matplotlib

        with Image.open(io.BytesIO(raw)) as im:
            im.load()  # decodes every row: catches truncated or corrupt data
            w, h = im.size
    except Exception as err:  # noqa: BLE001 - any decoder failure is the finding
        return f"PNG does not decode ({type(err).__name__}: {err})"
    if w == 0 or h == 0:
        return f"PNG has size {w}x{h}"
    return None


def static_problems(text: str, sections: Sequence[str] = ()) -> list[str]:
    """Problems of a report's HTML text found without a browser (empty list: none).

    Parameters
    ----------
    text : str
        The page.
    sections : sequence of str
        Section ids (``<h2 id=...>``) that must be present.
    """
    page = _Page()
    page.feed(text)
    page.close()
    problems = []
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("the page does not start with <!DOCTYPE html>")
    if not page.title.strip():
        problems.append("the page has no <title>")
    if page.scripts:
        problems.append(f"the page has {page.scripts} <script> element(s); a report needs none")
    problems += [f"external reference {e}: the page must be self-contained" for e in page.external]
    if not page.images:
        problems.append("the page has no figure")
    for i, src in enumerate(page.images):
        why = png_problem(src)
        if why:
            problems.append(f"image {i + 1}: {why}")
    if page.tables_unwrapped:
        problems.append(f"{page.tables_unwrapped} of {page.tables} tables are not inside <div class=\"table-wrap\"> "
                        "(a wide table would widen the page instead of scrolling)")
    missing = [s for s in sections if s not in page.sections]
    if missing:
        problems.append(f"missing section(s): {', '.join(missing)} (present: {', '.join(page.sections) or 'none'})")
    return problems


# ----------------------------------------------------------------------------------------------------------
# Browser check


def find_chromium() -> str | None:
    """Path of a Chromium-like browser: ``$CHROMIUM`` or the first of chromium, chromium-browser, google-chrome."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).exists() else None)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(chromium: str, args: list[str], profile: str, timeout: float) -> subprocess.CompletedProcess:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def probe(path: str | Path, chromium: str, *, width: int = WIDTH, timeout: float = 90) -> dict[str, Any]:
    """Load a copy of the page with the probe script in headless Chromium and return the probe's findings."""
    text = Path(path).read_text(encoding="utf-8")
    if "</body>" not in text:
        raise ValueError(f"{path}: no </body> tag")
    with tempfile.TemporaryDirectory(prefix="ticketlab-check-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(text.replace("</body>", PROBE + "\n</body>", 1), encoding="utf-8")
        profile = Path(tmp) / "profile"
        done = _chromium(chromium, [f"--window-size={width},1000", "--virtual-time-budget=15000", "--dump-dom",
                                    copy.as_uri()], str(profile), timeout)
    m = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', done.stdout, re.S)
    if not m:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        raise RuntimeError(f"the browser returned no probe result (exit {done.returncode}): {' | '.join(tail)}")
    return json.loads(html.unescape(m.group(1)))


def screenshot(path: str | Path, out: str | Path, chromium: str, *, width: int = WIDTH, height: int = 4000,
               timeout: float = 90) -> Path:
    """A PNG screenshot of the page at ``width`` × ``height`` CSS pixels (height: the page's, to see all of it)."""
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="ticketlab-shot-") as tmp:
        done = _chromium(chromium, [f"--window-size={width},{height}", f"--screenshot={out}",
                                    Path(path).resolve().as_uri()], tmp, timeout)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"no screenshot written (exit {done.returncode}): {(done.stderr or '').strip()[-300:]}")
    return out


def blank(png: str | Path) -> bool:
    """Whether an image is one flat colour (a blank page)."""
    from PIL import Image, ImageStat

    with Image.open(png) as im:
        return max(ImageStat.Stat(im.convert("L")).stddev) < 1.0


def browser_problems(path: str | Path, chromium: str, *, sections: Sequence[str] = (),
                     screenshot_path: str | Path | None = None, width: int = WIDTH) -> tuple[list[str], dict]:
    """Problems a reader would see in headless Chromium, and the probe's findings.

    Takes a full-page screenshot to ``screenshot_path`` when given (height: the page's, at most 30,000 px).
    """
    found = probe(path, chromium, width=width)
    problems = []
    if found["broken_images"]:
        problems.append(f"{found['broken_images']} of {found['images']} images did not load or decode in the browser")
    if found["page_width"] > found["viewport"] + 1:
        problems.append(f"the page is {found['page_width']} px wide in a {found['viewport']} px window (it scrolls "
                        f"sideways); too wide: {', '.join(found['wider_than_window']) or 'unknown'}")
    elif found["wider_than_window"]:
        problems.append(f"elements wider than the window: {', '.join(found['wider_than_window'])}")
    if found["unwrapped_tables"]:
        problems.append(f"{found['unwrapped_tables']} tables are not in a box with overflow-x: auto")
    missing = [s for s in sections if s not in found["sections"]]
    if missing:
        problems.append(f"the browser parsed no section {', '.join(missing)}")
    if screenshot_path is not None:
        shot = screenshot(path, screenshot_path, chromium, width=width,
                          height=min(int(found["page_height"]) + 20, 30000))
        if blank(shot):
            problems.append(f"the screenshot {shot} is blank")
    return problems, found


def check(path: str | Path, *, sections: Sequence[str] = (), screenshot_path: str | Path | None = None,
          chromium: str | None = None, require_browser: bool = False) -> list[str]:
    """Static and (when Chromium is found) browser problems of a report; empty when it passes."""
    problems = static_problems(Path(path).read_text(encoding="utf-8"), sections)
    chromium = chromium or find_chromium()
    if chromium is None:
        if require_browser:
            problems.append("no Chromium found (install chromium or set $CHROMIUM); the browser check did not run")
        return problems
    more, _ = browser_problems(path, chromium, sections=sections, screenshot_path=screenshot_path)
    return problems + more


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", nargs="?", help="the HTML report to check")
    p.add_argument("--from", dest="files", nargs="+", metavar="FILE", help="write the report from these ticket "
                   "files first (to --out)")
    p.add_argument("--out", default="report.html", help="where --from writes the report (default report.html)")
    p.add_argument("--screenshot", metavar="PNG", help="save a full-page screenshot here")
    p.add_argument("--sections", default="", help="comma-separated section ids that must be present "
                   "(default with --from: those the report lists in its contents)")
    p.add_argument("--chromium", help="browser binary (default: found on PATH)")
    p.add_argument("--require-browser", action="store_true", help="fail when no Chromium is found")
    args = p.parse_args(argv)
    if bool(args.report) == bool(args.files):
        p.error("give a report, or ticket files with --from")
    path = args.report
    sections = [s for s in args.sections.split(",") if s]
    if args.files:
        from ticketlab.report import build_report

        page = build_report(args.files)
        path = str(page.write(args.out))
        sections = sections or [a for a, _ in page.toc]
        print(f"wrote {path}")
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print("no Chromium found: static check only (apt-get install chromium, or set $CHROMIUM)", file=sys.stderr)
    problems = check(path, sections=sections, screenshot_path=args.screenshot, chromium=chromium,
                     require_browser=args.require_browser)
    if args.screenshot and chromium and Path(args.screenshot).exists():
        print(f"screenshot: {args.screenshot}")
    for line in problems:
        print(f"problem: {line}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
