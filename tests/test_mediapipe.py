"""`mobilebert export --format mediapipe`: MediaPipe's own TextClassifier / TextEmbedder (the real client,
``mediapipe.tasks.python.text``) run our files on raw strings and must agree with our PyTorch pipeline;
MediaPipe's BERT tokenizer against ours on 1,000+ varied strings; bad input.

Needs litert-torch and mediapipe, which live in .venv-mobile (`make mobile-venv`; `make test` runs this file
there). Without them every test skips with the install line, except the CLI one, which checks that line.
"""

from __future__ import annotations

import importlib.util
import json
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, tiny_config

from mobilebert.cli import main
from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.modeling import MobileBertForMaskedLM, MobileBertForSequenceClassification, MobileBertModel
from mobilebert.tokenizer import MobileBertTokenizer

INSTALL = "needs `pip install litert-torch mediapipe` (make mobile-venv)"
HAVE = all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "mediapipe"))
SEQ = 64  # SST-2 dev sentences are at most 55 tokens; longer test strings are truncated, as in an app


def needs_mediapipe(test):
    """A test of the phone stack: marked `mobile` (run in .venv-mobile), skipped where it is not installed."""
    return pytest.mark.mobile(pytest.mark.skipif(not HAVE, reason=INSTALL)(test))


@pytest.fixture(scope="module")
def sst2() -> list[str]:
    """SST-2 dev sentences (all 872): ../shared's GLUE copy, else the bundled sample (the same rows)."""
    root = SHARED_DATA / "glue" if (SHARED_DATA / "glue" / "SST-2").is_dir() else SAMPLE_DIR
    return [ex.text_a for ex in read_glue("sst2", root, "dev")]


