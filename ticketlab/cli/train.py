"""``ticketlab train``: run iterative magnitude pruning and write every level to a ticket file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.cli import example_epilog
from ticketlab.errors import ConfigError


def _csv(text: str) -> list[str] | str:
    if text.strip().lower() == "none":
        return "none"
    return [x.strip() for x in text.split(",") if x.strip()]


def _rate_or_none(text: str) -> float | str:
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none'; got {text!r}") from None


def _layer_rate(text: str) -> tuple[str, float]:
    pattern, sep, rate = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(f"expected PATTERN=RATE, e.g. 'convs.*=0.1'; got {text!r}")
    try:
        return pattern, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate in {text!r} is not a number") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="run iterative magnitude pruning (IMP) and save every level to a ticket file",
        description="Train the dense network (level 0), then repeatedly prune the fraction RATE of the remaining "
        "weights, reset the survivors according to --reset, retrain and evaluate; every level is written to the "
        "ticket file as soon as it completes. With no arguments this runs the 'quickstart' preset (LeNet-300-100 "
        "on the shipped MNIST, about 3 minutes on 2 CPU cores). Any preset value can be overridden by its flag.",
        epilog=example_epilog(
            "ticketlab train                                   # the quickstart preset -> runs/quickstart.h5",
            "ticketlab train --preset lth-lenet300 --seed 1 --out lenet_s1.h5",
            "ticketlab train --preset lth-lenet300 --reset rewind:1000 --controls reinit,random",
            "ticketlab train --model conv4 --dataset cifar10 --data-dir ~/data --strategy global_magnitude",
            "ticketlab train --preset quickstart --out q.h5 --resume    # continue an interrupted run",
            "ticketlab train --preset quickstart --out q.h5 --resume --levels 9   # prune a finished run further",
            "ticketlab train --mask consensus.h5 --reset rewind-init --levels 0   # retrain a given ticket",
        ),
    )
    g = p.add_argument_group("run")
    g.add_argument("--preset", help="start from a preset (see 'ticketlab presets'); default: quickstart")
    g.add_argument("--out", metavar="FILE.h5", help="ticket file to write (default: runs/<preset>_seed<seed>.h5)")
    g.add_argument("--resume", action="store_true", help="continue FILE from its last completed level")
    g.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    g.add_argument("--mask", metavar="FILE[:LEVEL]",
                   help="start from this ticket (default: its last level) instead of the dense network: its mask "
                   "and its initial weights")
    g.add_argument("--fresh-init", action="store_true",
                   help="with --mask: initialise from --seed instead of the ticket's initial weights")
    g.add_argument("--seed", type=int, help="seeds initialisation, data order, random pruning and controls")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--quiet", action="store_true", help="no progress bars or per-level lines")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="model name (see 'ticketlab models')")
    g.add_argument("--dataset", help="dataset name (see 'ticketlab data list')")
    g.add_argument("--data-dir", help="directory holding <dataset>/ folders (default: the repository's data/)")
    g.add_argument("--val-size", type=int, help="validation examples held out from training (default 5000)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop and flip (32x32 colour images)")
    g = p.add_argument_group("pruning")
    g.add_argument("--strategy", help="pruning strategy (see 'ticketlab strategies')")
    g.add_argument("--rate", type=float, help="fraction of the remaining weights pruned per level, in (0, 1)")
    g.add_argument("--output-rate", type=_rate_or_none,
                   help="rate of the output layer (layer-wise strategies); 0 leaves it unpruned; none = --rate")
    g.add_argument("--layer-rate", type=_layer_rate, action="append", metavar="PATTERN=RATE",
                   help="rate for tensors matching a pattern, e.g. 'convs.*=0.1' (repeatable)")
    g.add_argument("--norm", choices=["l1", "l2", "linf"], help="norm of ln_structured pruning")
    g.add_argument("--exclude", action="append", metavar="PATTERN", help="leave matching tensors unpruned (repeatable)")
    g.add_argument("--levels", type=int, help="pruning steps after the dense level 0 (with --resume, a larger "
                   "number extends a finished run)")
    g.add_argument("--reset", help="rewind-init, rewind:K (iterations; Kep for epochs), lr-rewind, finetune, reinit, "
                   "shuffle")
    g.add_argument("--controls", type=_csv, help="comma-separated controls trained at every level: reinit,shuffle,random (none: no controls)")
    g.add_argument("--retrain-iterations", type=int, help="retraining length per pruned level (default: full schedule)")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", help="sgd, adam or adamw")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum (SGD)")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay")
    g.add_argument("--schedule", help="learning-rate schedule: constant, step or cosine")
    g.add_argument("--milestones", type=_csv, help="step schedule: comma-separated iterations (or e.g. 91ep)")
    g.add_argument("--gamma", type=float, help="step schedule: factor at each milestone")
    g.add_argument("--warmup", help="linear warm-up length in iterations (or e.g. 2ep)")
    g.add_argument("--batch-size", type=int, help="examples per step")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=int, help="training length in iterations (optimizer steps)")
    length.add_argument("--epochs", type=float, help="training length in epochs")
    g.add_argument("--eval-every", type=int, help="iterations between evaluations on the curve (0: only at the end)")
    p.set_defaults(func=run)


OPTION_FLAGS = ["model", "dataset", "data_dir", "strategy", "rate", "output_rate", "norm", "exclude", "levels",
                "reset", "controls", "retrain_iterations", "val_size", "augment", "seed", "optimizer", "lr",
                "momentum", "nesterov", "weight_decay", "schedule", "milestones", "gamma", "batch_size",
                "iterations", "epochs", "eval_every"]


def config_from_args(args: argparse.Namespace):
    from ticketlab.presets import build_config

    overrides = {k: getattr(args, k) for k in OPTION_FLAGS}
    overrides["layer_rates"] = args.layer_rate
    overrides["warmup_iterations"] = args.warmup
    return build_config(args.preset, **overrides)


def load_start_ticket(spec: str):
    """``FILE[:LEVEL]`` → (masks of that level, the file's initial weights or None, description)."""
    from ticketlab.cli._select import select

    (sel,) = select([spec])
    with sel.ticket as t:
        init = t.weights("init") if "init" in t.checkpoints() else None
        return t.masks(sel.level), init, f"{sel.path}:{sel.level}"


def run(args: argparse.Namespace) -> int:
    from ticketlab.cli.info import collect, render
    from ticketlab.imp import IMPRun
    from ticketlab.masks import check_masks

    config = config_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"{args.preset or 'quickstart'}_seed{config.seed}.h5"
    if out.exists() and not (args.resume or args.overwrite):
        raise ConfigError(f"{out} already exists; use --resume to continue it or --overwrite to replace it")
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; choose one")
    start_mask = start_init = None
    if args.fresh_init and not args.mask:
        raise ConfigError("--fresh-init goes with --mask")
    if args.mask:
        start_mask, start_init, source = load_start_ticket(args.mask)
        if args.fresh_init:
            start_init = None
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    imp = IMPRun(config, out, device=args.device, progress=False if args.quiet else None, log=log)
    if start_mask is not None:
        names = {t.name for t in imp.tensors}
        if set(start_mask) != names:
            diff = sorted(set(start_mask) ^ names)
            raise ConfigError(f"--mask {source}: its layers do not match model {config.model!r} (first mismatch: "
                              f"{diff[0]!r})")
        start_mask = check_masks(start_mask, imp.tensors)
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"ticketlab train: {config.method()} on {config.model}/{config.dataset}, seed {config.seed} -> {out}")
    if start_mask is not None:
        log(f"starting from the mask of {source} with "
            + ("its initial weights" if start_init is not None else f"fresh initial weights (seed {config.seed})"))
    try:
        imp.run(resume=args.resume, overwrite=args.overwrite, start_mask=start_mask, start_init=start_init)
    except KeyboardInterrupt:
        print(f"\nticketlab train: interrupted; every completed level is saved in {out}. Continue with the same "
              "command plus --resume.", file=sys.stderr)
        return 130
    print(render(collect(str(out))))
    return 0
