"""OpenVINO export: f32 parity with eager on dynamic shapes, bf16 within its tolerance, NNCF int8 that keeps SST-2
accuracy on the bundled sample, gates that refuse a broken file and leave nothing, the SentenceEncoder backend,
the bench rows, the one probe rule, and the one-line install message when the packages are missing."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import assert_matches_eager, inputs, perturbed, small_config, tiny_config

from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.deploy import gate
from mobilebert.deploy import openvino as ovx
from mobilebert.deploy.gate import ExportError, check_accuracy, probe_inputs
from mobilebert.deploy.onnx import FP32_TOL, INT8_TOL, relative_error
from mobilebert.deploy.optimize import optimize_for_inference
from mobilebert.modeling import MobileBertForSequenceClassification, MobileBertModel, ModelOutput
from mobilebert.sentence import PoolingConfig, SentenceEncoder
from mobilebert.tokenizer import MobileBertTokenizer

pytestmark = pytest.mark.openvino  # its own pytest process (Makefile): see the marker's note

pytest.importorskip("openvino")
pytest.importorskip("nncf")

BERT_VOCAB = 30522  # the default tokenizer's: real sentences, calibration and the accuracy gate apply
TEXTS = ["a charming and often affecting journey .", "unflinchingly bleak and desperate", "the cat sat", "ok"]


def _small_bert_vocab(**kw):
    """A small MobileBERT that reads BERT's uncased vocab (so the bundled sentences tokenize for it)."""
    return tiny_config("mobilebert", vocab_size=BERT_VOCAB, num_hidden_layers=1, hidden_size=128, embedding_size=64,
                       intra_bottleneck_size=64, intermediate_size=128, num_attention_heads=2, **kw)


@pytest.fixture(scope="module")
def sst2_model() -> MobileBertForSequenceClassification:
    """A small classifier fine-tuned on the bundled SST-2 train sample (2 epochs, ~70% dev accuracy), so that
    the int8 accuracy check compares real decisions, not a random head's coin flips."""
    torch.manual_seed(0)
    model = MobileBertForSequenceClassification(_small_bert_vocab(num_labels=2))
    tok = MobileBertTokenizer.default()
    train = read_glue("sst2", SAMPLE_DIR, "train")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(2):
        order = torch.randperm(len(train)).tolist()
        for i in range(0, len(order), 32):
            batch = [train[j] for j in order[i:i + 32]]
            enc = tok([e.text_a for e in batch], max_length=48, truncation=True, padding=True, return_tensors="pt")
            model(**enc, labels=torch.tensor([e.label for e in batch])).loss.backward()
            opt.step()
            opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("head", [MobileBertModel, MobileBertForSequenceClassification])
def test_f32_matches_eager_with_dynamic_shapes(head, tmp_path):
    model = perturbed(head(small_config("mobilebert")))
    report = ovx.export_openvino(model, tmp_path / "out")
    assert report.parity["f32"] <= FP32_TOL and report.precision == report.runs_as == "f32"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "export.json", "model.bin",
                                                                    "model.xml"]
    runner = ovx.OpenVinoModel(tmp_path / "out", threads=1)
    assert runner.precision == "f32" and runner.output_names == optimize_for_inference(model).output_names()
    assert_matches_eager(model, runner, runner.output_names)
    with pytest.raises(ValueError, match="does not support output_attentions"):
        runner(inputs(model.config, 1, 3, False)["input_ids"], output_attentions=True)