def _checkpoint(folder: Path, cls, task: str | None = None, vocab: bool = True, layers: int = 1) -> Path:
    """A random tiny MobileBERT with BERT's full vocab (MediaPipe loads the real vocab file)."""
    torch.manual_seed(0)
    config = tiny_config(num_hidden_layers=layers, vocab_size=30522)
    if cls is MobileBertForSequenceClassification:
        config = config.replace(num_labels=2, id2label={0: "0", 1: "1"})
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:  # non-trivial NoNorm scales
                p.add_(0.1 * torch.randn_like(p))
            if name.startswith("classifier"):  # spread the probabilities so labels are not near-ties
                p.mul_(200.0)
        if cls is MobileBertForSequenceClassification:  # centre the bias: both labels occur on SST-2
            enc = MobileBertTokenizer.default()([ex.text_a for ex in read_glue("sst2", SAMPLE_DIR, "dev", limit=200)],
                                                padding=True, return_tensors="pt")
            margin = model(enc["input_ids"], enc["attention_mask"]).logits.diff(dim=-1).mean()
            model.classifier.bias[1] -= margin
    model.save_pretrained(folder)
    if vocab:
        MobileBertTokenizer.default().save_pretrained(folder)
    if task:
        (folder / "finetune.json").write_text(json.dumps({"task": task}))
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(kind, int8): (checkpoint, file)}: the classifier through the CLI, the encoder through the function."""
    if not HAVE:
        pytest.skip(INSTALL)
    from mobilebert.deploy.mediapipe import export_mediapipe

    root = tmp_path_factory.mktemp("mediapipe")
    cls = _checkpoint(root / "cls", MobileBertForSequenceClassification, task="sst2")
    enc = _checkpoint(root / "enc", MobileBertModel)
    files = {}
    for int8 in (False, True):
        name = "int8" if int8 else "fp32"
        out = root / f"cls-{name}.tflite"
        assert main(["export", "--format", "mediapipe", "--seq-len", str(SEQ), *(["--int8"] if int8 else []),
                     str(cls), str(out)]) == 0
        files["classifier", int8] = (cls, out)
        files["embedder", int8] = (enc, export_mediapipe(enc, root / f"enc-{name}.tflite", int8=int8,
                                                         seq_len=SEQ).path)
    return files


def _ours(checkpoint: Path, task: str):
    from mobilebert.deploy.mediapipe import TextPipeline
    from mobilebert.load import load_model

    return TextPipeline(load_model(checkpoint).eval(), MobileBertTokenizer.from_pretrained(checkpoint), task, SEQ)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@needs_mediapipe
def test_classifier_fp32_matches_pytorch_on_sst2(exported, sst2):
    """Raw sentences: the same top label everywhere, probabilities within 1e-3 wherever MediaPipe's tokenizer
    sees what ours sees (a few SST-2 sentences have accents: cliché). With the app-side normalisation
    (app_text, docs/guide-deploy.md) it sees the same everywhere and the graph alone is compared."""
    from mobilebert.deploy.mediapipe import MediaPipeText, app_text

    checkpoint, path = exported["classifier", False]
    ref = _ours(checkpoint, "classifier")(sst2)
    with MediaPipeText(path, "classifier") as mp:
        raw = mp(sst2)
        normalised = mp([app_text(s) for s in sst2])
        names = mp.labels(sst2[:20])
    assert raw.shape == (len(sst2), 2) and len(sst2) >= 500
    assert 0.2 < ref.argmax(1).mean() < 0.8  # both labels occur: the comparison is not trivially one class
    assert (raw.argmax(1) == ref.argmax(1)).all()
    same_tokens = np.array([_why_different(s) is None for s in sst2])
    assert same_tokens.mean() > 0.95 and np.abs(raw - ref)[same_tokens].max() <= 1e-3
    assert (normalised.argmax(1) == ref.argmax(1)).all() and np.abs(normalised - ref).max() <= 1e-4
    assert names == [["negative", "positive"][i] for i in ref[:20].argmax(1)]  # GLUE names from finetune.json


@needs_mediapipe
def test_classifier_int8_is_the_same_graph_on_the_same_tokens(exported, sst2):
    """MediaPipe's int8 run equals the same file run by LiteRT's interpreter on our tokenizer's ids: tokenizer
    and input wiring are exact (the export's gate bounds int8 against fp32; task accuracy of int8 on a trained
    model is benchmarks/int8_accuracy_mobile.py's job, a random head amplifies rounding)."""
    from mobilebert.deploy.mediapipe import MediaPipeText, app_text
    from mobilebert.deploy.mobile import LiteRTModel

    checkpoint, path = exported["classifier", True]
    texts = sst2[:300]
    with MediaPipeText(path, "classifier") as mp:
        got = mp([app_text(s) for s in texts])
    enc = MobileBertTokenizer.from_pretrained(checkpoint)(texts, max_length=SEQ, truncation=True,
                                                          padding="max_length", return_tensors="pt")
    lite = LiteRTModel(path, ["logits"])  # the field holds the graph's one output: probabilities
    direct = np.concatenate([lite(enc["input_ids"][i:i + 1], enc["attention_mask"][i:i + 1],
                                  enc["token_type_ids"][i:i + 1]).logits.numpy() for i in range(len(texts))])
    assert np.abs(got - direct).max() <= 1e-5
    assert path.stat().st_size < exported["classifier", False][1].stat().st_size / 2


@needs_mediapipe
@pytest.mark.parametrize("int8", [False, True])
def test_embedder_matches_pytorch_on_sst2(exported, sst2, int8):
    from mobilebert.deploy.mediapipe import MediaPipeText, app_text

    checkpoint, path = exported["embedder", int8]
    texts = sst2 if not int8 else sst2[:300]
    ref = _ours(checkpoint, "embedder")(texts)
    with MediaPipeText(path, "embedder") as mp:
        got = mp([app_text(s) for s in texts])
    assert got.shape == ref.shape == (len(texts), 512)
    assert _cosine(got, ref).min() >= (0.999 if not int8 else 0.98)


@needs_mediapipe
def test_shipped_sentence_encoder_through_text_embedder(tmp_path, sst2):
    """models/mobilebert-minilm (a real distilled encoder), L2-normalised in the graph: TextEmbedder's vectors
    are ours."""
    from mobilebert.deploy.mediapipe import MediaPipeText, TextPipeline, app_text, export_mediapipe
    from mobilebert.sentence import PoolingConfig

    shipped = Path(__file__).resolve().parents[1] / "models" / "mobilebert-minilm"
    result = export_mediapipe(shipped, tmp_path / "minilm.tflite", seq_len=SEQ, normalize=True)
    texts = sst2[::3]
    ref = TextPipeline(MobileBertModel.from_pretrained(shipped).eval(), MobileBertTokenizer.from_pretrained(shipped),
                       "embedder", SEQ, PoolingConfig(normalize=True))(texts)
    with MediaPipeText(result.path, "embedder") as mp:
        got = mp([app_text(s) for s in texts])
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosine(got, ref).min() >= 0.999


# ---- tokenizer ---------------------------------------------------------------------------------------------

_FRAGMENTS = [
    "café", "naïve", "Ångström", "résumé", "e\u0301te", "¿qué?", "São Paulo", "Zoë", "piñata",  # accents
    "日本語の文章", "中文测试", "漢字", "ひらがな", "カタカナ",  # CJK (split per character by both)
    "한국어", "안녕하세요",  # Hangul syllables
    "Привет", "мир", "Καλημέρα", "İstanbul", "ΣΟΦΙΑ", "ＦＵＬＬ", "ǅ", "ß", "straße",  # non-ASCII case
    "😀", "🎉🎉", "👍🏽", "❤️", "🇫🇷",  # emoji, modifiers, flags
    "\x00", "\x07", "\x1b[0m", "\u200b", "\ufeff", "\u200d", "\xad",  # control and format characters
    "\xa0", "\u3000", "\u2028", "\x85", "\u2009",  # non-ASCII spaces
    "http://example.com/a?b=c&d=e", "https://t.co/xYz", "user@mail.com", "www.test.org/path_to/page.html",
    "1,000.50$", "3.14159", "x² + y² = z²", "@#$%^&*()", "--", "...", "!!!", "(parenthetical)", "don't",
    "Hello", "WORLD", "MiXeD", "iPhone", "a" * 120, "supercalifragilisticexpialidocious",
    "[MASK]", "[SEP]", "[CLS]", "[mask]", "[UNK]", "ﬁ", "Ⅻ", "\t", "\n", "\r\n", "  ",
]


def _varied_strings(sst2: list[str]) -> list[str]:
    """1,000+ strings: SST-2 sentences raw and capitalised, every fragment alone, random mixes of fragments and
    sentence words, and texts longer than the sequence length."""
    rng = random.Random(0)
    words = " ".join(sst2).split()
    texts = list(sst2[:400]) + [s.capitalize() for s in sst2[400:500]] + list(_FRAGMENTS) + ["", " "]
    for _ in range(450):
        parts = [rng.choice(_FRAGMENTS) if rng.random() < 0.5 else rng.choice(words) for _ in range(rng.randint(2, 9))]
        texts.append("".join(p + rng.choice([" ", " ", "", "\t", ", "]) for p in parts))
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(SEQ, 3 * SEQ))) for _ in range(30)]
    return texts


