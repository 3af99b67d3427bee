"""SQuAD v1.1 / v2.0: reading, windowed features, n-best span decoding, and the official EM/F1.

Pipeline: ``read_squad`` -> ``build_features`` (question truncated to ``max_query_length`` tokens, the
context cut into windows of the remaining length starting every ``doc_stride`` tokens, as BERT does) ->
model start/end logits -> ``decode`` (best span per question over all its windows, mapped back to
characters of the original context through the tokenizer's offsets) -> ``squad_metrics``.

Bad input, nothing dropped silently (counts in the log):
- an answer whose ``answer_start`` does not match its text is moved to the occurrence of the text nearest
  the given offset; with no occurrence the answer is dropped, and a question left with no answer is
  dropped for training (``strict=True`` raises instead);
- contexts longer than a window become several features (windows); questions longer than
  ``max_query_length`` tokens are cut.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- examples
@dataclass
class SquadExample:
    qid: str
    question: str
    context: str
    answers: list[str] = field(default_factory=list)  # gold texts (dev has several)
    starts: list[int] = field(default_factory=list)  # character offset of each gold text in context
    is_impossible: bool = False


def read_squad(path: str | os.PathLike, strict: bool = False, training: bool = False) -> list[SquadExample]:
    """Examples of a SQuAD JSON file (v1.1 or v2.0).

    ``training=True`` drops answerable questions left without a usable answer (counted); evaluation keeps
    every question because every question is scored.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such SQuAD file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a SQuAD JSON file ({type(e).__name__}: {e})") from None
    examples: list[SquadExample] = []
    counts = collections.Counter()
    for article in data:
        for para in article.get("paragraphs", []):
            context = para.get("context")
            if not isinstance(context, str):
                raise ValueError(f"{path}: a paragraph has no context text")
            for qa in para.get("qas", []):
                qid, question = qa.get("id"), qa.get("question")
                if not qid or not isinstance(question, str) or not question.strip():
                    raise ValueError(f"{path}: question {qid!r} has no id or no question text")
                ex = SquadExample(str(qid), question, context, is_impossible=bool(qa.get("is_impossible")))
                for ans in [] if ex.is_impossible else qa.get("answers", []):
                    text, start = ans.get("text", ""), ans.get("answer_start", -1)
                    fixed = locate_answer(context, text, start)
                    if fixed != start and strict:
                        raise ValueError(f"{path}: question {qid}: answer {text!r} is not at offset {start}")
                    if fixed is None:
                        counts["answer(s) whose text is not in the context: dropped"] += 1
                        continue
                    if fixed != start:
                        counts["answer offset(s) not matching the text: moved to its nearest occurrence"] += 1
                    ex.answers.append(text)
                    ex.starts.append(fixed)
                if not ex.is_impossible and not ex.answers:
                    counts["answerable question(s) left without an answer" + (": dropped" if training else "")] += 1
                    if training:
                        continue
                examples.append(ex)
    for what, n in counts.items():
        log.warning("%s: %d %s", path, n, what)
    log.info("%s: %d questions (%d unanswerable)", path, len(examples), sum(e.is_impossible for e in examples))
    return examples


def locate_answer(context: str, text: str, start: int) -> int | None:
    """``start`` when the text is there, else the offset of its occurrence nearest ``start``, else None."""
    if not text:
        return None
    if start >= 0 and context[start:start + len(text)] == text:
        return start
    hits = [m.start() for m in re.finditer(re.escape(text), context)]
    return min(hits, key=lambda h: abs(h - start)) if hits else None


# ----------------------------------------------------------------------------- features
@dataclass
class SquadFeature:
    example_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]  # character span in the context; None outside the context
    max_context: list[bool]  # this window is the one where the token has the most context on both sides
    start_position: int = 0  # gold token positions; 0 ([CLS]) = no answer in this window
    end_position: int = 0


