"""Task-specific distillation: the KD losses on hand-computed tensors, alpha = 1 equal to plain fine-tuning
bit for bit, the teacher frozen and outside the gradient, teachers that cannot teach refused in one line."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, tiny_config, write_squad_sample  # noqa: F401
from safetensors.torch import load_file

from mobilebert import MobileBertForPreTraining
from mobilebert.cli import main
from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.data.tasks import TaskSetup
from mobilebert.distill.losses import (
    classification_distillation_loss,
    regression_distillation_loss,
    soft_kl,
    span_distillation_loss,
)
from mobilebert.finetune.load import load_teacher
from mobilebert.recipes.finetune import FinetuneConfig, train
from mobilebert.tokenizer import MobileBertTokenizer

SMALL = dict(lr=1e-3, batch_size=16, max_seq_length=48, max_train_examples=96, max_eval_examples=48)


def _finetune(task: str, data, model, out, teacher=None, **kw) -> dict:
    return train(FinetuneConfig(task=task, data=str(data), model=str(model),
                                out=str(out), teacher=teacher and str(teacher), **kw))


def _softmax(xs: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


# ----------------------------------------------------------------------------- losses by hand
def test_classification_loss_by_hand():
    s, t, labels = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], [[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]], [0, 1]
    alpha, T = 0.3, 2.0
    ce = -sum(math.log(_softmax(row)[y]) for row, y in zip(s, labels, strict=True)) / 2
    kl = 0.0
    for srow, trow in zip(s, t, strict=True):
        p, q = _softmax([x / T for x in trow]), _softmax([x / T for x in srow])
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = alpha * ce + (1 - alpha) * T * T * kl / 2
    got = classification_distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(labels), alpha, T)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # a global-batch denominator: two halves summed equal the whole batch
    halves = sum(classification_distillation_loss(torch.tensor(s[i:i + 1]), torch.tensor(t[i:i + 1]),
                                                  torch.tensor(labels[i:i + 1]), alpha, T, n_sequences=2)
                 for i in range(2))
    assert halves.item() == pytest.approx(expected, rel=1e-6)


def test_regression_loss_by_hand():
    s, t, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [0.0]]), torch.tensor([2.0, 4.0])
    # targets 0.25 * 2 + 0.75 * 3 = 2.75 and 0.25 * 4 + 0.75 * 0 = 1.0
    assert regression_distillation_loss(s, t, y, alpha=0.25).item() == pytest.approx(((1 - 2.75) ** 2 + 1) / 2)
    assert regression_distillation_loss(s, t, y, alpha=0.0).item() == pytest.approx((4 + 4) / 2)


def test_span_loss_by_hand_ignores_padding():
    """Row 0 has 3 real tokens of 4: what the student and the cached teacher hold past them must not matter."""
    start, end = torch.tensor([[1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 0.0, 1.0]]), torch.tensor([[0.0, 3.0, 1.0, 0.0],
                                                                                           [2.0, 0.0, 1.0, 0.0]])
    t_start, t_end = torch.tensor([[0.0, 2.0, 1.0, 9.0], [1.0, 1.0, 0.0, 0.0]]), torch.zeros(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    pos_s, pos_e = torch.tensor([2, 1]), torch.tensor([1, 0])
    alpha, T = 0.5, 1.0

    def kl(srow, trow):
        p, q = _softmax(trow), _softmax(srow)
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))

    real_start, real_end = [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0, 1.0]], [[0.0, 3.0, 1.0], [2.0, 0.0, 1.0, 0.0]]
    ce = -sum(math.log(_softmax(row)[p]) for rows, pos in ((real_start, [2, 1]), (real_end, [1, 0]))
              for row, p in zip(rows, pos, strict=True)) / 2 / 2
    kd = (kl([1.0, 0.0, 2.0], [0.0, 2.0, 1.0]) + kl([0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0])
          + kl([0.0, 3.0, 1.0], [0.0, 0.0, 0.0]) + kl([2.0, 0.0, 1.0, 0.0], [0.0] * 4)) / 2 / 2
    got = span_distillation_loss(start, end, t_start, t_end, pos_s, pos_e, mask, alpha, T)
    assert got.item() == pytest.approx(alpha * ce + (1 - alpha) * kd, rel=1e-6)
    t_start[0, 3], start[0, 3] = -50.0, 9.0  # padding, in the cache and in the student's output
    assert span_distillation_loss(start, end, t_start, t_end, pos_s, pos_e, mask, alpha, T).item() == pytest.approx(
        got.item(), rel=1e-6)
    # without a mask and alpha 1: the model's own loss (mean of start and end cross-entropy over all positions)
    own = (F.cross_entropy(start, pos_s) + F.cross_entropy(end, pos_e)) / 2
    assert span_distillation_loss(start, end, t_start, t_end, pos_s, pos_e, None, 1.0).equal(own)


def test_alpha_one_is_the_models_own_loss_and_the_teacher_gets_no_gradient():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1, 0])
    assert classification_distillation_loss(s, t, y, alpha=1.0).equal(F.cross_entropy(s, y))
    r, rt, ry = torch.randn(5, 1), torch.randn(5, 1), torch.randn(5)
    assert regression_distillation_loss(r, rt, ry, alpha=1.0).equal(F.mse_loss(r.squeeze(-1), ry))
    classification_distillation_loss(s, t, y, alpha=0.2, temperature=3.0).backward()
    assert s.grad is not None and t.grad is None
    assert soft_kl(s.detach(), s.detach(), 4.0).abs().item() < 1e-6  # KL of a distribution with itself


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def teacher(tiny_ckpt, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("teacher")
    _finetune("sst2", SAMPLE_DIR, tiny_ckpt, out, epochs=1, seeds=[7], **SMALL)
    return out / "seed-7" / "best"


def _weights(run_dir):
    return load_file(str(run_dir / "seed-1" / "best" / "model.safetensors"))


def test_alpha_one_equals_plain_finetuning_bit_for_bit(tiny_ckpt, teacher, tmp_path):  # noqa: F811
    plain = _finetune("sst2", SAMPLE_DIR, tiny_ckpt, tmp_path / "plain", epochs=1, seeds=[1], **SMALL)
    kd = _finetune("sst2", SAMPLE_DIR, tiny_ckpt, tmp_path / "kd", epochs=1, seeds=[1], teacher=teacher,
                  kd_alpha=1.0, **SMALL)
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "kd")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert plain["runs"][0]["history"][0]["train_loss"] == kd["runs"][0]["history"][0]["train_loss"]
    # the teacher was scored on dev once, as evaluate() scores it
    teacher_acc = json.loads((teacher.parent.parent / "results.json").read_text())["runs"][0]["best"]["dev"]
    assert kd["hparams"]["teacher_dev"]["dev"]["accuracy"] == pytest.approx(teacher_acc["accuracy"])


def test_teacher_term_changes_training_and_dropout_is_saved(tiny_ckpt, teacher, tmp_path):  # noqa: F811
    plain = _finetune("sst2", SAMPLE_DIR, tiny_ckpt, tmp_path / "plain", epochs=1, seeds=[1], dropout=0.0, **SMALL)
    rc = main(["finetune", "--task", "sst2", "--data", str(SAMPLE_DIR), "--model", str(tiny_ckpt), "--out",
               str(tmp_path / "kd"), "--lr", "1e-3", "--batch-size", "16", "--epochs", "1", "--max-seq-length", "48",
               "--seeds", "1", "--max-train-examples", "96", "--max-eval-examples", "48", "--teacher", str(teacher),
               "--kd-alpha", "0", "--kd-temperature", "2", "--dropout", "0"])
    assert rc == 0
    kd = json.loads((tmp_path / "kd" / "results.json").read_text())
    assert kd["hparams"]["kd_alpha"] == 0.0 and kd["hparams"]["kd_temperature"] == 2.0
    assert kd["runs"][0]["history"][0]["train_loss"] != plain["runs"][0]["history"][0]["train_loss"]
    saved = json.loads((tmp_path / "kd" / "seed-1" / "best" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == saved["classifier_dropout"] == 0.0


def test_teacher_is_frozen_in_eval_mode(teacher):
    model = load_teacher(TaskSetup("sst2", max_seq_length=48), teacher, MobileBertTokenizer.from_pretrained(teacher))
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_teachers_that_cannot_teach_are_refused_in_one_line(tiny_ckpt, teacher, tmp_path, capsys):  # noqa: F811
    with pytest.raises(ValueError, match="fine-tuned for sst2, not cola"):
        _finetune("cola", SAMPLE_DIR, tiny_ckpt, tmp_path / "o", teacher=teacher)
    with pytest.raises(ValueError, match="no trained sst2 head"):  # a pre-training checkpoint
        _finetune("sst2", SAMPLE_DIR, tiny_ckpt, tmp_path / "o", teacher=tiny_ckpt)
    base = ["finetune", "--data", str(SAMPLE_DIR), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o")]
    other = tmp_path / "other-vocab"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    (other).mkdir()
    (other / "vocab.txt").write_text("\n".join(vocab) + "\n")
    MobileBertForPreTraining(tiny_config(vocab_size=len(vocab), **TINY)).save_pretrained(other)
    assert main([*base, "--task", "sst2", "--teacher", str(other)]) == 2
    err = capsys.readouterr().err
    assert "tokenizer differs from the student's" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--task", "sst2", "--teacher", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "--teacher" in err and "checkpoint folder" in err
    assert main([*base, "--task", "sst2", "--kd-alpha", "1.5", "--teacher", str(teacher)]) == 2
    assert "--kd-alpha must be in [0, 1]" in capsys.readouterr().err


def test_squad_teacher_logits_are_cached_per_real_token_and_distil(tiny_ckpt, tmp_path):  # noqa: F811
    from mobilebert.data.finetuning import load_train_data
    from mobilebert.finetune.module import teacher_logits

    write_squad_sample(tmp_path)
    args = dict(lr=1e-3, batch_size=2, epochs=1, max_seq_length=32, doc_stride=8, max_query_length=8, seeds=[1])
    _finetune("squad", tmp_path, tiny_ckpt, tmp_path / "teacher", **args)
    teacher_dir = tmp_path / "teacher" / "seed-1" / "best"
    setup = TaskSetup("squad", 32, 8, 8)
    tok = MobileBertTokenizer.from_pretrained(teacher_dir)
    enc = load_train_data(setup, tmp_path, tok)
    model = load_teacher(setup, teacher_dir, tok)
    cached = teacher_logits(model, enc, batch_size=3)
    for row, ids, types in zip(cached, enc.input_ids, enc.token_type_ids, strict=True):  # each window alone
        out = model(torch.tensor([ids]), token_type_ids=torch.tensor([types]))
        assert row.shape == (2, len(ids))
        torch.testing.assert_close(row, torch.stack([out.start_logits[0], out.end_logits[0]]), atol=1e-5, rtol=1e-5)
    kd = _finetune("squad", tmp_path, tiny_ckpt, tmp_path / "kd", teacher=teacher_dir, kd_alpha=0.5, **args)
    assert kd["hparams"]["teacher_dev"]["dev"]["total"] == 2 and kd["runs"][0]["history"][0]["train_loss"] > 0


# ----------------------------------------------------------------------------- intermediate transfer
def test_intermediate_terms_are_zero_for_a_student_equal_to_its_teacher(teacher):
    from mobilebert.distill.losses import TransferMap
    from mobilebert.finetune.module import FinetuneModule

    t = load_teacher(TaskSetup("sst2", max_seq_length=48), teacher, MobileBertTokenizer.from_pretrained(teacher))
    student = type(t).from_pretrained(teacher).eval()
    module = FinetuneModule(student, False, 0.5, 2.0, t, TransferMap.build(t.config, student.config))
    ids = torch.randint(5, t.config.vocab_size, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
             "labels": torch.tensor([0, 1, 1]), "teacher": torch.randn(3, 2)}
    terms = module(batch)
    assert set(terms) == {"task", "hidden", "att"}
    assert terms["hidden"].item() < 1e-10 and abs(terms["att"].item()) < 1e-6
    with torch.no_grad():  # a student that differs from its teacher: only the student learns
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    terms = module(batch)
    (terms["hidden"] + terms["att"]).backward()
    assert terms["hidden"].item() > 1e-6
    assert all(p.grad is None for p in t.parameters()) and not t.training
    assert any(p.grad is not None for p in student.parameters())
    assert not any(k.startswith("_teacher") for k in module.state_dict())  # the teacher is never checkpointed


def test_intermediate_transfer_trains_logs_its_terms_and_projects_other_widths(tiny_ckpt, teacher, tmp_path):  # noqa: F811
    kd = _finetune("sst2", SAMPLE_DIR, tiny_ckpt, tmp_path / "kd", epochs=1, seeds=[1], teacher=teacher,
                  kd_alpha=0.5, **SMALL)
    mid = _finetune("sst2", SAMPLE_DIR, tiny_ckpt, tmp_path / "mid", epochs=1, seeds=[1], teacher=teacher,
                   kd_alpha=0.5, kd_hidden=1.0, kd_attention=1.0, **SMALL)
    assert mid["hparams"]["kd_hidden"] == 1.0 and mid["hparams"]["kd_attention"] == 1.0
    assert mid["runs"][0]["history"][0]["train_loss"] != kd["runs"][0]["history"][0]["train_loss"]
    logged = [json.loads(line) for line in (tmp_path / "mid" / "seed-1" / "metrics.jsonl").read_text().splitlines()]
    hidden = [r["loss/hidden"] for r in logged if "loss/hidden" in r]
    assert len(hidden) >= 2 and all(math.isfinite(h) for h in hidden) and hidden[-1] < hidden[0]
    assert all("loss/att" in r for r in logged if "loss/hidden" in r)
    # a wider student: a learned projection per layer, trained and left out of the saved student
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "vocab.txt").write_text((tiny_ckpt / "vocab.txt").read_text())
    vocab = len((tiny_ckpt / "vocab.txt").read_text().split())
    MobileBertForPreTraining(tiny_config(vocab_size=vocab, **{**TINY, "hidden_size": 96})).save_pretrained(wide)
    _finetune("sst2", SAMPLE_DIR, wide, tmp_path / "w", epochs=1, seeds=[1], teacher=teacher, kd_hidden=1.0, **SMALL)
    saved = _weights(tmp_path / "w")
    assert not any("proj" in k for k in saved)
    logged = [json.loads(line) for line in (tmp_path / "w" / "seed-1" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/hidden" in r for r in logged) and not any("loss/att" in r for r in logged)  # only what is weighed
    ckpt = next((tmp_path / "w" / "seed-1" / "checkpoints").rglob("*.pt"), None)
    assert ckpt is not None and any(k.startswith("transfer.proj") for k in torch.load(ckpt, weights_only=False)["model"])


def test_intermediate_transfer_is_refused_in_one_line_when_it_cannot_run(tiny_ckpt, teacher, tmp_path, capsys):  # noqa: F811
    base = ["finetune", "--task", "sst2", "--data", str(SAMPLE_DIR), "--model", str(tiny_ckpt), "--out",
            str(tmp_path / "o")]
    assert main([*base, "--kd-hidden", "1"]) == 2
    err = capsys.readouterr().err
    assert "--kd-hidden needs a --teacher" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--teacher", str(teacher), "--kd-attention", "-1"]) == 2
    assert "--kd-attention" in capsys.readouterr().err
    deep = tmp_path / "deep"  # 3 layers against the teacher's 2: no uniform map
    deep.mkdir()
    (deep / "vocab.txt").write_text((tiny_ckpt / "vocab.txt").read_text())
    vocab = len((tiny_ckpt / "vocab.txt").read_text().split())
    MobileBertForPreTraining(tiny_config(vocab_size=vocab, num_hidden_layers=3, **TINY)).save_pretrained(deep)
    assert main([*base[:6], str(deep), *base[7:], "--teacher", str(teacher), "--kd-hidden", "1"]) == 2
    err = capsys.readouterr().err
    assert "layers but the teacher only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
