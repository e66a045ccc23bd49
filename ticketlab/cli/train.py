"""``ticketlab train``: run iterative magnitude pruning and write every level to a ticket file."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

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


def _classes(text: str) -> list[int] | str:
    from ticketlab.datasets import parse_classes

    if text.strip().lower() == "none":
        return "none"
    try:
        return list(parse_classes(text))
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seeds(text: str) -> list[int]:
    """``0-4``, ``0,2,5`` or ``0-2,7``: distinct seeds >= 0, in the order given."""
    out: list[int] = []
    for part in (x.strip() for x in text.split(",")):
        first, sep, last = part.partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seeds like 0-4 or 0,2,5; got {text!r}") from None
        if lo < 0 or hi < lo:
            raise argparse.ArgumentTypeError(f"expected seeds >= 0 and ranges low-high; got {part!r}")
        out += [s for s in range(lo, hi + 1) if s not in out]
    return out


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
            "ticketlab train --preset lth-lenet300 --seeds 0-4 --out runs/lenet_seed{seed}.h5   # 5 seeds, batched",
            "ticketlab train --preset quickstart --out q.h5 --resume    # continue an interrupted run",
            "ticketlab train --preset quickstart --out q.h5 --resume --levels 9   # prune a finished run further",
            "ticketlab train --mask consensus.h5 --reset rewind-init --levels 0   # retrain a given ticket",
            "ticketlab train --classes 0-4 --out digits04.h5 && ticketlab train --mask digits04.h5 --classes 5-9 "
            "--levels 0 --out transfer.h5   # a ticket of digits 0-4 retrained on 5-9",
        ),
    )
    g = p.add_argument_group("run")
    g.add_argument("--preset", help=f"start from a preset: {PRESETS.choices()} (see 'ticketlab presets'); "
                   f"default: {DEFAULT_PRESET}")
    g.add_argument("--out", metavar="FILE.h5",
                   help=f"ticket file to write (default: {default_output('<preset>', '<seed>')}); missing "
                   "directories are created; a file another process is writing is refused")
    g.add_argument("--resume", action="store_true", help="continue FILE from its last completed level (FILE must "
                   "exist)")
    g.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    g.add_argument("--mask", metavar="FILE[:LEVEL]",
                   help="start from this ticket (default: its last level) instead of the dense network: its mask "
                   "and its initial weights")
    g.add_argument("--fresh-init", action="store_true",
                   help="with --mask: initialise from --seed instead of the ticket's initial weights")
    g.add_argument("--seed", type=int, help="seeds initialisation, data order, random pruning and controls")
    g.add_argument("--seeds", type=_seeds, metavar="LIST",
                   help="one run per seed, e.g. 0-4 or 0,2,5, their chains trained together in batched groups; "
                   "--out then holds {seed} (default: " + str(default_output("<preset>", "{seed}")) + ")")
    g.add_argument("--chains-per-process", type=int, metavar="K",
                   help="the most chains (runs' chains and controls) trained together as one batched model "
                   "(default: batched on CUDA, 1 on CPU, where batching measures slower); 1 runs one chain after "
                   "another, each exactly as on its own")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--quiet", action="store_true", help="no progress bars or per-level lines")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="model name (see 'ticketlab models')")
    g.add_argument("--dataset", help="dataset name (see 'ticketlab data list')")
    g.add_argument("--classes", type=_classes, metavar="IDS",
                   help="train and evaluate on these classes only, e.g. 0-4 or 0,2,4 (labels renumbered 0..k-1, "
                   "one output per class; none: every class)")
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
OPTION_FLAGS = ["model", "dataset", "classes", "data_dir", "strategy", "rate", "output_rate", "layer_rate", "norm", "exclude",
                "levels", "reset", "controls", "retrain_iterations", "val_size", "augment", "seed", "optimizer", "lr",
                "momentum", "nesterov", "weight_decay", "schedule", "milestones", "gamma", "warmup", "batch_size",
                "iterations", "epochs", "eval_every"]


def config_from_args(args: argparse.Namespace):
    from ticketlab.presets import config_from_flags

    return config_from_flags(args.preset, {k: getattr(args, k) for k in OPTION_FLAGS})


@contextlib.contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """SIGINT (Ctrl-C, ``kill -INT``) stops the run for the block, and is never lost.

    The handler is installed even where the process inherited SIGINT as ignored: a shell without job control
    starts background jobs (``ticketlab train ... &`` in a script) that way, and the run then went on to its
    last level. The event it sets is checked again after every level, in case the KeyboardInterrupt was raised
    inside code that swallows exceptions (a finalizer).
    """
    hit = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        hit.set()
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield hit
        return
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    from ticketlab.cli.info import collect, render
    from ticketlab.lottery import IMPRun, load_start_ticket
    from ticketlab.lottery.start import start_record
    from ticketlab.outputs import TICKET_SUFFIXES, OutputBusyError, OutputError, prepare_output
    from ticketlab.presets import default_output

    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; choose one")
    if args.fresh_init and not args.mask:
        raise ConfigError("--fresh-init goes with --mask")
    if args.seeds is not None or args.chains_per_process is not None or _batched_by_default(args.device):
        return _run_many(args)
    config = config_from_args(args)
    out = Path(args.out) if args.out else default_output(args.preset, config.seed)
    # the lock is taken before anything is read or replaced, and held until the run ends
    with _interruptible() as interrupted, prepare_output(out, inputs=[args.mask], overwrite=args.overwrite,
                                                         resume=args.resume, suffixes=TICKET_SUFFIXES):
        def log(line: str) -> None:
            if not args.quiet:
                print(line, file=sys.stderr, flush=True)
            if interrupted.is_set():  # called after every completed level
                raise KeyboardInterrupt

        start = load_start_ticket(args.mask, fresh_init=args.fresh_init) if args.mask else None
        imp = IMPRun(config, out, device=args.device, progress=False if args.quiet else None, log=log)
        start_mask = start_init = None
        if start is not None:
            try:
                start_mask, start_init = start.masks_for(imp.tensors, config.model), start.init
            except ConfigError as err:
                raise ConfigError(f"--mask {err}") from None
            imp.start = start_record(start.source, start_mask, start_init, start.description)
        log(f"ticketlab train: {config.method()} on {config.model}/{config.task}, seed {config.seed} -> {out}")
        if start is not None:
            weights = "its initial weights" if start_init is not None else f"fresh initial weights (seed {config.seed})"
            log(f"starting from the mask of {start.source} with {weights}")
        try:
            imp.run(resume=args.resume, overwrite=args.overwrite, start_mask=start_mask, start_init=start_init)
        except KeyboardInterrupt:
            print(f"\nticketlab train: interrupted; every completed level is saved in {out}. Continue with the same "
                  "command plus --resume.", file=sys.stderr)
            return 130
        except OutputError as err:
            if isinstance(err, OutputBusyError) or not out.exists():
                raise
            raise OutputError(f"{err}; the completed levels are kept: make room and continue with --resume") from None
    print(render(collect(str(out))))
    return 0


def _batched_by_default(device: str) -> bool:
    """Whether a run given neither --seeds nor --chains-per-process trains batched (its chain and controls in one
    group): where the device's default is several chains per process (CUDA), except under torchrun."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return False
    from ticketlab.batched import default_chains_per_process
    from ticketlab.lottery import resolve_device

    return default_chains_per_process(resolve_device(device)) > 1


