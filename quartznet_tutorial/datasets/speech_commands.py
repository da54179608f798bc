"""Google Speech Commands :cite:`warden2018speech` in its extracted folder layout.

``root/<word>/<speaker>_nohash_<n>.wav`` clips (16 kHz, at most one second), Google's official
split lists ``validation_list.txt`` and ``testing_list.txt`` (everything not listed is
training) and ``_background_noise_/`` (long noise recordings for augmentation, not a class).
V1 has 30 words and 64,727 clips, V2 35 words and 105,829 clips. The label set is fixed by the
version and the task (or by the ``words`` you give), never by the folders found, so a model's
class ``i`` means the same word everywhere.

Two tasks: ``"all"`` (every word a class, as NeMo's QuartzNet recipe trains) and ``"12"``, the
keyword-spotting benchmark of Warden's paper (ten keywords, ``_silence_`` and ``_unknown_``),
whose choices of clips are :mod:`quartznet_tutorial.datasets.task12`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.audio.file_io import AudioError, decode_audio, load_audio, read_pcm16
from quartznet_tutorial.datasets.task12 import (
    KEYWORDS,
    SILENCE,
    TASK12_SEED,
    UNKNOWN,
    SilenceClip,
    archive_clips,
    choose_unknown,
    cut_silence,
    is_test_archive,
)
from quartznet_tutorial.utils.files import default_cache_dir
from quartznet_tutorial.utils.progress import progress_bar

__all__ = [
    "SUBSETS",
    "TASKS",
    "V1_WORDS",
    "V2_WORDS",
    "SpeechCommands",
    "check_words",
    "find_root",
    "labels_for",
    "read_list",
    "task_of",
    "version_of",
]

logger = logging.getLogger(__name__)

V1_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy",
    "house", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "wow", "yes", "zero",
)  # fmt: skip
V2_WORDS: tuple[str, ...] = tuple(
    sorted((*V1_WORDS, "backward", "follow", "forward", "learn", "visual"))
)
SUBSETS = ("training", "validation", "testing")
#: ``"all"``: every word of the version is a class; ``"12"``: the ten
#: :data:`~quartznet_tutorial.datasets.task12.KEYWORDS`, silence and unknown.
TASKS = ("all", "12")

_BACKGROUND = "_background_noise_"
_LISTS = {"validation": "validation_list.txt", "testing": "testing_list.txt"}
_CACHE_FORMAT = 2  # bump when the cache layout changes
_SHOW_SKIPPED = 10  # skipped clips named in the warning; the rest are counted


def labels_for(version: int, task: str = "all") -> list[str]:
    """The class names of Speech Commands ``version`` 1 (30 words) or 2 (35 words).

    ``task="all"``: the version's words, sorted. ``task="12"``: ``_silence_``, ``_unknown_``
    and the ten :data:`~quartznet_tutorial.datasets.task12.KEYWORDS`, in TensorFlow's order (its
    ``prepare_words_list``).
    """
    if version not in (1, 2):
        raise ValueError(f"unknown Speech Commands version {version!r}; choose 1 or 2")
    if task == "12":
        return [SILENCE, UNKNOWN, *KEYWORDS]
    if task != "all":
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return list(V1_WORDS if version == 1 else V2_WORDS)


def task_of(labels: Sequence[str]) -> str | None:
    """``"12"`` or ``"all"`` if ``labels`` (in any order) are that task's classes, else None."""
    if sorted(labels) == sorted(labels_for(1, "12")):
        return "12"
    return "all" if version_of(labels) is not None else None


