"""Load NVIDIA NeMo ``EncDecClassificationModel`` archives (``.nemo``) as a :class:`Classifier`.

A ``.nemo`` file is a tar (plain, or gzip before NeMo 1.7) holding ``model_config.yaml`` (the
resolved Hydra config) and ``model_weights.ckpt`` (``torch.save`` of the model's state dict).
:func:`load_nemo_classifier` reads both *without extracting anything to disk* and without
running code from the file (``torch.load(weights_only=True)``), translates the config into our
:class:`~quartznet_tutorial.models.variants.QuartzNetConfig` and
:class:`~quartznet_tutorial.audio.features.FeatureConfig`, and renames two key prefixes:

==========================================  ==================================
NeMo state dict                             ours
==========================================  ==================================
``encoder.encoder.{b}.mconv.{i}...``        ``model.encoder.{b}.mconv.{i}...``
``decoder.decoder_layers.0.{weight,bias}``  ``model.decoder.{weight,bias}``
``preprocessor.featurizer.*``               ``preprocessor.featurizer.*``
==========================================  ==================================

The result computes what NeMo 3.0's ``EncDecClassificationModel.forward`` computes: MFCCs of
the whole padded batch, lengths ``ceil(samples / hop)``, masked convolutions, average over all
frames, no crop/pad (NeMo 3.0 builds ``crop_or_pad_augment`` but its forward never calls it).
Every config option NeMo's modules accept is either reproduced or refused with a
:class:`NemoError` that names it; options that only matter in training (data sets, optimiser,
spectrogram augmentation) are ignored, as they are at inference in NeMo.
"""

from __future__ import annotations

import io
import math
import pickle
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch
import yaml

from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.quartznet import QuartzNet
from quartznet_tutorial.models.variants import BlockConfig, QuartzNetConfig

__all__ = ["NemoError", "load_nemo_classifier", "nemo_config_to_configs"]

CONFIG_FILE = "model_config.yaml"
WEIGHTS_FILE = "model_weights.ckpt"

# State-dict prefixes: NeMo's -> ours (in Classifier). Encoder and decoder modules are named
# like NeMo's inside QuartzNet, so only these prefixes change.
_PREFIXES = (
    ("encoder.encoder.", "model.encoder."),
    ("decoder.decoder_layers.0.", "model.decoder."),
    ("preprocessor.featurizer.", "preprocessor.featurizer."),
)

# The MFCC front end's fixed buffers may come from another torchaudio version: close is fine
# (we then load NeMo's exact values), far means a config we misread.
_BUFFER_RTOL = 1e-4


class NemoError(ValueError):
    """A ``.nemo`` archive we refuse to load; the message names the file, the option and the fix."""


def load_nemo_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> Classifier:
    """Load a NeMo speech-commands model (MatchboxNet / QuartzNet ``.nemo``) as a Classifier.

    Args:
        path (str or Path): the ``.nemo`` archive (e.g. NVIDIA's
            ``commandrecognition_en_matchboxnet3x1x64_v1.nemo``).
        map_location (str or torch.device, optional): device for the weights and the returned
            classifier. (Default: ``"cpu"``)

    Returns:
        Classifier: in eval mode, ``features.frames=None`` (no crop/pad, as NeMo 3.0 inference).

    Raises:
        NemoError: unsafe tar members, a config option we do not reproduce, or weights that do
            not fit the config (the message says which).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    files = _read_members(path, (CONFIG_FILE, WEIGHTS_FILE))
    try:
        cfg = yaml.safe_load(files[CONFIG_FILE])
    except yaml.YAMLError as e:
        raise NemoError(f"{path}: {CONFIG_FILE} is not valid YAML ({e})") from None
    try:
        model_config, features, labels = nemo_config_to_configs(cfg, name=f"nemo:{path.stem}")
    except NemoError as e:
        raise NemoError(f"{path}: {CONFIG_FILE}: {e}") from None
    state_dict = _load_weights(path, files[WEIGHTS_FILE], map_location)

    classifier = Classifier(QuartzNet(model_config, num_classes=len(labels)), labels, features)
    _load_state_dict(path, classifier, state_dict)
    return classifier.to(map_location).eval()


def _read_members(path: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Bytes of the ``wanted`` regular files of a tar, refusing the archive if any member is unsafe.

    Nothing is extracted: the two files are read into memory, so no member name can point
    outside a folder. A member that could (absolute path, ``..``, a link or a device) still makes
    us refuse the whole file, since NeMo's own ``save_to`` never writes one.
    """
    try:
        with tarfile.open(path, "r:*") as tar:  # plain tar since NeMo 1.7, gzip before
            return _read_from(tar, path, wanted)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise NemoError(f"{path}: not a readable .nemo archive (a tar file): {e}") from None


