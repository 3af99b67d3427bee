"""What every export is checked against before it is written: the parity probes (one rule for ONNX, the phone
formats, OpenVINO and ``bench``) and, when a labelled set is given, task accuracy against eager PyTorch.

Random token ids, full and right-padded, reach every position, token type and the padding path. But random ids
put a LayerNorm BERT far outside the text it was trained on, where int8 errors grow (fine-tuned MiniLM,
ExecuTorch int8: 0.35 relative on random ids, 0.16 on SST-2 sentences, accuracy -0.1). So when the model reads
BERT's uncased vocabulary (or a tokenizer is given), real sentences (the bundled SST-2 dev sample) are added,
and an int8 file is judged on those sentences alone. Per-token outputs are compared at real tokens only
(:func:`~mobilebert.deploy.onnx.relative_error`): padded positions are read by nothing.

Shapes: dynamic-shape formats (ONNX, OpenVINO) are probed at several (batch, seq) pairs unlike the trace
example; static-shape files (LiteRT, ExecuTorch) at their one exported (batch, seq_len).

Parity catches a broken graph; it cannot say whether int8 kept the answers. That is the accuracy gate's job:
on a labelled set, an export may lose at most ``ACCURACY_DROP`` points against the eager model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from ..config import MobileBertConfig
from ..data.finetuning import batches, encode_glue
from ..data.glue import GlueExample

Probe = dict[str, Tensor]  # input_ids, attention_mask, token_type_ids: (B, T) int64 each
DYNAMIC_SHAPES = ((1, 9, False), (3, 24, True), (2, 61, True), (4, 5, False))  # (batch, seq, padded)
TEXT_SENTENCES = 16  # bundled SST-2 dev sentences per dynamic-shape probe set (8 x batch for static shapes)
ACCURACY_DROP = 1.0  # points of task accuracy an export may lose against eager PyTorch on a labelled set


class ExportError(RuntimeError):
    """The exported model does not reproduce the PyTorch model."""


def random_probe(config: MobileBertConfig, batch: int, seq_len: int, pad: bool, seed: int = 0) -> Probe:
    """Random ids; ``pad``: row b keeps ``(batch - b) / (batch + 1)`` of the sequence (at least one token)."""
    g = torch.Generator().manual_seed(seed)
    seq_len = min(seq_len, config.max_position_embeddings)
    ids = torch.randint(1, config.vocab_size, (batch, seq_len), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        for b in range(batch):
            mask[b, max(1, seq_len * (batch - b) // (batch + 1)):] = 0
        ids = ids * mask  # [PAD] = 0 where masked
    tt = torch.randint(0, config.type_vocab_size, (batch, seq_len), generator=g) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def default_tokenizer(config: MobileBertConfig):
    """BERT's uncased tokenizer when the model's vocab has its size (it reads that vocab), else None."""
    from ..tokenizer import MobileBertTokenizer

    tok = MobileBertTokenizer.default()
    return tok if len(tok) == config.vocab_size else None


def text_probes(config: MobileBertConfig, batch: int | None = None, seq_len: int | None = None,
                tokenizer=None) -> list[Probe]:
    """Bundled SST-2 dev sentences through ``tokenizer`` (default: BERT's uncased one when the model's vocab has
    its size, else none): batches of ``batch`` right-padded to ``seq_len`` (static), or of 4 padded to the
    longest (dynamic)."""
    from ..data.glue import SAMPLE_DIR, read_glue

    tokenizer = tokenizer or default_tokenizer(config)
    if tokenizer is None:
        return []
    step = batch or 4
    n = 8 * batch if batch else TEXT_SENTENCES
    texts = [e.text_a for e in read_glue("sst2", SAMPLE_DIR, "dev", limit=n)]
    limit = min(seq_len or 128, config.max_position_embeddings)
    enc = tokenizer(texts, max_length=limit, truncation=True, padding="max_length" if seq_len else True,
                    return_tensors="pt")
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return [{k: enc[k][i:i + step] for k in keys} for i in range(0, len(texts) - step + 1, step)]


def probe_inputs(config: MobileBertConfig, int8: bool = False, batch: int | None = None, seq_len: int | None = None,
                 tokenizer=None, seed: int = 0) -> list[Probe]:
    """The parity probes of every export: random ids (full and right-padded) plus real sentences where the
    vocabulary is known; int8 files on the sentences alone when there are some. ``batch``/``seq_len`` given:
    that one static shape; else several dynamic shapes."""
    text = text_probes(config, batch, seq_len, tokenizer)
    if int8 and text:
        return text
    if batch and seq_len:
        rand = [random_probe(config, batch, seq_len, pad, seed + i) for i, pad in enumerate((False, True))]
    else:
        rand = [random_probe(config, b, t, pad, seed + i) for i, (b, t, pad) in enumerate(DYNAMIC_SHAPES)]
    return rand + text


@contextmanager
def staged_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A private sibling folder to write an export into; renamed to ``out_dir`` (replacing it) only when the
    block ends without an error, so a failed gate leaves nothing at the destination."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def task_accuracy(model, examples: list[GlueExample], tokenizer, max_seq_length: int = 128,
                  batch_size: int = 32) -> float:
    """Accuracy x100 of a sequence classifier (anything called like the model that returns ``logits``) on
    labelled GLUE-style examples."""
    enc = encode_glue(examples, tokenizer, max_seq_length)
    correct = 0
    with torch.no_grad():
        for ids, mask, types, rows in batches(enc, list(range(len(examples))), batch_size, tokenizer.pad_token_id):
            pred = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.argmax(-1)  # (B,)
            correct += sum(int(p) == examples[r].label for p, r in zip(pred.tolist(), rows, strict=True))
    return 100.0 * correct / max(1, len(examples))


def check_accuracy(reference, candidates: dict, examples: list[GlueExample], tokenizer, max_seq_length: int = 128,
                   where: str = "export") -> dict[str, float]:
    """Accuracy x100 of ``reference`` (key ``"pytorch"``) and of each candidate; :class:`ExportError` naming
    ``where`` when a candidate loses more than ``ACCURACY_DROP`` points."""
    if not examples or any(not isinstance(e.label, int) for e in examples):
        raise ValueError(f"{where}: the accuracy gate needs a labelled classification set")
    acc = {"pytorch": task_accuracy(reference, examples, tokenizer, max_seq_length)}
    for name, model in candidates.items():
        acc[name] = task_accuracy(model, examples, tokenizer, max_seq_length)
        if acc[name] < acc["pytorch"] - ACCURACY_DROP:
            raise ExportError(f"{where}: {name} accuracy {acc[name]:.2f} is more than {ACCURACY_DROP:g} point below "
                              f"PyTorch's {acc['pytorch']:.2f} on {len(examples)} labelled examples; nothing written")
    return acc


__all__ = ["ACCURACY_DROP", "ExportError", "Probe", "check_accuracy", "default_tokenizer", "probe_inputs",
           "random_probe", "staged_dir", "task_accuracy", "text_probes"]