def _why_different(text: str) -> str | None:
    """The documented reason MediaPipe's tokenizer may split ``text`` differently (docs/guide-deploy.md), or None."""
    for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        if token in text:
            return "special token in text"  # ours keeps it as one token (as BertTokenizerFast does)
    if "\x00" in text:
        return "NUL"  # MediaPipe stops reading there
    if any(unicodedata.category(c).startswith("C") and c not in "\t\n\r" for c in text):
        return "control/format character"  # ours drops it, MediaPipe keeps it inside the word
    if any(c != " " and unicodedata.category(c) in ("Zs", "Zl", "Zp") for c in text):
        return "non-ASCII space"  # MediaPipe splits at ASCII whitespace only
    if any(ord(c) > 127 and c.lower() != c for c in text):
        return "non-ASCII upper case"  # MediaPipe lower-cases ASCII only
    if any(unicodedata.category(c) == "Mn" for c in unicodedata.normalize("NFD", text)):
        return "accent or combining mark"  # ours strips them (NFD), MediaPipe keeps them
    if any("\uac00" <= c <= "\ud7a3" for c in text):
        return "Hangul syllable"  # ours decomposes it into jamo (NFD)
    return None


@pytest.fixture(scope="module")
def echo_file(tmp_path_factory):
    """A LiteRT file whose 'embedding' is its own input (ids, mask, segment ids as floats), with our metadata:
    TextEmbedder then returns exactly what MediaPipe's tokenizer fed the model."""
    if not HAVE:
        pytest.skip(INSTALL)
    from mobilebert.deploy.mediapipe import add_metadata
    from mobilebert.deploy.mobile import convert_litert

    class Echo(torch.nn.Module):
        def forward(self, ids, mask, segment_ids):
            return torch.cat([ids, mask, segment_ids], dim=-1).float()

    example = tuple(torch.ones(1, SEQ, dtype=torch.long) for _ in range(3))
    path = tmp_path_factory.mktemp("echo") / "echo.tflite"
    path.write_bytes(add_metadata(convert_litert(Echo(), example).model_content(), "embedder",
                                  MobileBertTokenizer.default().vocab))
    return path


