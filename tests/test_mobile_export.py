"""Phone exports (ExecuTorch .pte and LiteRT .tflite): parity with eager, padding, int8, atomic output, errors.

Each test skips unless its package (executorch / litert-torch) is installed: neither is a project dependency
(docs/guide-deploy.md has the separate venv, .venv-mobile).
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from mobilebert.deploy import mobile
from mobilebert.deploy.onnx import ExportError
from mobilebert.modeling import MobileBertForSequenceClassification, MobileBertModel

SEQ = 16


def _backend(name: str):
    """(export function, runner class, file suffix) for a backend; skips when its package is missing."""
    if name == "executorch":
        pytest.importorskip("executorch.runtime")
        return mobile.export_executorch, mobile.ExecuTorchModel, ".pte"
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert.interpreter")
    return mobile.export_litert, mobile.LiteRTModel, ".tflite"


BACKENDS = ["executorch", "litert"]


def _model(cls=MobileBertModel, preset: str = "mobilebert"):
    model = cls(tiny_config(preset, num_hidden_layers=1)).eval()
    with torch.no_grad():  # non-trivial NoNorm scales so folding is exercised
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _inputs(config, pad: bool):
    ids = torch.randint(1, config.vocab_size, (1, SEQ))
    mask = torch.ones_like(ids)
    if pad:
        mask[0, SEQ - 5:] = 0
        ids = ids * mask
    return ids, mask, torch.zeros_like(ids)


@pytest.mark.mobile
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [MobileBertModel, MobileBertForSequenceClassification])
def test_export_matches_eager(backend, cls, tmp_path):
    export, runner, suffix = _backend(backend)
    model = _model(cls)
    path = export(model, tmp_path / f"model{suffix}", seq_len=SEQ)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [f"model{suffix}"]
    pte = runner(path, mobile.optimize_for_inference(model).output_names())
    for pad in (False, True):
        ids, mask, tt = _inputs(model.config, pad)
        with torch.no_grad():
            ref = model(ids, mask, tt)
        got = pte(ids, mask, tt)
        for name in pte.output_names:
            err = (ref[name] - got[name]).abs().max() / ref[name].abs().max()
            assert err <= 1e-4, (name, pad, float(err))


@pytest.mark.mobile
@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_is_close_and_smaller(backend, tmp_path):
    export, _, suffix = _backend(backend)
    model = _model()
    fp32 = export(model, tmp_path / f"fp32{suffix}", seq_len=SEQ)
    int8 = export(model, tmp_path / f"int8{suffix}", seq_len=SEQ, int8=True)  # parity gate: INT8_TOL
    assert int8.stat().st_size < fp32.stat().st_size


@pytest.mark.mobile
@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_parity_leaves_nothing(backend, tmp_path, monkeypatch):
    export, _, suffix = _backend(backend)
    monkeypatch.setattr(mobile, "FP32_TOL", -1.0)
    with pytest.raises(ExportError, match=rf"model\{suffix}: .* parity check failed"):
        export(_model(), tmp_path / f"model{suffix}", seq_len=SEQ)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.mobile
@pytest.mark.parametrize("backend", BACKENDS)
def test_refuses_overwrite_and_bad_length(backend, tmp_path):
    export, _, suffix = _backend(backend)
    (tmp_path / f"model{suffix}").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="already exists"):
        export(_model(), tmp_path / f"model{suffix}", seq_len=SEQ)
    assert (tmp_path / f"model{suffix}").read_bytes() == b"old"
    with pytest.raises(ValueError, match="seq_len"):
        export(_model(), tmp_path / f"other{suffix}", seq_len=10_000)


@pytest.mark.parametrize("fmt,module,package", [("executorch", "executorch", "executorch"),
                                                ("litert", "litert_torch", "litert-torch")])
def test_cli_export_says_which_package_is_missing(fmt, module, package, tmp_path, capsys):
    """Without the optional package, `mobilebert export --format X` fails in one line naming what to install
    (and writes nothing); with it, the same command writes a file that passed the parity gate."""
    import importlib.util

    from mobilebert.cli import main

    model = _model(MobileBertForSequenceClassification)
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / f"model.{fmt}"
    code = main(["export", "--format", fmt, "--seq-len", str(SEQ), str(tmp_path / "ckpt"), str(out)])
    if importlib.util.find_spec(module) is None:
        assert code == 2 and not out.exists()
        assert f"pip install {package}" in capsys.readouterr().err
    else:
        assert code == 0 and out.is_file()