def _read_from(tar: tarfile.TarFile, path: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    found: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = _safe_member_name(path, member)
        if name in wanted and member.isfile():
            if name in found:
                raise NemoError(f"{path}: {name} appears twice in the archive; re-save it")
            found[name] = member
    missing = [name for name in wanted if name not in found]
    if missing:
        raise NemoError(
            f"{path}: no {', '.join(missing)} in the archive; is it a NeMo model "
            "saved with save_to()? (model-parallel checkpoints are not supported)"
        )
    return {name: tar.extractfile(member).read() for name, member in found.items()}


def _safe_member_name(path: Path, member: tarfile.TarInfo) -> str:
    """``./model_config.yaml`` -> ``model_config.yaml``; unsafe members raise :class:`NemoError`."""
    name = PurePosixPath(member.name.replace("\\", "/"))
    if name.is_absolute() or PureWindowsPath(member.name).drive:
        raise NemoError(f"{path}: refusing unsafe member {member.name!r} (absolute path)")
    if ".." in name.parts:
        raise NemoError(f"{path}: refusing unsafe member {member.name!r} ('..' in its path)")
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "device or special file"
        raise NemoError(f"{path}: refusing unsafe member {member.name!r} ({kind})")
    return "/".join(part for part in name.parts if part != ".")


def _load_weights(path: Path, data: bytes, map_location) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise NemoError(
            f"{path}: {WEIGHTS_FILE} holds objects other than tensors and builtins, so we refuse "
            f"it (torch.load weights_only=True never runs code from a file): {first}"
        ) from None
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise NemoError(f"{path}: {WEIGHTS_FILE} is not a state dict of tensors")
    return dict(state_dict)


# --- config translation ---------------------------------------------------------------------


def nemo_config_to_configs(
    cfg: Mapping, name: str = "nemo"
) -> tuple[QuartzNetConfig, FeatureConfig, list[str]]:
    """Translate a NeMo ``EncDecClassificationModel`` config into ours.

    Args:
        cfg (Mapping): the parsed ``model_config.yaml`` (Hydra 1.x ``_target_`` form, or the
            older ``cls`` + ``params`` form, which is converted as NeMo does).
        name (str, optional): name of the resulting :class:`QuartzNetConfig`. (Default: ``"nemo"``)

    Returns:
        (QuartzNetConfig, FeatureConfig, list of str): the encoder + decoder, the MFCC front end
        (``frames=None``) and the labels.

    Raises:
        NemoError: an option we do not reproduce, named with its value.
    """
    if not isinstance(cfg, Mapping):
        raise NemoError(f"{CONFIG_FILE}: expected a mapping, got {type(cfg).__name__}")
    cfg = _hydra1(cfg)
    used = ("target", "is_regression_task", "labels", "preprocessor", "encoder", "decoder")
    _check_no_interpolation({k: cfg[k] for k in used if k in cfg}, "")
    target = cfg.get("target", "EncDecClassificationModel")
    if _class_name(target) != "EncDecClassificationModel":
        raise NemoError(f"target={target}: only EncDecClassificationModel archives are supported")
    if cfg.get("is_regression_task", False):
        raise NemoError("is_regression_task=true: only classification models are supported")
    for section in ("labels", "preprocessor", "encoder", "decoder"):
        if cfg.get(section) is None:
            raise NemoError(f"{CONFIG_FILE} has no {section!r} section")
    labels = cfg["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise NemoError(
            f"labels={labels!r}: expected a list of class names (in YAML, quote words such as "
            "'yes', 'no', 'on' and 'off', or they read as booleans)"
        )
    features = _features(cfg["preprocessor"])
    model = _model(cfg["encoder"], cfg["decoder"], name)
    if model.feat_in != features.n_mfcc:
        raise NemoError(
            f"encoder.feat_in={model.feat_in} but preprocessor.n_mfcc={features.n_mfcc}: "
            "the encoder must take every MFCC coefficient"
        )
    return model, features, list(labels)


def _hydra1(cfg):
    """NeMo's ``maybe_update_config_version``: ``cls`` -> ``_target_``, ``params`` flattened."""
    if isinstance(cfg, list):
        return [_hydra1(v) for v in cfg]
    if not isinstance(cfg, Mapping):
        return cfg
    out = {k: _hydra1(v) for k, v in cfg.items() if k not in ("cls", "params")}
    if "cls" in cfg:
        out.setdefault("_target_", cfg["cls"])
    if isinstance(cfg.get("params"), Mapping):
        out.update(_hydra1(cfg["params"]))
    return out


def _check_no_interpolation(cfg, where: str) -> None:
    """NeMo saves configs resolved; a ``${...}`` left in one means a hand-edited file."""
    items = cfg.items() if isinstance(cfg, Mapping) else enumerate(cfg)
    for key, value in items:
        here = f"{where}.{key}" if where else str(key)
        if isinstance(value, (Mapping, list)):
            _check_no_interpolation(value, here)
        elif isinstance(value, str) and "${" in value:
            raise NemoError(
                f"{here}={value!r}: unresolved interpolation; save the config resolved "
                "(NeMo's save_to does)"
            )


def _class_name(target) -> str:
    return str(target).rsplit(".", 1)[-1]


def _unsupported(option: str, value, expected) -> NemoError:
    return NemoError(f"{option}={value!r} is not supported (we reproduce only {expected})")


def _features(pre: Mapping) -> FeatureConfig:
    """``AudioToMFCCPreprocessor`` options -> FeatureConfig, with NeMo 3.0's defaults."""
    if _class_name(pre.get("_target_")) != "AudioToMFCCPreprocessor":
        raise _unsupported("preprocessor._target_", pre.get("_target_"), "AudioToMFCCPreprocessor")
    known = {
        "_target_", "sample_rate", "window_size", "window_stride", "n_window_size",
        "n_window_stride", "window", "n_fft", "lowfreq", "highfreq", "n_mels", "n_mfcc",
        "dct_type", "norm", "log",
    }  # fmt: skip
    unknown = sorted(set(pre) - known)
    if unknown:
        raise NemoError(
            f"preprocessor.{unknown[0]}={pre[unknown[0]]!r}: not an AudioToMFCCPreprocessor "
            "option of NeMo 3.0"
        )
    # Same defaults and rules as AudioToMFCCPreprocessor.__init__ (NeMo 3.0).
    sample_rate = pre.get("sample_rate", 16000)
    win = _samples(pre, "window_size", "n_window_size", 0.02, sample_rate)
    hop = _samples(pre, "window_stride", "n_window_stride", 0.01, sample_rate)
    n_fft = pre.get("n_fft") or 2 ** math.ceil(math.log2(win))
    for option, value, ours in (
        ("window", pre.get("window", "hann"), "hann"),
        ("lowfreq", pre.get("lowfreq", 0.0), 0.0),
        ("dct_type", pre.get("dct_type", 2), 2),
        ("norm", pre.get("norm", "ortho"), "ortho"),
        ("log", pre.get("log", True), True),
    ):
        if value != ours:
            raise _unsupported(f"preprocessor.{option}", value, repr(ours))
    highfreq = pre.get("highfreq")
    if highfreq is not None and highfreq != sample_rate / 2:
        raise _unsupported("preprocessor.highfreq", highfreq, f"null or {sample_rate / 2}")
    return FeatureConfig(
        sample_rate=sample_rate,
        window_size=_seconds(win, sample_rate),
        window_stride=_seconds(hop, sample_rate),
        n_fft=n_fft,
        n_mels=pre.get("n_mels", 64),
        n_mfcc=pre.get("n_mfcc", 64),
        frames=None,  # NeMo 3.0 inference neither crops nor pads
    )


def _samples(pre: Mapping, seconds_key: str, samples_key: str, default: float, sr: int) -> int:
    seconds = pre.get(seconds_key, default)
    samples = pre.get(samples_key)
    if seconds and samples:
        raise NemoError(
            f"preprocessor has both {seconds_key}={seconds} and {samples_key}={samples}; "
            "NeMo accepts only one of them"
        )
    return int(seconds * sr) if seconds else int(samples)


def _seconds(samples: int, sample_rate: int) -> float:
    """Seconds ``s`` with ``int(s * sample_rate) == samples``, as FeatureConfig computes it."""
    s = samples / sample_rate
    while int(s * sample_rate) < samples:  # float rounding can land just below
        s = math.nextafter(s, math.inf)
    return s


# Per-block options that change nothing when left at these values (NeMo's defaults).
_BLOCK_FIXED = {
    "groups": 1,
    "heads": -1,
    "residual_dense": False,
    "future_context": -1,
    "se_context_size": -1,
}
_ENCODER_FIXED = {
    "activation": "relu",
    "normalization_mode": "batch",
    "conv_mask": True,
    "frame_splicing": 1,
    "quantize": False,
}


def _model(enc: Mapping, dec: Mapping, name: str) -> QuartzNetConfig:
    """``ConvASREncoder`` + ``ConvASRDecoderClassification`` options -> QuartzNetConfig."""
    if _class_name(enc.get("_target_")) != "ConvASREncoder":
        raise _unsupported("encoder._target_", enc.get("_target_"), "ConvASREncoder")
    for option, ours in _ENCODER_FIXED.items():
        # activation has no default in NeMo; the others default to our value.
        value = enc.get(option, ours)
        if value != ours:
            raise _unsupported(f"encoder.{option}", value, repr(ours))
    default_residual_mode = enc.get("residual_mode", "add")
    jasper = enc.get("jasper")
    if not isinstance(jasper, list) or not jasper:
        raise NemoError("encoder.jasper: expected a non-empty list of blocks")

    blocks, dropouts, ratios = [], set(), set()
    for i, lcfg in enumerate(jasper):
        where = f"encoder.jasper[{i}]"
        for option, ours in _BLOCK_FIXED.items():
            value = lcfg.get(option, ours)
            if value != ours:
                raise _unsupported(f"{where}.{option}", value, repr(ours))
        for option in ("filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual"):
            if option not in lcfg:
                raise NemoError(f"{where}.{option} is missing (NeMo requires it)")
        kernel = _single(lcfg["kernel"], f"{where}.kernel")
        stride = _single(lcfg["stride"], f"{where}.stride")
        dilation = _single(lcfg["dilation"], f"{where}.dilation")
        if stride != 1:
            raise _unsupported(f"{where}.stride", lcfg["stride"], "[1] (no subsampling)")
        residual_mode = lcfg.get("residual_mode", default_residual_mode)
        if lcfg["residual"] and residual_mode not in ("add", "stride_add"):  # same at stride 1
            raise _unsupported(f"{where}.residual_mode", residual_mode, "'add'")
        se = bool(lcfg.get("se", False))
        if se:
            ratios.add(lcfg.get("se_reduction_ratio", 8))  # NeMo's default when unset
        dropouts.add(float(lcfg["dropout"]))
        blocks.append(
            BlockConfig(
                filters=int(lcfg["filters"]),
                repeat=int(lcfg["repeat"]),
                kernel=_nemo_kernel(kernel, lcfg.get("kernel_size_factor", 1.0)),
                dilation=dilation,
                residual=bool(lcfg["residual"]),
                separable=bool(lcfg.get("separable", False)),
                se=se,
            )
        )
    # Our config has one dropout and one SE ratio for the whole network.
    if len(dropouts) > 1:
        raise NemoError(
            f"encoder.jasper[*].dropout differs between blocks ({sorted(dropouts)}); "
            "we support one dropout for all blocks"
        )
    if len(ratios) > 1:
        raise NemoError(
            f"encoder.jasper[*].se_reduction_ratio differs between blocks ({sorted(ratios)}); "
            "we support one ratio for all SE blocks"
        )

    if _class_name(dec.get("_target_")) != "ConvASRDecoderClassification":
        raise _unsupported("decoder._target_", dec.get("_target_"), "ConvASRDecoderClassification")
    if dec.get("pooling_type", "avg") != "avg":
        raise _unsupported("decoder.pooling_type", dec.get("pooling_type"), "'avg'")
    # return_logits=false only makes NeMo's forward return softmax(logits); we return logits.
    feat_in = enc.get("feat_in")
    if not isinstance(feat_in, int):
        raise NemoError(f"encoder.feat_in={feat_in!r}: expected an integer")
    if dec.get("feat_in", blocks[-1].filters) != blocks[-1].filters:
        raise NemoError(
            f"decoder.feat_in={dec['feat_in']} but the last encoder block has "
            f"{blocks[-1].filters} filters"
        )
    return QuartzNetConfig(
        name=name,
        blocks=tuple(blocks),
        feat_in=feat_in,
        se_reduction_ratio=int(ratios.pop()) if ratios else 16,
        dropout=dropouts.pop(),
        source="nemo",
    )


def _single(value, option: str) -> int:
    """NeMo writes ``kernel: [11]``; one time axis means one value."""
    if isinstance(value, list):
        if len(value) != 1:
            raise NemoError(f"{option}={value!r}: expected one value, e.g. [{value[0]}]")
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise NemoError(f"{option}={value!r}: expected an integer")
    return value


def _nemo_kernel(kernel: int, factor: float) -> int:
    """NeMo's ``compute_new_kernel_size``: scale, floor, at least 1, even rounded up to odd."""
    k = max(int(kernel * float(factor)), 1)
    return k + 1 if k % 2 == 0 else k


# --- weights ----------------------------------------------------------------------------------


def _load_state_dict(path: Path, classifier: Classifier, nemo_state: dict) -> None:
    """Rename NeMo's keys, check every name and shape, then load (buffers of the MFCC too)."""
    expected = classifier.state_dict()
    ours, nemo_name, unexpected = {}, {}, []
    for key, value in nemo_state.items():
        for theirs, mine in _PREFIXES:
            if key.startswith(theirs):
                ours[mine + key[len(theirs) :]] = value
                nemo_name[mine + key[len(theirs) :]] = key
                break
        else:
            unexpected.append(key)
    missing = sorted(_nemo_key(k) for k in set(expected) - set(ours))
    unexpected += sorted(nemo_name[k] for k in set(ours) - set(expected))
    if missing or unexpected:
        raise NemoError(
            f"{path}: {WEIGHTS_FILE} does not fit {CONFIG_FILE}: missing {missing[:3]}"
            f"{' ...' if len(missing) > 3 else ''}, unexpected {sorted(unexpected)[:3]}"
            f"{' ...' if len(unexpected) > 3 else ''}"
        )
    num_classes = classifier.model.num_classes
    decoder_weight = ours["model.decoder.weight"]
    if decoder_weight.shape[0] != num_classes:
        raise NemoError(
            f"{path}: {CONFIG_FILE} lists {num_classes} labels but the decoder weights "
            f"(decoder.decoder_layers.0.weight) have {decoder_weight.shape[0]} classes"
        )
    for key, value in ours.items():
        if value.shape != expected[key].shape:
            raise NemoError(
                f"{path}: {nemo_name[key]} has shape {tuple(value.shape)} but {CONFIG_FILE} "
                f"asks for {tuple(expected[key].shape)}"
            )
        if key.startswith("preprocessor.") and not torch.allclose(
            value.float().cpu(), expected[key].float(), rtol=_BUFFER_RTOL, atol=1e-6
        ):
            raise NemoError(
                f"{path}: {nemo_name[key]} differs from the MFCC that {CONFIG_FILE}'s "
                "preprocessor section describes; the archive's front end is not one we reproduce"
            )
    classifier.load_state_dict(ours)


def _nemo_key(ours: str) -> str:
    for theirs, mine in _PREFIXES:
        if ours.startswith(mine):
            return theirs + ours[len(mine) :]
    return ours
