"""Parity with NVIDIA NeMo itself (``nox -s nemo``): same logits, MFCCs, parameter counts and
Novograd updates.

NeMo builds an ``EncDecClassificationModel`` from the published speech-commands config (random
weights and batch-norm statistics, nothing downloaded), saves it with ``save_to``; we load the
``.nemo`` with :func:`~quartznet_tutorial.checkpoints.loading.load_classifier` and compare against
NeMo's own ``forward`` in eval mode. The measured differences go to ``results/nemo-parity.json``.
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import pytest
import torch
from test_nemo import nemo_config, randomize_batchnorm

from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.models.quartznet import count_parameters
from quartznet_tutorial.utils.runtime import cpu_name

asr = pytest.importorskip("nemo.collections.asr")
OmegaConf = pytest.importorskip("omegaconf").OmegaConf  # NeMo's config library

pytestmark = pytest.mark.nemo

RESULTS = Path(__file__).resolve().parents[1] / "results" / "nemo-parity.json"
LOGITS_ATOL = 1e-4  # fp32, the acceptance bound
MFCC_RTOL = 1e-3  # relative to the largest |MFCC|

# (our variant, R, SE on every block but the last 1x1, NeMo's parameter count we expect)
CASES = [
    ("quartznet-3x1", 1, False, 77_214),
    ("quartznet-3x2", 2, False, 92_766),
    ("se-quartznet-3x1", 1, True, 82_846),
]


@pytest.fixture(scope="module")
def record():
    """Collects the measured numbers; written once, after the module's tests ran."""
    measured: dict[str, dict] = {}
    yield measured
    if not measured:
        return
    import nemo

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "kind": "nemo-parity",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "hardware": f"{cpu_name()} ({torch.get_num_threads()} threads)",
                "device": "cpu",
                "precision": "fp32",
                "versions": {
                    "nemo_toolkit": nemo.__version__,
                    "torch": torch.__version__,
                    "torchaudio": _version("torchaudio"),
                    "python": platform.python_version(),
                },
                "audio": "0.1 * white noise; 16000, 15702, 8000 samples in one padded batch",
                "weights": "random: NeMo models built from the published configs, saved as "
                ".nemo and loaded here (no NVIDIA-trained checkpoint)",
                "bounds": {"logits_max_abs": LOGITS_ATOL, "mfcc_max_rel": MFCC_RTOL},
                "models": measured,
                "command": "nox -s nemo",
            },
            indent=2,
        )
        + "\n"
    )


def _version(module: str) -> str:
    return __import__(module).__version__


def nemo_model(repeat: int, se: bool, seed: int = 0):
    """NeMo's model from the published config, random weights and non-trivial BN statistics."""
    cfg = nemo_config(repeat, se)
    del cfg["target"], cfg["train_ds"]  # ModelPT sets target; no data loaders without data
    torch.manual_seed(seed)
    model = asr.models.EncDecClassificationModel(cfg=OmegaConf.create(cfg))
    return randomize_batchnorm(model).eval()


def audio_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips (1 s, a typical short real clip, 0.5 s) zero-padded into one batch."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 15702, 8000])
    audio = 0.1 * torch.randn(3, 16000, generator=g)
    audio[torch.arange(16000)[None, :] >= lengths[:, None]] = 0
    return audio, lengths


@pytest.mark.parametrize(("variant", "repeat", "se", "params"), CASES)
def test_load_classifier_matches_nemo(tmp_path, record, variant, repeat, se, params):
    theirs = nemo_model(repeat, se)
    path = tmp_path / f"{variant}.nemo"
    theirs.save_to(str(path))
    ours = load_classifier(path)

    nemo_params = sum(p.numel() for p in theirs.parameters())
    assert count_parameters(ours.model) == nemo_params == params
    assert ours.labels == list(theirs.cfg.labels)

    audio, lengths = audio_batch()
    with torch.no_grad():
        their_mfcc, their_frames = theirs.preprocessor(input_signal=audio, length=lengths)
        our_mfcc, our_frames = ours.preprocessor(audio, lengths)
        their_logits = theirs.forward(input_signal=audio, input_signal_length=lengths)
        our_logits = ours(audio, lengths)
        unmasked = ours(audio)  # as if every clip were 16000 samples: what masking changes

    mfcc_rel = ((our_mfcc - their_mfcc).abs().max() / their_mfcc.abs().max()).item()
    logits_abs = (our_logits - their_logits).abs().max().item()
    record[variant] = {
        "params": nemo_params,
        "frames": our_frames.tolist(),
        "mfcc_max_rel_diff": mfcc_rel,
        "logits_max_abs_diff": logits_abs,
        "logits_max_abs": their_logits.abs().max().item(),
        "same_top1": bool((our_logits.argmax(-1) == their_logits.argmax(-1)).all()),
        "unmasked_max_abs_diff": (unmasked - their_logits).abs().max().item(),
    }
    print(f"{variant}: {record[variant]}")

    assert torch.equal(our_frames, their_frames)
    assert our_frames.tolist() == [100, 99, 50]  # ceil(samples / 160)
    assert mfcc_rel <= MFCC_RTOL
    assert logits_abs <= LOGITS_ATOL
    # The comparison can fail: ignoring the lengths moves the 0.5 s clip's logits far off.
    assert (unmasked[2] - their_logits[2]).abs().max() > 100 * LOGITS_ATOL


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
@pytest.mark.parametrize("amsgrad", [False, True], ids=["recipe", "amsgrad"])
def test_novograd_matches_nemos(foreach, amsgrad):
    """Our Novograd trains a quartznet-3x1 step for step as NeMo's ``Novograd`` does (the
    recipe's hyperparameters, a zero gradient first, then five real steps)."""
    from nemo.core.optim.novograd import Novograd as NemoNovograd

    from quartznet_tutorial.models.quartznet import build_model
    from quartznet_tutorial.training.optim import Novograd

    torch.manual_seed(0)
    models = [build_model("quartznet-3x1") for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = [p.detach().clone() for p in models[0].parameters()]
    recipe = dict(lr=0.05, betas=(0.95, 0.5), weight_decay=0.001, amsgrad=amsgrad)
    opts = [
        Novograd(models[0].parameters(), foreach=foreach, **recipe),
        NemoNovograd(models[1].parameters(), **recipe),
    ]
    features = torch.randn(4, 64, 128, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 5, 9, 29])
    for step in range(6):
        for model, opt in zip(models, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(features), target).backward()
            if step == 0:
                for p in model.parameters():
                    p.grad.zero_()  # NeMo starts v at the first non-zero norm
            opt.step()
    for ours, theirs, before in zip(
        models[0].parameters(), models[1].parameters(), start, strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(ours, before, rtol=0, atol=1e-4)  # training moved it
