"""Token classification: words and their tags -> word pieces with labels, and predictions -> entities in text.

Training: each word's tag goes on its first word piece; the other pieces, ``[CLS]``, ``[SEP]`` and padding get
-100, which the loss ignores (transformers' ``run_ner`` default). Scoring reads the prediction of each word's
first piece back onto the word (``word_predictions``), so metrics are per word, never per piece; words cut off
by the sequence length count as ``O`` predictions (their entities are missed, not dropped from the score).

Raw text (``predict``): the text is split into words as CoNLL-2003 tokenises (``split_words``), each word keeps
its character span, a text longer than the sequence length is read in overlapping windows (``encode_text``), and the entities found in the word tags (seqeval's chunking, ``metrics.entity_spans``) come
back as ``{"type", "start", "end", "text"}`` with ``text == original[start:end]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..tokenizer import MobileBertTokenizer
from .metrics import entity_spans

IGNORE = -100  # label of positions the loss skips (F.cross_entropy's ignore_index)


@dataclass
class TaggedEncoding:
    """Unpadded model inputs for sentences of words; ``labels`` is None when no tags were given."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    word_ids: list[list[int | None]]  # per piece: index of its word, None for [CLS]/[SEP]
    labels: list[list[int]] | None = None
    truncated: int = 0  # sentences whose last word(s) did not fit in max_length
    unpieced: int = 0  # words the tokenizer turned into no piece at all (e.g. only control characters)
    n_words: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def add(self, tokenizer: MobileBertTokenizer, ids: Sequence[int], word_ids: Sequence[int | None],
            n_words: int) -> None:
        """One row: ``[CLS] pieces [SEP]``, token types 0, no word for the special tokens."""
        self.input_ids.append([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id])
        self.token_type_ids.append([0] * (len(ids) + 2))
        self.word_ids.append([None, *word_ids, None])
        self.n_words.append(n_words)


def _word_pieces(tokenizer: MobileBertTokenizer, words: Sequence[Sequence[str]], max_length: int) -> list:
    """Each sentence's word pieces (with their word ids), no special tokens; ``max_length`` checked."""
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 ([CLS], a piece, [SEP]), got {max_length}")
    # encode_batch, not encode_batch_fast: the fast path computes no offsets, hence no word ids.
    return tokenizer.backend.encode_batch([list(w) for w in words], is_pretokenized=True, add_special_tokens=False)


def encode_tagged(tokenizer: MobileBertTokenizer, words: Sequence[Sequence[str]],
                  tags: Sequence[Sequence[int]] | None = None, max_length: int = 128) -> TaggedEncoding:
    """``[CLS] pieces [SEP]`` per sentence, at most ``max_length`` ids; with ``tags`` (ids, one per word), labels
    with each word's tag on its first piece and -100 elsewhere."""
    if tags is not None and len(tags) != len(words):
        raise ValueError(f"{len(words)} sentences but {len(tags)} tag lists")
    encodings = _word_pieces(tokenizer, words, max_length)
    out = TaggedEncoding([], [], [], [] if tags is not None else None)
    room = max_length - 2
    for i, enc in enumerate(encodings):
        n = len(words[i])
        out.truncated += len(enc.ids) > room
        out.unpieced += n - len(set(enc.word_ids))
        out.add(tokenizer, enc.ids[:room], enc.word_ids[:room], n)
        if tags is not None:
            if len(tags[i]) != n:
                raise ValueError(f"sentence {i}: {n} words but {len(tags[i])} tags")
            out.labels.append(first_piece_labels(out.word_ids[-1], tags[i]))
    return out


def first_piece_labels(word_ids: Sequence[int | None], tags: Sequence[int]) -> list[int]:
    """Per piece: the word's tag on its first piece, -100 on the rest and on special tokens."""
    labels, prev = [], None
    for w in word_ids:
        labels.append(IGNORE if w is None or w == prev else tags[w])
        prev = w
    return labels


def word_predictions(piece_predictions: Sequence[int], word_ids: Sequence[int | None], n_words: int,
                     fill: int) -> list[int]:
    """Per word: the prediction at its first piece; ``fill`` (the id of ``O``) for words with no piece in the
    sequence (cut off by max_length, or no piece at all)."""
    out = [fill] * n_words
    seen: set[int] = set()
    for p, w in zip(piece_predictions, word_ids, strict=False):
        if w is not None and w not in seen:
            out[w] = int(p)
            seen.add(w)
    return out


