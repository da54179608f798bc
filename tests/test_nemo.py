"""Loading NeMo ``.nemo`` archives without NeMo: archives written here in NeMo's exact format.

The config is NeMo's ``matchboxnet_3x1x64_v1.yaml`` model section as ``save_to`` writes it
(interpolations resolved, ``num_classes`` and ``target`` filled in); the weights are one of our
models with keys renamed to NeMo's names. Parity with NeMo itself is ``test_nemo_parity.py``.
"""

from __future__ import annotations

import copy
import io
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.checkpoints.nemo import (
    NemoError,
    load_nemo_classifier,
    nemo_config_to_configs,
)
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.quartznet import build_model, count_parameters
from quartznet_tutorial.models.variants import VARIANTS

# fmt: off
V1 = [
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop",
    "three", "tree", "two", "up", "wow", "yes", "zero",
]
# fmt: on


def _block(filters, repeat, kernel, dilation, residual, separable=True, se=False) -> dict:
    block = {
        "filters": filters,
        "repeat": repeat,
        "kernel": [kernel],
        "stride": [1],
        "dilation": [dilation],
        "dropout": 0.0,
        "residual": residual,
    }
    if separable:  # NeMo's final 1x1 block has no `separable` key (default false)
        block.update(separable=True, kernel_size_factor=1.0)
    if se:
        block.update(se=True, se_reduction_ratio=16)
    return block


def nemo_config(repeat: int = 1, se: bool = False, labels=V1) -> dict:
    """``matchboxnet_3x1x64_v1.yaml``'s ``model:`` section, resolved as ``save_to`` saves it."""
    return {
        "sample_rate": 16000,
        "timesteps": 128,
        "repeat": repeat,
        "dropout": 0.0,
        "kernel_size_factor": 1.0,
        "labels": list(labels),
        "train_ds": {"manifest_filepath": None, "sample_rate": 16000, "batch_size": 128},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMFCCPreprocessor",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "n_mels": 64,
            "n_mfcc": 64,
            "n_fft": 512,
        },
        "spec_augment": {
            "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
            "freq_masks": 2,
            "time_masks": 2,
            "freq_width": 15,
            "time_width": 25,
            "rect_masks": 5,
            "rect_time": 25,
            "rect_freq": 15,
        },
        "crop_or_pad_augment": {
            "_target_": "nemo.collections.asr.modules.CropOrPadSpectrogramAugmentation",
            "audio_length": 128,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 64,
            "activation": "relu",
            "conv_mask": True,
            "jasper": [
                _block(128, 1, 11, 1, False, se=se),
                _block(64, repeat, 13, 1, True, se=se),
                _block(64, repeat, 15, 1, True, se=se),
                _block(64, repeat, 17, 1, True, se=se),
                _block(128, 1, 29, 2, False, se=se),
                _block(128, 1, 1, 1, False, separable=False),
            ],
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoderClassification",
            "feat_in": 128,
            "return_logits": True,
            "pooling_type": "avg",
            "num_classes": len(labels),
        },
        "optim": {"name": "novograd", "lr": 0.05, "betas": [0.95, 0.5], "weight_decay": 0.001},
        "target": "nemo.collections.asr.models.classification_models.EncDecClassificationModel",
    }


@torch.no_grad()
def randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """BN that is not the identity (ours or NeMo's), so a misplaced tensor shows."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0, 0.1)
    return model


def random_classifier(variant: str, num_classes: int = 30, seed: int = 0) -> Classifier:
    """One of our classifiers (NeMo front end, no crop/pad) with random weights and BN stats."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(build_model(variant, num_classes=num_classes))
    labels = V1[:num_classes] if num_classes <= 30 else [f"c{i}" for i in range(num_classes)]
    return Classifier(model, labels, FeatureConfig(frames=None)).eval()


