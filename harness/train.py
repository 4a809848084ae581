"""``python -m harness.train``: train a model on the MNIST training set (or a competition's training pictures) and
write a ready entry folder.

Examples::

    python -m harness.train --arch lenet5 --epochs 3 --out submissions/my-lenet
    python -m harness.train --competition competitions/shapes --epochs 5 --out my-cnn   # its [task].train pictures,
                                                                  # written to competitions/shapes/submissions/my-cnn
    python -m harness.train --arch cnn --optimizer adamw --lr 3e-3 --schedule onecycle --augment affine \\
        --epochs 6 --out submissions/my-cnn
    python -m harness.train --resume build/checkpoints/my-cnn.pt      # after Ctrl-C

Every knob is a flag (``--help`` lists them with their defaults). The entry gets ``model.py`` (self-contained),
``weights.pt`` (or ``model.pt2`` with ``--export``), ``entry.toml`` with every hyperparameter, the seed, the
training data's hash, the final validation accuracy and this command line, and the curve as CSV and PNG.
"""

from __future__ import annotations

import argparse
import getpass
import platform
import shlex
import sys
from pathlib import Path

import torch
import torchvision

from harness import cli
from harness.common import competition
from harness.common.competition import TaskRules
from harness.contract import DIGITS, name_problem
from harness.data.task import task_of
from harness.errors import HarnessError
from harness.training import architectures, augment, presets, recipes
from harness.training.entry_writer import check_target, weight_bytes, write_entry
from harness.training.loop import TrainConfig, fit, load_checkpoint, load_data, load_task_data
from harness.training.model_setup import build_model

KIT_AUTHOR = "MNIST club training kit"  # the club's baselines' author (submissions/baseline-*), never a member's

CHECKPOINT_DIR = Path("build") / "checkpoints"


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _at_least_one(text: str) -> float:
    value = float(text)
    if value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 1 (1 leaves the shape alone), got {text}")
    return value


