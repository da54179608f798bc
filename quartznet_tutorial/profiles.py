"""The two profiles the tutorial notebooks run under: ``smoke`` (default) and ``full``.

The notebooks are one code path; the profile, chosen by the ``QUARTZNET_PROFILE`` environment
variable, decides the data, the length of training and the hardware:

- ``smoke`` (default): a small synthetic Speech Commands V1 set spoken by eSpeak NG, generated
  on first use into a cache directory, short fp32 runs on the CPU. This is what CI and Read the
  Docs execute; its numbers say that the code runs and learns, not how well QuartzNet does.
- ``full``: the real Speech Commands V1 at ``SPEECH_COMMANDS_ROOT`` and NeMo's recipe
  :cite:`kriman2020quartznet`: 200 epochs, batch 128 per GPU, mixed precision, every GPU.

Example:
    >>> profile = get_profile()  # QUARTZNET_PROFILE unset: smoke
    >>> root = profile.data_root()  # generates the synthetic set once, then reuses it
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "PROFILES",
    "PROFILE_ENV",
    "Profile",
    "cache_dir",
    "get_profile",
]

PROFILE_ENV = "QUARTZNET_PROFILE"
DATA_ENV = "SPEECH_COMMANDS_ROOT"
CACHE_ENV = "QUARTZNET_CACHE"


@dataclass(frozen=True)
class Profile:
    """How much the notebooks do, and on what.

    Args:
        name (str): ``"smoke"`` or ``"full"``.
        data (str): the dataset's name in result files: ``"synthetic-v1"`` or
            ``"speech-commands-v1"``.
        epochs (int): training epochs per model.
        batch_size (int): batch size per process (per GPU with ``torchrun``).
        precision (str): ``"32"``, ``"16-mixed"`` or ``"bf16-mixed"``.
        device (str): ``"cpu"`` or ``"cuda"``.
        nproc (int): training processes, one per GPU (``torchrun --nproc_per_node``).
        quartznet_models (tuple of str): variants the "Train QuartzNet" notebook trains.
        se_models (tuple of str): variants the "Train SE-QuartzNet" notebook trains.
        per_word (int, optional): synthetic clips per word (smoke only). (Default: ``None``)
        seed (int, optional): seed of data generation and training. (Default: ``0``)
    """

    name: str
    data: str
    epochs: int
    batch_size: int
    precision: str
    device: str
    nproc: int
    quartznet_models: tuple[str, ...]
    se_models: tuple[str, ...]
    per_word: int | None = None
    seed: int = 0

    @property
    def version(self) -> int:
        """The Speech Commands version (1: 30 words)."""
        return 2 if self.data.endswith("v2") else 1

    def data_root(self) -> Path:
        """The dataset's root directory, generating the synthetic set on first use.

        Raises:
            ValueError: ``full`` without ``SPEECH_COMMANDS_ROOT`` pointing at a directory.
        """
        if self.name == "full":
            root = os.environ.get(DATA_ENV)
            if not root:
                raise ValueError(
                    f"the full profile trains on the real Speech Commands V1: set {DATA_ENV} to "
                    "the folder holding its word folders and testing_list.txt "
                    "(see docs/reproduce.md), or unset QUARTZNET_PROFILE for the smoke profile"
                )
            path = Path(root).expanduser()
            if not (path / "testing_list.txt").is_file():
                raise ValueError(
                    f"{DATA_ENV}={root}: no testing_list.txt there; point it at the extracted "
                    "speech_commands_v0.01 folder"
                )
            return path
        return _synthetic(self.per_word or 1, self.seed, self.version)

    def describe(self) -> str:
        """One line naming the profile, data, length, precision and hardware: every notebook
        prints it so that its outputs say what produced them."""
        if self.device == "cuda":
            gpu = torch.cuda.get_device_name(0)
            hardware = f"{self.nproc} × {gpu}"
        else:
            hardware = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
        data = f"{self.data} ({self.per_word} clips per word)" if self.per_word else self.data
        return (
            f"profile {self.name!r}: data {data}, {self.epochs} epochs, batch {self.batch_size}"
            f"{' per GPU' if self.device == 'cuda' else ''}, precision {self.precision}, "
            f"{hardware}, torch {torch.__version__}"
        )


def _smoke() -> Profile:
    # Sized so that both training notebooks together take a few minutes on 2 CPU cores: the
    # smallest NeMo variant and its SE twin, on 30 words × per_word synthetic clips.
    return Profile(
        name="smoke",
        data="synthetic-v1",
        epochs=8,
        batch_size=64,
        precision="32",
        device="cpu",
        nproc=1,
        quartznet_models=("quartznet-3x1",),
        se_models=("se-quartznet-3x1",),
        per_word=40,
    )


def _full() -> Profile:
    cuda = torch.cuda.is_available()
    # NeMo trained with fp16 mixed precision on V100s; bf16 needs no loss scaling where the
    # GPU has it (Ampere and later).
    precision = "32"
    if cuda:
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return Profile(
        name="full",
        data="speech-commands-v1",
        epochs=200,
        batch_size=128,
        precision=precision,
        device="cuda" if cuda else "cpu",
        nproc=max(torch.cuda.device_count(), 1),
        quartznet_models=(
            "quartznet-3x1",
            "quartznet-3x2",
            "quartznet-5x1-480k",
            "quartznet-5x1-1m",
        ),
        se_models=("se-quartznet-3x1", "se-quartznet-5x1-510k", "se-quartznet-5x1-1m"),
    )


#: The profiles by name; functions, because ``full`` looks at the GPUs present.
PROFILES = {"smoke": _smoke, "full": _full}


def get_profile(name: str | None = None) -> Profile:
    """The profile named, or by ``QUARTZNET_PROFILE`` (default ``smoke``)."""
    name = name or os.environ.get(PROFILE_ENV) or "smoke"
    try:
        return PROFILES[name.strip().lower()]()
    except KeyError:
        raise ValueError(
            f"{PROFILE_ENV}={name!r}: unknown profile; choose one of {', '.join(PROFILES)}"
        ) from None


def cache_dir() -> Path:
    """Where generated data lives: ``QUARTZNET_CACHE``, else ``~/.cache/quartznet-tutorial``.

    ``nox -s docs`` points it inside ``docs/_build`` so that ``--fresh`` regenerates it too.
    """
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "quartznet-tutorial"


def _synthetic(per_word: int, seed: int, version: int) -> Path:
    """Generate the synthetic set once; a half-written one is never seen (rename is atomic)."""
    from .synthetic import make_synthetic

    root = cache_dir() / f"synthetic-v{version}-{per_word}-seed{seed}"
    if (root / "testing_list.txt").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    try:
        make_synthetic(tmp, version=version, per_word=per_word, seed=seed)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first: use its copy
            if not (root / "testing_list.txt").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