def check_words(words: Sequence[str], *, at_least: int = 2, what: str = "words") -> list[str]:
    """``words`` as a list, if they can be the class folders of a dataset, else ``ValueError``.

    A word is a folder name: letters, digits, ``'`` and ``-`` (not first), no spaces, dots or
    slashes; ``_`` leads only the folders that are no class (``_background_noise_``). Words
    must be distinct, also ignoring case (``Yes`` and ``yes`` share a folder on macOS and
    Windows).

    Args:
        words (sequence of str): the words, e.g. ``["computer", "lights"]``.
        at_least (int, optional): the fewest allowed; a classifier needs two classes.
            (Default: ``2``)
        what (str, optional): what the messages call them, e.g. ``"--words"``.
            (Default: ``"words"``)
    """
    if isinstance(words, str):
        raise ValueError(f"{what}={words!r}: pass a list of words, not one string")
    words = list(words)
    bad = [w for w in words if not isinstance(w, str) or not _WORD.fullmatch(w)]
    if bad:
        raise ValueError(
            f"{what}: {bad} cannot be folder names of a dataset; use letters, digits, ' and - "
            "(e.g. 'lights', 'turn-on')"
        )
    folded = [w.casefold() for w in words]
    twice = sorted({w for w in words if folded.count(w.casefold()) > 1})
    if twice:
        raise ValueError(f"{what}: {twice} given more than once (case ignored); give each once")
    if len(words) < at_least:
        raise ValueError(
            f"{what}={words}: need at least {at_least} distinct words"
            + (" (a classifier's classes)" if at_least > 1 else "")
        )
    return words


_WORD = re.compile(r"[^\W_][\w'-]{0,63}")


def version_of(labels: Sequence[str]) -> int | None:
    """The Speech Commands version whose words ``labels`` are (in any order), else None."""
    return next((v for v in (1, 2) if sorted(labels) == labels_for(v)), None)