def _run_many(args: argparse.Namespace) -> int:
    """``--seeds`` / ``--chains-per-process``: one run per seed, their chains batched (ticketlab.lottery.group)."""
    from ticketlab.cli.info import collect, render
    from ticketlab.lottery import load_start_ticket
    from ticketlab.lottery.group import build_runs, run_runs
    from ticketlab.lottery.start import start_record
    from ticketlab.outputs import TICKET_SUFFIXES, OutputBusyError, OutputError, prepare_output
    from ticketlab.presets import default_output

    if args.seeds is not None and args.seed is not None:
        raise ConfigError("--seed and --seeds contradict each other; give one")
    if args.chains_per_process is not None and args.chains_per_process < 1:
        raise ConfigError(f"--chains-per-process must be >= 1; got {args.chains_per_process}")
    seeds = args.seeds if args.seeds is not None else [args.seed]
    configs = [config_from_args(argparse.Namespace(**{**vars(args), "seed": s})) for s in seeds]
    if args.out and len(configs) > 1 and "{seed}" not in args.out:
        raise ConfigError("--out must contain {seed} with several --seeds, one file per seed (e.g. --out "
                          "runs/lenet_seed{seed}.h5)")
    outs = [Path(args.out.replace("{seed}", str(c.seed))) if args.out else default_output(args.preset, c.seed)
            for c in configs]
    many = len(configs) > 1
    # --resume continues the set: the files there are resumed, the seeds not started yet (a sequential set killed
    # early) are started; with no file at all there is nothing to resume
    some = args.resume and any(out.exists() for out in outs)
    with _interruptible() as interrupted, contextlib.ExitStack() as held:
        for out in outs:  # every lock taken before anything is read or replaced, and held until the runs end
            held.enter_context(prepare_output(out, inputs=[args.mask], overwrite=args.overwrite,
                                              resume=args.resume and (out.exists() or not some),
                                              suffixes=TICKET_SUFFIXES))

        def logger(prefix: str):
            def log(line: str) -> None:
                if not args.quiet:
                    print(prefix + line, file=sys.stderr, flush=True)
                if interrupted.is_set():  # called after every completed level of every run
                    raise KeyboardInterrupt
            return log

        start = load_start_ticket(args.mask, fresh_init=args.fresh_init) if args.mask else None
        runs = build_runs(configs, outs, device=args.device, progress=False if args.quiet else None,
                          logs=[logger(f"seed {c.seed}: " if many else "") for c in configs])
        start_mask = start_init = None
        if start is not None:
            try:
                start_mask, start_init = start.masks_for(runs[0].tensors, configs[0].model), start.init
            except ConfigError as err:
                raise ConfigError(f"--mask {err}") from None
            for r in runs:
                r.start = start_record(start.source, start_mask, start_init, start.description)
        k = args.chains_per_process
        if k is None:
            from ticketlab.batched import default_chains_per_process

            k = default_chains_per_process(runs[0].device)
        c = configs[0]
        target = args.out or str(default_output(args.preset, "{seed}"))
        logger("")(f"ticketlab train: {c.method()} on {c.model}/{c.task}, seed{'s' if many else ''} "
                   f"{','.join(str(x.seed) for x in configs)} -> {target if many else outs[0]}, "
                   f"{k} chain{'s' if k > 1 else ''} per process")
        try:
            run_runs(runs, resume=args.resume, overwrite=args.overwrite, chains_per_process=k,
                     start_mask=start_mask, start_init=start_init)
        except KeyboardInterrupt:
            where = "the --out files" if many else str(outs[0])
            print(f"\nticketlab train: interrupted; every completed level is saved in {where}. Continue with the "
                  "same command plus --resume.", file=sys.stderr)
            return 130
        except OutputError as err:
            if isinstance(err, OutputBusyError) or not all(out.exists() for out in outs):
                raise
            raise OutputError(f"{err}; the completed levels are kept: make room and continue with --resume") from None
    if not many:
        print(render(collect(str(outs[0]))))
        return 0
    print(_runs_table([collect(str(out)) for out in outs]))
    return 0


def _runs_table(infos: list[dict[str, Any]]) -> str:
    """One line per run: file, seed, status, levels, and the density and accuracy of its dense and last levels."""
    from ticketlab.cli._output import fmt_float, fmt_int, fmt_str, table

    rows = []
    for info in infos:
        chain = [r for r in info["levels"] if not r["branch"]]
        first, last = (chain[0], chain[-1]) if chain else ({}, {})
        rows.append({"file": info["file"], "seed": info["seed"], "status": info["status"], "levels": len(chain),
                     "density": last.get("density"), "dense_acc": first.get("accuracy"),
                     "last_acc": last.get("accuracy")})
    return table(rows, [("file", "file", fmt_str), ("seed", "seed", fmt_int), ("status", "status", fmt_str),
                        ("levels", "levels", fmt_int), ("density", "last density", fmt_float(4)),
                        ("dense_acc", "dense accuracy", fmt_float(4)), ("last_acc", "last accuracy", fmt_float(4))])