def _mediapipe_tokens(echo_file: Path, texts: list[str]) -> list[tuple[list[int], list[int], list[int]]]:
    from mobilebert.deploy.mediapipe import MediaPipeText

    with MediaPipeText(echo_file, "embedder") as mp:
        rows = mp(texts).round().astype(int)
    return [(r[:SEQ].tolist(), r[SEQ:2 * SEQ].tolist(), r[2 * SEQ:].tolist()) for r in rows]


@needs_mediapipe
def test_tokenizer_against_mediapipe_on_varied_strings(echo_file, sst2):
    """Every string where MediaPipe's BERT tokenizer differs from ours has a documented reason; every string
    without one (all SST-2 sentences among them) matches exactly, padding and truncation included; and after
    the app-side normalisation (app_text) everything matches but literal special tokens."""
    from mobilebert.deploy.mediapipe import app_text

    tok = MobileBertTokenizer.default()
    texts = _varied_strings(sst2)
    assert len(texts) >= 1000
    enc = tok(texts, max_length=SEQ, truncation=True, padding="max_length")
    ours = list(zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], strict=True))
    theirs = _mediapipe_tokens(echo_file, texts)
    differ = [i for i in range(len(texts)) if tuple(ours[i]) != theirs[i]]
    unexplained = [texts[i] for i in differ if _why_different(texts[i]) is None]
    assert not unexplained, unexplained[:5]
    assert 50 < len(differ) < len(texts) / 2  # the varied part does exercise the differences
    normalised = _mediapipe_tokens(echo_file, [app_text(t) for t in texts])
    still = [texts[i] for i in range(len(texts)) if tuple(ours[i]) != normalised[i]]
    assert all(_why_different(t) == "special token in text" for t in still), still[:5]


# ---- bad input ---------------------------------------------------------------------------------------------


def _fails_cleanly(capsys, args: list[str], out: Path, words: str) -> None:
    assert main(["export", "--format", "mediapipe", *args, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@needs_mediapipe
def test_bad_inputs_one_line_no_file(tmp_path, capsys):
    mlm = _checkpoint(tmp_path / "mlm", MobileBertForMaskedLM)
    _fails_cleanly(capsys, [str(mlm)], tmp_path / "a.tflite", "neither a sequence classifier nor an encoder")
    no_vocab = _checkpoint(tmp_path / "novocab", MobileBertModel, vocab=False)
    _fails_cleanly(capsys, [str(no_vocab)], tmp_path / "b.tflite", "no vocab.txt or tokenizer.json")
    enc = _checkpoint(tmp_path / "enc", MobileBertModel)
    _fails_cleanly(capsys, ["--seq-len", "1000", str(enc)], tmp_path / "c.tflite", "1000")
    _fails_cleanly(capsys, ["--labels", "a,b,c", str(_checkpoint(tmp_path / "cls", MobileBertForSequenceClassification))],
                   tmp_path / "d.tflite", "3 label names for 2 classes")


@needs_mediapipe
def test_failed_parity_leaves_nothing(tmp_path, monkeypatch):
    from mobilebert.deploy import mediapipe
    from mobilebert.deploy.onnx import ExportError

    monkeypatch.setattr(mediapipe, "FP32_TOL", -1.0)
    with pytest.raises(ExportError, match=r"m\.tflite: MediaPipe embedder parity check failed"):
        mediapipe.export_mediapipe(_checkpoint(tmp_path / "enc", MobileBertModel), tmp_path / "m.tflite", seq_len=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


@pytest.mark.skipif(HAVE, reason="litert-torch and mediapipe are installed")
def test_cli_names_the_packages_when_missing(tmp_path, capsys):
    enc = _checkpoint(tmp_path / "enc", MobileBertModel)
    _fails_cleanly(capsys, [str(enc)], tmp_path / "m.tflite", "pip install litert-torch mediapipe")
