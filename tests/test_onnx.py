"""ONNX export: parity with eager across presets and shapes, atomic output, clear failures; bench smoke run."""

from __future__ import annotations

import json

import pytest
from conftest import assert_matches_eager, perturbed, small_config

from mobilebert.cli import main
from mobilebert.deploy import onnx as onnx_mod
from mobilebert.deploy.onnx import ExportError, OnnxModel, export_onnx
from mobilebert.modeling import MobileBertForSequenceClassification, MobileBertModel

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

PRESETS = ["mobilebert", "mobilebert-tiny", "mobilebert-no-opt", "ib-bert-large", "bert-base"]


@pytest.mark.parametrize("preset", PRESETS)
def test_onnx_matches_eager_with_dynamic_shapes(preset, tmp_path):
    head = MobileBertForSequenceClassification if preset in ("mobilebert", "bert-base") else MobileBertModel
    model = perturbed(head(small_config(preset)))
    report = export_onnx(model, tmp_path / "out")
    assert report.parity["fp32"] <= onnx_mod.FP32_TOL
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "export.json", "model.onnx"]
    for ort in (OnnxModel(tmp_path / "out"), OnnxModel(tmp_path / "out", threads=1, spin=False)):
        assert_matches_eager(model, ort, ort.output_names)
    assert ort.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_failed_parity_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_mod, "FP32_TOL", -1.0)
    with pytest.raises(ExportError, match="parity"):
        export_onnx(MobileBertModel(small_config("mobilebert")), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def _checkpoint(tmp_path):
    model = MobileBertForSequenceClassification(small_config("mobilebert", num_hidden_layers=1))
    model.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


@pytest.mark.slow  # the CLI end to end: export fp32 + int8, bench (the README run covers it too)
def test_cli_export_int8_and_bench(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    assert main(["export", "--format", "onnx", "--int8", str(ckpt), str(tmp_path / "onnx")]) == 0
    files = {p.name for p in (tmp_path / "onnx").iterdir()}
    assert {"model.onnx", "model.int8.onnx", "config.json", "export.json"} <= files
    report = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert report["outputs"] == ["logits"] and report["parity"]["fp32"] <= 1e-4
    assert main(["export", str(ckpt), str(tmp_path / "onnx")]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(["bench", str(ckpt), "--out", str(tmp_path / "bench"), "--batches", "1", "--seqs", "16",
                 "--threads", "1", "--repeats", "2", "--backends", "eager", "optimized", "ort-fp32"]) == 0
    res = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {r["backend"] for r in res["rows"]} == {"eager", "optimized", "ort-fp32"}
    assert all(r["median_ms"] > 0 for r in res["rows"]) and (tmp_path / "bench" / "bench.png").stat().st_size > 0


def test_corrupt_checkpoint_fails_clearly(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "corrupt" in err
    assert not (tmp_path / "out").exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_mismatched_checkpoint_fails_clearly(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = 256  # weights were saved with 512
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    assert "shapes do not match" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