def _backend(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` (from our MobileBertTokenizer or a bare one) with truncation and padding
    off, so that whole contexts come back; a copy when they were on, so the caller's is left alone."""
    tok = getattr(tokenizer, "backend", tokenizer)
    if tok.truncation is None and tok.padding is None:
        return tok
    tok = type(tok).from_str(tok.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


def build_features(examples: Sequence[SquadExample], tokenizer: Any, max_seq_length: int = 384,
                   doc_stride: int = 128, max_query_length: int = 64) -> list[SquadFeature]:
    """Windowed features: ``[CLS] question [SEP] context window [SEP]``; gold positions from the first
    gold answer (0, 0 when the answer is not wholly inside the window, or the question has none)."""
    tok = _backend(tokenizer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer has no [CLS]/[SEP] tokens")
    questions = tok.encode_batch([e.question for e in examples], add_special_tokens=False)
    unique = list(dict.fromkeys(e.context for e in examples))  # questions share paragraphs: encode each once
    encoded = {text: (enc.ids, enc.offsets) for text, enc in
               zip(unique, tok.encode_batch(unique, add_special_tokens=False), strict=True)}
    features: list[SquadFeature] = []
    cut_questions = multi_window = 0
    for i, (ex, q) in enumerate(zip(examples, questions, strict=True)):
        c_ids, c_offsets = encoded[ex.context]  # (the Encoding properties copy on every access)
        q_ids = q.ids[:max_query_length]
        cut_questions += len(q.ids) > max_query_length
        window = max_seq_length - len(q_ids) - 3
        if window < 1:
            raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the context")
        starts = window_starts(len(c_ids), window, doc_stride)
        multi_window += len(starts) > 1
        gold = _gold_tokens(ex, c_offsets)
        owner = max_context_owner(starts, window, len(c_ids))
        prefix = 2 + len(q_ids)  # [CLS] question [SEP]
        for s in starts:
            span = range(s, min(s + window, len(c_ids)))
            f = SquadFeature(
                i, [cls_id, *q_ids, sep_id, *c_ids[span.start:span.stop], sep_id],
                [0] * prefix + [1] * (len(span) + 1),
                [None] * prefix + [tuple(o) for o in c_offsets[span.start:span.stop]] + [None],
                [False] * prefix + [owner[j] == s for j in span] + [False])
            if gold is not None and span.start <= gold[0] and gold[1] < span.stop:
                f.start_position, f.end_position = gold[0] - s + prefix, gold[1] - s + prefix
            features.append(f)
    if cut_questions:
        log.info("%d question(s) longer than %d tokens were cut", cut_questions, max_query_length)
    if multi_window:
        log.info("%d context(s) longer than one window were split into overlapping windows", multi_window)
    return features


def window_starts(n_tokens: int, window: int, stride: int) -> list[int]:
    """Token offsets of the windows: every ``stride`` tokens until one reaches the end (BERT's rule)."""
    starts = [0]
    while starts[-1] + window < n_tokens:
        starts.append(starts[-1] + stride)
    return starts


def max_context_owner(starts: list[int], window: int, n_tokens: int) -> list[int]:
    """For each context token, the start of the window that gives it the most context: the smaller of
    its left and right context plus 0.01 x window length; the first such window wins ties (BERT's rule).
    Decoding only starts spans at tokens in their owner window, so overlapping windows do not compete."""
    owner, best = [0] * n_tokens, [-1.0] * n_tokens
    for s in starts:
        end = min(s + window, n_tokens) - 1
        for j in range(s, end + 1):
            score = min(j - s, end - j) + 0.01 * (end - s + 1)
            if score > best[j]:
                best[j], owner[j] = score, s
    return owner


def _gold_tokens(ex: SquadExample, offsets: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """Context token indices of the first gold answer's first and last character."""
    if ex.is_impossible or not ex.answers:
        return None
    first, last = ex.starts[0], ex.starts[0] + len(ex.answers[0])
    tokens = [j for j, (a, b) in enumerate(offsets) if b > first and a < last]
    return (tokens[0], tokens[-1]) if tokens else None


# ----------------------------------------------------------------------------- decoding
@dataclass
class Prediction:
    text: str  # "" = no answer
    score: float  # start + end logit of the chosen span
    probability: float  # softmax over the n-best (and the null answer for v2)
    null_score_diff: float  # null score - best span score (v2: answer "" when above the threshold)
    nbest: list[dict[str, Any]]


def decode(examples: Sequence[SquadExample], features: Sequence[SquadFeature], start_logits: Sequence,
           end_logits: Sequence, n_best: int = 20, max_answer_length: int = 30, version_2: bool = False,
           null_threshold: float = 0.0) -> dict[str, Prediction]:
    """Best span per question over all its windows.

    Candidates: the ``n_best`` highest start and end logits of each window, inside the context, end >=
    start, at most ``max_answer_length`` tokens, and the start token in its max-context window. For v2,
    the null score is the lowest [CLS] start+end score over the windows; the answer is "" when
    ``null - best span > null_threshold``."""
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for k, f in enumerate(features):
        by_example[f.example_index].append(k)
    out: dict[str, Prediction] = {}
    for i, ex in enumerate(examples):
        spans: list[tuple[float, int, int]] = []  # (score, char start, char end)
        null = math.inf
        for k in by_example.get(i, []):
            f, s_log, e_log = features[k], np.asarray(start_logits[k]), np.asarray(end_logits[k])
            n = len(f.input_ids)
            s_log, e_log = s_log[:n], e_log[:n]
            null = min(null, float(s_log[0] + e_log[0]))
            in_context = np.array([o is not None for o in f.offsets])
            top_s = np.argsort(-s_log, kind="stable")[:n_best]
            top_e = np.argsort(-e_log, kind="stable")[:n_best]
            s_idx, e_idx = np.meshgrid(top_s, top_e, indexing="ij")  # (n_best, n_best) candidate pairs
            ok = (in_context[s_idx] & np.asarray(f.max_context)[s_idx] & in_context[e_idx]
                  & (e_idx >= s_idx) & (e_idx - s_idx + 1 <= max_answer_length))
            for s, e in zip(s_idx[ok].tolist(), e_idx[ok].tolist(), strict=True):
                spans.append((float(s_log[s] + e_log[e]), f.offsets[s][0], f.offsets[e][1]))
        best: dict[tuple[int, int], float] = {}  # one entry per distinct character span
        for score, a, b in sorted(spans, reverse=True):
            best.setdefault((a, b), score)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:n_best]
        nbest = [{"text": ex.context[a:b], "score": sc, "start": a, "end": b} for (a, b), sc in ranked]
        empty = {"text": "", "score": null if math.isfinite(null) else 0.0, "start": -1, "end": -1}
        if version_2 or not nbest:
            nbest.append(empty)
        scores = np.array([c["score"] for c in nbest])
        probs = np.exp(scores - scores.max())
        for c, p in zip(nbest, probs / probs.sum(), strict=True):
            c["probability"] = float(p)
        span = nbest[0] if nbest[0]["text"] else None
        diff = 0.0
        if version_2:
            diff = (null - span["score"]) if span else _NO_SPAN
            if diff > null_threshold:
                span = None
        top = span or nbest[-1]
        out[ex.qid] = Prediction(top["text"], top["score"], top["probability"], diff, nbest)
    return out


_NO_SPAN = 1e9  # null score difference written when a question has no candidate span at all


# ----------------------------------------------------------------------------- official metrics
def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_PUNCT = set(string.punctuation)


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, version_2: bool = True) -> float:
    """Token-overlap F1 of the normalised texts. v2.0: when either side is empty, 1 if both are, else 0;
    v1.1 scores no overlap (including empty vs empty) as 0."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if version_2 and (not p or not g):
        return float(p == g)
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def gold_answers(ex: SquadExample, version_2: bool) -> list[str]:
    """v2.0 keeps golds that normalise to something and uses [""] when none is left (unanswerable)."""
    if not version_2:
        return list(ex.answers)
    golds = [a for a in ex.answers if normalize_answer(a)]
    return golds or [""]


def squad_metrics(examples: Sequence[SquadExample], predictions: dict[str, str],
                  na_probs: dict[str, float] | None = None, na_prob_thresh: float = 1.0,
                  version_2: bool | None = None) -> dict[str, float]:
    """EM and F1 (0-100) as the official scripts compute them: maximum over gold answers, averaged over
    questions; a missing prediction scores 0 (counted in the log). With v2.0 data: HasAns/NoAns
    breakdowns, and with ``na_probs`` (e.g. the null score differences) the best-threshold search."""
    if version_2 is None:
        version_2 = any(e.is_impossible for e in examples)
    if not examples:
        raise ValueError("no questions to score")
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    missing = 0
    for ex in examples:
        if ex.qid not in predictions:
            missing += 1
            exact[ex.qid] = f1[ex.qid] = 0.0
            continue
        pred, golds = predictions[ex.qid], gold_answers(ex, version_2)
        if not golds:  # v1.1 question without a gold: nothing can match
            exact[ex.qid] = f1[ex.qid] = 0.0
            continue
        exact[ex.qid] = max(exact_match(pred, g) for g in golds)
        f1[ex.qid] = max(f1_score(pred, g, version_2) for g in golds)
    if missing:
        log.warning("%d of %d questions have no prediction; scored 0", missing, len(examples))
    has_ans = {e.qid: bool(e.answers) for e in examples}
    raw_exact, raw_f1 = dict(exact), dict(f1)
    if version_2 and na_probs is not None:
        for qid in exact:
            if na_probs.get(qid, 0.0) > na_prob_thresh:  # the official rule: abstain above the threshold
                exact[qid] = f1[qid] = float(not has_ans[qid])
    out = {"exact": 100.0 * np.mean(list(exact.values())), "f1": 100.0 * np.mean(list(f1.values())),
           "total": len(examples)}
    if version_2:
        for name, want in (("HasAns", True), ("NoAns", False)):
            ids = [q for q, h in has_ans.items() if h == want]
            if ids:
                out[f"{name}_exact"] = 100.0 * np.mean([exact[q] for q in ids])
                out[f"{name}_f1"] = 100.0 * np.mean([f1[q] for q in ids])
                out[f"{name}_total"] = len(ids)
        if na_probs is not None:
            for name, raw in (("exact", raw_exact), ("f1", raw_f1)):
                best, thresh = best_threshold(predictions, raw, na_probs, has_ans)
                out[f"best_{name}"], out[f"best_{name}_thresh"] = best, thresh
    return {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in out.items()}


def best_threshold(predictions: dict[str, str], scores: dict[str, float], na_probs: dict[str, float],
                   has_ans: dict[str, bool]) -> tuple[float, float]:
    """The no-answer threshold that maximises the total score, and that score (0-100).

    Start with every question answered "" (scores 1 on the unanswerable ones), then, in order of rising
    no-answer probability, switch each question to its predicted text and keep the best running total."""
    total = best = float(sum(not h for h in has_ans.values()))
    thresh = 0.0
    for qid in sorted(na_probs, key=na_probs.get):
        if qid not in scores:
            continue
        if has_ans[qid]:
            total += scores[qid]
        elif predictions.get(qid):
            total -= 1
        if total > best:
            best, thresh = total, na_probs[qid]
    return 100.0 * best / len(scores), float(thresh)


def write_predictions(predictions: dict[str, Prediction], out_dir: str | os.PathLike,
                      version_2: bool = False) -> list[Path]:
    """predictions.json (qid -> text, the official input), nbest_predictions.json and, for v2.0,
    null_odds.json (qid -> null score difference, the official ``--na-prob-file``); atomic writes."""

    out = Path(out_dir)
    files = {"predictions.json": {q: p.text for q, p in predictions.items()},
             "nbest_predictions.json": {q: p.nbest for q, p in predictions.items()}}
    if version_2:
        files["null_odds.json"] = {q: p.null_score_diff for q, p in predictions.items()}
    paths = []
    for name, obj in files.items():
        atomic_write_text(out / name, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
        paths.append(out / name)
    return paths


def examples_from_pairs(pairs: Iterable[tuple[str, str]]) -> list[SquadExample]:
    """Question + context pairs (e.g. from the command line) as unanswered examples."""
    return [SquadExample(f"q{i}", q, c) for i, (q, c) in enumerate(pairs)]
