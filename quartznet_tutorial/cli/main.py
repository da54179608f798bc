"""The ``quartznet`` command: models, train, evaluate, predict, make-synthetic, export.

Every subcommand has ``--help``. A user mistake (a bad path, unreadable audio, an unknown
model, a bad option value) ends with one line, ``quartznet: error: ...``, on stderr and exit
status 2, never a traceback; Ctrl-C ends with exit status 130, and a reader that closes the
pipe early (``| head``) with a quiet 141. A traceback means a bug: a ``ValueError`` counts as
the user's mistake only when this package raised it.

This module is the entry point (:func:`main`, :func:`build_parser`) and holds the thin
handlers; the option types and the options generated from
:class:`~quartznet_tutorial.training.config.TrainConfig`'s fields are
:mod:`quartznet_tutorial.cli.options`'s, and the longer handlers live next to their work
(``run_cli`` of :mod:`quartznet_tutorial.evaluation.accuracy` and :mod:`quartznet_tutorial.training.finetune`,
:mod:`quartznet_tutorial.cli.detect`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from quartznet_tutorial.cli.options import (
    PROG,
    add_dataclass_options,
    check_writable,
    checkpoint_option,
    checkpoint_type,
    count_type,
    dataclass_from_args,
    dataset_version_option,
    device_option,
    device_type,
    opset_type,
    positive_int,
    renamed,
    seed_type,
)
from quartznet_tutorial.utils.precision import PRECISIONS

__all__ = ["add_dataclass_options", "build_parser", "dataclass_from_args", "main"]

EXIT_USAGE = 2  # argparse's status for a usage error; we use it for every user mistake
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a C tool killed by `| head` reports


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows up here, not as a message at exit
        return code
    except BrokenPipeError:  # the reader left (`| head -1`): nothing more to say
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word that is no option is the command: only its options are built.
    parser = build_parser(commands=[w for w in argv if not w.startswith("-")][:1])
    try:
        args = _parse(parser, argv)
        args.argv = argv
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s"
        )
        return args.handler(args) or 0
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except (ValueError, OSError) as e:  # AudioError, CheckpointError, FileNotFoundError...
        if _is_user_error(e):
            return _fail(e)
        print(
            f"{PROG}: internal error, a bug; please report it with this traceback:", file=sys.stderr
        )
        raise
    except Exception as e:
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return _fail("out of GPU memory; lower --batch-size or use --precision 16-mixed")
        raise


def _is_user_error(error: BaseException) -> bool:
    """Ours to explain in one line: a file-system error, one of this package's errors
    (AudioError, CheckpointError, ...), or a ValueError raised by this package's code. A
    ValueError from inside torch or numpy is a bug of ours, not the user's mistake."""
    if isinstance(error, OSError) or _ours(type(error).__module__):
        return True
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and _ours(tb.tb_frame.f_globals.get("__package__") or "")


