"""int8 keeps accuracy: a small NoNorm/ReLU MobileBERT trained here on the bundled SST-2 sample, then
dynamically quantized (ONNX Runtime and PyTorch), must stay within 1 point of fp32 on the 872 dev sentences."""

from __future__ import annotations

import csv
from collections import Counter
from importlib import resources

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from mobilebert.deploy.onnx import OnnxModel, export_onnx
from mobilebert.deploy.quantize import quantize_torch
from mobilebert.modeling import MobileBertForSequenceClassification

pytest.importorskip("onnxruntime")
SEQ = 32


def read_tsv(name: str) -> list[tuple[str, int]]:
    path = resources.files("mobilebert") / "assets" / "sample" / name
    if not path.is_file():
        pytest.skip(f"{name} sample not bundled")
    with path.open(encoding="utf-8") as f:
        return [(r["sentence"], int(r["label"])) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def encode(rows, vocab: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Word-level ids ([CLS]=1 first, unknown=2, [PAD]=0) - enough for a sentiment signal, no tokenizer needed."""
    ids = torch.zeros(len(rows), SEQ, dtype=torch.long)
    for i, (text, _) in enumerate(rows):
        toks = [1] + [vocab.get(w, 2) for w in text.lower().split()][: SEQ - 1]
        ids[i, : len(toks)] = torch.tensor(toks)
    return ids, (ids != 0).long(), torch.tensor([y for _, y in rows])


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    train, dev = read_tsv("sst2_train.tsv"), read_tsv("sst2_dev.tsv")
    words = Counter(w for text, _ in train for w in text.lower().split())
    vocab = {w: i + 3 for i, (w, _) in enumerate(words.most_common(4000))}
    config = tiny_config("mobilebert", vocab_size=len(vocab) + 3, hidden_size=128, embedding_size=32,
                         intra_bottleneck_size=32, intermediate_size=64, num_attention_heads=2,
                         max_position_embeddings=SEQ, attention_probs_dropout_prob=0.0)
    model = MobileBertForSequenceClassification(config)
    x, m, y = encode(train, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    for _epoch in range(3):
        for idx in torch.randperm(len(y)).split(64):
            loss = F.cross_entropy(model(x[idx], m[idx]).logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), encode(dev, vocab)


def accuracy(fn, data) -> float:
    x, m, y = data
    with torch.no_grad():
        logits = torch.cat([fn(input_ids=x[i:i + 128], attention_mask=m[i:i + 128]).logits
                            for i in range(0, len(y), 128)])
    return float((logits.argmax(-1) == y).float().mean())


@pytest.mark.slow  # trains a small model, then scores the dev sample in three backends
def test_int8_within_one_point_of_fp32(trained, tmp_path):
    model, dev = trained
    fp32 = accuracy(model, dev)
    assert fp32 > 0.6, f"the fp32 model did not learn (dev accuracy {fp32:.3f}); the int8 check would be vacuous"
    export_onnx(model, tmp_path / "onnx", int8=True)
    ort8 = accuracy(OnnxModel(tmp_path / "onnx", int8=True), dev)
    torch8 = accuracy(quantize_torch(model), dev)
    print(f"SST-2 dev accuracy: fp32 {fp32:.4f}, ORT int8 {ort8:.4f}, torch int8 {torch8:.4f}")
    assert abs(ort8 - fp32) <= 0.01
    assert abs(torch8 - fp32) <= 0.01