def nemo_state_dict(classifier: Classifier) -> dict[str, torch.Tensor]:
    """Our Classifier's state dict under NeMo's names (the inverse of the loader's renaming)."""
    out = {}
    for key, value in classifier.state_dict().items():
        key = key.replace("model.encoder.", "encoder.encoder.", 1)
        key = key.replace("model.decoder.", "decoder.decoder_layers.0.", 1)
        out[key] = value.clone()
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_nemo(
    path: Path,
    cfg: dict,
    state_dict,
    *,
    compression: str = "",
    extra=None,
) -> Path:
    """A ``.nemo`` as ``save_to`` writes it: ``./model_config.yaml``, ``./model_weights.ckpt``."""
    weights = io.BytesIO()
    torch.save(state_dict, weights)
    with tarfile.open(path, f"w:{compression}") as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        _add_bytes(tar, "./model_config.yaml", yaml.safe_dump(cfg).encode())
        _add_bytes(tar, "./model_weights.ckpt", weights.getvalue())
        for member in extra or ():
            member(tar)
    return path


def audio_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clips, 16000 and 15702 samples, zero-padded into one batch."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 15702])
    audio = 0.1 * torch.randn(2, 16000, generator=g)
    audio[1, 15702:] = 0
    return audio, lengths


@pytest.mark.parametrize(
    ("variant", "repeat", "se"),
    [("quartznet-3x1", 1, False), ("quartznet-3x2", 2, False), ("se-quartznet-3x1", 1, True)],
)
def test_round_trip_gives_identical_logits(tmp_path, variant, repeat, se):
    source = random_classifier(variant)
    path = write_nemo(tmp_path / "m.nemo", nemo_config(repeat, se), nemo_state_dict(source))

    loaded = load_classifier(path)

    assert loaded.labels == V1
    assert loaded.model.config.blocks == VARIANTS[variant].blocks
    assert loaded.model.config.name == "nemo:m"
    assert loaded.features == FeatureConfig(frames=None)
    assert not loaded.training
    audio, lengths = audio_batch()
    with torch.no_grad():
        expected = source(audio, lengths)
        got = loaded(audio, lengths)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("repeat", "params"), [(1, 77_214), (2, 92_766)])
def test_nemo_config_builds_the_published_variants(repeat, params):
    model_config, features, labels = nemo_config_to_configs(nemo_config(repeat))

    assert model_config.blocks == VARIANTS[f"quartznet-3x{repeat}"].blocks
    assert count_parameters(build_model(model_config, num_classes=len(labels))) == params
    assert (features.win_length, features.hop_length, features.n_fft) == (400, 160, 512)


def test_gzip_archive_and_old_cls_params_config(tmp_path):
    """Archives before NeMo 1.7 are gzip tars with Hydra 0.x ``cls`` + ``params`` sections."""
    cfg = nemo_config()
    for section in ("preprocessor", "encoder", "decoder"):
        params = cfg[section]
        cfg[section] = {"cls": params.pop("_target_"), "params": params}
    source = random_classifier("quartznet-3x1")
    path = write_nemo(tmp_path / "old.nemo", cfg, nemo_state_dict(source), compression="gz")

    loaded = load_nemo_classifier(path)

    audio, lengths = audio_batch(1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio, lengths), source(audio, lengths))


def test_nemo_defaults_and_sample_counts_are_honoured():
    """Unset options take NeMo 3.0's defaults (20 ms window, n_fft = next power of two)."""
    cfg = nemo_config()
    pre = cfg["preprocessor"]
    del pre["window_size"], pre["n_fft"]
    _, features, _ = nemo_config_to_configs(cfg)
    assert (features.win_length, features.n_fft) == (320, 512)

    pre.update(window_size=None, n_window_size=400, window_stride=None, n_window_stride=160)
    _, features, _ = nemo_config_to_configs(cfg)
    assert (features.win_length, features.hop_length) == (400, 160)


def test_kernel_size_factor_is_applied_as_nemo_does():
    cfg = nemo_config()
    for block in cfg["encoder"]["jasper"][:5]:
        block["kernel_size_factor"] = 0.5
    model_config, _, _ = nemo_config_to_configs(cfg)
    # NeMo: max(int(k * f), 1), rounded up to odd: 11->5, 13->7 (6+1), 15->7, 17->9 (8+1), 29->15
    assert [b.kernel for b in model_config.blocks] == [5, 7, 7, 9, 15, 1]


