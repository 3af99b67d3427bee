"""Pre-training data from text files: MLM + NSP shards and their manifest (``mobilebert prepare-pretraining``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..options import option


@dataclass(kw_only=True)
class PrepareConfig:
    inputs: list[str] = option(factory=list, help="UTF-8 text files or folders (default: the bundled WikiText "
                               "sample)", positional=True)
    out: str = option(help="output folder (shards + manifest.json)", output="file")
    format: str = option("auto", help="lines: one sentence per line, blank line between documents; paragraphs: "
                         "split into sentences; wikitext: ' = Title = ' starts a document",
                         choices=("auto", "lines", "paragraphs", "wikitext"))
    max_seq_length: int = option(128, help="tokens per example, [CLS] and [SEP]s included", at_least=8,
                                 at_most=65535)
    max_predictions: int = option(20, help="max_predictions_per_seq (at most 255 and --max-seq-length)",
                                  at_least=1, at_most=255)
    masked_lm_prob: float = option(0.15, help="share of tokens masked, in (0, 1)", above=0, below=1)
    short_seq_prob: float = option(0.1, help="share of examples made shorter than --max-seq-length, as BERT did",
                                   at_least=0, at_most=1)
    dupe_factor: int = option(1, help="passes over the corpus with fresh pairs and masks", at_least=1)
    whole_word_masking: bool = option(False, help="mask every piece of a word together")
    dynamic_masking: bool = option(False, help="store no masks: readers draw fresh masks every epoch (off: masks "
                                   "are drawn once, here, as BERT did)")
    seed: int = option(12345, help="seed of pairing and masking (output depends on it only, not on --workers)")
    workers: int = option(os.cpu_count() or 1, help="processes (default: all cores)", at_least=1,
                          affects_result=False)
    shard_size: int = option(100_000, help="examples per shard", at_least=1)
    vocab: str | None = option(None, help="a vocab.txt, tokenizer.json or checkpoint folder (default: bundled "
                               "vocab)", path="exists")

    def check(self) -> None:
        if self.max_predictions > self.max_seq_length:
            raise ValueError(f"--max-predictions must be <= --max-seq-length {self.max_seq_length}, got "
                             f"{self.max_predictions}")
        out = Path(self.out).resolve()
        for item in self.inputs:
            if Path(item).resolve() == out or out in Path(item).resolve().parents:
                raise ValueError(f"--out {self.out}: is also an input ({item})")


def main(cfg: PrepareConfig) -> int:
    from ..data.instances import sample_corpus_path
    from ..data.shards import prepare_pretraining
    from ..tokenizer import MobileBertTokenizer

    result = prepare_pretraining(
        cfg.inputs or [sample_corpus_path()], cfg.out, max_seq_length=cfg.max_seq_length,
        short_seq_prob=cfg.short_seq_prob, masked_lm_prob=cfg.masked_lm_prob,
        max_predictions_per_seq=cfg.max_predictions, dupe_factor=cfg.dupe_factor,
        whole_word_masking=cfg.whole_word_masking, dynamic_masking=cfg.dynamic_masking, seed=cfg.seed,
        workers=cfg.workers, shard_size=cfg.shard_size, input_format=cfg.format,
        tokenizer=MobileBertTokenizer.from_pretrained(cfg.vocab))
    c = result.manifest["counts"]
    print(f"{result.out_dir}: {c['examples']} examples in {len(result.manifest['shards'])} shards from "
          f"{c['documents']} documents, {c['tokens']} tokens (IsNext {c['is_next'] / c['examples']:.1%}, "
          f"masked {c['masked'] / max(1, c['maskable']):.1%}, replaced chars {c['replaced_chars']})")
    return 0
