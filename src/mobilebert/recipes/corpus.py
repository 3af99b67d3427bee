"""The distillation corpus built from the text on this machine, then its pre-training shards
(``mobilebert corpus``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..options import option


@dataclass
class CorpusConfig:
    out: str = option(help="output folder: corpus.txt, corpus.json (counts) and shards/", output="file")
    data: str | None = option(None, help="the shared data folder (corpus/, glue/, squad/); omit for the bundled "
                              "samples only", path="dir")
    max_seq_length: int = option(64, help="tokens per example", at_least=8)
    dupe_factor: int = option(1, help="passes with fresh pairs and masks", at_least=1)
    seed: int = option(12345, help="example-making seed")
    workers: int = option(os.cpu_count() or 1, help="processes (default: all cores)", at_least=1,
                          affects_result=False)


def main(cfg: CorpusConfig) -> int:
    from ..data.corpus import prepare_corpus

    info = prepare_corpus(cfg.data, cfg.out, cfg.max_seq_length, cfg.dupe_factor, cfg.seed, cfg.workers)
    n, docs = sum(info["sentences"].values()), sum(info["documents"].values())
    print(f"{cfg.out}/corpus.txt: {n} sentences, {docs} documents ({sum(info['dropped_dev'].values())} GLUE dev "
          f"sentences held out, {info['duplicates']} duplicates dropped)")
    print(f"{cfg.out}/shards: {info['shards']['examples']} examples, {info['shards']['tokens']} tokens")
    for m in info["missing"]:
        print(f"note: {m} not found, left out")
    return 0