# --- unsafe archives ---------------------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = ""):
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        data = b"owned" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("../evil.txt"), "'..'"),
        (_member("./sub/../../evil.txt"), "'..'"),
        (_member("/tmp/evil.txt"), "absolute"),
        (_member("C:\\evil.txt"), "absolute"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_member("hard", tarfile.LNKTYPE, "./model_config.yaml"), "link"),
        (_member("dev", tarfile.CHRTYPE), "device"),
        (_member("fifo", tarfile.FIFOTYPE), "special"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path, member, why):
    folder = tmp_path / "models"
    folder.mkdir()
    source = random_classifier("quartznet-3x1")
    path = write_nemo(folder / "m.nemo", nemo_config(), nemo_state_dict(source), extra=[member])
    before = sorted(tmp_path.rglob("*"))

    with pytest.raises(NemoError, match=f"m.nemo: refusing unsafe member .*{why}"):
        load_classifier(path)

    assert sorted(tmp_path.rglob("*")) == before


def test_weights_with_pickled_code_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    state = nemo_state_dict(random_classifier("quartznet-3x1"))
    state["decoder.decoder_layers.0.bias"] = _Exploit(str(marker))
    path = write_nemo(tmp_path / "m.nemo", nemo_config(), state)

    with pytest.raises(NemoError, match=r"m\.nemo: model_weights\.ckpt holds objects other than"):
        load_classifier(path)
    assert not marker.exists()


