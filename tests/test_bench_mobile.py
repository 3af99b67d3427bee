"""The phone paths in the benchmark (issue 14): LiteRT / ExecuTorch fp32 and int8 rows in `mobilebert bench`,
exported per (batch, seq) and run at each thread count; skipped with the install line where their packages are
missing; and the raw text -> label comparison of MediaPipe's TextClassifier with our Python pipeline.

The rows need litert-torch, executorch and mediapipe (.venv-mobile; `make test` runs this file there); in the
main venv the skip tests run instead. No timing is asserted: only that the rows exist and the paths compute the
right thing.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from conftest import tiny_config

from mobilebert.cli import main
from mobilebert.deploy.bench import PHONE_BACKENDS, BenchConfig, build_backends, phone_unavailable, run_bench
from mobilebert.modeling import MobileBertForSequenceClassification, MobileBertModel

SEQ = 16
HAVE_PHONE = all(phone_unavailable(b) is None for b in PHONE_BACKENDS)
HAVE_MEDIAPIPE = phone_unavailable("litert-fp32") is None and importlib.util.find_spec("mediapipe") is not None


def needs_phone(test):
    """A test of the phone stack: marked `mobile` (run in .venv-mobile), skipped where it is not installed."""
    return pytest.mark.mobile(pytest.mark.skipif(not HAVE_PHONE, reason="needs `pip install litert-torch "
                                                 "executorch` (make mobile-venv)")(test))


def _encoder() -> MobileBertModel:
    return MobileBertModel(tiny_config(num_hidden_layers=1)).eval()


@needs_phone
def test_phone_backends_give_rows_at_every_thread_count():
    res = run_bench(_encoder(), BenchConfig(batches=(1,), seqs=(SEQ,), threads=(1, 2),
                                            backends=("eager", *PHONE_BACKENDS), repeats=1), progress=False)
    assert not res.skipped, res.skipped
    assert {(r["backend"], r["threads"]) for r in res.rows} == {(b, t) for b in ("eager", *PHONE_BACKENDS)
                                                                for t in (1, 2)}
    assert all(r["median_ms"] > 0 for r in res.rows)
    assert res.sizes_mb["litert-int8"] < res.sizes_mb["litert-fp32"]
    assert res.sizes_mb["executorch-int8"] < res.sizes_mb["executorch-fp32"]


@needs_phone
def test_phone_backends_run_the_file_of_each_shape_at_its_thread_count(tmp_path):
    """Static-shape files: one per (batch, seq), each picked by the inputs' shape and matching eager PyTorch;
    ExecuTorch's process-wide XNNPACK pool is resized to the backend's thread count."""
    from executorch.extension.pybindings import portable_lib

    enc = _encoder()
    shapes = ((1, SEQ), (2, SEQ))
    runs, sizes, skipped = build_backends(enc, ("litert-fp32", "executorch-fp32"), tmp_path, (1, 2), shapes)
    assert not skipped and set(runs) == {"litert-fp32", "executorch-fp32"}
    assert len(list(tmp_path.glob("litert-fp32-b*-s16.tflite"))) == 2
    for b, s in shapes:
        ids = torch.randint(1, enc.config.vocab_size, (b, s))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            ref = enc(ids, mask).last_hidden_state
        for name, by_threads in runs.items():
            for t, run in by_threads.items():
                got = run(input_ids=ids, attention_mask=mask).last_hidden_state
                assert got.shape == ref.shape
                assert float((got - ref).abs().max() / ref.abs().max()) <= 1e-4, (name, b, t)
                if name.startswith("executorch"):
                    assert portable_lib._threadpool_get_thread_count() == t


@pytest.mark.skipif(HAVE_PHONE, reason="litert-torch and executorch are installed")
def test_bench_skips_phone_backends_with_the_install_line(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    _encoder().save_pretrained(ckpt)
    assert main(["bench", str(ckpt), "--out", str(tmp_path / "out"), "--batches", "1", "--seqs", str(SEQ),
                 "--threads", "1", "--repeats", "1", "--backends", "eager", *PHONE_BACKENDS]) == 0
    printed = capsys.readouterr().out
    res = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert {r["backend"] for r in res["rows"]} == {"eager"}
    for b in PHONE_BACKENDS:
        if phone_unavailable(b):
            assert b in res["skipped"] and "pip install" in res["skipped"][b]
            assert f"{b}: skipped (" in printed
    assert "litert-torch" in printed or "executorch" in printed


@pytest.mark.mobile
@pytest.mark.skipif(not HAVE_MEDIAPIPE, reason="needs `pip install litert-torch mediapipe` (make mobile-venv)")
def test_text_classifier_rows_against_our_pipeline(tmp_path):
    """Raw text -> label: both MediaPipe files and our pipeline are timed on the same strings, the baseline's
    ratio is 1, and MediaPipe's top label agrees with ours on every string (fp32)."""
    from mobilebert.deploy.bench import OUR_PIPELINE, bench_text_classifier, format_text_table
    from mobilebert.tokenizer import MobileBertTokenizer

    torch.manual_seed(0)
    model = MobileBertForSequenceClassification(tiny_config(num_hidden_layers=1, vocab_size=30522)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(200.0)  # spread the probabilities: no near-ties between labels
    model.save_pretrained(tmp_path / "cls")
    MobileBertTokenizer.default().save_pretrained(tmp_path / "cls")
    texts = ["a gripping, beautifully acted film", "dull and far too long", "it is a movie", ""]
    res = bench_text_classifier(tmp_path / "cls", texts, seq_len=SEQ, threads=(1,), repeats=2)
    paths = {r["path"] for r in res["rows"]}
    assert paths == {OUR_PIPELINE, "MediaPipe TextClassifier fp32", "MediaPipe TextClassifier int8"}
    assert all(r["median_ms"] > 0 and r["cores_busy"] > 0 for r in res["rows"])
    assert next(r for r in res["rows"] if r["path"] == OUR_PIPELINE)["x_baseline"] == 1.0
    assert res["labels_agree"]["MediaPipe TextClassifier fp32"] == len(texts)
    assert "x our pipeline" in format_text_table(res)


def test_text_classifier_refuses_an_encoder(tmp_path):
    from mobilebert.deploy.bench import bench_text_classifier

    _encoder().save_pretrained(tmp_path / "enc")
    with pytest.raises(ValueError, match="not a sequence classifier"):
        bench_text_classifier(tmp_path / "enc", ["text"], seq_len=SEQ)