def _ours(module: str) -> bool:
    return module.split(".")[0] == __package__.split(".")[0]


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail again."""
    # Not a real file (a test's capture)? Then there is nothing to flush either.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail(error: BaseException | str) -> int:
    message = str(error).strip() or type(error).__name__
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``quartznet: error: ...``), exit 2, as ours are."""

    def error(self, message: str):
        raise SystemExit(_fail(f"{message} (see '{self.prog} --help')"))


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown option points at its subcommand's help."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.commands.get(getattr(args, "command", None), parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``quartznet`` command.

    ``commands`` names the subcommands that get their options (default: all); the others
    are listed with their help line only. The options of ``train`` and ``finetune`` are
    :class:`~quartznet_tutorial.training.config.TrainConfig`'s fields, and its module imports torch:
    :func:`main` builds only the command it runs, so that ``quartznet --help`` and the other
    commands do not wait for torch to load before they need it.
    """
    from quartznet_tutorial import __version__

    parser = _Parser(
        prog=PROG,
        description="QuartzNet and SE-QuartzNet speech-command classifiers (NeMo's recipe).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    # -q after the subcommand too; SUPPRESS: left out there, it keeps the value from before
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log warnings only, no progress bars",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> subparser, for _parse

    p = sub.add_parser(
        "models", help="list the model variants with their parameter counts", parents=[quiet]
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="list the trained models shipped with the package, with their recorded accuracy",
    )
    p.set_defaults(handler=_models)

    p = sub.add_parser(
        "train", help="train a model on Speech Commands (NeMo's recipe)", parents=[quiet]
    )
    wanted = {"train", "finetune"} if commands is None else set(commands)
    config_class = _train_config_class() if wanted & {"train", "finetune"} else None
    if "train" in wanted:
        _train_options(p, config_class)
    p.set_defaults(handler=_train, config_class=config_class)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a trained model to your own words (a new decoder)",
        parents=[quiet],
        description="Start from a trained model, give it a decoder for your words and train "
        "on your clips (--data-root) or on your words spoken by eSpeak NG (--per-word).",
    )
    if "finetune" in wanted and isinstance(config_class, type):
        from quartznet_tutorial.cli.finetune import add_arguments

        add_arguments(p)
    p.set_defaults(handler=_finetune, config_class=config_class)

    p = sub.add_parser(
        "evaluate", help="accuracy and confusion matrix of a checkpoint", parents=[quiet]
    )
    checkpoint_option(p)
    p.add_argument("--data-root", required=True, type=Path, help="extracted Speech Commands")
    p.add_argument(
        "--subset",
        default="testing",
        choices=["training", "validation", "testing"],
        help="the split to evaluate (default: testing)",
    )
    dataset_version_option(p)
    p.add_argument(
        "--plot", type=Path, help="write the confusion matrix figure to this .png/.pdf/.svg file"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    device_option(p)
    p.add_argument("--batch-size", type=positive_int, help="(default: 64 on a CPU, 256 on a GPU)")
    p.add_argument(
        "--precision",
        default="32",
        choices=PRECISIONS,
        help="autocast precision (default: 32)",
    )
    p.add_argument("--limit-clips", type=positive_int, help="evaluate only this many clips")
    p.add_argument("--skip-bad-files", action="store_true", help="leave unreadable clips out")
    p.add_argument(
        "--task",
        choices=["all", "12"],
        help="all words, or 12: ten keywords + _silence_ + _unknown_ (default: the checkpoint's)",
    )
    p.add_argument("--snr", type=float, metavar="DB", help="mix noise into each clip at this SNR")
    p.add_argument(
        "--noise",
        nargs="+",
        metavar="KIND_OR_FILE",
        help="with --snr: white, pink, brown, or noise .wav files/folders (default: white)",
    )
    p.add_argument("--noise-seed", type=seed_type, default=0, help="seed of the noise (default: 0)")
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser(
        "predict",
        parents=[quiet],
        help="classify audio files",
        description="Print the top-k words of each file. A folder stands for its *.wav files. "
        "Bad files are reported on stderr, the others are still classified; the exit status "
        "is 2 if any file failed.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    checkpoint_option(p, required=False)  # or its old name, --model
    renamed(p, "--model", "--checkpoint", dest="checkpoint", type=checkpoint_type)
    p.add_argument("--top-k", type=positive_int, default=3, help="labels per file (default: 3)")
    p.add_argument("--resample", action="store_true", help="convert other rates to 16 kHz")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    device_option(p)
    p.set_defaults(handler=_predict)

    p = sub.add_parser(
        "make-synthetic",
        help="write a synthetic Speech Commands tree (eSpeak NG speech)",
        parents=[quiet],
    )
    p.add_argument("--out", required=True, type=Path, help="folder to write")
    dataset_version_option(p)
    p.add_argument(
        "--per-word", type=positive_int, default=100, help="clips per word (default: 100)"
    )
    p.add_argument("--seed", type=seed_type, default=0, help="(default: 0)")
    p.add_argument(
        "--words",
        nargs="+",
        metavar="WORD",
        help="the words to speak: some of the version's or any others (default: the version's)",
    )
    p.add_argument("--speakers", type=positive_int, help="synthetic speakers (default: auto)")
    p.add_argument(
        "--workers", type=count_type, help="processes; 0: this one (default: the usable cores)"
    )
    p.set_defaults(handler=_make_synthetic)

    from quartznet_tutorial.cli.detect import add_detect_arguments, add_make_stream_arguments

    p = sub.add_parser(
        "detect",
        parents=[quiet],
        help="spot keywords in a long recording (word, time, score)",
        description="Score 1 s windows every --hop-ms and report each detected keyword "
        "(TensorFlow's RecognizeCommands smoothing). With --truth, also hit rate, false "
        "accepts per hour and the threshold for at most 1 false accept per hour.",
    )
    add_detect_arguments(p)
    checkpoint_option(p)
    device_option(p)
    p.set_defaults(handler=_detect)

    p = sub.add_parser(
        "make-stream",
        parents=[quiet],
        help="write a long test recording and its ground truth (keywords at known times)",
    )
    add_make_stream_arguments(p)
    p.set_defaults(handler=_make_stream)

    p = sub.add_parser(
        "export", help="export a checkpoint as ONNX (audio in, logits out)", parents=[quiet]
    )
    checkpoint_option(p)
    p.add_argument("--onnx", required=True, type=Path, help="the .onnx file to write")
    p.add_argument(
        "--opset", type=opset_type, default=18, help="ONNX opset, 17 to 20 (default: 18)"
    )
    p.add_argument("--int8", action="store_true", help="static int8 model (needs calibration)")
    p.add_argument(
        "--calibration-data",
        type=Path,
        metavar="DIR",
        help="Speech Commands folder: its training split calibrates --int8, its validation "
        "split checks it against float32",
    )
    p.add_argument("--calibration-clips", type=positive_int, default=256, help="(default: 256)")
    p.set_defaults(handler=_export)
    return parser


def _train_options(p: argparse.ArgumentParser, config_class: type | str) -> None:
    if isinstance(config_class, type):
        add_dataclass_options(
            p,
            config_class,
            overrides={
                "data_root": {"required": True},
                "version": {"choices": [1, 2], "flags": ["--dataset-version"]},
                "device": {"type": device_type},
                "seed": {"type": seed_type},
            },
        )
        renamed(p, "--version", "--dataset-version", dest="version", type=int, choices=[1, 2])
    else:
        p.description = f"unavailable: {config_class}"
    p.add_argument(
        "--seeds",
        type=seed_type,
        nargs="+",
        metavar="SEED",
        help="train once per seed, one after another (each in its own folder); replaces --seed",
    )
    p.add_argument(
        "--results",
        type=Path,
        help="also write the run's summary JSON here (with --seeds: NAME-seedS.json each)",
    )
    p.add_argument(
        "--profile", default="custom", help="profile name recorded in the summary (default: custom)"
    )


# --- handlers: each imports the modules of its own work, when it runs ------------------------


def _models(args: argparse.Namespace) -> int:
    from quartznet_tutorial.models.quartznet import build_model, count_parameters
    from quartznet_tutorial.models.variants import VARIANTS

    if args.pretrained:
        return _pretrained(args)
    rows = [
        {
            "name": name,
            "BxR": f"{c.num_blocks}x{c.repeat}",
            "SE": c.has_se,
            "source": c.source,
            "params": count_parameters(build_model(c)),
            "reported_params": c.reported.params if c.reported else None,
        }
        for name, c in VARIANTS.items()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ["name", "BxR", "SE", "source", "params", "reported"]
    table = [
        [r["name"], r["BxR"], "yes" if r["SE"] else "no", r["source"], f"{r['params']:,}",
         r["reported_params"] or "-"]
        for r in rows
    ]  # fmt: skip
    _print_table(header, table)
    return 0


def _pretrained(args: argparse.Namespace) -> int:
    from quartznet_tutorial.checkpoints.pretrained import PRETRAINED, pretrained_record

    rows = []
    for name, p in PRETRAINED.items():
        record = pretrained_record(name)
        rows.append(
            {
                "name": name,
                "variant": p.variant,
                "data": p.data,
                "test_accuracy": record["test_accuracy"],
                "real_accuracy": record["real_accuracy"],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ["name", "variant", "synthetic test", "real clips"]
    table = [
        [r["name"], r["variant"], f"{100 * r['test_accuracy']:.1f}%",
         f"{100 * r['real_accuracy']:.1f}%"]
        for r in rows
    ]  # fmt: skip
    _print_table(header, table)
    return 0


def _print_table(header: list[str], table: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    for line in [header, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


def _train_config_class() -> type | str:
    try:
        from quartznet_tutorial.training.config import TrainConfig
    except ImportError as e:
        return f"quartznet_tutorial.training.loop cannot be imported ({e})"
    return TrainConfig


def _train(args: argparse.Namespace) -> int:
    if not isinstance(args.config_class, type):
        return _fail(f"training is {args.config_class}")
    from quartznet_tutorial.training.loop import train, train_seeds

    out_dir = getattr(args, "out_dir", None)
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"--out-dir {out_dir}: is a file, not a folder; choose a folder")
    if args.results is not None:
        check_writable(args.results, "--results")
    if args.quiet and hasattr(args, "progress"):
        args.progress = False
    if args.seeds:
        args.seed = args.seeds[0]  # so that the default out_dir is the first seed's
    config = dataclass_from_args(args.config_class, args)
    try:
        results = train_seeds(config, args.seeds) if args.seeds else [train(config)]
    except RuntimeError as e:
        code = getattr(e, "exit_code", None)  # TrainingInterrupted: SIGTERM, last.pt saved
        if code is None:
            raise
        print(f"{PROG}: {e}", file=sys.stderr)
        return code
    command = shlex.join([PROG, *args.argv])
    summaries = [r.summary(profile=args.profile, command=command) for r in results]
    for record in summaries:
        if args.results is not None:
            path = args.results
            if args.seeds:
                path = path.with_name(f"{path.stem}-seed{record['seed']}{path.suffix}")
            path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(summaries if args.seeds else summaries[0], indent=2, default=str))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    if not isinstance(args.config_class, type):
        return _fail(f"fine-tuning is {args.config_class}")
    from quartznet_tutorial.cli.finetune import run_cli

    return run_cli(args)


def _evaluate(args: argparse.Namespace) -> int:
    from quartznet_tutorial.cli.evaluate import run_cli

    return run_cli(args)


def _predict(args: argparse.Namespace) -> int:
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.models.predict import predict_files
    from quartznet_tutorial.utils.precision import resolve_device

    if args.checkpoint is None:
        return _fail(
            "the following arguments are required: --checkpoint (see 'quartznet predict --help')"
        )
    classifier = load_classifier(args.checkpoint).to(resolve_device(args.device))
    results = predict_files(
        classifier, args.paths, top_k=args.top_k, resample=args.resample, batch_size=args.batch_size
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    for r in results:
        if r.error is not None:
            _fail(r.error)
        elif not args.json:
            print(f"{r.path}  " + "  ".join(f"{w} {p:.3f}" for w, p in r.predictions))
    return EXIT_USAGE if any(r.error is not None for r in results) else 0


def _make_synthetic(args: argparse.Namespace) -> int:
    from quartznet_tutorial.synthetic.espeak import make_synthetic

    out = make_synthetic(
        args.out,
        version=args.version,
        per_word=args.per_word,
        seed=args.seed,
        words=args.words,
        speakers=args.speakers,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(out)
    return 0


def _detect(args: argparse.Namespace) -> int:
    from quartznet_tutorial.cli.detect import run_detect

    return run_detect(args)


def _make_stream(args: argparse.Namespace) -> int:
    from quartznet_tutorial.cli.detect import run_make_stream

    return run_make_stream(args)


def _export(args: argparse.Namespace) -> int:
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.export.onnx_export import export_onnx

    if args.int8 != (args.calibration_data is not None):
        raise ValueError(
            "--int8 needs --calibration-data DIR, a Speech Commands folder (`quartznet "
            "make-synthetic` writes one)"
            if args.int8
            else "--calibration-data is for --int8 only; add --int8"
        )
    try:
        path = export_onnx(
            load_classifier(args.checkpoint),
            args.onnx,
            opset=args.opset,
            int8=args.int8,
            calibration=args.calibration_data,
            calibration_clips=args.calibration_clips,
        )
    except ImportError as e:  # onnx or onnxruntime missing: the message says what to install
        raise ValueError(str(e)) from None
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