class _Exploit:
    """Unpickling this would create a file: what a malicious checkpoint does with ``exec``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_missing_files_and_non_tar_are_clear(tmp_path):
    not_tar = tmp_path / "x.nemo"
    not_tar.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(NemoError, match=r"x.nemo: not a readable \.nemo archive"):
        load_nemo_classifier(not_tar)

    empty = tmp_path / "empty.nemo"
    with tarfile.open(empty, "w") as tar:
        _add_bytes(tar, "./model_config.yaml", b"labels: [a, b]\n")
    with pytest.raises(NemoError, match=r"empty\.nemo: no model_weights\.ckpt in the archive"):
        load_nemo_classifier(empty)


# --- configs and weights we do not reproduce -----------------------------------------------------


def _set(path: str, value):
    """Edit ``cfg`` at a dotted path; ``jasper.1.stride`` indexes the block list."""

    def edit(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("encoder.activation", "swish"), "encoder.activation='swish'"),
        (_set("encoder.normalization_mode", "group"), "encoder.normalization_mode='group'"),
        (_set("encoder.conv_mask", False), "encoder.conv_mask=False"),
        (_set("encoder.frame_splicing", 3), "encoder.frame_splicing=3"),
        (_set("encoder._target_", "x.ParallelConvASREncoder"), "encoder._target_="),
        (_set("encoder.jasper.1.stride", [2]), r"encoder.jasper\[1\].stride=\[2\]"),
        (_set("encoder.jasper.1.residual_mode", "max"), r"encoder.jasper\[1\].residual_mode='max'"),
        (_set("encoder.jasper.2.groups", 4), r"encoder.jasper\[2\].groups=4"),
        (_set("encoder.jasper.2.heads", 8), r"encoder.jasper\[2\].heads=8"),
        (_set("encoder.jasper.2.residual_dense", True), r"encoder.jasper\[2\].residual_dense=True"),
        (_set("encoder.jasper.3.future_context", 2), r"encoder.jasper\[3\].future_context=2"),
        (_set("encoder.jasper.3.se_context_size", 32), r"encoder.jasper\[3\].se_context_size=32"),
        (_set("encoder.jasper.3.kernel", [13, 15]), r"encoder.jasper\[3\].kernel=\[13, 15\]"),
        (_set("encoder.jasper.4.dropout", 0.1), r"dropout differs between blocks \(\[0.0, 0.1\]\)"),
        (_set("decoder._target_", "x.SpeakerDecoder"), "decoder._target_='x.SpeakerDecoder'"),
        (_set("decoder.pooling_type", "max"), "decoder.pooling_type='max'"),
        (
            _set("preprocessor._target_", "x.AudioToMelSpectrogramPreprocessor"),
            "preprocessor._target_='x.AudioToMelSpectrogramPreprocessor'",
        ),
        (_set("preprocessor.window", "hamming"), "preprocessor.window='hamming'"),
        (_set("preprocessor.dct_type", 3), "preprocessor.dct_type=3"),
        (_set("preprocessor.log", False), "preprocessor.log=False"),
        (_set("preprocessor.lowfreq", 20), "preprocessor.lowfreq=20"),
        (_set("preprocessor.highfreq", 7600), "preprocessor.highfreq=7600"),
        (_set("preprocessor.dither", 1e-5), "preprocessor.dither=1e-05"),
        (_set("preprocessor.n_window_size", 400), "both window_size=0.025 and n_window_size=400"),
        (_set("encoder.feat_in", 80), "encoder.feat_in=80 but preprocessor.n_mfcc=64"),
        (_set("is_regression_task", True), "is_regression_task=true"),
        (_set("target", "x.EncDecCTCModel"), "target=x.EncDecCTCModel"),
        (_set("encoder.jasper.0.filters", "${model.filters}"), "unresolved interpolation"),
    ],
)
def test_unsupported_option_is_named(edit, message):
    cfg = copy.deepcopy(nemo_config())
    edit(cfg)
    with pytest.raises(NemoError, match=message):
        nemo_config_to_configs(cfg)


def test_se_ratio_must_be_shared():
    cfg = nemo_config(se=True)
    cfg["encoder"]["jasper"][1]["se_reduction_ratio"] = 8
    with pytest.raises(NemoError, match=r"se_reduction_ratio differs between blocks \(\[8, 16\]\)"):
        nemo_config_to_configs(cfg)


def test_wrong_label_count_is_named(tmp_path):
    source = random_classifier("quartznet-3x1", num_classes=30)
    path = write_nemo(tmp_path / "m.nemo", nemo_config(labels=V1[:12]), nemo_state_dict(source))
    with pytest.raises(NemoError, match=r"lists 12 labels but the decoder weights .* have 30"):
        load_classifier(path)


def test_weights_of_another_shape_are_named(tmp_path):
    """A 3x2 config with 3x1 weights: the second sub-block's tensors are missing."""
    source = random_classifier("quartznet-3x1")
    path = write_nemo(tmp_path / "m.nemo", nemo_config(repeat=2), nemo_state_dict(source))
    with pytest.raises(NemoError, match=r"missing \['encoder.encoder.1.mconv.5.conv.weight'"):
        load_classifier(path)

    cfg = nemo_config()
    cfg["encoder"]["jasper"][2]["kernel"] = [21]
    path = write_nemo(tmp_path / "k.nemo", cfg, nemo_state_dict(source))
    with pytest.raises(
        NemoError, match=r"encoder.encoder.2.mconv.0.conv.weight has shape \(64, 1, 15\) but"
    ):
        load_classifier(path)


def test_foreign_front_end_buffers_are_refused(tmp_path):
    state = nemo_state_dict(random_classifier("quartznet-3x1"))
    state["preprocessor.featurizer.dct_mat"] = state["preprocessor.featurizer.dct_mat"] * 1.01
    path = write_nemo(tmp_path / "m.nemo", nemo_config(), state)
    with pytest.raises(NemoError, match=r"preprocessor\.featurizer\.dct_mat differs from the MFCC"):
        load_classifier(path)


def test_config_errors_name_the_file(tmp_path):
    cfg = nemo_config()
    cfg["encoder"]["activation"] = "swish"
    cfg["train_ds"]["labels"] = "${model.labels}"  # unused sections may keep interpolations
    path = write_nemo(tmp_path / "m.nemo", cfg, nemo_state_dict(random_classifier("quartznet-3x1")))
    with pytest.raises(
        NemoError, match=r"m\.nemo: model_config\.yaml: encoder\.activation='swish'"
    ):
        load_classifier(path)


def test_unquoted_yes_no_labels_get_a_hint():
    cfg = yaml.safe_load(yaml.safe_dump(nemo_config()) + "labels: [yes, no]\n")
    with pytest.raises(NemoError, match=r"labels=\[True, False\].*quote words such as 'yes'"):
        nemo_config_to_configs(cfg)
