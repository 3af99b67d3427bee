"""MediaPipe Tasks files: a LiteRT model that an app feeds raw strings through ``TextClassifier`` or ``TextEmbedder``.

Why this exists: MediaPipe Tasks (successor of the TFLite Task Library) is how Android and iOS apps run BERT text
models. A bare ``.tflite`` (``--format litert``) would make the app re-implement WordPiece in Kotlin/Swift and
guess the input order; this file carries its tokenizer. It is the LiteRT graph of deploy/mobile.py plus:

* the graph ends in what the task returns: class probabilities (softmax in the graph) for a sequence
  classifier, the pooled sentence embedding (mean or CLS as the checkpoint's pooling files say, optionally
  L2-normalised) for an encoder;
* TFLite metadata, a ``ModelMetadata`` flatbuffer stored in the model's ``metadata`` table as
  ``TFLITE_METADATA``: a BERT WordPiece tokenizer as the subgraph's input process unit, with the checkpoint's
  vocab as an associated file; the three int32 inputs described as ``ids``, ``mask``, ``segment_ids`` in the
  model's input order (MediaPipe finds them by these names); for a classifier the label file on the class axis;
* the associated files (vocab.txt, labels.txt) as a zip archive appended to the flatbuffer.

How the metadata is written, and why this way. MediaPipe's ``metadata_writers`` build the same objects, but
they import a compiled helper (``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version``) that the 1.x
wheels no longer ship; the 0.10.21 wheel that has it pins numpy < 2 and cannot share a venv with litert-torch,
so one export would span two interpreters. The helper only computes ``min_parser_version``. We therefore build
the flatbuffers with the classes generated from the schema, which every mediapipe wheel ships
(``mediapipe.tasks.metadata.metadata_schema_py_generated`` and ``schema_py_generated``: pure Python over the
``flatbuffers`` package), and do the two populate steps ourselves. The schema only grows, under the fixed file
identifier "M001"; the fields written here need parser 1.1.0 (its history: ``BertTokenizerOptions`` and
subgraph ``input_process_units`` were added in 1.1.0, ``VOCABULARY`` files in 1.0.1).

As with every export here, the file appears only after a parity check, and this one is end to end: MediaPipe's
own task runs the temp file on raw strings and must agree with our PyTorch pipeline (our tokenizer + eager
model + softmax/pooling, inputs right-padded to ``seq_len`` as MediaPipe pads them).
"""

from __future__ import annotations

import io
import os
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..atomic import atomic_path
from ..checkpoint import head_of, inspect
from ..data.glue import SAMPLE_DIR, read_glue
from ..load import load_model
from ..sentence import PoolingConfig, SentenceEncoder
from ..tokenizer import MobileBertTokenizer
from .mobile import _check_target, _example, convert_litert
from .onnx import FP32_TOL, INT8_TOL, ExportError
from .optimize import FastMobileBert, optimize_for_inference

METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry MediaPipe reads
MIN_PARSER_VERSION = "1.1.0"  # BertTokenizerOptions + subgraph input_process_units (schema history)
INPUT_NAMES = ("ids", "mask", "segment_ids")  # what MediaPipe's BERT preprocessor looks up, in our arg order
# MediaPipe Tasks has no token-classification task: the one line that says so, and where to go instead.
TOKEN_ROUTE = ("a token classifier (MobileBertForTokenClassification): MediaPipe has no token-classification "
               "task; export it with --format onnx or --format litert (each carries vocab and labels.txt) and "
               "turn logits into entities as docs/guide-deploy.md shows")


def task_of(model: nn.Module) -> str:
    """``"classifier"`` (TextClassifier) or ``"embedder"`` (TextEmbedder); ValueError for any other head."""
    head = head_of(model)
    if head == "classifier":
        if model.config.num_labels < 2:
            raise ValueError(f"a regression head ({model.config.num_labels} output) is not a classifier; "
                             "TextClassifier needs at least 2 classes")
        return "classifier"
    if head == "encoder":
        return "embedder"
    if head == "token":
        raise ValueError(TOKEN_ROUTE)
    raise ValueError(f"{type(model).__name__} is neither a sequence classifier nor an encoder (MobileBertModel); "
                     "MediaPipe's text tasks run only those")


def label_names(model_dir: str | os.PathLike, model: nn.Module | None = None) -> list[str]:
    """Class names in id order, as predict prints them: ``CheckpointInfo.label_names`` (the checkpoint's
    ``id2label``; readable GLUE names where those are bare digits, SST-2: negative, positive)."""
    return list(inspect(model_dir).label_names)