def test_bf16_within_tolerance(tmp_path):
    """bf16 keeps 8 significant bits: the gate allows BF16_TOL (max relative); the hidden states stay within 3%
    (norm relative), as the PyTorch bf16 path's test asks. On a CPU without native bf16 it runs as f32."""
    model = perturbed(MobileBertModel(small_config("mobilebert")))
    report = ovx.export_openvino(model, tmp_path / "out", precision="bf16")
    assert report.parity["bf16"] <= ovx.BF16_TOL and report.parity["f32"] <= FP32_TOL
    assert json.loads((tmp_path / "out" / "export.json").read_text())["precision"] == "bf16"
    runner = ovx.OpenVinoModel(tmp_path / "out")  # the exported precision by default
    assert runner.precision == report.runs_as in ("bf16", "f32")
    x = inputs(model.config, 3, 24, True)
    with torch.no_grad():
        ref = model(**x).last_hidden_state
    got = runner(**x).last_hidden_state
    assert got.dtype == torch.float32 and float((ref - got).norm() / ref.norm()) <= 3e-2
    with pytest.raises(ValueError, match="precision must be one of"):
        ovx.export_openvino(model, tmp_path / "other", precision="fp8")


def test_int8_keeps_sst2_accuracy(sst2_model, tmp_path):
    """NNCF int8 calibrated on a user text file; every shipped file within 1 point of eager PyTorch on the
    bundled SST-2 dev sample (872 sentences), and the classifier is not a coin flip."""
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(e.text_a for e in read_glue("sst2", SAMPLE_DIR, "train", limit=64)) + "\n\n")
    report = ovx.export_openvino(sst2_model, tmp_path / "out", int8=True, calibration=calib,
                                 labelled=SAMPLE_DIR / "sst2_dev.tsv")
    assert report.parity["int8"] <= INT8_TOL
    acc = report.accuracy
    assert acc["pytorch"] > 65, acc
    assert acc["f32"] >= acc["pytorch"] - 0.2 and acc["int8"] >= acc["pytorch"] - 1.0, acc
    assert {"model.int8.xml", "model.int8.bin"} <= {p.name for p in (tmp_path / "out").iterdir()}
    x = probe_inputs(sst2_model.config, int8=True)[0]
    got = ovx.OpenVinoModel(tmp_path / "out", int8=True)(**x).logits
    assert got.shape == (x["input_ids"].shape[0], 2) and torch.isfinite(got).all()


def _adds_fed_int8(xml) -> int:
    """Adds of an int8 IR with a FakeQuantize on an input: the residual stream's adds that run in int8."""
    import openvino as ov

    ops = ov.Core().read_model(str(xml)).get_ops()
    return sum(op.get_type_name() == "Add" and any(v.get_node().get_type_name() == "FakeQuantize"
                                                   for v in op.input_values()) for op in ops)


def test_int8_scope_follows_the_normalization(tmp_path):
    """NoNorm: the residual adds take int8 inputs (NNCF's whole-graph scope); LayerNorm: they stay float (its
    transformer scope), since quantizing what feeds a LayerNorm cost a fine-tuned MiniLM 8 SST-2 points; export.json
    says which."""
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(TEXTS) + "\n")
    counts = {}
    for norm in ovx.INT8_SCOPE:
        torch.manual_seed(0)
        model = perturbed(MobileBertModel(_small_bert_vocab(normalization_type=norm)))
        ovx.export_openvino(model, tmp_path / norm, int8=True, calibration=calib)
        counts[norm] = _adds_fed_int8(tmp_path / norm / "model.int8.xml")
        assert json.loads((tmp_path / norm / "export.json").read_text())["int8_scope"] == ovx.INT8_SCOPE[norm]
    assert counts["no_norm"] > 0 and counts["layer_norm"] == 0, counts


def test_gate_refuses_a_broken_int8_file(tmp_path, monkeypatch):
    """An int8 graph that computes something else (another model's weights) fails the gate; nothing written."""
    model = perturbed(MobileBertModel(_small_bert_vocab()))
    other = ovx.convert(optimize_for_inference(perturbed(MobileBertModel(_small_bert_vocab()))))
    monkeypatch.setattr(ovx, "quantize_int8", lambda *a, **k: other)
    with pytest.raises(ExportError, match="int8 model is broken"):
        ovx.export_openvino(model, tmp_path / "out", int8=True)
    assert list(tmp_path.iterdir()) == []