def _stroke(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2 pixels, got {text}")
    return value


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli.prog("train"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    p.add_argument("--preset", choices=list(presets.PRESETS), default=preset,
                   help="start from a tested recipe; flags given as well override it. " + presets.describe())
    for add_group in (_entry_flags, _architecture_flags, _recipe_flags, _data_flags, _run_flags):
        add_group(p, d)
    if preset is not None:
        p.set_defaults(**presets.PRESETS[preset].settings)
    return p


def _entry_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("entry")
    g.add_argument("--out", type=Path, help="entry folder to write, e.g. submissions/my-cnn (required)")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g.add_argument("--export", action="store_true",
                   help="write a code-free torch.export model.pt2 instead of model.py + weights.pt")
    g.add_argument("--display-name", help="leaderboard name (default: the folder name)")
    g.add_argument("--author", default=None,
                   help="your name, as the board groups entries by it (default: your login name; the kit's own name "
                        "only for the club's baselines, --out baseline or baseline-*)")
    g.add_argument("--description", default=None)


def _architecture_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("architecture (unset knobs take the architecture's default)")
    g.add_argument("--arch", default=d.arch, choices=architectures.list_architectures())
    g.add_argument("--model-file", type=Path, help="train your own nn.Module from this file instead of --arch")
    g.add_argument("--model-class", help="class in --model-file (default: Model, Net or the only nn.Module)")
    g.add_argument("--hidden", type=_positive(int), nargs="+", help="fully connected layer sizes (mlp, lenet5)")
    g.add_argument("--channels", type=_positive(int), nargs="+",
                   help="convolution widths (lenet5: 2, cnn: one per stage)")
    g.add_argument("--kernel-size", type=_positive(int), help="convolution kernel size")
    g.add_argument("--convs-per-stage", type=_positive(int), help="convolutions before each pooling (cnn)")
    g.add_argument("--dropout", type=_fraction, help="dropout probability")
    g.add_argument("--activation", choices=architectures.ACTIVATIONS)
    g.add_argument("--resize", type=_positive(int),
                   help="resize the input (28×28 for MNIST, the task's height×width for a competition) to a square of "
                        "this side (inside the model)")
    g.add_argument("--crop", type=_positive(int), help="centre-crop to this side (inside the model, after --resize)")
    g.add_argument("--mean", type=float,
                   help=f"normalisation mean (default {architectures.MNIST_MEAN} for MNIST, the middle of the task's "
                        "value range for a competition; 0 with --std 1 for none)")
    g.add_argument("--std", type=_positive(float),
                   help=f"normalisation std (default {architectures.MNIST_STD} for MNIST, half the task's value range "
                        "for a competition)")


def _recipe_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("recipe")
    g.add_argument("--loss", default=d.loss, choices=list(recipes.LOSSES))
    g.add_argument("--label-smoothing", type=_fraction, default=d.label_smoothing, help="cross-entropy only")
    g.add_argument("--optimizer", default=d.optimizer, choices=list(recipes.OPTIMIZERS))
    g.add_argument("--lr", type=_positive(float), default=d.lr, help="learning rate (the peak for onecycle)")
    g.add_argument("--momentum", type=_fraction, default=d.momentum, help="sgd and rmsprop")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--schedule", default=d.schedule, choices=list(recipes.SCHEDULES), help=recipes.SCHEDULE_HELP)
    g.add_argument("--batch-size", type=_positive(int), default=d.batch_size)
    g.add_argument("--epochs", type=_positive(int), default=d.epochs)


def _data_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    a = d.augment
    g = p.add_argument_group("data and augmentation")
    g.add_argument("--val-fraction", type=_fraction, default=d.val_fraction,
                   help="share of the training set held out for validation")
    g.add_argument("--limit", type=_positive(int), help="use only the first N training images (quick experiments)")
    g.add_argument("--extra", nargs="+", default=list(d.extra), metavar="FOLDER",
                   help="other writers' labelled digits to train on as well (a folder per digit 0-9, files named like "
                        "7_001.png, or labels.csv: the guest set's layouts), normalised like the guest's digits; "
                        "MNIST alone has one country's handwriting")
    g.add_argument("--extra-repeat", type=_positive(int), default=d.extra_repeat,
                   help="times each --extra digit is seen per epoch")
    g.add_argument("--augment", nargs="+", default=[], choices=[*augment.list_augmentations(), "none"], metavar="NAME",
                   help=f"training-time augmentations (per image from torchvision.transforms.v2, then batched ones): "
                        f"{', '.join(augment.list_augmentations())}; 'none' turns off a preset's")
    g.add_argument("--degrees", type=float, default=a.degrees, help="affine: rotation, ± degrees")
    g.add_argument("--translate", type=_fraction, default=a.translate, help="affine: shift, fraction of the side")
    g.add_argument("--scale", type=_positive(float), nargs=2, default=list(a.scale), metavar=("MIN", "MAX"),
                   help="affine: zoom range")
    g.add_argument("--shear", type=float, default=a.shear, help="affine: shear, ± degrees")
    g.add_argument("--elastic-alpha", type=_positive(float), default=a.elastic_alpha)
    g.add_argument("--elastic-sigma", type=_positive(float), default=a.elastic_sigma)
    g.add_argument("--crop-padding", type=_positive(int), default=a.crop_padding,
                   help="crop: padding before the random crop back to the input's size (28×28 for MNIST)")
    g.add_argument("--erasing-p", type=_fraction, default=a.erasing_p)
    g.add_argument("--rotate", type=float, default=a.rotate, help="rotate: ± degrees")
    g.add_argument("--slant", type=float, default=a.slant, help="slant: lean of the strokes, ± degrees")
    g.add_argument("--aspect", type=_at_least_one, default=a.aspect,
                   help="aspect: width/height × up to this or its inverse")
    g.add_argument("--warp", type=_positive(float), default=a.warp, help="warp: smooth random displacement, pixels")
    g.add_argument("--stroke", type=_stroke, default=a.stroke,
                   help="stroke: pen width change, ± pixels per side (at most 2)")
    competition.add_argument(g)
    g.add_argument("--mnist-dir", help="folder with the MNIST files (default: $MNIST_DIR, else ./data/mnist)")
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading missing MNIST files")


def _run_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--threads", type=_positive(int),
                   help="CPU threads (results are reproducible for a given seed and thread count)")
    g.add_argument("--checkpoint", type=Path,
                   help=f"where Ctrl-C and each epoch save a checkpoint (default: {CHECKPOINT_DIR}/<entry>.pt)")
    g.add_argument("--resume", type=Path, metavar="CHECKPOINT", help="continue an interrupted run; takes no other flag")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser with the chosen ``--preset``'s settings as defaults, and the parsed flags."""
    first = argparse.ArgumentParser(prog=cli.prog("train"), add_help=False)
    first.add_argument("--preset", choices=list(presets.PRESETS))
    parser = build_parser(first.parse_known_args(argv)[0].preset)
    return parser, parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    knobs = {k: getattr(args, k) for k in TrainConfig.ARCH_KNOBS}
    knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
    return TrainConfig(
        arch="custom" if args.model_file else args.arch, **knobs,
        loss=args.loss, label_smoothing=args.label_smoothing, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, nesterov=args.nesterov, schedule=args.schedule,
        batch_size=args.batch_size, epochs=args.epochs, val_fraction=args.val_fraction, limit=args.limit,
        extra=tuple(str(f) for f in args.extra), extra_repeat=args.extra_repeat,
        augment=augment.AugmentConfig(
            names=tuple(n for n in args.augment if n != "none"), degrees=args.degrees, translate=args.translate,
            scale=tuple(args.scale),
            shear=args.shear, elastic_alpha=args.elastic_alpha, elastic_sigma=args.elastic_sigma,
            crop_padding=args.crop_padding, erasing_p=args.erasing_p, rotate=args.rotate, slant=args.slant,
            aspect=args.aspect, warp=args.warp, stroke=args.stroke),
        seed=args.seed)


def metadata_for(args, config: TrainConfig, argv: list[str], model, model_class: str, constructor: dict,
                 data, result) -> dict:
    last = result.history[-1]
    hyper = {"arch": config.arch, **({"model_file": str(args.model_file)} if args.model_file else {}),
             **constructor}
    cfg = config.to_dict()
    for k in ("arch", *TrainConfig.ARCH_KNOBS):
        cfg.pop(k)
    aug = cfg.pop("augment")
    if not config.extra:
        cfg.pop("extra"), cfg.pop("extra_repeat")
    hyper.update(cfg)
    hyper["augment"] = list(aug.pop("names"))
    for name in hyper["augment"]:
        hyper.update({f"augment_{k}": aug[k] for k in augment.KNOBS[name]})
    if args.preset:
        hyper["preset"] = args.preset
    hyper["threads"] = torch.get_num_threads()
    # entry.toml has no table of its own for how the run went, so it follows the knobs in [hyperparameters].
    hyper.update({
        "command": shlex.join(["python", "-m", "harness.train", *argv]),
        "train_data_sha256": data.content_hash,
        "train_images": len(data.train_x), "val_images": len(data.val_x),
        **({"extra_images": [e.images for e in data.extra],
            "extra_sha256": [e.content_hash for e in data.extra]} if data.extra else {}),
        "validation_accuracy": last.val_accuracy, "validation_loss": last.val_loss,
        "train_loss": last.train_loss, "epochs_completed": len(result.history), "steps": result.state.global_step,
        "train_seconds": round(result.state.seconds, 1),
        "parameters": architectures.count_parameters(model),
        "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
    })
    others = f", plus {sum(e.images for e in data.extra):,} digits by other writers" if data.extra else ""
    return {
        "display_name": args.display_name or args.out.name,
        "author": args.author,
        "description": args.description or f"{config.arch} trained with python -m harness.train "
                       f"({config.optimizer}, lr {config.lr:g}, {config.epochs} epochs"
                       f"{', augment ' + '+'.join(config.augment.names) if config.augment.names else ''}"
                       f"{others}).",
        **({} if args.export else {"model_class": model_class, "weights": "weights.pt"}),
        **({"constructor": constructor} if constructor and not args.export else {}),
        "hyperparameters": hyper,
    }


class Progress:
    """Per-epoch progress bars with live loss, accuracy and throughput (rich); plain lines in a log file."""

    def __init__(self, epochs: int, quiet: bool):
        from rich.console import Console
        self.console = Console(stderr=True, soft_wrap=True)
        self.epochs, self.quiet = epochs, quiet
        self.bar = None

    def __call__(self, event, state, info):
        if self.quiet:
            return
        from rich import progress as rp
        if event == "epoch_start":
            self.bar = rp.Progress(rp.TextColumn("epoch {task.fields[epoch]}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                   rp.TextColumn("{task.fields[stats]}"), rp.TimeRemainingColumn(),
                                   console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=info["steps"], completed=state.step,
                                          epoch=f"{state.epoch + 1}/{self.epochs}", stats="")
            self.rate = None
        elif event == "batch":
            self.rate = info["images_per_s"] if self.rate is None else 0.9 * self.rate + 0.1 * info["images_per_s"]
            stats = (f"loss {state.loss_sum / state.seen:.4f}  acc {100 * state.correct / state.seen:.2f}%  "
                     f"{self.rate:,.0f} img/s")
            self.bar.update(self.task, completed=state.step, stats=stats)
            if not self.console.is_terminal and state.step % max(1, info["steps"] // 5) == 0:
                self.console.print(f"epoch {state.epoch + 1}/{self.epochs} step {state.step}/{info['steps']}  {stats}")
        elif event == "epoch_end":
            self.close()
            val = ("" if info["val_accuracy"] is None else
                   f"  val loss {info['val_loss']:.4f} acc {100 * info['val_accuracy']:.2f}%")
            self.console.print(f"epoch {info['epoch']}/{self.epochs}  train loss {info['train_loss']:.4f} "
                               f"acc {100 * info['train_accuracy']:.2f}%{val}  lr {info['lr']:.2e}  "
                               f"{info['seconds']:.0f} s")

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def resumed(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[str], dict | None]:
    """The parser, the flags and the command line of the run: those given, or with ``--resume CHECKPOINT`` those the
    interrupted run started with (and the loaded checkpoint, else None)."""
    parser, args = parse(argv)
    if args.resume is None:
        return parser, args, argv, None
    extra = [a for a in argv if a not in ("--resume", str(args.resume), "--quiet") and not a.startswith("--resume=")]
    if extra:
        parser.error(f"--resume continues with the settings the run started with; drop {' '.join(extra)}")
    resume = load_checkpoint(args.resume)
    quiet, checkpoint_path = args.quiet, args.resume
    argv = list(resume["argv"])
    parser, args = parse(argv)
    args.quiet, args.checkpoint = quiet, checkpoint_path
    return parser, args, argv, resume


def run(argv: list[str]) -> int:
    parser, args, argv, resume = resumed(argv)
    if args.out is None:
        parser.error("--out is required: the entry folder to write, e.g. --out submissions/my-cnn")
    if name_problem(args.out.name):
        parser.error(f"--out: {name_problem(args.out.name)}")
    if args.model_class and not args.model_file:
        parser.error("--model-class needs --model-file")
    task, where = task_setup(parser, args)
    config = config_from_args(args)
    if resume is not None and TrainConfig.from_dict(resume["config"]) != config:
        raise HarnessError(f"{args.resume} was written by another version of harness.train; start the run afresh.")
    check_target(args.out, args.overwrite)
    args.author = entry_author(args.author, args.out)
    if not args.quiet:
        print(f"Author: {args.author} (--author changes it).", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    checkpoint = args.checkpoint or CHECKPOINT_DIR / f"{args.out.name}.pt"
    _checkpoint[:] = [checkpoint]

    data = load_data(config, args.mnist_dir, download=not args.no_download) if task is None else \
        load_task_data(config, task, where)
    interface = None if task is None else task_of(args.rules).interface
    model, code, model_class, constructor = build_model(config, args.model_file, args.model_class, interface)
    progress = Progress(config.epochs, args.quiet)
    for e in data.extra:
        print(f"Extra digits: {e.images:,} from {e.folder}, each seen {config.extra_repeat}× per epoch"
              f"{f' ({e.skipped} files skipped: unreadable, without ink or without a label)' if e.skipped else ''}.",
              file=sys.stderr)
    print(f"Training {model_class} ({architectures.count_parameters(model):,} parameters) on {len(data.train_x):,} "
          f"images, validating on {len(data.val_x):,}; {torch.get_num_threads()} threads.", file=sys.stderr)
    try:
        result = fit(model, data, config, checkpoint=checkpoint, argv=argv, resume=resume, progress=progress)
    finally:
        progress.close()
    if result.interrupted:
        return cli.say_interrupted(f"the checkpoint is saved in {checkpoint}; continue with `python -m harness.train "
                                   f"--resume {checkpoint}`.")
    metadata = metadata_for(args, config, argv, model, model_class, constructor, data, result)
    if task is not None:
        metadata["hyperparameters"].update(task_record(task))
    out = write_entry(args.out, result.model, metadata=metadata, history=result.state.history, model_code=code,
                      model_class=model_class, constructor=constructor, export=args.export, overwrite=args.overwrite,
                      interface=interface or DIGITS)
    checkpoint.unlink(missing_ok=True)
    acc = result.val_accuracy
    named = "" if args.folder is None else f" --competition {shlex.quote(str(args.folder))}"
    print(f"Wrote {out} ({weight_bytes(out) / 1e6:.2f} MB of weights) in {result.state.seconds / 60:.1f} min of "
          f"training; validation accuracy {'n/a' if acc is None else f'{100 * acc:.2f}%'}.\n"
          f"Check it with: python -m harness.check{named} {shlex.quote(str(out))}", file=sys.stderr)
    return 0


def task_setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[TaskRules | None, str]:
    """The competition's task (``--competition DIR``, $LEADERBOARD_COMPETITION or ``--config``; None: the MNIST
    warm-up, also a competition.toml without [task]) and the words naming the competition. With a competition
    folder, ``--out NAME`` (or ``submissions/NAME``) goes into its submissions/. A task's runs normalise by its value
    range unless --mean/--std say otherwise, and refuse the handwriting augmentations on a task that is not
    handwriting."""
    args.folder = competition.settle(args)
    args.rules = competition.load(args.config) if (args.config or args.folder) else None
    task = None if args.rules is None else args.rules.task
    where = str(args.folder or args.config)
    if args.folder is not None and not args.out.is_absolute() and (len(args.out.parts) == 1
                                                                  or args.out.parts[0] == "submissions"):
        args.out = args.folder / "submissions" / args.out.name if len(args.out.parts) == 1 else args.folder / args.out
    if task is None:  # a competition without [task] is the MNIST warm-up: its training set is MNIST's
        return None, where
    refused = augment.not_applicable(tuple(args.augment), None if task.preprocess == "digits" else task.title)
    if refused:
        parser.error(refused)
    low, high = task.value_range
    if not args.model_file and args.mean is None and args.std is None:
        args.mean, args.std = (low + high) / 2, (high - low) / 2
    return task, where


def task_record(task: TaskRules) -> dict:
    """What entry.toml's [hyperparameters] says of the task the entry was trained for."""
    return {"task": task.title, "task_classes": list(task.classes), "task_input_shape": list(task.input_shape),
            "task_value_range": list(task.value_range), "task_train_folder": task.train.name}


def entry_author(author: str | None, out: Path) -> str:
    """Who the entry is by: ``--author``; else the login name, or the kit's own name for the club's baselines (an
    ``--out`` folder named ``baseline`` or ``baseline-*``). A member's entry never gets the baselines' author: under
    ``entries_per_member = "one"`` it would compete with the baselines as one member."""
    baseline = out.name == "baseline" or out.name.startswith("baseline-")
    if author is not None and author.strip():
        if " ".join(author.split()).casefold() == KIT_AUTHOR.casefold() and not baseline:
            raise HarnessError(f"{KIT_AUTHOR!r} is the author of the club's baselines; pass your own name, e.g. "
                               "--author 'Ada Lovelace'.")
        return author.strip()
    if baseline:
        return KIT_AUTHOR
    try:
        user = getpass.getuser().strip()
    except (OSError, KeyError, ImportError):  # no login name in the environment nor the password database
        user = ""
    if not user:
        raise HarnessError("Your login name cannot be read, so the entry has no author; pass your name, e.g. "
                           "--author 'Ada Lovelace'.")
    return user


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.run(lambda: run(argv), status=1, interrupted=interrupted)


def interrupted() -> str:
    """What a Ctrl-C outside the training loop (which saves a checkpoint itself) leaves."""
    saved = _checkpoint[0] if _checkpoint and _checkpoint[0].is_file() else None
    if saved is not None:
        return f"the last checkpoint is in {saved}; continue with `python -m harness.train --resume {saved}`."
    return "no checkpoint was saved yet; run the same command again."


_checkpoint: list[Path] = []  # the checkpoint of the run under way (for the sentence after Ctrl-C)


if __name__ == "__main__":
    sys.exit(cli.ended(main))