class SpeechCommands(Dataset):
    """One official split of Speech Commands, as 1 s int16-able waveforms and class indices.

    Nothing is read at construction but the folder listing and the two split lists, so it is
    cheap; audio is read by ``dataset[i]`` or, all at once and cached on disk, by
    :meth:`waveforms`.

    Args:
        root (str or Path): the extracted dataset: the folder holding the word folders and
            ``validation_list.txt``. torchaudio's layout below it
            (``root/SpeechCommands/speech_commands_v0.0{version}``) is found too.
        subset (str, optional): ``"training"``, ``"validation"`` or ``"testing"``.
            (Default: ``"training"``)
        version (int, optional): 1 (30 words) or 2 (35 words). (Default: ``1``)
        words (sequence of str, optional): your own class names instead of the version's, in
            the order of the classes (:func:`check_words`); the folders must be these words.
            (Default: the version's)
        clip_samples (int, optional): every clip is zero-padded at the end or truncated to
            this many samples. (Default: ``16000``, one second)
        download (bool, optional): fetch and extract the archive from Google with torchaudio's
            downloader if ``root`` does not hold it (about 1.4 GB for V1, 2.3 GB for V2). Needs
            internet, so it is not covered by our tests. (Default: ``False``)
        skip_bad_files (bool, optional): unreadable clips are left out and recorded in
            :attr:`skipped` instead of raising :class:`~quartznet_tutorial.AudioError`. To know
            which they are, every clip is read once at construction (that pass fills the
            :meth:`waveforms` cache). (Default: ``False``)
        cache_dir (str or Path, optional): where :meth:`waveforms` keeps its ``.npy`` cache.
            (Default: ``$QUARTZNET_CACHE``, else ``~/.cache/quartznet-tutorial``)
        cache (bool, optional): ``False`` reads every clip again on each :meth:`waveforms`
            call. (Default: ``True``)
        progress (bool, optional): show a progress bar during the ``skip_bad_files`` pass
            (turn it off on all but one DDP rank). (Default: ``True``)
        task (str, optional): ``"all"`` (every word a class) or ``"12"`` (the ten
            :data:`~quartznet_tutorial.datasets.task12.KEYWORDS`, ``_silence_`` and ``_unknown_``;
            see :mod:`quartznet_tutorial.datasets.task12`).
            (Default: ``"all"``)
        silence_percentage (float, optional): ``task="12"``: silence clips per 100 keyword
            clips of the split (rounded up). (Default: ``10``, TensorFlow's and NeMo's)
        unknown_percentage (float, optional): ``task="12"``: unknown clips per 100 keyword
            clips, drawn from the split's other words (all of them if fewer). (Default: ``10``)
        seed (int, optional): ``task="12"``: seed of the unknown clips chosen and the silence
            cut; each split draws from its own generator.
            (Default: :data:`~quartznet_tutorial.datasets.task12.TASK12_SEED`)

    Attributes:
        root (Path): the folder the clips were found in.
        labels (list of str): the task's classes (:func:`labels_for`), or ``words``;
            ``targets`` index into it.
        files (list of Path): this subset's clips, sorted by ``word/name``.
        silence (list of SilenceClip): ``task="12"``: the silence clips cut from the
            background recordings; they follow the files (item ``len(files) + k`` is
            ``silence[k]``). Empty otherwise, and for the V2 test archive, whose silence is files.
        targets (list of int): the class index of each item, files then silence.
        skipped (list of (Path, str)): clips left out by ``skip_bad_files`` and why.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        subset: str = "training",
        version: int = 1,
        *,
        words: Sequence[str] | None = None,
        clip_samples: int = SAMPLE_RATE,
        download: bool = False,
        skip_bad_files: bool = False,
        cache_dir: str | os.PathLike | None = None,
        cache: bool = True,
        progress: bool = True,
        task: str = "all",
        silence_percentage: float = 10.0,
        unknown_percentage: float = 10.0,
        seed: int = TASK12_SEED,
    ) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"unknown subset {subset!r}; choose one of: {', '.join(SUBSETS)}")
        if clip_samples < 1:
            raise ValueError(f"clip_samples must be positive, got {clip_samples}")
        for name, value in (("silence", silence_percentage), ("unknown", unknown_percentage)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}_percentage={value}: must be a finite number >= 0")
        if words is not None and task != "all":
            raise ValueError(f"words= names the classes itself; it takes no task={task!r}")
        self.labels = labels_for(version, task) if words is None else check_words(words)
        self.subset = subset
        self.version = version
        self.task = task
        self.clip_samples = clip_samples
        self.skip_bad_files = skip_bad_files
        self.root = find_root(Path(root), version, download)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._cache = cache
        self._noises: dict[Path, torch.Tensor] = {}

        self.silence: list[SilenceClip] = []
        if is_test_archive(self.root):
            if task != "12" or subset != "testing":
                raise ValueError(
                    f"{self.root}: holds Google's 12-class test archive (_silence_ and _unknown_ "
                    "folders, no split lists), which is only a test split: pass task='12' "
                    "(--task 12) and subset='testing'"
                )
            rel_files = archive_clips(self.root, self.labels, ignore=_BACKGROUND)
        else:
            rel_files = self._list_clips()
            if task == "12":
                rng = np.random.default_rng([seed, SUBSETS.index(subset)])
                rel_files = choose_unknown(self.root, subset, rel_files, unknown_percentage, rng)
                keywords = sum(_folder(rel) in KEYWORDS for rel in rel_files)
                count = math.ceil(keywords * silence_percentage / 100)
                self.silence = cut_silence(
                    self.root / _BACKGROUND, subset, count, clip_samples, rng
                )
        self.files = [self.root / rel for rel in rel_files]
        # The cache key is of the clips listed, before any are skipped: the skipping pass and
        # every later waveforms() call then share one cache.
        self._listed = list(self.files)
        # ... as (path, relative name) strings, made once: the key is computed on every
        # waveforms()/lengths_tensor() call, and pathlib per file per call adds up to seconds.
        self._listed_keys = [(os.fspath(path), self._rel(path)) for path in self._listed]
        self._applied: list[str] | None = None  # the clip list _apply last set files from
        self.targets = [self._target(rel) for rel in rel_files] + self._silence_targets()
        self.skipped: list[tuple[Path, str]] = []
        self._lengths: list[int] | None = None
        self._warned = False
        if skip_bad_files:
            self._read_all(progress=progress, keep=False)

    def __len__(self) -> int:
        return len(self.files) + len(self.silence)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """``(waveform (clip_samples,) float32, class index)``; bad audio raises AudioError."""
        i = range(len(self))[i]  # negative indices, and IndexError past the end
        if i >= len(self.files):
            return self._silence_waveform(self.silence[i - len(self.files)]), self.targets[i]
        try:
            audio = load_audio(self.files[i])
        except AudioError as e:
            raise _bad_clip(str(e)) from None
        return _fit(audio, self.clip_samples), self.targets[i]

    def __repr__(self) -> str:
        task = "" if self.task == "all" else f", task={self.task!r}"
        return (
            f"SpeechCommands(root={str(self.root)!r}, subset={self.subset!r}, "
            f"version={self.version}{task}, clips={len(self)})"
        )

    def waveforms(self, progress: bool = True) -> torch.Tensor:
        """Every clip of the subset at once: ``(N, clip_samples)`` int16, row ``i`` is file ``i``.

        Divide by 32768 for the float waveform ``dataset[i]`` gives (exact for 16-bit files).
        int16 halves the memory of float32: V1's training split is 1.6 GB, small enough to sit
        on a GPU for the whole run. The first call reads every file (with a progress bar) and
        writes an ``.npy`` cache keyed by the root, subset, version, clip length and every
        file's name, size and modification time; later calls load it in seconds. Under DDP,
        let rank 0 call this first, then the other ranks after a barrier.
        """
        return torch.from_numpy(self._read_all(progress=progress, keep=True))

    def lengths_tensor(self, progress: bool = True) -> torch.Tensor:
        """``(N,)`` long samples of each clip before padding (at most ``clip_samples``).

        NeMo shifts and adds noise to the clip as recorded, before batches are padded; the
        pipelines use these lengths to do the same for the ~10% of clips shorter than 1 s.
        """
        if self._lengths is None:
            self._read_all(progress=progress, keep=False)
        return torch.tensor(self._lengths, dtype=torch.long)

    def targets_tensor(self) -> torch.Tensor:
        """``(N,)`` long class indices, aligned with :meth:`waveforms`."""
        return torch.tensor(self.targets, dtype=torch.long)

    def background_noise(self) -> list[torch.Tensor]:
        """The ``_background_noise_/*.wav`` recordings as float32 ``(samples,)`` tensors.

        Empty if the folder is missing. An unreadable one raises AudioError unless
        ``skip_bad_files``, which leaves it out and records it in :attr:`skipped`.
        """
        noises = []
        for path in sorted((self.root / _BACKGROUND).glob("*.wav")):
            try:
                noises.append(load_audio(path))
            except AudioError as e:
                if not self.skip_bad_files:
                    raise
                self.skipped.append((path, str(e)))
                logger.warning("skipped unreadable background noise %s", path)
        return noises

    def _list_clips(self) -> list[str]:
        """This subset's clips as sorted ``word/name.wav`` strings, relative to :attr:`root`.

        The official split lists decide; a subclass may list its clips another way (the real
        clips of :mod:`quartznet_tutorial.datasets.real_clips` have no lists).
        """
        words = None if self.task == "12" else self.labels  # 12: the other words are unknown
        return _split(self.root, self.version, self.subset, words)

    # --- the 12-class task ----------------------------------------------------------------

    def _target(self, rel: str) -> int:
        """The class of a ``word/name.wav`` clip; under ``task="12"`` other words are unknown."""
        word = _folder(rel)
        if self.task == "12" and word not in self.labels:
            word = UNKNOWN
        return self.labels.index(word)

    def _silence_targets(self) -> list[int]:
        return [self.labels.index(SILENCE)] * len(self.silence) if self.silence else []

    def _silence_waveform(self, clip: SilenceClip) -> torch.Tensor:
        """``(clip_samples,)`` float32: the cut of the recording times its volume."""
        if clip.noise not in self._noises:
            self._noises[clip.noise] = load_audio(clip.noise)
        cut = self._noises[clip.noise][clip.offset : clip.offset + self.clip_samples]
        return _fit(cut * clip.volume, self.clip_samples)

    # --- the waveform cache -------------------------------------------------------------

    def _read_all(self, *, progress: bool, keep: bool) -> np.ndarray | None:
        """Read (or load from cache) every clip; drop bad ones if ``skip_bad_files``."""
        folder = self._cache_dir / "speech-commands" / self._cache_key() if self._cache else None
        if folder is not None and (folder / "meta.json").is_file():
            meta = json.loads((folder / "meta.json").read_text())
            self._apply(meta["files"], meta["skipped"], meta["lengths"])
            # Mapped, not read: a subset (limit_clips, a few clips of a large split) touches only
            # its own rows. Copy-on-write, so the tensor is writable and the file never changes.
            return np.load(folder / "waveforms.npy", mmap_mode="c") if keep else None

        rows = np.zeros((len(self._listed), self.clip_samples), dtype=np.int16)
        good, skipped, lengths = [], [], []
        bar = progress_bar(self._listed, desc=f"reading {self.subset} clips", disable=not progress)
        for path in bar:
            pcm = read_pcm16(path)  # the plain 16-bit WAVs of Speech Commands, fast
            if pcm is None:
                try:
                    audio = decode_audio(path)  # libsndfile, without reading the file again
                except AudioError as e:
                    if not self.skip_bad_files:
                        raise _bad_clip(str(e)) from None
                    skipped.append((self._rel(path), str(e)))
                    continue
                # decode_audio gives int/32768 for 16-bit PCM, so this round trip is exact.
                pcm = (audio * 32768).round().clamp(-32768, 32767).numpy().astype(np.int16)
            kept = pcm[: self.clip_samples]  # the end zero-padded, as _fit does
            rows[len(good), : len(kept)] = kept
            lengths.append(len(kept))
            good.append(self._rel(path))
        rows = rows[: len(good)]
        if self.silence:
            cuts = torch.stack([self._silence_waveform(clip) for clip in self.silence])
            cuts = (cuts * 32768).round().clamp(-32768, 32767).numpy().astype(np.int16)
            rows = np.concatenate([rows, cuts])
            lengths += [self.clip_samples] * len(self.silence)
        self._apply(good, skipped, lengths)
        if folder is not None:
            _write_cache(folder, rows, {"files": good, "skipped": skipped, "lengths": lengths})
        return rows if keep else None

    def _apply(self, good: list[str], skipped: list[list[str]], lengths: list[int]) -> None:
        if skipped and not self.skip_bad_files:
            raise _bad_clip(skipped[0][1])
        if skipped and not self._warned:  # once, however often the cache is read
            self._warned = True
            shown = ", ".join(rel for rel, _ in skipped[:_SHOW_SKIPPED])
            more = len(skipped) - _SHOW_SKIPPED
            logger.warning(
                "skipped %d unreadable clips of %s: %s%s",
                len(skipped),
                self.root,
                shown,
                f" and {more} more" if more > 0 else "",
            )
        if good != self._applied:  # every cached call gives the same list: parse it once
            self.files = [self.root / rel for rel in good]
            self.targets = [self._target(rel) for rel in good] + self._silence_targets()
            self._applied = list(good)
        self.skipped = [(self.root / rel, reason) for rel, reason in skipped]
        self._lengths = lengths

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _cache_key(self) -> str:
        digest = hashlib.sha256()
        header = [_CACHE_FORMAT, str(self.root.resolve()), self.subset, self.version]
        digest.update(json.dumps([*header, self.clip_samples]).encode())
        for path, rel in self._listed_keys:
            st = os.stat(path)
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        for clip in self.silence:
            st = clip.noise.stat()
            cut = f"{self._rel(clip.noise)}\0{st.st_size}\0{st.st_mtime_ns}"
            digest.update(f"{cut}\0{clip.offset}\0{clip.volume!r}\n".encode())
        task = "" if self.task == "all" else f"-{self.task}"
        return f"v{self.version}{task}-{self.subset}-{digest.hexdigest()[:16]}"


def _bad_clip(message: str) -> AudioError:
    """``load_audio``'s error with the advice a dataset's reader can follow.

    ``load_audio`` suggests its own options (``resample=True``, ``downmix=True``); the
    dataset has none, so the clip must be fixed or, with ``skip_bad_files``, left out.
    """
    reason = message.split("; pass ", 1)[0]
    return AudioError(
        f"{reason}; fix or remove the clip, or pass skip_bad_files=True (--skip-bad-files) "
        "to leave unreadable clips out"
    )


def _fit(waveform: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad at the end or truncate to ``samples``, as torchaudio's and NeMo's recipes do."""
    if waveform.shape[0] >= samples:
        return waveform[:samples]
    return torch.nn.functional.pad(waveform, (0, samples - waveform.shape[0]))


def _folder(rel: str) -> str:
    return PurePosixPath(rel).parts[0]


def find_root(root: Path, version: int, download: bool) -> Path:
    """The Speech Commands folder in or under ``root`` (the one holding the word folders and
    the split lists), downloading the archive there if asked; a clear error if there is none."""
    nested = root / "SpeechCommands" / f"speech_commands_v0.0{version}"
    for candidate in (root, nested):
        if (candidate / _LISTS["validation"]).is_file() or is_test_archive(candidate):
            return candidate
    if download:
        import torchaudio.datasets

        root.mkdir(parents=True, exist_ok=True)
        torchaudio.datasets.SPEECHCOMMANDS(
            root, url=f"speech_commands_v0.0{version}", download=True
        )
        return nested
    if root.is_file():
        raise NotADirectoryError(
            f"{root}: is a file, not a folder; pass the extracted Speech Commands folder "
            "(the one holding the word folders)"
        )
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such folder; pass the extracted Speech Commands folder "
            "(the one holding the word folders), or fetch it with download=True "
            "(Python) or write a synthetic one with `quartznet make-synthetic`"
        )
    return root


def read_list(root: Path, name: str) -> list[tuple[int, str]]:
    """``(line number, word/file.wav)`` of each entry of the split list ``root / name``."""
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; Speech Commands defines its official splits with "
            f"{_LISTS['validation']} and {_LISTS['testing']}: extract the whole archive into "
            f"{root}, or write the lists (one word/file.wav per line)"
        )
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            entries.append((n, PurePosixPath(line.strip().replace("\\", "/")).as_posix()))
    return entries


def _split(root: Path, version: int, subset: str, labels: Sequence[str] | None = None) -> list[str]:
    """This subset's clips as sorted ``word/name.wav`` strings, after checking the tree."""
    own = labels is not None and list(labels) != labels_for(version)
    labels = labels_for(version) if labels is None else list(labels)
    folders = sorted(
        d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
    )
    unknown = [f for f in folders if f not in labels]
    if unknown and own:
        raise ValueError(
            f"{root}: folders {unknown} are not among the words {labels}; move them out of "
            "the dataset folder, or add them to the words"
        )
    if unknown:
        hint = (
            " (V2 words: pass version=2, --dataset-version 2)"
            if set(unknown) <= set(V2_WORDS)
            else ""
        )
        raise ValueError(
            f"{root}: folders {unknown} are not Speech Commands V{version} "
            f"words{hint}; move them out of the dataset folder"
        )
    missing = [w for w in labels if w not in folders]
    if missing:  # fine for small synthetic sets; a hint when V1 data is read as V2
        logger.info(
            "%s: no folder for %d of %d words: %s", root, len(missing), len(labels), missing
        )

    found = {f"{w}/{p.name}" for w in folders for p in (root / w).iterdir() if p.suffix == ".wav"}
    listed: dict[str, str] = {}
    for split, name in _LISTS.items():
        for line, rel in read_list(root, name):
            if rel not in found:
                raise ValueError(
                    f"{root / name}: line {line} names {rel}, which is not in {root}; "
                    "extract the whole archive again or fix the list"
                )
            if listed.get(rel, split) != split:
                raise ValueError(
                    f"{root}: {rel} is in both {_LISTS['validation']} and {_LISTS['testing']}; "
                    "a clip must belong to one split, remove it from one list"
                )
            listed[rel] = split
    if subset == "training":
        return sorted(found - listed.keys())
    return sorted(rel for rel, split in listed.items() if split == subset)


def _write_cache(folder: Path, rows: np.ndarray, meta: dict) -> None:
    """Write into a temporary folder, then rename it into place: readers see all or nothing.

    If another process (a DDP rank) got there first, its identical cache is kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        np.save(tmp / "waveforms.npy", rows)
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "meta.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