class _TaskGraph(nn.Module):
    """(ids, mask, segment_ids) (1, T) -> what the MediaPipe task returns: (1, C) probabilities or (1, H)."""

    def __init__(self, fast: FastMobileBert, task: str, pooling: PoolingConfig) -> None:
        super().__init__()
        self.fast, self.task, self.pooling = fast, task, pooling

    def forward(self, ids: Tensor, mask: Tensor, segment_ids: Tensor) -> Tensor:
        out = self.fast(ids, mask, segment_ids)
        if self.task == "classifier":
            return torch.softmax(out.logits, dim=-1)
        h = out.last_hidden_state  # (1, T, H)
        if self.pooling.pooling == "cls":
            v = h[:, 0]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp_min(1)
        return F.normalize(v, dim=-1) if self.pooling.normalize else v


# ---- metadata ---------------------------------------------------------------------------------------------


def _input_roles(model) -> list[int]:
    """For each subgraph input, which of our arguments (0 ids, 1 mask, 2 segment ids) it is: litert-torch names
    them ``args_<i>`` in the signature, and the subgraph's input order need not follow it."""
    sub = model.subgraphs[0]
    by_tensor = {}
    for sig in model.signatureDefs or []:
        for t in sig.inputs:
            by_tensor[t.tensorIndex] = t.name.decode()
    roles = []
    for idx in sub.inputs:
        name = by_tensor.get(int(idx)) or sub.tensors[idx].name.decode()
        digits = "".join(ch for ch in name.rpartition("args_")[2] if ch.isdigit())
        if "args_" not in name or not digits or int(digits) > 2:
            raise ExportError(f"cannot tell which input LiteRT tensor {name!r} is")
        roles.append(int(digits))
    if sorted(roles) != [0, 1, 2]:
        raise ExportError(f"expected three inputs args_0..2, found roles {roles}")
    return roles


