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
    from ticketlab.lottery import CONTROLS, RESET_MODES
    from ticketlab.presets import DEFAULT_PRESET, PRESETS, default_output

    p = sub.add_parser(
        "train",
        help="run iterative magnitude pruning (IMP) and save every level to a ticket file",
        description="Train the dense network (level 0), then repeatedly prune the fraction RATE of the remaining "
        "weights, reset the survivors according to --reset, retrain and evaluate; every level is written to the "
        f"ticket file as soon as it completes. With no arguments this runs the '{DEFAULT_PRESET}' preset "
        f"({PRESETS.get(DEFAULT_PRESET).description}) and writes {default_output(None, 0)}. Any preset value "
        "can be overridden by its flag.",
        epilog=example_epilog(
            "ticketlab train                                   # the quickstart preset -> runs/quickstart_seed0.h5",
            "ticketlab train --preset lth-lenet300 --seed 1 --out lenet_s1.h5",
            "ticketlab train --preset lth-lenet300 --reset rewind:1000 --controls reinit,random",
            "ticketlab train --model conv4 --dataset cifar10 --data-dir ~/data --strategy global_magnitude",
            "ticketlab train --preset quickstart --out q.h5 --resume    # continue an interrupted run",
            "ticketlab train --preset quickstart --out q.h5 --resume --levels 9   # prune a finished run further",
            "ticketlab train --mask consensus.h5 --reset rewind-init --levels 0   # retrain a given ticket",
        ),
    )
    g = p.add_argument_group("run")
    g.add_argument("--preset", help=f"start from a preset: {PRESETS.choices()} (see 'ticketlab presets'); "
                   f"default: {DEFAULT_PRESET}")
    g.add_argument("--out", metavar="FILE.h5",
                   help=f"ticket file to write (default: {default_output('<preset>', '<seed>')})")
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
    g.add_argument("--reset", help=f"reset mode: {RESET_MODES.choices()} (rewind:K: K iterations, Kep epochs; "
                   "see 'ticketlab strategies')")
    g.add_argument("--controls", type=_csv, help="comma-separated controls trained at every level: "
                   f"{CONTROLS.choices(',')} (none: no controls)")
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


#: The flags that are run options (the others choose the file, the device and the output).
OPTION_FLAGS = ["model", "dataset", "data_dir", "strategy", "rate", "output_rate", "layer_rate", "norm", "exclude",
                "levels", "reset", "controls", "retrain_iterations", "val_size", "augment", "seed", "optimizer", "lr",
                "momentum", "nesterov", "weight_decay", "schedule", "milestones", "gamma", "warmup", "batch_size",
                "iterations", "epochs", "eval_every"]


def config_from_args(args: argparse.Namespace):
    from ticketlab.presets import config_from_flags

    return config_from_flags(args.preset, {k: getattr(args, k) for k in OPTION_FLAGS})


def run(args: argparse.Namespace) -> int:
    from ticketlab.cli.info import collect, render
    from ticketlab.lottery import IMPRun, load_start_ticket
    from ticketlab.presets import default_output

    config = config_from_args(args)
    out = Path(args.out) if args.out else default_output(args.preset, config.seed)
    if out.exists() and not (args.resume or args.overwrite):
        raise ConfigError(f"{out} already exists; use --resume to continue it or --overwrite to replace it")
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; choose one")
    if args.fresh_init and not args.mask:
        raise ConfigError("--fresh-init goes with --mask")
    start = load_start_ticket(args.mask, fresh_init=args.fresh_init) if args.mask else None
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    imp = IMPRun(config, out, device=args.device, progress=False if args.quiet else None, log=log)
    start_mask = start_init = None
    if start is not None:
        try:
            start_mask, start_init = start.masks_for(imp.tensors, config.model), start.init
        except ConfigError as err:
            raise ConfigError(f"--mask {err}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"ticketlab train: {config.method()} on {config.model}/{config.dataset}, seed {config.seed} -> {out}")
    if start is not None:
        log(f"starting from the mask of {start.source} with "
            + ("its initial weights" if start_init is not None else f"fresh initial weights (seed {config.seed})"))
    try:
        imp.run(resume=args.resume, overwrite=args.overwrite, start_mask=start_mask, start_init=start_init)
    except KeyboardInterrupt:
        print(f"\nticketlab train: interrupted; every completed level is saved in {out}. Continue with the same "
              "command plus --resume.", file=sys.stderr)
        return 130
    print(render(collect(str(out))))
    return 0
