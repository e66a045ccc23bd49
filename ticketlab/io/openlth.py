"""Import OpenLTH (facebookresearch/open_lth) lottery runs: one ticket file per replicate.

OpenLTH writes ``<root>/lottery_<md5>/replicate_<r>/level_<L>/<experiment>/`` where the experiment is ``main``
(the IMP trunk) or ``lottery_branch_<name>_<md5>`` (a control trained on level L's mask), plus
``level_pretrain/main`` when rewinding; :mod:`ticketlab.io.openlth_layout` finds and parses them. Mapping
(decision: **one ticket file per replicate; branches stay branches of their level**, as ticketlab's format
stores them):

==============================================  ===============================================================
OpenLTH                                         ticket file
==============================================  ===============================================================
``level_L/main/mask.pth``                       level L's masks (int32 0/1 → bits), matched by key, not order
``level_0/main/model_<start>.pth``              ``/weights/init`` (no rewinding) or ``/weights/rewind``
                                                (rewinding: iteration K from the logs)
``level_pretrain/main/model_ep0_it0.pth``       ``/weights/init`` when rewinding
``level_L/main/model_<end>.pth``                level L's trained weights (kept values)
``level_L/main/model_<start>.pth``              not stored: it is the init (or rewind) weights × level L's mask;
                                                checked, with a note if it differs
``logger`` (``test_loss``, ``test_accuracy``,   the configuration's ``levels.<L>.metrics`` (every logged
``test_examples`` by iteration)                 iteration) and level attributes ``test_accuracy``,
                                                ``test_loss``, ``end_iteration`` (the last logged values)
``hparams.log``                                 the configuration's ``hparams`` (parsed) and ``hparams_log``
``sparsity_report.json``                        checked against the masks (``total``, ``unpruned``)
``lottery_branch_<name>_<md5>/``                branch ``<name>_<md5[:8]>`` of level L: its mask (the parent
                                                level's for ``retrain``), start weights as the branch's
                                                initial weights, end weights, metrics in the configuration
``checkpoint.pth``                              skipped with a note (resume state; it pickles numpy scalars,
                                                and ticketlab never unpickles arbitrary objects)
==============================================  ===============================================================

Tensors that OpenLTH did not prune (``pruning_layers_to_ignore``, e.g. ``fc.weight``) have all-ones masks at
every level: they are kept and marked ``pruned=False``. OpenLTH logs no predictions, so the levels have no
``eval`` group (its confusion matrix cannot be rebuilt); the logged numbers are in the configuration.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ticketlab import store
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.io.common import ImportResult, check_output, tensor_kind
from ticketlab.io.names import canonical_key
from ticketlab.io.openlth_layout import (
    DATASETS,
    LOTTERY_DIR,
    Experiment,
    Replicate,
    discover,
    hparam,
    output_paths,
    parse_hparams,
    parse_logger,
    read_text,
    scan_replicate,
)
from ticketlab.io.tensorfiles import load_torch, state_dict_of
from ticketlab.masks import TensorInfo, as_bool_mask, density, pack_mask, unpack_mask
from ticketlab.outputs import atomic_outputs

__all__ = ["import_openlth", "MODEL_NAMES", "BRANCH_KINDS", "parse_logger", "parse_hparams", "discover",
           "output_paths"]

#: OpenLTH model names whose parameter names and shapes ticketlab's registry reproduces (checked on import).
MODEL_NAMES = {"mnist_lenet_300_100": "lenet300", "cifar_resnet_20": "resnet20", "cifar_resnet_56": "resnet56",
               "cifar_vgg_11": "vgg11", "cifar_vgg_16": "vgg16", "cifar_vgg_19": "vgg19"}
#: OpenLTH branch names → ticketlab branch kinds.
BRANCH_KINDS = {"randomly_prune": "random", "randomly_reinitialize": "reinit", "retrain": "retrain"}


# ----------------------------------------------------------------------------------------------------------
# Import


def import_openlth(src: str | os.PathLike, out: str | os.PathLike, *, replicate: int | None = None,
                   weights: bool = True, overwrite: bool = False) -> list[ImportResult]:
    """Import OpenLTH lottery runs, one ticket file per replicate (see the module docstring for the mapping).

    Parameters
    ----------
    src : path-like
        An OpenLTH results root, a ``lottery_<md5>`` directory or a ``replicate_<r>`` directory.
    out : path-like
        The ticket file; with several replicates (or experiments) the files are named
        ``<stem>_replicate<r>.h5`` (``<stem>_<md5[:8]>_replicate<r>.h5``), see :func:`output_paths`.
    replicate : int, optional
        Import only this replicate.
    weights : bool
        Store trained weights of every level and branch (default); ``False`` keeps masks, init/rewind weights
        and metrics only.
    overwrite : bool
        Replace existing output files.

    Every output is written to a temporary file and renamed into place only when all imports succeeded.
    """
    runs, notes = discover(src)
    if replicate is not None:
        runs = [(lot, rep) for lot, rep in runs if int(rep.name.split("_")[1]) == replicate]
        if not runs:
            raise ConfigError(f"{src}: has no replicate_{replicate}")
    out = Path(out)
    outs = [check_output(p, overwrite) for p in output_paths(out, runs)]
    results = []
    with atomic_outputs(outs, tag="import") as tmps:
        for (lot, rep), path, tmp in zip(runs, outs, tmps):
            result = ImportResult(path, str(rep), "openlth", notes=list(notes))
            _import_replicate(lot, rep, tmp, weights, result)
            results.append(result)
    return results


def _load_mask(path: Path) -> dict[str, np.ndarray]:
    obj = load_torch(path, what="mask file")
    if not isinstance(obj, dict) or not obj:
        raise TicketFileError(f"{path}: not an OpenLTH mask (a dict of parameter name → 0/1 tensor)")
    masks = {}
    for key, value in obj.items():
        if not hasattr(value, "numpy"):
            raise TicketFileError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        try:
            masks[canonical_key(str(key))] = as_bool_mask(str(key), value.numpy())
        except ConfigError as err:
            raise TicketFileError(f"{path}: {err}") from None
    return masks


def _read_model(path: Path) -> dict[str, Any]:
    sd, _ = state_dict_of(load_torch(path, what="model file"), path)
    return {canonical_key(k): v for k, v in sd.items()}


def _load_model(path: Path, tensors: list[TensorInfo], sd: dict[str, Any] | None = None) -> dict[str, Any]:
    """The state dict in ``path`` (or ``sd``, already read from it), checked against the masked tensors."""
    sd = _read_model(path) if sd is None else sd
    for t in tensors:
        if t.name not in sd:
            raise TicketFileError(f"{path}: has no weight {t.name!r}, which the masks cover")
        if tuple(sd[t.name].shape) != t.shape:
            raise TicketFileError(f"{path}: weight {t.name!r} has shape {list(sd[t.name].shape)} but its mask has "
                                  f"{list(t.shape)}")
    return sd


def _check_report(exp: Experiment, masks: dict[str, np.ndarray]) -> dict[str, float]:
    path = exp.path / "sparsity_report.json"
    if not path.is_file():
        raise TicketFileError(f"{exp.path}: missing sparsity_report.json (OpenLTH writes it beside every mask.pth); "
                              "the run directory is incomplete")
    try:
        report = json.loads(read_text(path))
        total, unpruned = float(report["total"]), float(report["unpruned"])
    except (ValueError, KeyError, TypeError) as err:
        raise TicketFileError(f"{path}: not an OpenLTH sparsity report ({err})") from None
    size = sum(m.size for m in masks.values())
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    if (total, unpruned) != (size, kept):
        raise TicketFileError(f"{path}: says {unpruned:.0f} of {total:.0f} weights are kept, but mask.pth keeps "
                              f"{kept} of {size}; the run directory is inconsistent")
    return {"total": total, "unpruned": unpruned}


def _match_model(name: str | None, tensors: list[TensorInfo], num_classes: int | None) -> str | None:
    reg = MODEL_NAMES.get(name or "")
    if reg is None:
        return None
    try:
        from ticketlab.models import create_model, prunable_tensors

        ours = prunable_tensors(create_model(reg, num_classes=num_classes or 10))
    except Exception:  # noqa: BLE001 - a registry change must not break imports; fall back to OpenLTH's name
        return None
    return reg if [(t.name, t.shape) for t in ours] == [(t.name, t.shape) for t in tensors] else None


def _read_masks(scan: Replicate, notes: list[str]) -> tuple[list[TensorInfo], dict[int, dict[str, np.ndarray]],
                                                             dict[int, dict[str, float]], dict[str, Any]]:
    """Every level's mask, validated and bit-packed, and the tensor table in the model's parameter order
    (mask.pth key order is not stable). Returns (tensors, packed masks by level, sparsity reports by level, the
    level-0 start state dict read on the way)."""
    mains = scan.mains
    masks0 = _load_mask(mains[0].mask_path)
    start0 = _read_model(mains[0].start)
    order_keys = list(start0)
    names = [k for k in order_keys if k in masks0] + [k for k in masks0 if k not in order_keys]
    shapes = {k: tuple(masks0[k].shape) for k in names}

    # One pass over the masks: validate, find unpruned tensors; keep them bit-packed for the writing pass.
    packed: dict[int, dict[str, np.ndarray]] = {}
    reports: dict[int, dict[str, float]] = {}
    has_zeros = {k: False for k in names}
    previous = None
    for level in scan.order:
        masks = masks0 if level == 0 else _load_mask(mains[level].mask_path)
        _check_same_tensors(mains[level].mask_path, masks, shapes)
        reports[level] = _check_report(mains[level], masks)
        for k in names:
            has_zeros[k] |= not masks[k].all()
        if previous is not None and any(np.any(masks[k] & ~unpack_mask(previous[k], shapes[k])) for k in names):
            notes.append(f"level {level}: its mask keeps weights that level {level - 1} pruned (not nested)")
        packed[level] = {k: pack_mask(masks[k]) for k in names}
        previous = packed[level]
    ignored = str(hparam(scan.hparams, "Pruning", "pruning_layers_to_ignore", "") or "").split(",")
    only_dense = scan.order == [0]
    tensors = [TensorInfo(k, shapes[k], tensor_kind(k, shapes[k]),
                          pruned=has_zeros[k] or (only_dense and k not in ignored)) for k in names]
    unpruned = [t.name for t in tensors if not t.pruned]
    if unpruned:
        notes.append(f"not pruned by OpenLTH (all-ones masks at every level; marked unpruned): {', '.join(unpruned)}")
    return tensors, packed, reports, start0


def _import_replicate(lot: Path, rep: Path, tmp: Path, weights: bool, result: ImportResult) -> None:
    notes = result.notes
    scan = scan_replicate(rep)
    notes += scan.notes
    hparams, order, mains, branches, pre = scan.hparams, scan.order, scan.mains, scan.branches, scan.pre
    tensors, packed, reports, start0 = _read_masks(scan, notes)
    names = [t.name for t in tensors]
    shapes = {t.name: t.shape for t in tensors}

    # Weights: init, and the rewind point when OpenLTH pretrained (rewound) for K steps.
    start0 = _load_model(mains[0].start, tensors, start0)
    rewind_it = None
    if pre is not None:
        init = _load_model(pre.start, tensors)
        rewind_it = _rewind_iteration(pre, mains[0], hparams)
    else:
        init = start0
    base = start0

    openlth_model = hparam(hparams, "Model", "model_name")
    dataset_name = hparam(hparams, "Dataset", "dataset_name")
    classes = DATASETS.get(str(dataset_name), (None, None))[0]
    model = _match_model(openlth_model, tensors, classes) or str(openlth_model or "openlth-model")
    if model != openlth_model and openlth_model:
        notes.append(f"OpenLTH model {openlth_model} is ticketlab model {model!r} (same parameter names and shapes)")
    strategy = hparam(hparams, "Pruning", "pruning_strategy", "sparse_global")
    fraction = hparam(hparams, "Pruning", "pruning_fraction", 0.2)
    rate = f" {float(fraction):.0%}/level" if isinstance(fraction, (int, float)) else ""
    reset = "rewind-init" if pre is None else f"rewind:{rewind_it if rewind_it is not None else 'K'}"
    method = f"imported from OpenLTH: {strategy}{rate}, {reset}"
    lot_hash = LOTTERY_DIR.match(lot.name)
    config = {
        "import": {"kind": "openlth", "source": str(rep.resolve()), "experiment": lot.name,
                   "experiment_hash": lot_hash["hash"] if lot_hash else None, "replicate": int(rep.name.split("_")[1]),
                   "weights": bool(weights), "openlth_model": openlth_model},
        "hparams": hparams,
        "hparams_log": scan.hparams_log,
        "pretrain": None if pre is None else {"dir": str(pre.path.relative_to(rep)), "rewind_iteration": rewind_it,
                                              "metrics": pre.metrics()},
        "levels": {
            str(level): {
                "dir": str(mains[level].path.relative_to(rep)),
                "start": _file_name(mains[level].start), "end": _file_name(mains[level].end),
                "sparsity_report": reports[level], "metrics": mains[level].metrics(),
                "branches": {b.name: {"dir": str(b.path.relative_to(rep)), "openlth_name": b.openlth_name,
                                      "hash": b.hash, "start": _file_name(b.start), "end": _file_name(b.end),
                                      "metrics": b.metrics()}
                             for b in branches.get(level, [])},
            } for level in order},
    }
    dataset = store.DatasetInfo(str(dataset_name), classes) if classes else None
    store.create(tmp, tensors=tensors, model=model, method=method, config=config, seed=None, dataset=dataset,
                 init_weights=init, overwrite=True)
    writer = store.TicketWriter(tmp)
    if pre is not None:
        writer.write_checkpoint("rewind", start0, iteration=-1 if rewind_it is None else rewind_it)

    size = sum(t.size for t in tensors)
    for level in order:
        exp = mains[level]
        masks = {k: unpack_mask(packed[level][k], shapes[k]) for k in names}
        if level and exp.start is not None:
            _check_start(exp, masks, base, tensors, notes, f"level {level}")
        end = None
        if exp.end is None:
            notes.append(f"level {level}: training did not finish (no logger); imported its mask only")
        elif weights:
            end = _load_model(exp.end, tensors)
            _check_zeros(exp.end, end, masks, notes)
        attrs = {"source": str(exp.path.relative_to(rep)), **exp.final()}
        _write(writer, level, None, masks, exp, attrs=attrs, weights=end)
        kept = sum(int(np.count_nonzero(m)) for m in masks.values())
        result.levels.append({"level": level, "branch": None, "kept": kept, "size": size,
                              "density": density(kept, size), "source": str(exp.path)})
        for b in branches.get(level, []):
            if b.mask_path.is_file():
                bmasks = _load_mask(b.mask_path)
                _check_same_tensors(b.mask_path, bmasks, shapes)
                _check_report(b, bmasks)
            else:
                bmasks = masks
                if b.openlth_name != "retrain":
                    notes.append(f"{b.path}: no mask.pth; used level {level}'s mask")
            binit = None if b.start is None else _load_model(b.start, tensors)
            bend = None
            if b.end is None:
                notes.append(f"level {level} branch {b.name}: training did not finish (no logger)")
            elif weights:
                bend = _load_model(b.end, tensors)
                _check_zeros(b.end, bend, bmasks, notes)
            _write(writer, level, b.name, bmasks, b, weights=bend, init_weights=binit, attrs={
                "kind": BRANCH_KINDS.get(b.openlth_name, b.openlth_name), "seed": -1,
                "description": f"OpenLTH branch {b.openlth_name} ({b.path.name}); its arguments are known only "
                               "through the hash", **b.final()})
            bkept = sum(int(np.count_nonzero(m)) for m in bmasks.values())
            result.levels.append({"level": level, "branch": b.name, "kept": bkept, "size": size,
                                  "density": density(bkept, size), "source": str(b.path)})
    writer.write_state("import", {"notes": notes})
    writer.set_status("complete")


def _write(writer: store.TicketWriter, level: int, branch: str | None, masks: dict[str, np.ndarray], exp: Any, *,
           attrs: dict[str, Any], weights: dict | None = None, init_weights: dict | None = None) -> None:
    """One level or branch, with OpenLTH's logged test metrics (it logs no per-example predictions)."""
    with writer.level_writer(level, branch=branch, attrs=attrs) as lw:
        for name, m in masks.items():
            lw.add_mask(name, m)
        if weights is not None:
            lw.add_weights(weights, masks)
        if init_weights is not None:
            lw.add_init_weights(init_weights, masks)
        log = exp.metrics()
        if log.get("iteration") and "test_accuracy" in log:
            curve = {k: np.asarray(v, dtype=np.float64) for k, v in log.items()}
            curve["iteration"] = np.asarray(log["iteration"], dtype=np.int64)
            final = exp.final()
            lw.set_logged_metrics(accuracy=final.get("test_accuracy", float("nan")),
                                  loss=final.get("test_loss", float("nan")), curve=curve,
                                  iterations=final.get("end_iteration", 0))


