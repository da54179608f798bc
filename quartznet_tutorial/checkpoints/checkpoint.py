"""Training checkpoints: never half-written, loaded without executing code.

A checkpoint is a plain dict of tensors and builtins (dataclasses stored as dicts), so
:func:`load_checkpoint` can use ``torch.load(weights_only=True)``. Its ``"classifier"`` entry is
:meth:`Classifier.to_dict`, which is all
:func:`~quartznet_tutorial.checkpoints.loading.load_classifier`
needs; the other entries (optimizer, scheduler, grad scaler, RNG states, step counters, metrics
history, train config) let :func:`~quartznet_tutorial.training.loop.train` resume bit for bit.

:func:`save_checkpoint` writes to a temporary file in the target folder, flushes and fsyncs it,
then ``os.replace``-s it onto the final name: a crash or ``SIGKILL`` at any moment leaves either
the previous complete file or the new complete file under that name, never a torn one.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.utils.files import TMP_SUFFIX, atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "check_compatible",
    "label_mismatch",
    "load_checkpoint",
    "remove_stale_temporaries",
    "save_checkpoint",
]

#: Bumped when the layout of the checkpoint dict changes incompatibly.
CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, foreign or mismatched."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` to ``path`` (temp file, flush, fsync, ``os.replace``).

    Args:
        path (str or Path): final file name; its folder is created if needed.
        state (dict): tensors and builtins only, so that it loads with ``weights_only=True``.

    Returns:
        Path: ``path``.
    """
    with atomic_write(path, durable=True) as f:
        torch.save(state, f)
    return Path(path)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files a killed :func:`save_checkpoint` left in ``directory``.

    Call it only when no other process is saving into ``directory``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(f".*.pt.*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``map_location`` names a CUDA device and there is none.
        CheckpointError: the file is truncated or corrupt, holds Python objects other than
            tensors and builtins, or is not one of our checkpoints. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if torch.device(map_location).type == "cuda" and not torch.cuda.is_available():
        # torch.load's own error would read as a damaged file
        raise ValueError(f"map_location={str(map_location)!r}: no CUDA device here; use 'cpu'")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # "Unsupported global": the pickle names a class or function (code); anything else
        # (e.g. "Unsupported operand") is a damaged file.
        if "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path}: refused to load: it holds Python objects other than tensors and "
                "builtins, and loading it would run code; only load files you trust, "
                "with torch.load(weights_only=False)"
            ) from e
        raise _corrupt(path, e) from e
    except Exception as e:  # a torn file fails in many places (zip, unpickler, storages)
        raise _corrupt(path, e) from e
    if not isinstance(state, dict) or "classifier" not in state:
        raise CheckpointError(
            f"{path}: not a quartznet-tutorial checkpoint (no 'classifier' entry); "
            "pass a file written by `quartznet train` or save_checkpoint"
        )
    fmt = state.get("format", CHECKPOINT_FORMAT)
    if fmt > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {fmt} is newer than this package reads "
            f"({CHECKPOINT_FORMAT}); upgrade quartznet-tutorial"
        )
    return state


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's weights_only message wraps its cause (the line after "WeightsUnpickler error:")
    # in advice to disable the safety; keep only the cause.
    marker = next((i for i, line in enumerate(lines) if line.endswith("error:")), None)
    if marker is not None and marker + 1 < len(lines):
        lines = lines[marker + 1 :]
    reason = (lines or [type(error).__name__])[0]
    return CheckpointError(
        f"{path}: not a readable checkpoint, the file is truncated or corrupt ({reason}); "
        "delete it, or resume from another checkpoint"
    )


def check_compatible(
    state: dict[str, Any],
    *,
    model: str | None = None,
    labels: Sequence[str] | None = None,
    path: str | Path = "checkpoint",
) -> None:
    """Raise :class:`CheckpointError` if ``state`` is not the variant / labels asked for.

    Also builds the classifier once, so tensors whose shapes do not fit the variant are
    reported (naming the tensor) here rather than deep inside training.

    Args:
        state (dict): a loaded checkpoint.
        model (str, optional): the variant name the caller expects, e.g. ``"quartznet-3x1"``.
        labels (sequence of str, optional): the class names the caller's data uses, in order.
        path (str or Path, optional): the file, for the messages.
    """
    saved = state["classifier"]
    saved_model = saved["model_config"]["name"]
    if model is not None and saved_model != model:
        raise CheckpointError(
            f"{path}: holds model {saved_model!r}, but {model!r} was asked for; "
            f"pass --model {saved_model} or another checkpoint"
        )
    if labels is not None and list(labels) != list(saved["labels"]):
        raise CheckpointError(
            f"{path}: {label_mismatch(saved['labels'], labels, 'the checkpoint')}"
        )
    try:
        Classifier.from_dict(saved)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: {e}") from e


def label_mismatch(
    labels: Sequence[str], data_labels: Sequence[str], whose: str = "the model"
) -> str:
    """Why a model whose outputs are ``labels`` does not fit data with ``data_labels``: the
    words only one side has (a few of each) or where their order differs, and the Speech
    Commands version the model's words are. The one message of
    :func:`check_compatible` and :func:`~quartznet_tutorial.evaluation.accuracy.evaluate`.

    Args:
        labels (sequence of str): the model's class names, in the order of its outputs.
        data_labels (sequence of str): the data's, in the order of its targets.
        whose (str, optional): what holds ``labels``, for the message. (Default:
            ``"the model"``)
    """
    from quartznet_tutorial.datasets.speech_commands import version_of

    labels, data_labels = list(labels), list(data_labels)
    if sorted(labels) == sorted(data_labels):
        i = next(i for i, (a, b) in enumerate(zip(labels, data_labels, strict=True)) if a != b)
        ours, theirs = labels[i], data_labels[i]
        detail = f"the same words in another order (index {i}: {ours!r} vs {theirs!r})"
    else:
        only_model = sorted(set(labels) - set(data_labels))[:3]
        only_data = sorted(set(data_labels) - set(labels))[:3]
        detail = (
            f"{len(labels)} classes in {whose}, {len(data_labels)} in the data; "
            f"only in {whose}: {only_model}, only in the data: {only_data}"
        )
    v = version_of(labels)
    hint = (
        f"{whose} knows Speech Commands V{v}: pass version={v} (--dataset-version {v})"
        if v is not None
        else f"use data with {whose}'s words"
    )
    return f"{whose}'s labels are not the data's ({detail}); {hint}"