def test_accuracy_gate_refuses_a_file_that_loses_points(sst2_model):
    dev = read_glue("sst2", SAMPLE_DIR, "dev", limit=200)
    tok = MobileBertTokenizer.default()

    def flipped(**x):
        out = sst2_model(**x)
        out.logits = out.logits.flip(-1)
        return out

    with pytest.raises(ExportError, match="flipped accuracy .* below PyTorch"):
        check_accuracy(sst2_model, {"flipped": flipped}, dev, tok, where="flipped")
    acc = check_accuracy(sst2_model, {"same": sst2_model}, dev, tok)
    assert acc["same"] == acc["pytorch"]


def test_sentence_encoder_backend(tmp_path, monkeypatch):
    monkeypatch.setattr(ovx, "CALIBRATION_TEXTS", 48)  # the bundled samples, fewer of them (speed)
    torch.manual_seed(0)
    model = perturbed(MobileBertModel(_small_bert_vocab()))
    ckpt = tmp_path / "ckpt"
    SentenceEncoder(model, MobileBertTokenizer.default(), PoolingConfig(max_seq_length=64)).save_pretrained(ckpt)
    ovx.export_checkpoint(ckpt, tmp_path / "ov", int8=True)
    ours = SentenceEncoder.from_pretrained(ckpt).encode(TEXTS, batch_size=2)
    f32 = SentenceEncoder.from_openvino(tmp_path / "ov", ckpt, threads=1).encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(f32, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())
    q = SentenceEncoder.from_openvino(tmp_path / "ov", ckpt, int8=True).encode(TEXTS)
    cos = (q * ours).sum(1) / np.linalg.norm(q, axis=1) / np.linalg.norm(ours, axis=1)
    assert q.shape == ours.shape and (cos > 0.95).all(), cos


def test_missing_package_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("openvino", "nncf")
                        else real(name, *a))
    model = MobileBertModel(small_config("mobilebert"))
    with pytest.raises(ImportError) as e:
        ovx.export_openvino(model, tmp_path / "out", int8=True)
    msg = str(e.value)
    assert "\n" not in msg and "pip install openvino nncf" in msg and "openvino, nncf missing" in msg
    with pytest.raises(ImportError, match="pip install openvino nncf"):
        ovx.OpenVinoModel(tmp_path)
    assert not (tmp_path / "out").exists()


def test_bench_openvino_rows(tmp_path):
    from mobilebert.deploy.bench import BenchConfig, format_table, run_bench

    model = MobileBertModel(small_config("mobilebert"))
    cfg = BenchConfig(batches=(1,), seqs=(16,), threads=(1,), repeats=2,
                      backends=("optimized", "openvino-f32", "openvino-bf16", "openvino-int8"))
    res = run_bench(model, cfg, progress=False)
    timed = {r["backend"] for r in res.rows}
    assert "openvino-f32" in timed and all(r["median_ms"] > 0 for r in res.rows)
    assert "tokenizer" in res.skipped["openvino-int8"]  # a 1000-word vocab: nothing real to calibrate on
    assert ("openvino-bf16" in timed) != ("openvino-bf16" in res.skipped)
    assert "openvino-f32" in format_table(res)


def test_one_probe_rule():
    """Real sentences join random ids when the vocab is BERT's; int8 is judged on them alone; static shapes."""
    bert, small = _small_bert_vocab(), small_config("mobilebert")
    rand = probe_inputs(small)
    assert len(rand) == len(gate.DYNAMIC_SHAPES)  # no sentences for a 1000-word vocab: int8 gets random ids too
    assert all(torch.equal(a[k], b[k]) for a, b in zip(probe_inputs(small, int8=True), rand, strict=True) for k in a)
    assert any(not bool(p["attention_mask"].all()) for p in rand)  # padding is probed
    text = gate.text_probes(bert)
    assert text and len(probe_inputs(bert)) == len(rand) + len(text)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(probe_inputs(bert, int8=True), text,
                                                                          strict=True))
    static = probe_inputs(bert, batch=2, seq_len=32)
    assert {tuple(p["input_ids"].shape) for p in static} == {(2, 32)}
    tok = MobileBertTokenizer.default()
    assert tok.decode(text[0]["input_ids"][0].tolist()).startswith(read_glue("sst2", SAMPLE_DIR, "dev")[0]
                                                                    .text_a.split()[0])