def _file_name(path: Path | None) -> str | None:
    return None if path is None else path.name


def _check_same_tensors(path: Path, masks: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    if set(masks) != set(shapes):
        diff = sorted(set(masks) ^ set(shapes))
        raise TicketFileError(f"{path}: covers different tensors than level_0/main/mask.pth (first difference: "
                              f"{diff[0]!r})")
    for k, shape in shapes.items():
        if tuple(masks[k].shape) != shape:
            raise TicketFileError(f"{path}: mask {k!r} has shape {list(masks[k].shape)} but {list(shape)} at level 0")


def _check_zeros(path: Path, sd: dict[str, Any], masks: dict[str, np.ndarray], notes: list[str]) -> None:
    """OpenLTH saves models with exact zeros at pruned positions; anything else is lost by the kept-values layout."""
    bad = sum(int(np.count_nonzero(sd[k].detach().numpy()[~m])) for k, m in masks.items())
    if bad:
        notes.append(f"{path}: {bad} pruned positions hold nonzero weights; stored as zeros (pruned)")


def _check_start(exp: Experiment, masks: dict[str, np.ndarray], base: dict[str, Any], tensors: list[TensorInfo],
                 notes: list[str], what: str) -> None:
    start = _load_model(exp.start, tensors)
    for t in tensors:
        expected = base[t.name].detach().numpy() * masks[t.name]
        if not np.array_equal(start[t.name].detach().numpy(), expected):
            notes.append(f"{what}: start weights {exp.start.name} differ from the level-0 start weights x mask "
                         f"(first in {t.name}); not stored")
            return


def _rewind_iteration(pre: Experiment, main0: Experiment, hparams: dict[str, dict[str, Any]]) -> int | None:
    """K, the iteration level 0 starts from: the pretraining's last logged iteration, else level 0's first,
    else from the start file's ep/it and the iterations per epoch."""
    if pre.logger and pre.logger["iteration"]:
        return int(pre.logger["iteration"][-1])
    if main0.logger and main0.logger["iteration"]:
        return int(main0.logger["iteration"][0])
    ds = DATASETS.get(str(hparam(hparams, "Dataset", "dataset_name")))
    batch = hparam(hparams, "Dataset", "batch_size")
    if ds and isinstance(batch, int) and batch > 0:
        frac = hparam(hparams, "Dataset", "subsample_fraction") or 1
        ipe = math.ceil(ds[1] * frac / batch)
        (ep, it), _ = main0.models[0]
        return ep * ipe + it
    return None
