"""Downloading a dataset's published files: :func:`download` streams each file into a temporary file beside its
final name (:func:`ticketlab.outputs.atomic_output`), checks its md5, and only then renames it into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ticketlab._version import __version__
from ticketlab.datasets.location import default_data_dir
from ticketlab.datasets.registry import get_dataset_spec
from ticketlab.errors import ConfigError
from ticketlab.outputs import atomic_output

__all__ = ["download", "file_md5"]

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _FetchError(Exception):
    pass


def _fetch(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Download ``url`` into a temporary file beside ``dest``, check its md5, then rename it to ``dest``.

    The temporary file (``.<name>.download-<pid>``, created with the permissions the umask gives) is removed
    when the download fails or its md5 is wrong; ``dest`` then keeps what it had.
    """
    with atomic_output(dest, tag="download") as tmp:
        try:
            out = open(tmp, "wb")
        except OSError as err:
            raise ConfigError(f"cannot write {tmp}: {err.strerror or err}; choose another --data-dir") from None
        digest = hashlib.md5(usedforsecurity=False)
        done = 0
        tty = progress and sys.stderr.isatty()
        with out:
            request = urllib.request.Request(url, headers={"User-Agent": f"ticketlab/{__version__}"})
            try:
                with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                    total = int(resp.headers.get("Content-Length") or 0)
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if tty:
                            of = f" / {total / 1e6:.1f}" if total else ""
                            print(f"\r  {dest.name}: {done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)
            except urllib.error.HTTPError as err:
                raise _FetchError(f"HTTP error {err.code} {err.reason}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                reason = getattr(err, "reason", None) or err
                raise _FetchError(f"{type(err).__name__}: {reason}") from None
            finally:
                if tty:
                    print(file=sys.stderr)
        got = digest.hexdigest()
        if got != md5:
            raise _FetchError(f"checksum mismatch: md5 {got}, expected {md5} ({done} bytes received)")


def download(
    name: str,
    data_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download a dataset's files into ``<data_dir>/<name>/``, verifying each file's md5.

    Each file is streamed with ``urllib`` to a temporary name in the target folder (``.<file>.download-<pid>``,
    see :func:`ticketlab.outputs.atomic_output`), its md5 is compared with the published one, and only then is it
    renamed into place, so an interrupted or corrupted download never leaves a file under the final name. Files
    already present with the right md5 are skipped; a present file with a wrong md5 is replaced. CIFAR archives
    are kept as ``.tar.gz`` (:func:`~ticketlab.datasets.load_dataset` reads them directly).

    Parameters
    ----------
    name : str
        Registered dataset name.
    data_dir : path, optional
        Data directory; default :func:`default_data_dir`. Created if needed.
    base_url : str, optional
        Fetch ``<base_url>/<file name>`` instead of the official URLs (a mirror, or a local server in
        tests); ``http``, ``https`` or ``file`` URLs.
    progress : bool
        Print what is fetched, and a byte counter when stderr is a terminal, to stderr.

    Returns
    -------
    list of Path
        The dataset's files, in the order of ``spec.files``.

    Raises
    ------
    ConfigError
        When a file cannot be fetched from any of its URLs or none of the downloads has the right md5 (the
        temporary file is deleted), or the target folder cannot be created.
    """
    spec = get_dataset_spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if base_url is not None:
        scheme = urllib.parse.urlparse(str(base_url)).scheme
        if scheme not in ("http", "https", "file"):
            raise ConfigError(f"base URL must be an http, https or file URL; got {base_url!r}")
    target = root / spec.name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {target}: {err.strerror or err}; choose another --data-dir") from None
    paths = []
    for remote in spec.files:
        dest = target / remote.name
        if dest.is_file():
            if file_md5(dest) == remote.md5:
                if progress:
                    print(f"{spec.name}/{remote.name}: already present, md5 ok", file=sys.stderr)
                paths.append(dest)
                continue
            if progress:
                print(f"{spec.name}/{remote.name}: present but md5 differs; downloading again", file=sys.stderr)
        urls = [str(base_url).rstrip("/") + "/" + remote.name] if base_url is not None else list(remote.urls)
        failures = []
        for url in urls:
            if progress:
                print(f"{spec.name}/{remote.name}: downloading {url}", file=sys.stderr)
            try:
                _fetch(url, dest, remote.md5, progress)
            except _FetchError as err:
                failures.append(f"{url}: {err}")
                if progress:
                    print(f"  failed: {err}", file=sys.stderr)
                continue
            break
        else:
            raise ConfigError(
                f"could not download {remote.name} for {spec.name} ({'; '.join(failures)}); nothing was saved "
                f"under {target}. Try again later or pass --base-url of a mirror that serves {remote.name}"
            )
        paths.append(dest)
    return paths
