"""Fine-tuning on the user's own files (issue 21), end to end on CPU with a tiny model.

- Parity: the SST-2 sample rewritten as CSV (other column names, string labels) gives the same examples, the
  same weights and the same dev score as ``--task sst2`` on the same rows with the same seed.
- Multi-label (sigmoid + BCE, thresholds tuned on validation and saved; the loss equal to transformers') and
  token classification (a tagging set made from the WikiText sample: see ``tagging_set``), with and without a
  teacher; ``evaluate --validation`` reads the columns the model was trained with.
- The data library writes its Arrow copies only under the run's temporary folder, never HF_DATASETS_CACHE.
- Also found: one GLUE file for train and dev is refused; a CSV through ``--task sst2`` points at the own-files
  route; a teacher at the majority baseline and a sentence encoder's STS-B score near chance are noted.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mobilebert.cli import main
from mobilebert.data import finetuning, glue
from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.data.tasks import TaskSetup
from mobilebert.finetune.module import multilabel_distillation_loss, token_distillation_loss
from mobilebert.recipes.finetune import FinetuneConfig, train
from mobilebert.sanity import finetune_notes, teacher_notes
from mobilebert.tokenizer import MobileBertTokenizer

N_TRAIN, N_DEV = 160, 64
COMMON = dict(lr=1e-3, batch_size=16, epochs=2, max_seq_length=48, seeds=[3], device="cpu")


def _sample(split: str, n: int) -> list[tuple[str, str]]:
    lines = (SAMPLE_DIR / f"sst2_{split}.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]
    return [tuple(line.split("\t")) for line in lines]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The same SST-2 rows three ways: GLUE TSV files, a CSV with other names and string labels, multi-label."""
    d = tmp_path_factory.mktemp("own")
    (d / "glue").mkdir()
    for split, n in (("train", N_TRAIN), ("dev", N_DEV)):
        rows = _sample(split, n)
        (d / "glue" / f"sst2_{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
        _write_csv(d / f"{split}.csv", ["review", "sentiment"],
                   [[t, "positive" if y == "1" else "negative"] for t, y in rows])
        # multi-label: the sentiment, plus "long" for texts of more than 8 words; some rows as "a|b" text
        _write_csv(d / f"ml_{split}.csv", ["text", "labels"],
                   [[t, "|".join(["pos" if y == "1" else "neg"] + (["long"] if len(t.split()) > 8 else []))]
                    for t, y in rows])
    return d


def test_csv_gives_the_same_examples_weights_and_score_as_glue(tiny_ckpt, data, tmp_path):
    tok = MobileBertTokenizer.from_pretrained(tiny_ckpt)
    glue_spec = TaskSetup("sst2", 48)
    own = TaskSetup("text-classification", 48, columns={"text": "review", "text_pair": None, "label": "sentiment"})
    f = finetuning.read_file(own, data / "train.csv", tmp_path / "cache")
    own = finetuning.with_training_file(own, f)
    assert own.labels == ("negative", "positive")  # sorted: the same ids as GLUE's 0 / 1
    a = finetuning.load_train_data(glue_spec, data / "glue", tok)
    b = finetuning.load_train_data(own, data / "train.csv", tok, cache_dir=tmp_path / "cache")
    assert a.input_ids == [r.tolist() for r in b.input_ids]  # the file's rows are packed (data/packed.py)
    assert a.token_type_ids == [r.tolist() for r in b.token_type_ids] and a.targets == b.targets

    r1 = train(FinetuneConfig(task="sst2", data=str(data / "glue"), model=str(tiny_ckpt), out=str(tmp_path / "g"),
                              **COMMON))
    r2 = train(FinetuneConfig(task="text-classification", train=str(data / "train.csv"),
                              validation=str(data / "dev.csv"), text_column="review", label_column="sentiment",
                              model=str(tiny_ckpt), out=str(tmp_path / "c"), **COMMON))
    assert r1["runs"][0]["best"]["dev"]["accuracy"] == r2["runs"][0]["best"]["validation"]["accuracy"]
    w1 = load_file(tmp_path / "g" / "seed-3" / "best" / "model.safetensors")
    w2 = load_file(tmp_path / "c" / "seed-3" / "best" / "model.safetensors")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    cfg = json.loads((tmp_path / "c" / "seed-3" / "best" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"} and cfg["label2id"]["positive"] == 1
    assert cfg["problem_type"] == "single_label_classification"
    meta = json.loads((tmp_path / "c" / "seed-3" / "best" / "finetune.json").read_text())
    assert meta["columns"] == {"text": "review", "text_pair": None, "label": "sentiment"}
    report = json.loads((tmp_path / "c" / "seed-3" / "best_report.json").read_text())["validation"]
    assert set(report["per_class"]) == {"negative", "positive"} and len(report["confusion_matrix"]) == 2
    assert (tmp_path / "c" / "seed-3" / "best_confusion_validation.png").stat().st_size > 1000
    assert r2["hparams"]["majority_baseline"][0] in ("negative", "positive")


def test_evaluate_a_file_with_the_trained_columns(tiny_ckpt, data, tmp_path, capsys):
    out = tmp_path / "run"
    train(FinetuneConfig(task="text-classification", train=str(data / "train.csv"), validation=str(data / "dev.csv"),
                         test=str(data / "dev.csv"), text_column="review", label_column="sentiment",
                         model=str(tiny_ckpt), out=str(out), **{**COMMON, "epochs": 1}))
    run = json.loads((out / "results.json").read_text())["runs"][0]
    recorded = run["best"]["validation"]
    assert run["test"] == pytest.approx(recorded)  # --test: the best model scored once more, here on the same rows
    assert main(["evaluate", "--model", str(out / "seed-3" / "best"), "--validation", str(data / "dev.csv"),
                 "--out", str(tmp_path / "ev")]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {recorded['accuracy']:.4f}" in printed and "macro_f1" in printed
    assert (tmp_path / "ev" / "confusion_validation.png").is_file()
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["validation"]["per_class"]


def test_multi_label_end_to_end_with_a_teacher(tiny_ckpt, data, tmp_path, monkeypatch):
    import datasets

    hf = tmp_path / "hf_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf)  # must stay unused: cache_dir is the run's temp
    kw = dict(task="text-classification", train=str(data / "ml_train.csv"), validation=str(data / "ml_dev.csv"),
              multi_label=True, label_separator="|", model=str(tiny_ckpt), **COMMON)
    teacher = train(FinetuneConfig(out=str(tmp_path / "t"), **kw))
    best = tmp_path / "t" / "seed-3" / "best"
    meta = json.loads((best / "finetune.json").read_text())
    assert meta["label_names"] == ["long", "neg", "pos"] and len(meta["thresholds"]) == 3
    assert json.loads((best / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert {"micro_f1", "macro_f1", "exact_match"} <= set(teacher["runs"][0]["best"]["validation"])
    student = train(FinetuneConfig(out=str(tmp_path / "s"), teacher=str(best), kd_alpha=0.5, **kw))
    assert "teacher_dev" in student["hparams"] and student["runs"][0]["history"]
    assert not hf.exists() or not any(hf.rglob("*"))


def test_multi_label_loss_is_transformers_bce():
    transformers = pytest.importorskip("transformers")
    from conftest import tiny_config

    from mobilebert import MobileBertForSequenceClassification

    cfg = tiny_config(vocab_size=50, num_labels=3, problem_type="multi_label_classification", num_hidden_layers=2)
    ours = MobileBertForSequenceClassification(cfg).eval()
    hf_cfg = transformers.MobileBertConfig(**{k: v for k, v in cfg.to_dict().items() if k != "architectures"})
    theirs = transformers.MobileBertForSequenceClassification(hf_cfg).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    ids = torch.randint(5, 50, (4, 9))
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)
    a = ours(ids, labels=labels)
    b = theirs(input_ids=ids, labels=labels)
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and torch.allclose(a.loss, b.loss, atol=1e-6)
    # alpha == 1 is exactly the model's loss; the soft term is minimal where the student equals the teacher
    assert torch.allclose(multilabel_distillation_loss(a.logits, a.logits, labels, 1.0), a.loss)
    s = torch.randn(4, 3, requires_grad=True)
    loss = multilabel_distillation_loss(s, s.detach() + 0.0, labels, 0.0)
    loss.backward()
    assert s.grad.abs().max() < 1e-6


def test_token_distillation_loss_scores_first_pieces_only():
    logits, teacher = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    labels = torch.tensor([[-100, 1, -100, 2, -100], [-100, 0, 0, -100, -100]])
    hard = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(token_distillation_loss(logits, teacher, labels, 1.0), hard)
    noisy = teacher.clone()
    noisy[labels == -100] = 1e3  # unscored positions never reach the loss
    assert torch.allclose(token_distillation_loss(logits, teacher, labels, 0.3, 2.0),
                          token_distillation_loss(logits, noisy, labels, 0.3, 2.0))


def tagging_set(path: Path, sentences: list[str]) -> Path:
    """CoNLL lines from WikiText sentences: a number is B-NUM, a run of capitalised words not at the start of
    the sentence is one CAP entity (B-CAP, I-CAP...), everything else O."""
    lines = []
    for s in sentences:
        words = s.split()
        prev = "O"
        for i, w in enumerate(words):
            if re.fullmatch(r"\d[\d,.]*", w):
                tag = "B-NUM"
            elif i > 0 and w[:1].isupper():
                tag = "I-CAP" if prev.endswith("CAP") else "B-CAP"
            else:
                tag = "O"
            lines.append(f"{w} {tag}")
            prev = tag
        lines.append("")
    path.write_text("-DOCSTART- O\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_token_classification_end_to_end_with_a_teacher(tiny_ckpt, tmp_path, capsys):
    text = (SAMPLE_DIR / "wikitext_sample.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", text) if 4 <= len(s.split()) <= 30][:160]
    tr = tagging_set(tmp_path / "train.conll", sentences[:120])
    dev = tagging_set(tmp_path / "dev.conll", sentences[120:])
    kw = dict(task="token-classification", train=str(tr), validation=str(dev), model=str(tiny_ckpt), **COMMON)
    teacher = train(FinetuneConfig(out=str(tmp_path / "t"), **kw))
    best = tmp_path / "t" / "seed-3" / "best"
    assert json.loads((best / "finetune.json").read_text())["label_names"] == ["O", "B-CAP", "I-CAP", "B-NUM"]
    m = teacher["runs"][0]["best"]["validation"]
    assert {"precision", "recall", "f1", "accuracy"} <= set(m) and m["score"] == m["f1"]
    losses = [h["train_loss"] for h in teacher["runs"][0]["history"]]
    assert losses[-1] < losses[0]
    assert "per_type" in json.loads((tmp_path / "t" / "seed-3" / "best_report.json").read_text())["validation"]
    student = train(FinetuneConfig(out=str(tmp_path / "s"), teacher=str(best), kd_alpha=0.5, kd_temperature=2.0,
                                   grad_accum=2, **kw))
    assert student["hparams"]["teacher_dev"]["validation"]["f1"] == pytest.approx(m["f1"])
    assert main(["evaluate", "--model", str(best), "--validation", str(dev)]) == 0
    assert f"f1 {m['f1']:.4f}" in capsys.readouterr().out


def test_one_glue_file_is_never_both_train_and_dev(tiny_ckpt, data, tmp_path):
    one = data / "glue" / "sst2_train.tsv"
    with pytest.raises(ValueError, match="same file"):
        glue.check_distinct_splits("sst2", one)
    glue.check_distinct_splits("sst2", data / "glue")  # the folder: two files
    assert main(["finetune", "--task", "sst2", "--data", str(one), "--model", str(tiny_ckpt), "--out",
                 str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_a_csv_through_a_glue_task_points_at_text_classification(tiny_ckpt, data, tmp_path, capsys):
    assert main(["finetune", "--task", "sst2", "--data", str(data / "train.csv"), "--model", str(tiny_ckpt),
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--task text-classification --train" in err and "missing column" not in err


def test_notes_for_a_weak_teacher_and_a_sentence_encoder_at_chance():
    assert teacher_notes("t", {"dev": {"accuracy": 0.48}}, ("1", 0.51))
    assert not teacher_notes("t", {"dev": {"accuracy": 0.80}}, ("1", 0.51))
    results = {"hparams": {"task": "stsb", "model": "m", "sentence_encoder": True},
               "summary": {"dev": {"spearmanr": {"mean": 0.18, "std": 0.0}, "pearson": {"mean": 0.2, "std": 0.0}}}}
    assert any("sentence encoder" in n for n in finetune_notes(results, None))
    results["hparams"]["sentence_encoder"] = False
    assert not any("sentence encoder" in n for n in finetune_notes(results, None))


def test_settings_that_do_not_go_together(tiny_ckpt, data):
    from mobilebert.options import UsageError, check

    base = dict(model=str(tiny_ckpt), out="o")
    for kw, msg in (
        (dict(task="token-classification", train="a", validation="b", text_pair_column="x"), "text_pair_column"),
        (dict(task="text-classification", validation="b"), "training file"),
        (dict(task="text-classification", train="a"), "validation"),
        (dict(task="text-classification", train="a", validation="a"), "same file"),
        (dict(task="sst2", data="d", train="a"), "train: for your own files"),
        (dict(task="sst2"), "reads data"),
        (dict(task="regression", train="a", validation="b", multi_label=True), "multi_label"),
        (dict(task="text-classification", train="a", validation="b", label_separator="|"), "label_separator"),
        (dict(task="text-classification", train="a", validation="b", data="d"), "data:"),
    ):
        with pytest.raises(UsageError, match=msg):
            check(FinetuneConfig(**base, **kw))
    np.testing.assert_equal(check(FinetuneConfig(**base, task="Text_Classification", train="a",
                                                 validation="b")).task, "text-classification")


def test_regression_on_sentence_pairs_detects_the_pair_columns(tiny_ckpt, tmp_path):
    lines = (SAMPLE_DIR / "stsb_dev.tsv").read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    a, b, y = head.index("sentence1"), head.index("sentence2"), head.index("score")
    rows = [[f[a], f[b], f[y]] for f in (line.split("\t") for line in lines[1:])]
    tr = _write_csv(tmp_path / "train.csv", ["sentence1", "sentence2", "similarity"], rows[:200])
    dev = _write_csv(tmp_path / "dev.csv", ["sentence1", "sentence2", "similarity"], rows[200:])
    res = train(FinetuneConfig(task="regression", train=str(tr), validation=str(dev), label_column="similarity",
                               model=str(tiny_ckpt), out=str(tmp_path / "r"), **{**COMMON, "epochs": 1}))
    assert res["hparams"]["columns"] == {"text": "sentence1", "text_pair": "sentence2", "label": "similarity"}
    assert {"pearson", "spearmanr", "score"} <= set(res["runs"][0]["best"]["validation"])
    cfg = json.loads((tmp_path / "r" / "seed-3" / "best" / "config.json").read_text())
    assert cfg["num_labels"] == 1 and cfg["problem_type"] == "regression"


def test_multi_label_in_bf16_with_accumulation_resumes_to_the_same_results(tiny_ckpt, data, tmp_path):
    kw = dict(task="text-classification", train=str(data / "ml_train.csv"), validation=str(data / "ml_dev.csv"),
              multi_label=True, label_separator="|", model=str(tiny_ckpt), out=str(tmp_path),
              **{**COMMON, "precision": "bf16", "grad_accum": 2})
    first = train(FinetuneConfig(**kw))
    assert [h["epoch"] for h in first["runs"][0]["history"]] == [1, 2]
    again = train(FinetuneConfig(**kw, resume=True))
    assert again["runs"] == first["runs"]  # restored from the last checkpoint, nothing trained again


def test_the_cli_detects_columns_and_notes_overlap_and_imbalance(tiny_ckpt, tmp_path, capsys):
    rows = [[t, "spam" if i % 10 == 0 else "ham"] for i, (t, _) in enumerate(_sample("train", 120))]
    tr = _write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    dev = _write_csv(tmp_path / "dev.csv", ["text", "label"], rows[:40])  # every text also in training
    assert main(["finetune", "--task", "text-classification", "--train", str(tr), "--validation", str(dev),
                 "--model", str(tiny_ckpt), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16",
                 "--max-seq-length", "32", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "40 of 40 validation texts also appear in the training file" in out
    assert "90.0% of the training rows are 'ham'" in out
    meta = json.loads((tmp_path / "run" / "seed-1" / "best" / "finetune.json").read_text())
    assert meta["columns"] == {"text": "text", "text_pair": None, "label": "label"}
    assert meta["label_names"] == ["ham", "spam"]