def add_metadata(model_bytes: bytes, task: str, vocab: list[str], labels: list[str] | None = None,
                 description: str = "") -> bytes:
    """``model_bytes`` (a LiteRT flatbuffer with inputs ids, mask, segment ids and one output) with MediaPipe
    text-task metadata and the vocab (and label) files appended: what ``TextClassifier`` (``task="classifier"``,
    ``labels`` in class order) or ``TextEmbedder`` (``task="embedder"``) loads."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md
    from mediapipe.tasks.metadata import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_bytes, 0))
    for buf in model.buffers or []:  # weights stored after the flatbuffer (offset, size; the quantizer writes
        if buf.offset:  # them so) move inside it: repacking changes every position behind the root table
            buf.data = np.frombuffer(model_bytes, dtype=np.uint8, count=buf.size, offset=buf.offset)
            buf.offset = buf.size = 0
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].outputs) != 1:
        raise ExportError("a MediaPipe text model has one subgraph with one output")
    described = {0: "Token ids of [CLS] text [SEP], right-padded with 0.",
                 1: "1 for real tokens, 0 for padding.", 2: "Segment (token type) ids: 0."}

    def tensor(name: str, text: str, files: list | None = None, lo: float | None = None, hi: float | None = None):
        t = md.TensorMetadataT()
        t.name, t.description = name, text
        t.content = md.ContentT()
        t.content.contentPropertiesType = md.ContentProperties.FeatureProperties
        t.content.contentProperties = md.FeaturePropertiesT()
        if lo is not None:
            t.stats = md.StatsT()
            t.stats.min, t.stats.max = [lo], [hi]
        t.associatedFiles = files
        return t

    def associated(name: str, text: str, kind: int):
        f = md.AssociatedFileT()
        f.name, f.description, f.type = name, text, kind
        return f

    sub = md.SubGraphMetadataT()
    sub.inputTensorMetadata = [tensor(INPUT_NAMES[r], described[r]) for r in _input_roles(model)]
    files = {"vocab.txt": "".join(t + "\n" for t in vocab).encode("utf-8")}
    if task == "classifier":
        files["labels.txt"] = "".join(x + "\n" for x in labels).encode("utf-8")
        sub.outputTensorMetadata = [tensor("probability", "Class probabilities (softmax), one per label.",
                                           [associated("labels.txt", "Class names in output order.",
                                                       md.AssociatedFileType.TENSOR_AXIS_LABELS)], 0.0, 1.0)]
    else:
        sub.outputTensorMetadata = [tensor("embedding", "Sentence embedding pooled over the real tokens.")]
    tokenizer = md.ProcessUnitT()
    tokenizer.optionsType = md.ProcessUnitOptions.BertTokenizerOptions
    tokenizer.options = md.BertTokenizerOptionsT()
    tokenizer.options.vocabFile = [associated("vocab.txt", "WordPiece vocabulary (one token per line, id order).",
                                              md.AssociatedFileType.VOCABULARY)]
    sub.inputProcessUnits = [tokenizer]
    meta = md.ModelMetadataT()
    meta.name = f"MobileBERT text {task}"
    meta.description = description or ("Text classification: raw text in, class probabilities out." if
                                       task == "classifier" else "Text embedding: raw text in, one vector out.")
    meta.subgraphMetadata, meta.minParserVersion = [sub], MIN_PARSER_VERSION
    b = flatbuffers.Builder(0)
    b.Finish(meta.Pack(b), b"M001")

    buf = fb.BufferT()
    buf.data = np.frombuffer(bytes(b.Output()), dtype=np.uint8)
    model.buffers = [*(model.buffers or []), buf]
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in model.metadata or [] if m.name != METADATA_NAME.encode()] + [entry]
    b = flatbuffers.Builder(len(model_bytes) + 2**16)
    b.Finish(model.Pack(b), b"TFL3")
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as z:  # appended after the flatbuffer, as MediaPipe's populator does
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def app_text(text: str) -> str:
    """What an app does to a string before MediaPipe so its tokenizer sees what ours (BERT uncased) sees.

    MediaPipe's BERT tokenizer lower-cases ASCII only, keeps accents (``café`` -> [UNK]), splits words only at
    ASCII whitespace, keeps control and format characters inside words and stops reading at NUL. Ours, as
    BERT's: drop control/format characters, any Unicode space splits, lower-case, NFD, drop combining marks.
    docs/guide-deploy.md has this function in Kotlin and Swift; tests/test_mediapipe.py measures it.
    """
    out = []
    for ch in unicodedata.normalize("NFD", text.lower()):
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or cat in ("Zs", "Zl", "Zp"):
            out.append(" ")
        elif cat != "Mn" and not cat.startswith("C"):
            out.append(ch)
    return "".join(out)


# ---- running both sides ----------------------------------------------------------------------------------


class MediaPipeText:
    """MediaPipe's own ``TextClassifier``/``TextEmbedder`` on a file: raw strings in, an (N, C) array of class
    probabilities in label order (classifier) or (N, D) embeddings (embedder) out."""

    def __init__(self, path: str | os.PathLike, task: str) -> None:
        from mediapipe.tasks.python import text
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.path, self.task = Path(path), task
        base = BaseOptions(model_asset_path=str(self.path))
        if task == "classifier":
            self.runner = text.TextClassifier.create_from_options(text.TextClassifierOptions(base_options=base,
                                                                                            max_results=-1))
        else:
            self.runner = text.TextEmbedder.create_from_options(text.TextEmbedderOptions(base_options=base))

    def labels(self, texts: list[str]) -> list[str]:
        """Top category name per text (classifier)."""
        return [self.runner.classify(t).classifications[0].categories[0].category_name for t in texts]

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            if self.task == "classifier":
                cats = self.runner.classify(t).classifications[0].categories
                row = np.zeros(len(cats), dtype=np.float32)
                for c in cats:
                    row[c.index] = c.score
            else:
                row = np.asarray(self.runner.embed(t).embeddings[0].embedding, dtype=np.float32)
            rows.append(row)
        return np.stack(rows)

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> MediaPipeText:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class TextPipeline:
    """Our side of the comparison: tokenizer -> eager PyTorch model -> softmax (classifier) or pooling
    (embedder), each text right-padded to ``seq_len`` like MediaPipe's inputs."""

    model: nn.Module
    tokenizer: MobileBertTokenizer
    task: str
    seq_len: int
    pooling: PoolingConfig = field(default_factory=PoolingConfig)

    @torch.inference_mode()
    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if self.task == "embedder":
            pooling = PoolingConfig(self.pooling.pooling, self.pooling.normalize, self.seq_len)
            return SentenceEncoder(self.model, self.tokenizer, pooling).encode(texts, batch_size, progress=False)
        rows = []
        for s in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[s:s + batch_size], max_length=self.seq_len, truncation=True,
                                 padding="max_length", return_tensors="pt")
            logits = self.model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits
            rows.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(rows)


