"""Fine-tuning end to end on CPU with a tiny model: SST-2 (through the CLI), STS-B (regression, from a
checkpoint with another head), SQuAD; then evaluate and predict on what was saved."""

from __future__ import annotations

import json
import random

import pytest
from conftest import tiny_config
from tokenizers import pre_tokenizers

from mobilebert import MobileBertForPreTraining
from mobilebert.cli import main
from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.finetune.evaluate import evaluate_checkpoint
from mobilebert.finetune.load import load_finetuned
from mobilebert.finetune.predict import predict
from mobilebert.recipes.finetune import FinetuneConfig, train
from mobilebert.tokenizer import MobileBertTokenizer
from mobilebert.train.metrics import read_metrics

TINY = dict(hidden_size=64, embedding_size=32, intra_bottleneck_size=32, intermediate_size=64,
            num_attention_heads=2, num_feedforward_networks=1, max_position_embeddings=128)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A randomly initialised 2-layer MobileBERT with a word-level vocab of the SST-2 sample (fast)."""
    path = tmp_path_factory.mktemp("tiny")
    words = {w.lower() for e in read_glue("sst2", SAMPLE_DIR, "train", limit=300) + read_glue(
        "sst2", SAMPLE_DIR, "dev", limit=100) for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(e.text_a)}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    MobileBertForPreTraining(tiny_config(vocab_size=len(vocab), **TINY)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sst2_run(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("sst2")
    rc = main(["finetune", "--task", "sst2", "--data", str(SAMPLE_DIR), "--model", str(tiny_ckpt), "--out", str(out),
               "--lr", "1e-3", "--batch-size", "16", "--epochs", "3", "--max-seq-length", "48", "--seeds", "1,2",
               "--max-train-examples", "300", "--max-eval-examples", "100"])
    assert rc == 0
    return out


def test_sst2_finetune_writes_a_loadable_best_checkpoint(sst2_run):
    results = json.loads((sst2_run / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [1, 2] and results["hparams"]["train_examples"] == 300
    for run in results["runs"]:
        losses = [h["train_loss"] for h in run["history"]]
        assert len(losses) == 3 and losses[-1] < losses[0]  # it learns
        best = sst2_run / f"seed-{run['seed']}" / "best"
        for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "finetune.json"):
            assert (best / name).is_file(), name
        assert max(h["dev"]["accuracy"] for h in run["history"]) == run["best"]["dev"]["accuracy"]
        records = read_metrics(sst2_run / f"seed-{run['seed']}" / "metrics.jsonl")
        assert any("loss" in r for r in records) and sum("dev/accuracy" in r for r in records) == 3
    accs = [r["best"]["dev"]["accuracy"] for r in results["runs"]]
    summary = results["summary"]["dev"]["accuracy"]
    assert summary["mean"] == pytest.approx(sum(accs) / 2)
    assert summary["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    assert list((sst2_run / "seed-1").glob("tensorboard/*"))


def test_evaluate_reloads_the_same_scores(sst2_run, tmp_path, capsys):
    best = sst2_run / "seed-1" / "best"
    recorded = json.loads((sst2_run / "results.json").read_text())["runs"][0]["best"]["dev"]
    again = evaluate_checkpoint(best, SAMPLE_DIR, limit=100)["dev"]
    assert again["accuracy"] == pytest.approx(recorded["accuracy"])
    assert main(["evaluate", "--model", str(best), "--data", str(SAMPLE_DIR), "--limit", "100",
                 "--out", str(tmp_path)]) == 0
    assert f"accuracy {recorded['accuracy']:.4f}" in capsys.readouterr().out
    assert (tmp_path / "eval_results.json").is_file()


def test_predict_cli_and_file(sst2_run, tmp_path, capsys):
    best = sst2_run / "seed-1" / "best"
    rows = predict(best, ["a gripping , moving film .", "dull and lifeless ."], top_k=2)
    assert [r["label"] in ("0", "1") for r in rows] == [True, True]
    assert all(abs(sum(p for _, p in r["top"]) - 1) < 1e-5 for r in rows)
    inputs = tmp_path / "in.txt"
    inputs.write_text("a gripping , moving film .\n\nboring .\n")
    assert main(["predict", "--model", str(best), "--file", str(inputs)]) == 0
    lines = [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 2 and lines[0].split("\t")[0] in ("0", "1")  # (a note may say the tiny model is at chance)
    with pytest.raises(ValueError, match="takes single sentences"):
        predict(best, [("a", "b")])


def test_stsb_regression_from_a_checkpoint_with_a_two_label_head(sst2_run, tmp_path):
    """Regression head (num_labels 1) replaces the SST-2 head; scores come out as correlations."""
    sentences = [e.text_a for e in read_glue("sst2", SAMPLE_DIR, "dev", limit=100)]
    rng = random.Random(0)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    for split, n in (("train", 200), ("dev", 60)):
        rows = []
        for i in range(n):
            a = rng.choice(sentences)
            b, score = (a, 5.0) if i % 2 else (rng.choice(sentences), 0.0)
            rows.append(f"{i}\tg\tf\ty\t{i}\tn\tn\t{a}\t{b}\t{score:.3f}")
        (tmp_path / "STS-B").mkdir(exist_ok=True)
        (tmp_path / "STS-B" / f"{split}.tsv").write_text(head + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    results = train(FinetuneConfig("stsb", str(tmp_path), str(sst2_run / "seed-1" / "best"), str(out), lr=1e-3,
                                   batch_size=16, epochs=2, max_seq_length=64, seeds=[3]))
    dev = results["runs"][0]["best"]["dev"]
    assert set(dev) == {"pearson", "spearmanr", "score"} and -1 <= dev["pearson"] <= 1
    model, _, setup = load_finetuned(out / "seed-3" / "best")
    assert setup.task == "stsb" and model.config.num_labels == 1 and model.classifier.out_features == 1
    assert isinstance(predict(out / "seed-3" / "best", [("a cat", "a cat")])[0]["score"], float)


def test_squad_finetune_and_predict(tiny_ckpt, tmp_path):
    context = ("it 's a charming and often affecting journey . the film is a gripping story about a boy "
               "and his dog , told with wit and heart .")
    qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for i, (q, a) in enumerate([("what is the film ?", "a gripping story"), ("who has a dog ?", "a boy"),
                                        ("what is it ?", "a charming and often affecting journey")])]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (tmp_path / name).write_text(json.dumps(data))
    out = tmp_path / "out"
    results = train(FinetuneConfig("squad", str(tmp_path), str(tiny_ckpt), str(out), lr=1e-3, batch_size=2, epochs=2,
                                   max_seq_length=32, doc_stride=8, max_query_length=8, seeds=[1]))
    dev = results["runs"][0]["best"]["dev"]
    assert {"exact", "f1", "total"} <= set(dev) and dev["total"] == 3
    (row,) = predict(out / "seed-1" / "best", [("who has a dog ?", context)], top_k=3)
    assert row["answer"] in context and 0 < row["score"] <= 1


def test_head_reuse_rules(sst2_run):
    """Same label set: the fine-tuned head is kept; a 3-label task gets a fresh head."""
    from mobilebert.data.finetuning import TaskSetup
    from mobilebert.finetune.load import load_task_model

    best = sst2_run / "seed-1" / "best"
    saved = load_task_model(TaskSetup("sst2"), best)
    again = load_task_model(TaskSetup("sst2"), best)
    assert saved.classifier.weight.equal(again.classifier.weight)
    mnli = load_task_model(TaskSetup("mnli"), best)
    assert mnli.classifier.out_features == 3 and mnli.config.id2label[0] == "contradiction"
    assert MobileBertTokenizer.from_pretrained(best).vocab_size < 5000


def test_bad_cli_input_is_one_line(tmp_path, capsys):
    assert main(["finetune", "--task", "nope", "--data", str(tmp_path), "--model", str(tmp_path),
                 "--out", str(tmp_path)]) == 2
    assert "unknown GLUE task 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 1e-4\nlearning_rate: 3\n")
    assert main(["finetune", "--task", "sst2", "--data", str(tmp_path), "--model", str(tmp_path),
                 "--out", str(tmp_path), "--config", str(bad)]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err
