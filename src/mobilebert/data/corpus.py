"""An unlabeled distillation corpus from the text on this machine: WikiText-2 valid/test, the sentences of
every GLUE *train* split, SQuAD v1.1 contexts and questions, and the bundled samples.

No sentence of any GLUE dev split gets in: those are the evaluation sets, and some of them overlap the sources
(QNLI dev is built from SQuAD v1.1 dev; STS-B repeats sentences across splits). Every candidate sentence is
compared, after light normalisation, with every dev sentence found under the GLUE folder, and dropped on a
match; the counts are returned so the exclusion is visible.

The output is the ``lines`` format of :mod:`.instances` (one sentence per line, a blank line between
documents), which ``prepare_pretraining`` turns into shards. Documents: a WikiText article, a SQuAD paragraph,
one GLUE example (one or two sentences), one SQuAD question.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_path, atomic_write_text
from .glue import SAMPLE_DIR, TASKS, read_glue
from .instances import sample_corpus_path, split_sentences, wikitext_articles
from .shards import prepare_pretraining

log = logging.getLogger(__name__)

WIKITEXT_FILES = ("corpus/wikitext-2-raw/wiki.valid.raw", "corpus/wikitext-2-raw/wiki.test.raw")
SQUAD_FILE = "squad/dev-v1.1.json"
_SPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")


def normalise(sentence: str) -> str:
    """The key two sentences are compared by: lower case, punctuation and spacing dropped (so SST-2's
    tokenised "it 's" and QNLI's raw "it's" meet)."""
    return _NON_WORD.sub("", sentence.lower())


@dataclass
class CorpusStats:
    documents: Counter = field(default_factory=Counter)  # source -> documents written
    sentences: Counter = field(default_factory=Counter)  # source -> sentences written
    dropped_dev: Counter = field(default_factory=Counter)  # source -> sentences dropped as GLUE dev sentences
    duplicates: int = 0  # sentences dropped because an identical sentence was already written
    dev_sentences: int = 0  # distinct GLUE dev sentences held out
    missing: list[str] = field(default_factory=list)  # expected sources not found

    def to_dict(self) -> dict:
        return {"documents": dict(self.documents), "sentences": dict(self.sentences),
                "dropped_dev": dict(self.dropped_dev), "duplicates": self.duplicates,
                "dev_sentences": self.dev_sentences, "missing": self.missing}


def dev_sentences(glue_dir: Path) -> set[str]:
    """Normalised sentences of every GLUE dev split present under ``glue_dir`` (plus the bundled SST-2 dev)."""
    out: set[str] = set()
    for task in TASKS.values():
        for split in task.dev_splits:
            try:
                examples = read_glue(task, glue_dir, split)
            except (FileNotFoundError, ValueError):
                continue
            for ex in examples:
                out.update(normalise(t) for t in (ex.text_a, ex.text_b) if t)
    for ex in read_glue("sst2", SAMPLE_DIR, "dev"):
        out.add(normalise(ex.text_a))
    out.discard("")
    return out


def _glue_documents(glue_dir: Path) -> Iterator[tuple[str, list[str]]]:
    for task in TASKS.values():
        if "train" not in task.files:
            continue
        try:
            examples = read_glue(task, glue_dir, "train", on_bad_label="skip")
        except FileNotFoundError:
            continue
        for ex in examples:
            yield f"glue/{task.name}", [t for t in (ex.text_a, ex.text_b) if t]


def _squad_documents(path: Path) -> Iterator[tuple[str, list[str]]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    for article in data:
        for para in article["paragraphs"]:
            yield "squad/contexts", split_sentences(para["context"])
            for qa in para["qas"]:
                yield "squad/questions", [qa["question"].strip()]


def _sources(data_dir: Path | None, stats: CorpusStats) -> Iterator[tuple[str, list[str]]]:
    seen_wiki: set[Path] = set()
    if data_dir is not None:
        for rel in WIKITEXT_FILES:
            p = data_dir / rel
            if p.is_file():
                seen_wiki.add(p)
                yield from ((f"wikitext/{p.stem}", d) for d in wikitext_articles(p))
            else:
                stats.missing.append(str(p))
        glue = data_dir / "glue"
        if glue.is_dir():
            yield from _glue_documents(glue)
        else:
            stats.missing.append(str(glue))
        squad = data_dir / SQUAD_FILE
        if squad.is_file():
            yield from _squad_documents(squad)
        else:
            stats.missing.append(str(squad))
    # The bundled samples (duplicates of the full files above are dropped sentence by sentence).
    yield from (("sample/wikitext", d) for d in wikitext_articles(sample_corpus_path()))
    for ex in read_glue("sst2", SAMPLE_DIR, "train"):
        yield "sample/sst2", [ex.text_a]


def build_corpus(data_dir: str | Path | None, out_file: str | Path, extra: Iterable[str | Path] = ()) -> CorpusStats:
    """Write the corpus to ``out_file`` (``lines`` format, atomically); returns what went in and what was held
    out. ``data_dir`` is the shared data folder (``corpus/``, ``glue/``, ``squad/``), or None for the bundled
    samples only; ``extra`` adds plain-text files (one sentence per line, blank line between documents)."""
    data_dir = Path(data_dir) if data_dir is not None else None
    if data_dir is not None and not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data folder not found")
    stats = CorpusStats()
    held_out = dev_sentences(data_dir / "glue") if data_dir is not None else dev_sentences(SAMPLE_DIR)
    stats.dev_sentences = len(held_out)
    written: set[str] = set()

    def extra_docs() -> Iterator[tuple[str, list[str]]]:
        for p in map(Path, extra):
            doc: list[str] = []
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    doc.append(line.strip())
                elif doc:
                    yield f"extra/{p.name}", doc
                    doc = []
            if doc:
                yield f"extra/{p.name}", doc

    with atomic_path(Path(out_file)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for source, doc in (*_sources(data_dir, stats), *extra_docs()):
            kept = []
            for sentence in doc:
                sentence = _SPACE.sub(" ", sentence).strip()
                key = normalise(sentence)
                if not key:
                    continue
                if key in held_out:
                    stats.dropped_dev[source] += 1
                elif key in written:
                    stats.duplicates += 1
                else:
                    written.add(key)
                    kept.append(sentence)
            if kept:
                f.write("\n".join(kept) + "\n\n")
                stats.documents[source] += 1
                stats.sentences[source] += len(kept)
    if not stats.sentences:
        raise ValueError(f"{out_file}: no sentence found to write")
    log.info("corpus %s: %d sentences, %d documents; %d GLUE dev sentences held out", out_file,
             sum(stats.sentences.values()), sum(stats.documents.values()), sum(stats.dropped_dev.values()))
    return stats


def prepare_corpus(data_dir: str | Path | None, out_dir: str | Path, max_seq_length: int = 64,
                   dupe_factor: int = 1, seed: int = 12345, workers: int = 1) -> dict:
    """``build_corpus`` into ``out_dir/corpus.txt``, then pre-training shards in ``out_dir/shards`` (masks drawn
    per epoch, so MLM students and clean-input transfer read the same folder); ``out_dir/corpus.json`` keeps
    the counts. Returns them."""
    out = Path(out_dir)
    stats = build_corpus(data_dir, out / "corpus.txt")
    result = prepare_pretraining([out / "corpus.txt"], out / "shards", max_seq_length=max_seq_length,
                                 dupe_factor=dupe_factor, seed=seed, workers=workers, input_format="lines",
                                 dynamic_masking=True)
    info = {**stats.to_dict(), "shards": result.manifest["counts"]}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return info
