"""Command line: ``python -m training NAME``, ``... evaluate|calibrate|export NAME``,
``... hello`` and ``... data fetch``."""

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import torch

from models.device import resolve_device
from training import distributed, fetch
from training.common import Run
from training.data import DataError, default_data_dir

PROJECT = Path(__file__).resolve().parent.parent


TRAINERS = {
    "digit-inception": "training.digits:train_digits",
    "digit-resnet": "training.digits:train_digits",
    "name-gru": "training.names:train_names",
    "char-rnn-hello": "training.char:train_hello",
    "char-rnn-shakespeare": "training.char:train_shakespeare",
}


def _trainer(name: str) -> Callable[[Run], dict[str, Any]]:
    module, func = TRAINERS[name].split(":")
    trainer: Callable[[Run], dict[str, Any]] = getattr(import_module(module), func)
    return trainer


MODEL_NAMES = tuple(TRAINERS)
CLASSIFIERS = ("digit-inception", "digit-resnet", "name-gru")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, default=None, help="default: $TINYZOO_DATA_DIR or ../shared/data"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in MODEL_NAMES:
        p = sub.add_parser(name, help=f"train {name}")
        _add_common(p)
        p.add_argument("--out", type=Path, default=PROJECT / "weights", help="default: weights/")
        p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
        p.add_argument(
            "--seed",
            type=int,
            default=0,
            help="seeds the weights' initialisation, the data order, the validation split and "
            "the augmentation (default 0); the card records it",
        )
        p.add_argument(
            "--recipe",
            choices=("default", "lecture"),
            default="default",
            help="default: the committed weights' recipe; lecture: the course's hyperparameters",
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one recipe setting, e.g. --set lr=0.002 (repeatable)",
        )
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="one batch, then the checkpoint is written and loaded back in a temporary "
            "directory that is removed (--out is not touched)",
        )
    ev = sub.add_parser("evaluate", help="re-evaluate a committed checkpoint on held-out data")
    ev.add_argument("name", choices=MODEL_NAMES, help="the model to evaluate")
    ev.add_argument("--weights", type=Path, default=PROJECT / "weights", help="default: weights/")
    _add_common(ev)
    cal = sub.add_parser(
        "calibrate",
        help="fit calibrations on the examples a classifier's training held out, choose one "
        "there and write it into its card.json (the weights are not touched)",
    )
    cal.add_argument("name", choices=CLASSIFIERS, help="the classifier to calibrate")
    cal.add_argument(
        "--weights",
        type=Path,
        default=PROJECT / "weights",
        help="default: weights/ (the checkpoint is WEIGHTS/NAME)",
    )
    _add_common(cal)
    _add_export(sub)
    fetch.add_parser(sub)
    hello = sub.add_parser("hello", help="the lecture-12 'hello' -> 'ohlol' walkthroughs")
    hello.add_argument(
        "--variant",
        choices=("rnncell", "rnn", "embedding"),
        default="embedding",
        help="nn.RNNCell and one-hot, nn.RNN and one-hot, or Embedding -> RNN (the default)",
    )
    hello.add_argument("--epochs", type=int, default=15, help="default 15, as in the lecture")
    hello.add_argument(
        "--seed", type=int, default=1, help="seeds the weights and the training (default 1)"
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text}")
    return value


def _add_export(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from training.export_graphs import EXPORTABLE

    ex = sub.add_parser(
        "export",
        help="a classifier as a Triton model repository entry (ONNX), checked against PyTorch",
    )
    ex.add_argument("name", choices=(*EXPORTABLE, "all"), help="the model to export, or all")
    ex.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the default)")
    ex.add_argument("--weights", type=Path, default=PROJECT / "weights", help="default: weights/")
    ex.add_argument("--out", type=Path, default=PROJECT / "exports", help="default: exports/")
    ex.add_argument(
        "--max-batch-size",
        type=_positive,
        default=64,
        help="Triton's max_batch_size, also the batch the check runs (default 64)",
    )
    ex.add_argument("--version", type=_positive, default=1, help="the version folder (default 1)")
    ex.add_argument(
        "--examples",
        type=_positive,
        default=1000,
        help="held-out examples the export is checked on against PyTorch (default 1000)",
    )
    ex.add_argument(
        "--data-dir", type=Path, default=None, help="default: $TINYZOO_DATA_DIR or ../shared/data"
    )