def test_padded_positions_are_not_compared():
    """What a padded position holds is read by nothing: per-token outputs are compared at real tokens only
    (MiniLM's LiteRT int8 encoder differed by 0.91 there, 0.03 at real tokens), pooled outputs everywhere."""
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    ref = ModelOutput(last_hidden_state=torch.ones(2, 4, 3), pooler_output=torch.ones(2, 3))
    got = ModelOutput(last_hidden_state=ref.last_hidden_state.clone(), pooler_output=torch.ones(2, 3))
    got.last_hidden_state[0, 3] = 100.0  # a padded position
    names = ["last_hidden_state", "pooler_output"]
    assert relative_error(ref, got, names) == pytest.approx(99.0)
    assert relative_error(ref, got, names, mask) == 0.0
    got.last_hidden_state[1, 1] = 1.5  # a real token
    assert relative_error(ref, got, names, mask) == pytest.approx(0.5)
    got.pooler_output[1, 0] = 3.0  # not per-token: compared whole
    assert relative_error(ref, got, names, mask) == pytest.approx(2.0)


@pytest.fixture(scope="module")
def sst2_folder(sst2_model, tmp_path_factory):
    """``sst2_model`` saved as `mobilebert finetune` saves a model (weights, tokenizer, finetune.json)."""
    import copy

    from mobilebert.data.tasks import TaskSetup
    from mobilebert.finetune.load import save_finetuned

    path, spec = tmp_path_factory.mktemp("ft") / "best", TaskSetup("sst2", 48)
    model = copy.deepcopy(sst2_model)
    model.config = model.config.replace(id2label=dict(enumerate(spec.labels)))  # the head is this task's
    save_finetuned(model, MobileBertTokenizer.default(), spec, path)
    return path


def test_evaluate_and_predict_run_the_model_in_openvino(sst2_folder, monkeypatch, capsys):
    from mobilebert.cli import main
    from mobilebert.finetune.evaluate import evaluate_checkpoint

    monkeypatch.setattr(ovx, "CALIBRATION_TEXTS", 48)
    ref = evaluate_checkpoint(sst2_folder, SAMPLE_DIR, limit=200)
    f32 = evaluate_checkpoint(sst2_folder, SAMPLE_DIR, limit=200, backend="openvino-f32")
    int8 = evaluate_checkpoint(sst2_folder, SAMPLE_DIR, limit=200, backend="openvino-int8")
    assert f32["backend"] == "openvino-f32" and abs(f32["dev"]["accuracy"] - ref["dev"]["accuracy"]) <= 1 / 200
    assert abs(int8["dev"]["accuracy"] - ref["dev"]["accuracy"]) <= 0.05, (int8, ref)

    def predicted(backend: str) -> list[str]:
        capsys.readouterr()
        assert main(["predict", "--model", str(sst2_folder), "--backend", backend, *TEXTS]) == 0
        return [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]

    assert predicted("openvino-f32") == predicted("pytorch") and set(predicted("pytorch")) <= {"negative", "positive"}


def test_backend_without_its_package_is_one_line(sst2_folder, monkeypatch, capsys):
    from mobilebert.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("openvino", "nncf")
                        else real(name, *a))
    for cmd in (["predict", "--model", str(sst2_folder), "--backend", "openvino-bf16", "fine"],
                ["evaluate", "--model", str(sst2_folder), "--data", str(SAMPLE_DIR), "--backend", "openvino-int8"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "needs `pip install openvino nncf`" in err, err
        assert ("(openvino missing)" in err) == (cmd[0] == "predict")  # nncf only matters for int8