def probe_texts(seq_len: int) -> list[str]:
    """The parity check's strings: SST-2 dev sentences from the bundled sample, accents and capitals, and one
    text longer than seq_len."""
    texts = [ex.text_a.strip() for ex in read_glue("sst2", SAMPLE_DIR, "dev", limit=16)]
    return [*texts, "Café au lait, NAÏVE résumé: 10/10!", " ".join(texts)[: 12 * seq_len]]


def parity(reference: np.ndarray, got: np.ndarray, task: str) -> float:
    """Worst disagreement over texts: max |p - p_ref| (classifier) or 1 - cosine (embedder)."""
    if task == "classifier":
        return float(np.abs(got - reference).max())
    cos = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12)
    return float(1.0 - cos.min())


# ---- the export ------------------------------------------------------------------------------------------


@dataclass
class MediaPipeExport:
    path: Path
    task: str
    labels: list[str] | None
    parity: float  # see :func:`parity`


def checkpoint_tokenizer(model_dir: str | os.PathLike, vocab_size: int) -> MobileBertTokenizer:
    """The folder's own tokenizer; refuses a folder without one (the app would get a vocab the model was not
    trained with) or whose vocab has ids beyond the model's embedding table."""
    folder = Path(model_dir)
    if not any((folder / n).is_file() for n in ("vocab.txt", "tokenizer.json")):
        raise FileNotFoundError(f"{folder}: no vocab.txt or tokenizer.json; the MediaPipe file carries the "
                                "checkpoint's vocab")
    tok = MobileBertTokenizer.from_pretrained(folder)
    if len(tok) > vocab_size:
        raise ValueError(f"{folder}: vocab has {len(tok)} tokens but the model only {vocab_size} embeddings")
    return tok


def export_mediapipe(model_dir: str | os.PathLike, out_path: str | os.PathLike, int8: bool = False,
                     seq_len: int = 128, overwrite: bool = False, labels: list[str] | None = None,
                     normalize: bool | None = None) -> MediaPipeExport:
    """Checkpoint folder -> ``.tflite`` that MediaPipe's TextClassifier (sequence classifier) or TextEmbedder
    (encoder) runs on raw strings. ``labels`` overrides the class names; ``normalize`` the encoder's L2 setting
    (default: the folder's pooling files). Written only if MediaPipe's task on the temp file agrees with
    :class:`TextPipeline` on :func:`probe_texts` within ``FP32_TOL`` (``INT8_TOL`` for int8); else
    :class:`ExportError` naming the file, nothing left."""
    import litert_torch  # noqa: F401  (fail before any work when the packages are missing)
    import mediapipe.tasks.python.text  # noqa: F401

    out_path = Path(out_path)
    model = load_model(model_dir).eval()
    task = task_of(model)
    _check_target(model, out_path, seq_len, overwrite)
    tokenizer = checkpoint_tokenizer(model_dir, model.config.vocab_size)
    if task == "classifier":
        labels = list(labels) if labels else label_names(model_dir, model)
        if len(labels) != model.config.num_labels:
            raise ValueError(f"got {len(labels)} label names for {model.config.num_labels} classes")
    pooling = PoolingConfig.read(Path(model_dir))
    if normalize is not None:
        pooling.normalize = normalize
    graph = _TaskGraph(optimize_for_inference(model), task, pooling).eval()
    edge = convert_litert(graph, _example(model.config, 1, seq_len, pad=False), int8)
    data = add_metadata(edge.model_content(), task, tokenizer.vocab, labels if task == "classifier" else None)

    texts = probe_texts(seq_len)
    reference = TextPipeline(model, tokenizer, task, seq_len, pooling)(texts)
    tol = INT8_TOL if int8 else FP32_TOL
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(data)
        with MediaPipeText(tmp, task) as mp:  # app_text: the same tokens on both sides, the graph is compared
            err = parity(reference, mp([app_text(t) for t in texts]), task)
        if not err <= tol:
            raise ExportError(f"{out_path}: MediaPipe {task} parity check failed: error {err:.3g} > {tol:g} "
                              "on raw text; nothing written")
    return MediaPipeExport(out_path, task, labels if task == "classifier" else None, err)


__all__ = ["MediaPipeExport", "MediaPipeText", "TextPipeline", "add_metadata", "app_text", "export_mediapipe",
           "label_names", "task_of"]
