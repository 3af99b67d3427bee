"""The user-data files issue 21's targets are measured on, made from what ../shared/data holds.

* ``sst2_train.csv`` / ``sst2_dev.csv``: GLUE SST-2's train.tsv and dev.tsv rewritten as a user would have them:
  columns ``text,label``, labels ``negative`` / ``positive`` (strings), RFC 4180 quoting.
* ``tags_train.conll`` / ``tags_dev.conll``: a silver tagging set from WikiText-2 (train: wiki.valid.raw, dev:
  wiki.test.raw, so no article is in both). Each sentence of 6 to 40 words is tagged by rule, and the model sees it
  lower-cased (the vocabulary is uncased), so only the words, not their case, can give the answer away:
    - a number (``12``, ``1,500``, ``3.5``) is ``B-NUM``;
    - a run of capitalised words that is not at the start of the sentence (proper names: ``Black Sea``,
      ``Homarus gammarus`` is one ``CAP`` then ``O``) is one ``CAP`` entity (``B-CAP I-CAP ...``);
    - everything else is ``O``.
  WikiText's ``@-@`` / ``@,@`` / ``@.@`` joins are undone first, so ``1 @,@ 500`` is the one word ``1,500``.

    python benchmarks/own_data_files.py OUT_DIR [--train-sentences 8000] [--dev-sentences 2000]
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NAMES = ("negative", "positive")
NUMBER = re.compile(r"\d[\d,.]*")


def sst2_csv(split: str, path: Path) -> int:
    """One SST-2 split as ``text,label`` with string labels; returns the row count."""
    rows = 0
    with (SHARED / "glue" / "SST-2" / f"{split}.tsv").open(encoding="utf-8") as src, \
            path.open("w", encoding="utf-8", newline="") as dst:
        w = csv.writer(dst)
        w.writerow(["text", "label"])
        next(src)  # the header: sentence<TAB>label
        for line in src:
            sentence, label = line.rstrip("\n").split("\t")
            w.writerow([sentence.strip(), NAMES[int(label)]])
            rows += 1
    return rows


def wiki_sentences(path: Path, limit: int) -> list[list[str]]:
    """Sentences of 6 to 40 words from WikiText's articles (read as ``mobilebert corpus`` reads them)."""
    from mobilebert.data.instances import wikitext_articles

    out: list[list[str]] = []
    for article in wikitext_articles(path):
        out += [s.split() for s in article if 6 <= len(s.split()) <= 40]
        if len(out) >= limit:
            return out[:limit]
    return out


def tag(words: list[str]) -> list[str]:
    """The rule above: numbers are NUM, capitalised runs after the first word are CAP."""
    tags: list[str] = []
    for i, w in enumerate(words):
        if NUMBER.fullmatch(w):
            t = "B-NUM"
        elif i > 0 and w[:1].isupper():
            t = "I-CAP" if tags and tags[-1].endswith("CAP") else "B-CAP"
        else:
            t = "O"
        tags.append(t)
    return tags


def tagging_file(source: Path, path: Path, limit: int) -> int:
    """A CoNLL file (word, tag per line; blank line between sentences); returns the sentence count."""
    sentences = wiki_sentences(source, limit)
    with path.open("w", encoding="utf-8") as f:
        f.write("-DOCSTART- O\n\n")
        for words in sentences:
            f.writelines(f"{w} {t}\n" for w, t in zip(words, tag(words), strict=True))
            f.write("\n")
    return len(sentences)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--train-sentences", type=int, default=8000, help="tagging training sentences, at most")
    p.add_argument("--dev-sentences", type=int, default=2000, help="tagging validation sentences, at most")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "sst2_train.csv"), ("dev", "sst2_dev.csv")):
        print(f"{args.out / name}: {sst2_csv(split, args.out / name)} rows")
    wiki = SHARED / "corpus" / "wikitext-2-raw"
    for raw, name, limit in (("wiki.valid.raw", "tags_train.conll", args.train_sentences),
                             ("wiki.test.raw", "tags_dev.conll", args.dev_sentences)):
        print(f"{args.out / name}: {tagging_file(wiki / raw, args.out / name, limit)} sentences")


if __name__ == "__main__":
    main()