# Leading / trailing punctuation split off a whitespace token, as CoNLL-2003 tokenises ("Paris," -> "Paris" ",").
_WORD = re.compile(r"\S+")
_LEAD = "\"'([{«“‘"
_TRAIL = ",;:!?\"')]}»”’"


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text``: whitespace tokens with leading quotes/brackets and trailing
    punctuation split off as words of their own; a final ``.`` too, unless the word is an abbreviation with
    another ``.`` in it (``U.S.``) or a single letter (``J.``)."""
    spans: list[tuple[int, int]] = []
    for m in _WORD.finditer(text):
        s, e = m.span()
        head: list[tuple[int, int]] = []
        while s < e - 1 and text[s] in _LEAD:
            head.append((s, s + 1))
            s += 1
        tail: list[tuple[int, int]] = []
        while e - 1 > s and (text[e - 1] in _TRAIL
                             or (text[e - 1] == "." and "." not in text[s:e - 1] and e - 1 - s > 1)):
            tail.append((e - 1, e))
            e -= 1
        spans += [*head, (s, e), *reversed(tail)]
    return spans


@dataclass
class TextWindows:
    """Raw texts as model rows: a text longer than the sequence length becomes several overlapping windows."""

    rows: TaggedEncoding  # one row per window; its word ids index the whole text's words
    text_of_row: list[int]  # which text each row belongs to
    spans: list[list[tuple[int, int]]]  # each text's word spans (characters)


def encode_text(tokenizer: MobileBertTokenizer, texts: Sequence[str], max_length: int = 128) -> TextWindows:
    """Raw texts -> model rows for ``predict``; empty texts give ``[CLS] [SEP]``.

    A text whose pieces do not fit is read in windows of ``max_length - 2`` pieces that overlap by a quarter and
    start at a word's first piece, so every word is seen, with context on both sides where the text has it
    (``merge_windows`` takes each word from the window where it sits farthest from an edge)."""
    spans = [split_words(t) for t in texts]
    words = [[t[s:e] for s, e in sp] for t, sp in zip(texts, spans, strict=True)]
    encodings = _word_pieces(tokenizer, words, max_length)
    room = max_length - 2
    step = max(1, room - room // 4)
    rows, owner = TaggedEncoding([], [], []), []
    for i, enc in enumerate(encodings):
        ids, wids = enc.ids, enc.word_ids
        start = 0
        while True:
            end = min(start + room, len(ids))
            rows.add(tokenizer, ids[start:end], wids[start:end], len(words[i]))
            owner.append(i)
            if end == len(ids):
                break
            nxt = start + step  # the next window starts at a word's first piece (never mid-word)
            while start < nxt < end and wids[nxt] == wids[nxt - 1]:
                nxt -= 1
            start = nxt if nxt > start else start + step
    return TextWindows(rows, owner, spans)


def merge_windows(windows: TextWindows, piece_predictions: Sequence[Sequence[int]],
                  piece_scores: Sequence[Sequence[float]], fill: int) -> list[tuple[list[int], list[float]]]:
    """Per text: (word tag ids, word scores), each word read at its first piece in the window where that piece is
    farthest from the window's edges; ``fill`` (``O``) and score 1.0 for words with no piece."""
    best: list[dict[int, tuple[int, int, float]]] = [{} for _ in windows.spans]
    for r, (preds, scores) in enumerate(zip(piece_predictions, piece_scores, strict=True)):
        wids, found = windows.rows.word_ids[r], best[windows.text_of_row[r]]
        seen: set[int] = set()
        for p, w in enumerate(wids):
            if w is None or w in seen:
                continue
            seen.add(w)
            margin = min(p, len(wids) - 1 - p)
            if w not in found or margin > found[w][0]:
                found[w] = (margin, int(preds[p]), float(scores[p]))
    out = []
    for t, found in enumerate(best):
        n = len(windows.spans[t])
        out.append(([found[w][1] if w in found else fill for w in range(n)],
                     [found[w][2] if w in found else 1.0 for w in range(n)]))
    return out


def entities(text: str, spans: Sequence[tuple[int, int]], tags: Sequence[str],
             scores: Sequence[float] | None = None) -> list[dict]:
    """Entities of one text from its word spans and word tags (seqeval's chunking), with character offsets
    into ``text``; ``scores`` (per word) adds each entity's mean score."""
    if len(spans) != len(tags):
        raise ValueError(f"{len(spans)} words but {len(tags)} tags")
    out = []
    for kind, first, last in entity_spans(list(tags)):
        start, end = spans[first][0], spans[last][1]
        item = {"type": kind, "start": start, "end": end, "text": text[start:end]}
        if scores is not None:
            item["score"] = float(sum(scores[first:last + 1]) / (last + 1 - first))
        out.append(item)
    return out