def _export(args: argparse.Namespace) -> int:
    from models.checkpoint import CheckpointError
    from training.export import EXPORTABLE, ExportError, export_model, report

    names = EXPORTABLE if args.name == "all" else (args.name,)
    data_dir = args.data_dir or default_data_dir()
    try:
        for name in names:
            result = export_model(
                name,
                args.weights,
                args.out,
                data_dir,
                args.max_batch_size,
                args.version,
                args.examples,
            )
            print(report(result))
    except (ExportError, CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command == "hello":
        from training.walkthroughs import run_hello

        predicted = run_hello(args.variant, epochs=args.epochs, seed=args.seed)
        return 0 if predicted == "ohlol" else 1
    if args.command == "export":
        return _export(args)
    if args.command == "data":
        return fetch.run(args)
    data_dir = args.data_dir or default_data_dir()
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as exc:
        print(f"error: --device {args.device}: {exc}", file=sys.stderr)
        return 2
    job, device = distributed.init(device)
    try:
        if args.command == "evaluate":
            from training.evaluate import evaluate

            print(json.dumps(evaluate(args.name, args.weights, data_dir, device), indent=2))
            return 0
        if args.command == "calibrate":
            return _calibrate(args, argv, data_dir, device)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.dry_run:
            with tempfile.TemporaryDirectory(prefix="tinyzoo-dry-run-") as tmp:
                card = _train(args, argv, data_dir, device, Path(tmp), job)
            if job.main:
                print(
                    f"dry run ok: {card['name']} trained on one batch; its checkpoint was written "
                    "and loaded back, then removed with its temporary directory"
                )
            return 0
        card = _train(args, argv, data_dir, device, args.out, job)
        distributed.shutdown(job)
        if not job.main:
            return 0
        print(
            json.dumps(
                {
                    "name": card["name"],
                    "metrics": card["metrics"],
                    "wall_time_s": card["wall_time_s"],
                },
                indent=2,
            )
        )
        return 0
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _calibrate(
    args: argparse.Namespace, argv: list[str], data_dir: Path, device: torch.device
) -> int:
    from models.checkpoint import CheckpointError
    from training.calibrate import CalibrationRefused, calibrate

    try:
        entry = calibrate(args.name, args.weights, data_dir, device, argv)
    except (CalibrationRefused, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "name": args.name,
                "chosen": entry["candidate"],
                "method": entry["method"],
                "rule": entry["rule"],
                "fitted_on": entry["fitted_on"],
                "held_out_ece": entry["ece"]["held_out"],
                "test_ece": entry["ece"]["test"],
                "candidates": entry["candidates"],
                "test_answers_changed": entry["test_answers_changed"],
                "card": str(args.weights / args.name / "card.json"),
            },
            indent=2,
        )
    )
    return 0


def _train(
    args: argparse.Namespace,
    argv: list[str],
    data_dir: Path,
    device: torch.device,
    out: Path,
    job: distributed.Dist | None = None,
) -> dict[str, Any]:
    run = Run(
        name=args.command,
        out_dir=out,
        data_dir=data_dir,
        seed=args.seed,
        device=device,
        recipe=args.recipe,
        dry_run=args.dry_run,
        argv=argv,
        overrides=_overrides(args),
        dist=job or distributed.Dist(),
    )
    card = _trainer(args.command)(run)
    if args.dry_run and run.dist.main:
        from models.checkpoint import load_checkpoint

        load_checkpoint(run.model_dir)
    return card


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    pairs = dict(item.split("=", 1) for item in args.set if "=" in item)
    bad = [item for item in args.set if "=" not in item]
    if bad:
        raise SystemExit(f"--set expects KEY=VALUE, got {bad}")
    if args.epochs is not None:
        pairs["epochs"] = str(args.epochs)
    return pairs


if __name__ == "__main__":
    sys.exit(main())
