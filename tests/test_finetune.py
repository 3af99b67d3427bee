"""Fine-tuning end to end on CPU with a tiny model: SST-2 (through the CLI), STS-B (regression, from a
checkpoint with another head), SQuAD; then evaluate and predict on what was saved."""

from __future__ import annotations

import json
import random
import re

import pytest
from conftest import write_squad_sample

from mobilebert.cli import main
from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.finetune.evaluate import evaluate_checkpoint
from mobilebert.finetune.load import load_finetuned
from mobilebert.finetune.predict import predict
from mobilebert.recipes.finetune import FinetuneConfig, train
from mobilebert.tokenizer import MobileBertTokenizer
from mobilebert.train.metrics import read_metrics


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
    assert [r["prediction"] in ("negative", "positive") for r in rows] == [True, True]  # readable SST-2 names
    assert all(abs(sum(p for _, p in r["top"]) - 1) < 1e-5 for r in rows)
    inputs = tmp_path / "in.txt"
    inputs.write_text("a gripping , moving film .\n\nboring .\n")
    assert main(["predict", "--model", str(best), "--file", str(inputs)]) == 0
    lines = [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 3 and lines[0].split("\t")[0] in ("negative", "positive")  # one row per line (a note may
    # say the tiny model is at chance; another that line 2 is empty)
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
    results = train(FinetuneConfig(task="stsb", data=str(tmp_path), model=str(sst2_run / "seed-1" / "best"),
                                   out=str(out), lr=1e-3,
                                   batch_size=16, epochs=2, max_seq_length=64, seeds=[3]))
    dev = results["runs"][0]["best"]["dev"]
    assert set(dev) == {"pearson", "spearmanr", "score"} and -1 <= dev["pearson"] <= 1
    model, _, setup = load_finetuned(out / "seed-3" / "best")
    assert setup.task == "stsb" and model.config.num_labels == 1 and model.classifier.out_features == 1
    assert isinstance(predict(out / "seed-3" / "best", [("a cat", "a cat")])[0]["prediction"], float)


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
    results = train(FinetuneConfig(task="squad", data=str(tmp_path), model=str(tiny_ckpt),
                                   out=str(out), lr=1e-3, batch_size=2, epochs=2,
                                   max_seq_length=32, doc_stride=8, max_query_length=8, seeds=[1]))
    dev = results["runs"][0]["best"]["dev"]
    assert {"exact", "f1", "total"} <= set(dev) and dev["total"] == 3
    (row,) = predict(out / "seed-1" / "best", [("who has a dog ?", context)], top_k=3)
    assert row["prediction"] in context and 0 < row["score"] <= 1


def test_head_reuse_rules(sst2_run):
    """Same label set: the fine-tuned head is kept; a 3-label task gets a fresh head."""
    from mobilebert.data.tasks import TaskSetup
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
    assert "unknown task 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 1e-4\nlearning_rate: 3\n")
    assert main(["finetune", "--task", "sst2", "--data", str(tmp_path), "--model", str(tmp_path),
                 "--out", str(tmp_path), "--config", str(bad)]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the record of a run
def test_a_dev_subset_is_said_in_results_and_summary(sst2_run):
    from mobilebert.checkpoint import inspect
    from mobilebert.recipes.finetune import format_summary

    results = json.loads((sst2_run / "results.json").read_text())
    assert results["hparams"]["eval_examples"] == {"dev": 100} and results["hparams"]["eval_subset"] is True
    assert "dev: accuracy" in format_summary(results) and "first 100 examples only: a subset" in format_summary(results)
    info = inspect(sst2_run / "seed-1" / "best")
    assert (info.task, info.head, info.max_seq_length) == ("sst2", "classifier", 48)


def test_resume_refuses_other_settings_and_adds_seeds(tiny_ckpt, tmp_path, capsys):
    from mobilebert.options import UsageError
    from mobilebert.recipes.finetune import run

    def cfg(**kw) -> FinetuneConfig:
        base = dict(lr=1e-3, batch_size=16, epochs=1, max_seq_length=32, max_train_examples=32,
                    max_eval_examples=16, seeds=[1])
        return FinetuneConfig(task="sst2", data=str(SAMPLE_DIR), model=str(tiny_ckpt),
                              out=str(tmp_path), **{**base, **kw})

    first = train(cfg())
    with pytest.raises(UsageError, match=r"settings differ .*\(lr 0\.001 -> 0\.0001, epochs 1 -> 2\)"):
        train(cfg(lr=1e-4, epochs=2, resume=True))
    assert json.loads((tmp_path / "results.json").read_text()) == first  # the record is untouched
    again = run(cfg(seeds=[42], resume=True, log_every=5))  # another seed list adds to the run
    assert [r["seed"] for r in again["runs"]] == [1, 42] and again["runs"][0] == first["runs"][0]
    assert again["hparams"]["seeds"] == [1, 42] and "2 seed(s) (1, 42)" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["hparams"]["seeds"] == [1, 42]
    assert "- 1\n- 42\n" in (tmp_path / "config.yaml").read_text()
    capsys.readouterr()
    flags = ["--lr", "1e-3", "--batch-size", "16", "--epochs", "1", "--max-seq-length", "40",  # 32 before
             "--max-train-examples", "32", "--max-eval-examples", "16", "--seeds", "1"]
    assert main(["finetune", "--task", "sst2", "--data", str(SAMPLE_DIR), "--model", str(tiny_ckpt), "--out",
                 str(tmp_path), "--resume", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "max_seq_length 32 -> 40" in err and len(err.splitlines()) == 1


def test_config_relations_are_checked_in_one_place(tmp_path):
    from mobilebert.options import UsageError, load

    need = {"task": "SST-2", "data": "d", "model": "m", "out": "o"}
    assert load(FinetuneConfig, values=need).task == "sst2"
    for extra, message in (({"kd_hidden": 1.0}, "kd_hidden needs a teacher"),
                           ({"batch_size": 30, "grad_accum": 4}, "batch_size 30 is not divisible by grad_accum 4"),
                           ({"seeds": [1, 1]}, "a seed is repeated"), ({"kd_alpha": 2}, "kd_alpha must be in [0, 1], got 2"),
                           ({"task": "nope"}, "unknown task 'nope'"), ({"dropout": 1.0}, "dropout must be in [0, 1), got 1")):
        with pytest.raises(UsageError, match=re.escape(message)):
            load(FinetuneConfig, values={**need, **extra})
    from mobilebert.recipes.evaluate import EvaluateConfig
    from mobilebert.recipes.predict import PredictConfig

    for cls in (EvaluateConfig, PredictConfig):  # the same task names everywhere
        assert load(cls, values={"model": "m", "data": "d", "task": "squad-v2"} if cls is EvaluateConfig
                    else {"model": "m", "task": "squad-v2", "texts": ["a"]}).task == "squad2"
        with pytest.raises(UsageError, match="unknown task 'nope'; choose from .*, squad, squad2"):
            load(cls, values={"model": "m", "data": "d", "task": "nope"} if cls is EvaluateConfig
                 else {"model": "m", "task": "nope", "texts": ["a"]})


def test_squad_is_scored_the_same_in_training_and_by_evaluate(tiny_ckpt, tmp_path):
    """One decoding + metrics: the score kept during training is the score `evaluate` gives the saved model."""
    write_squad_sample(tmp_path)
    res = train(FinetuneConfig(task="squad", data=str(tmp_path), model=str(tiny_ckpt),
                               out=str(tmp_path / "out"), lr=1e-3, batch_size=2,
                               epochs=1, max_seq_length=32, doc_stride=8, max_query_length=8, seeds=[1]))
    again = evaluate_checkpoint(tmp_path / "out" / "seed-1" / "best", tmp_path)["dev"]
    assert again == pytest.approx(res["runs"][0]["best"]["dev"])


def test_evaluate_and_predict_recipes(sst2_run, tmp_path, capsys):
    from mobilebert.options import UsageError, load
    from mobilebert.recipes.evaluate import EvaluateConfig
    from mobilebert.recipes.evaluate import run as evaluate_run
    from mobilebert.recipes.predict import PredictConfig
    from mobilebert.recipes.predict import run as predict_run

    best = str(sst2_run / "seed-1" / "best")
    recorded = json.loads((sst2_run / "results.json").read_text())["runs"][0]["best"]["dev"]
    evaluate_run(EvaluateConfig(model=best, data=str(SAMPLE_DIR), limit=100))
    assert f"accuracy {recorded['accuracy']:.4f}" in capsys.readouterr().out
    inputs = tmp_path / "in.txt"
    inputs.write_text("a gripping , moving film .\n\nboring .\n")
    rows = predict_run(load(PredictConfig, values={"model": best, "texts": ["dull ."], "file": str(inputs)}))
    assert [r["text"] for r in rows] == ["dull .", "a gripping , moving film .", "", "boring ."]  # line i: row i
    out = capsys.readouterr().out
    printed = [x for x in out.splitlines() if not x.startswith("note:")]
    assert len(printed) == 4 and printed[0].split("\t")[0] in ("negative", "positive")
    assert "note: 1 empty input(s) (first at data row 2 of" in out
    inputs.write_text("one\ta\tb\n")
    with pytest.raises(ValueError, match=r"in\.txt:1: 3 TAB-separated fields, expected 1"):
        predict_run(PredictConfig(model=best, file=str(inputs)))
    with pytest.raises(UsageError, match="one --context per --question"):
        load(PredictConfig, values={"model": best, "question": ["who?"]})


def test_onnx_accuracy_is_the_generic_scoring_path(sst2_run, tmp_path):
    """An ONNX export scored through glue_accuracy gives the PyTorch model's accuracy (fp32)."""
    pytest.importorskip("onnxruntime")
    from mobilebert.deploy.onnx import export_checkpoint
    from mobilebert.finetune.evaluate import glue_accuracy, onnx_glue_accuracy

    best = sst2_run / "seed-1" / "best"
    export_checkpoint(best, tmp_path / "onnx")
    model, _, _ = load_finetuned(best)
    torch_acc = glue_accuracy(model, best, "sst2", SAMPLE_DIR, limit=100)
    recorded = json.loads((sst2_run / "results.json").read_text())["runs"][0]["best"]["dev"]["accuracy"]
    assert torch_acc == pytest.approx(100 * recorded)
    assert onnx_glue_accuracy(tmp_path / "onnx", best, "sst2", SAMPLE_DIR, int8=False, limit=100) == \
        pytest.approx(torch_acc)
