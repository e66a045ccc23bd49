"""Run identity from a damaged stored configuration is a one-line file error, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest

from ticketlab.errors import TicketFileError
from ticketlab.frames.identity import run_identity
from ticketlab.store import open_ticket

EXAMPLE = sorted((Path(__file__).parent.parent / "data" / "examples").glob("lenet300_*.h5"))[0]


def test_a_config_with_a_wrong_typed_value_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "edited.h5"
    shutil.copyfile(EXAMPLE, path)
    with open_ticket(path) as t:
        config = dict(t.config)
        good = run_identity(t)
    assert good.reset == config["reset"]
    config["rate"] = "x"                      # what a hand edit with h5py can leave behind
    config["output_rate"] = {"nested": 1}
    with h5py.File(path, "r+") as f:
        del f["config"]
        f.create_dataset("config", data=json.dumps(config))
    with open_ticket(path) as t:
        with pytest.raises(TicketFileError, match="edited.h5: config"):
            run_identity(t)
