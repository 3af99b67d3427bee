"""The user's own labelled files: CSV, TSV, JSON lines / JSON records, Parquet, ``Dataset.save_to_disk`` folders.

Reader: the Hugging Face ``datasets`` library (pandas' C parser for CSV/TSV, pyarrow for JSON and Parquet).
It converts a file once into an Arrow file in its cache and memory-maps it, so a million-row CSV costs the
page cache, not the heap; the columns are then checked with vectorised pyarrow compute, not Python loops. A
hand-written parser would have to re-implement quoting, embedded newlines and type inference, and would hold
the rows in memory.

What this module owns: which file formats are read, which column names are detected, how labels map to ids
(``LabelMap``), the CoNLL / JSONL token-tag formats with their BIO check, and every bad-input message. Each
message is one line that names the file and the line (``path:LINE: ...``; ``path: row N`` for Parquet and
saved datasets, which have no lines). Line numbers are found only when something is wrong, by re-reading the
file up to the bad row with Python's csv / json, so the good path stays at the library's speed.

Label order: the sorted set of the training file's labels (numerically when every label is an integer), as
transformers' ``run_glue`` and MediaPipe Model Maker order them, so the same labels give the same ids whatever
the row order; for tags, ``O`` first. ``LabelMap.id2label`` / ``label2id`` are what ``config.json`` stores.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

# File suffix -> reader; a folder is a save_to_disk dataset.
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
DELIMITERS = {".csv": ",", ".tsv": "\t"}
# Column names detected when none is given, in order of preference; pairs before lone sentences.
TEXT_NAMES = ("text", "sentence", "question", "sentence1")
PAIR_NAMES = (("sentence1", "sentence2"), ("question", "sentence"))
LABEL_NAMES = ("label", "labels")
TOKEN_NAMES = ("tokens", "words")
TAG_NAMES = ("tags", "ner_tags", "labels", "label")
# Notes (not errors) about the data.
IMBALANCE_SHARE = 0.8  # the majority class holds at least this share of the training rows
FEW_EXAMPLES = 5  # a label with fewer training rows than this


class DataFileError(ValueError):
    """A user's data file that cannot be used; the message is one line naming the file (and line)."""


# ----------------------------------------------------------------------------- low-level reading
def file_format(path: str | os.PathLike) -> str:
    """``csv``, ``json``, ``parquet`` or ``disk`` (a ``save_to_disk`` folder); anything else is an error."""
    path = Path(path)
    if path.is_dir():
        if not any((path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
            raise DataFileError(f"{path}: a folder, but not one written by datasets' save_to_disk")
        return "disk"
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataFileError(f"{path}: unknown file type {path.suffix or '(no suffix)'!r}; use "
                            f"{', '.join(FORMATS)} or a save_to_disk folder")
    return fmt


def check_text_file(path: str | os.PathLike) -> None:
    """Refuse a text file that is empty or not UTF-8 (a UTF-8 byte-order mark is fine), naming the line.

    Streams the file in 1 MiB blocks, so it costs one read of the file and constant memory."""
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    line, content = 1, False
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as e:
                # The error's position counts from the start of this block (plus any carried partial bytes).
                line += block[: max(0, e.start - (len(e.object) - len(block)))].count(b"\n")
                raise DataFileError(f"{path}:{line}: not UTF-8 (byte 0x{e.object[e.start]:02x}); save the file "
                                    "as UTF-8") from None
            line += block.count(b"\n")
            content = content or bool(text.strip())
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataFileError(f"{path}:{line}: not UTF-8 (the file ends inside a character)") from None
    if not content:
        raise DataFileError(f"{path}: the file is empty")


def _delimiter(path: Path, delimiter: str | None) -> str:
    return delimiter or DELIMITERS.get(path.suffix.lower(), ",")


def _quoting(delimiter: str) -> int:
    """CSV fields may be quoted (RFC 4180); TSV fields never are (IANA's text/tab-separated-values, GLUE's
    files), so a ``"`` in a TSV is text."""
    return csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL


def _csv_records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields) for every non-blank CSV record, the header included."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=_quoting(delimiter))
        start = 1
        for row in reader:
            if row:
                yield start, row
            start = reader.line_num + 1


def _json_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8-sig") as f:
        for n, raw in enumerate(f, start=1):
            if raw.strip():
                yield n, raw


def _is_json_array(path: Path) -> bool:
    with path.open(encoding="utf-8-sig") as f:
        while ch := f.read(1):
            if not ch.isspace():
                return ch == "["
    return False


def column_names(path: str | os.PathLike, delimiter: str | None = None) -> list[str]:
    """The columns a file has, read from its header / first record / schema only."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "csv":
        check_text_file(path)
        records = _csv_records(path, _delimiter(path, delimiter))
        header = next(records)[1]
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise DataFileError(f"{path}:1: column(s) {', '.join(map(repr, twice))} appear more than once in "
                                "the header")
        if next(records, None) is None:
            raise DataFileError(f"{path}: no data rows (only a header)")
        return header
    if fmt == "json":
        check_text_file(path)
        if _is_json_array(path):
            records = _json_array(path)
            if not records:
                raise DataFileError(f"{path}: no records (an empty JSON array)")
            return list(records[0])
        for n, raw in _json_lines(path):
            try:
                return list(_json_object(path, n, raw))
            except DataFileError:
                _refuse_single_object(path)
                raise
        raise DataFileError(f"{path}: the file is empty")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_schema(path).names
        except Exception as e:  # pyarrow raises ArrowInvalid and OSError subclasses
            raise DataFileError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
    return list(_load_disk(path).column_names)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _json_object(path: Path, line: int, raw: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataFileError(f"{path}:{line}: not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{path}:{line}: a JSON {type(obj).__name__}, not an object ({{\"column\": value}})")
    return obj


def _refuse_single_object(path: Path) -> None:
    """A pretty-printed ``{...}`` file: say what it is instead of a parse error on its first line."""
    try:
        whole = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError:
        return
    if isinstance(whole, dict):
        raise DataFileError(f"{path}: one JSON object (keys {', '.join(map(repr, list(whole)[:5]))}); expected "
                            "records: an array of objects, or one object per line")


def _json_array(path: Path) -> list[dict[str, Any]]:
    """A ``.json`` file holding one array of records (read whole: such files are small by nature)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise DataFileError(f"{path}: record {i + 1} is a JSON {type(r).__name__}, not an object")
    return records


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError("reading data files needs the datasets library: pip install 'mobilebert[all]' "
                          "(or pip install datasets)") from None
    return datasets


def _load_disk(path: Path):
    datasets = _datasets()
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # FileNotFoundError or library errors on a damaged folder
        raise DataFileError(f"{path}: cannot read the saved dataset ({_first_line(e)})") from None
    if isinstance(ds, datasets.DatasetDict):
        raise DataFileError(f"{path}: holds the splits {', '.join(ds)}; name one folder, e.g. {path / next(iter(ds))}")
    return ds


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None, delimiter: str | None = None,
               cache_dir: str | os.PathLike | None = None):
    """A memory-mapped ``datasets.Dataset`` of the file's ``columns`` (all when None); CSV/TSV cells as strings.

    CSV: standard quoting (``"``); TSV: none (a ``"`` is text, as in GLUE's files); blank lines skipped, no
    value read as missing (``NA`` is text); ``delimiter`` overrides the one the suffix implies. JSON: one object per line, or one array of objects.
    """
    datasets = _datasets()
    path = Path(path)
    fmt = file_format(path)
    present = column_names(path, delimiter)
    cols = list(present if columns is None else columns)
    missing = [c for c in cols if c not in present]
    if missing:
        raise DataFileError(f"{path}: no column {', '.join(map(repr, missing))}; the file has "
                            f"{', '.join(map(repr, present))}")
    kw: dict[str, Any] = {"cache_dir": str(cache_dir) if cache_dir is not None else None}
    was_enabled, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()  # we log instead; its failures become our one-line errors
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        if fmt == "disk":
            ds = _load_disk(path)
        elif fmt == "csv":
            # Every column read (as text) so that pandas checks each row's field count; then only `cols` kept.
            features = datasets.Features({c: datasets.Value("string") for c in present})
            sep = _delimiter(path, delimiter)
            ds = datasets.Dataset.from_csv(str(path), sep=sep, quoting=_quoting(sep), features=features,
                                           keep_default_na=False, na_filter=False, encoding="utf-8-sig", **kw)
        elif fmt == "json":
            ds = datasets.Dataset.from_json(str(path), **kw)
        else:
            ds = datasets.Dataset.from_parquet(str(path), columns=cols, **kw)
    except DataFileError:
        raise
    except Exception as e:  # the libraries' own errors: find the line ourselves where we can
        _diagnose(path, fmt, _delimiter(path, delimiter), len(present))
        raise DataFileError(f"{path}: cannot read the file ({_first_line(e)})") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if was_enabled:
            datasets.enable_progress_bars()
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # the conversion's buffers: Arrow's pool would keep them
    ds = ds.select_columns(cols)
    if len(ds) == 0:
        raise DataFileError(f"{path}: no data rows" + (" (only a header)" if fmt == "csv" else ""))
    return ds


def _diagnose(path: Path, fmt: str, delimiter: str, width: int) -> None:
    """After a library error: raise the one-line error for the first bad line, if we can name it."""
    if fmt == "csv":
        for line, row in _csv_records(path, delimiter):
            if len(row) != width:
                hint = ("; a quote (\") opened here is never closed" if len(row) < width and any("\n" in c for c in row)
                        else "")
                raise DataFileError(f"{path}:{line}: {len(row)} field(s), the header has {width}{hint}")
    elif fmt == "json":
        if _is_json_array(path):
            places = ((f"{path}: record {i + 1}", f"record {i + 1}", r) for i, r in enumerate(_json_array(path)))
        else:
            places = ((f"{path}:{n}", f"line {n}", _json_object(path, n, raw)) for n, raw in _json_lines(path))
        first: dict[str, tuple[str, str]] = {}
        for place, ref, record in places:  # a column whose values change type (pyarrow wants one per column)
            for key, value in record.items():
                if value is None:
                    continue
                kind = type(value).__name__
                seen = first.setdefault(key, (kind, ref))
                if seen[0] != kind and {seen[0], kind} != {"int", "float"}:
                    raise DataFileError(f"{place}: column {key!r} holds {kind} here but {seen[0]} on {seen[1]}; "
                                        "use one type per column (quote numbers used as labels)")


def where(path: str | os.PathLike, row: int, delimiter: str | None = None) -> str:
    """``path:LINE`` of data row ``row`` (0-based), or ``path: row N`` for files without lines."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "csv":
        for i, (line, _) in enumerate(_csv_records(path, _delimiter(path, delimiter))):
            if i == row + 1:  # record 0 is the header
                return f"{path}:{line}"
    elif fmt == "json" and not _is_json_array(path):
        for i, (line, _) in enumerate(_json_lines(path)):
            if i == row:
                return f"{path}:{line}"
    elif fmt == "json":
        return f"{path}: record {row + 1}"
    return f"{path}: row {row + 1}"


# ----------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class Columns:
    """Which columns hold the text, the optional second text and the label, and which were detected."""

    text: str
    text_pair: str | None = None
    label: str | None = None
    detected: tuple[str, ...] = ()  # the roles ("text", "text_pair", "label") found by name, not given

    def describe(self) -> str:
        """``text 'sentence' (detected), label 'label' (detected)``: for the log and results.json."""
        parts = [f"{role.replace('_', ' ')} {name!r}" + (" (detected)" if role in self.detected else "")
                 for role, name in (("text", self.text), ("text_pair", self.text_pair), ("label", self.label))
                 if name is not None]
        return ", ".join(parts)

    @property
    def names(self) -> list[str]:
        return [c for c in (self.text, self.text_pair, self.label) if c is not None]


def choose_columns(path: str | os.PathLike, present: Sequence[str], text: str | None = None,
                   text_pair: str | None = None, label: str | None = None, need_label: bool = True) -> Columns:
    """The columns to use: the ones given, else the usual names (``TEXT_NAMES``, ``PAIR_NAMES``,
    ``LABEL_NAMES``). A pair is detected only when the text column is detected too."""
    have = set(present)
    listing = ", ".join(map(repr, present))
    for role, name in (("text", text), ("text pair", text_pair), ("label", label)):
        if name is not None and name not in have:
            raise DataFileError(f"{path}: no {role} column {name!r}; the file has {listing}")
    detected: list[str] = []
    if text is None:
        pair = next((p for p in PAIR_NAMES if set(p) <= have), None) if text_pair is None else None
        if "text" in have:
            text = "text"
        elif pair is not None:
            text, text_pair = pair
            detected.append("text_pair")
        else:
            text = next((n for n in TEXT_NAMES if n in have), None)
        if text is None:
            raise DataFileError(f"{path}: no text column found (looked for {', '.join(TEXT_NAMES)}); the file has "
                                f"{listing}; name it with --text-column")
        detected.insert(0, "text")
    if label is None and need_label:
        label = next((n for n in LABEL_NAMES if n in have), None)
        if label is None:
            raise DataFileError(f"{path}: no label column found (looked for {', '.join(LABEL_NAMES)}); the file "
                                f"has {listing}; name it with --label-column")
        detected.append("label")
    if len({text, text_pair, label} - {None}) < len([c for c in (text, text_pair, label) if c is not None]):
        raise DataFileError(f"{path}: the same column is used twice ({text}, {text_pair}, {label})")
    return Columns(text, text_pair, label, tuple(detected))


# ----------------------------------------------------------------------------- text files
@dataclass
class TextFile:
    """A read, checked text file: memory-mapped rows of the chosen columns."""

    path: Path
    rows: Any  # datasets.Dataset with exactly columns.names
    columns: Columns
    delimiter: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, row: int) -> str:
        return where(self.path, row, self.delimiter)

    def batches(self, size: int = 1000) -> Iterator[tuple[list[str], list[str] | None]]:
        """(texts, pairs or None) in row order, ``size`` rows at a time (constant memory)."""
        for b in self.rows.iter(batch_size=size):
            yield b[self.columns.text], (b[self.columns.text_pair] if self.columns.text_pair else None)

    def texts(self) -> list[str]:
        return self.rows[self.columns.text]

    def pairs(self) -> list[str] | None:
        return self.rows[self.columns.text_pair] if self.columns.text_pair else None

    def label_values(self) -> list[Any]:
        """Raw label cells (strings for CSV; what the file holds otherwise; ClassLabel ints as their names)."""
        if self.columns.label is None:
            raise DataFileError(f"{self.path}: no label column")
        values = self.rows[self.columns.label]
        names = getattr(self.rows.features[self.columns.label], "names", None)
        return [names[v] if names and isinstance(v, int) and v >= 0 else v for v in values]

    def _label_names(self) -> Any:
        """The label column as a pyarrow array of names (``label_name`` of each cell), or None when the
        column holds lists, floats or mixed values (then Python reads it)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        col = _arrow(self.rows, self.columns.label)
        names = getattr(self.rows.features[self.columns.label], "names", None)
        if names:
            return pc.take(pa.array(names), col)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            return pc.utf8_trim_whitespace(col)
        if pa.types.is_integer(col.type):
            return pc.cast(col, pa.string())
        return None

    def label_set(self) -> set[str]:
        """The names of the labels that occur (vectorised for text, integer and ClassLabel columns)."""
        import pyarrow.compute as pc

        arr = self._label_names()
        if arr is None:
            return {label_name(v) for v in self.label_values()}
        return set(pc.unique(arr).to_pylist())


def read_text_file(path: str | os.PathLike, text: str | None = None, text_pair: str | None = None,
                   label: str | None = None, need_label: bool = True, delimiter: str | None = None,
                   cache_dir: str | os.PathLike | None = None) -> TextFile:
    """Read and check a classification / regression file: columns chosen (and logged), every text non-empty,
    every label present when ``need_label``. Labels are checked against a label set by ``LabelMap.encode``."""
    path = Path(path)
    cols = choose_columns(path, column_names(path, delimiter), text, text_pair, label, need_label)
    rows = read_table(path, cols.names, delimiter, cache_dir)
    f = TextFile(path, rows, cols, delimiter)
    import pyarrow.compute as pc

    for role, name in (("text", cols.text), ("text pair", cols.text_pair)):
        if name is None:
            continue
        col = _arrow(rows, name)
        if col.type != "string" and col.type != "large_string":
            bad = next((r for r, v in enumerate(rows[name]) if not isinstance(v, str)), 0)
            raise DataFileError(f"{f.where(bad)}: {role} column {name!r} holds {rows[name][bad]!r}, not text")
        _refuse_first(f, _blank(col), f"empty {role} in column {name!r}")
    if cols.label is not None and need_label:
        col = _arrow(rows, cols.label)
        missing = _blank(col) if col.type in ("string", "large_string") else pc.is_null(col)
        if getattr(rows.features[cols.label], "names", None):  # ClassLabel: -1 marks an unlabelled row
            missing = pc.or_kleene(missing, pc.less(col, 0))
        _refuse_first(f, missing, f"missing label in column {cols.label!r}")
    log.info("%s: %d rows; columns: %s", path, len(rows), cols.describe())
    return f


def _blank(col: Any) -> Any:
    """Per row: missing, empty or only whitespace (bit masks; the strings are not copied)."""
    import pyarrow.compute as pc

    return pc.or_kleene(pc.or_kleene(pc.is_null(col), pc.equal(col, "")), pc.utf8_is_space(col))


def _arrow(rows: Any, name: str):
    """The pyarrow ChunkedArray of one column (no copy)."""
    return rows.data.column(name)


def _refuse_first(f: TextFile, mask: Any, what: str) -> None:
    import pyarrow.compute as pc

    bad = pc.indices_nonzero(pc.fill_null(mask, True))
    if len(bad):
        more = f" (and {len(bad) - 1} more row(s))" if len(bad) > 1 else ""
        raise DataFileError(f"{f.where(int(bad[0].as_py()))}: {what}{more}")


# ----------------------------------------------------------------------------- labels
def label_name(value: Any) -> str:
    """A label cell as its name: ``1``, ``1.0`` and ``"1"`` are all ``"1"``; text is stripped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


_INT = re.compile(r"-?\d+")


@dataclass(frozen=True)
class LabelMap:
    """Label names in id order; built from the training file, stored in config.json as transformers does."""

    names: tuple[str, ...]

    @classmethod
    def from_values(cls, values: Sequence[Any] | set, tags: bool = False) -> LabelMap:
        """The sorted set of ``values`` (numerically when all are integers); ``tags``: ``O`` first, then B-/I-
        of each type together (``O, B-LOC, I-LOC, B-PER, I-PER``)."""
        names = {label_name(v) for v in values}
        if tags:
            return cls(tuple(sorted(names, key=lambda t: (t != "O", t[2:], t[:2]))))
        if all(_INT.fullmatch(n) for n in names):
            return cls(tuple(sorted(names, key=int)))
        return cls(tuple(sorted(names)))

    @classmethod
    def from_file(cls, f: TextFile) -> LabelMap:
        """The label set of a (training) file."""
        return cls.from_values(f.label_set())

    @classmethod
    def from_config(cls, id2label: dict[int | str, str]) -> LabelMap:
        """From a checkpoint's ``id2label`` (keys may be strings, as in config.json)."""
        return cls(tuple(id2label[k] for k in sorted(id2label, key=int)))

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, f: TextFile) -> np.ndarray:
        """(N,) int64 label ids of a file's label column; a label outside this map is an error naming its line
        (a validation label the training file never had)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = f._label_names()
        if arr is None:
            names = [label_name(v) for v in f.label_values()]
            index = self.label2id
            ids = np.fromiter((index.get(n, -1) for n in names), dtype=np.int64, count=len(names))
        else:
            found = pc.index_in(arr, value_set=pa.array(self.names, pa.string()))
            ids = pc.fill_null(found, -1).to_numpy().astype(np.int64)
        unseen = np.flatnonzero(ids < 0)
        if len(unseen):
            r = int(unseen[0])
            raise DataFileError(f"{f.where(r)}: label {label_name(f.rows[r][f.columns.label])!r} is not among "
                                f"the training labels ({_short(self.names)})")
        return ids

    def encode_multi(self, f: TextFile, separator: str | None = None) -> np.ndarray:
        """(N, L) float32 multi-hot targets of a multi-label column (see ``split_multilabel``)."""
        out = np.zeros((len(f), len(self)), dtype=np.float32)
        index = self.label2id
        for r, value in enumerate(f.label_values()):
            for name in split_multilabel(value, separator, f, r):
                if name not in index:
                    raise DataFileError(f"{f.where(r)}: label {name!r} is not among the training labels "
                                        f"({_short(self.names)})")
                out[r, index[name]] = 1.0
        return out


def _short(names: Sequence[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def split_multilabel(value: Any, separator: str | None, f: TextFile, row: int) -> list[str]:
    """The labels of one multi-label cell: a list (JSON files), a JSON list in text (``["a", "b"]``), or text
    split by ``separator``. ``[]`` means no label applies."""
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                value = json.loads(s)
            except json.JSONDecodeError:
                raise DataFileError(f"{f.where(row)}: multi-label value {s!r} is not a valid JSON list") from None
        elif separator:
            return [p.strip() for p in s.split(separator) if p.strip()]
        else:
            raise DataFileError(f"{f.where(row)}: multi-label value {s!r} is not a list; write a JSON list "
                                "([\"a\", \"b\"]) or give a separator (--label-separator)")
    if isinstance(value, list | tuple):
        return [label_name(v) for v in value]
    raise DataFileError(f"{f.where(row)}: multi-label value {value!r} is not a list")


def multilabel_map(f: TextFile, separator: str | None = None) -> LabelMap:
    """The label set of a multi-label training file."""
    names: set[str] = set()
    for r, value in enumerate(f.label_values()):
        names.update(split_multilabel(value, separator, f, r))
    if not names:
        raise DataFileError(f"{f.path}: no row has a label")
    return LabelMap.from_values(names)


def regression_targets(f: TextFile) -> np.ndarray:
    """(N,) float32 scores of a regression label column; a value that is not a finite number names its line."""
    values = f.label_values()
    out = np.empty(len(values), dtype=np.float32)
    for r, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if isinstance(v, bool) or not math.isfinite(x):
            raise DataFileError(f"{f.where(r)}: score {v!r} is not a finite number")
        out[r] = x
    return out


# ----------------------------------------------------------------------------- token-tag files
TAG = re.compile(r"O|[BI]-\S+")


@dataclass
class TaggedFile:
    """Sentences of words with one tag each, and where each sentence starts."""

    path: Path
    words: list[list[str]]
    tags: list[list[str]]
    lines: list[int] | None = None  # first line of each sentence (CoNLL); None: table rows

    def __len__(self) -> int:
        return len(self.words)

    def where(self, i: int) -> str:
        """``path:LINE`` (or ``path: row N``) of sentence ``i``."""
        return f"{self.path}:{self.lines[i]}" if self.lines is not None else where(self.path, i)

    def tag_set(self) -> set[str]:
        return {t for s in self.tags for t in s}


def read_tagged_file(path: str | os.PathLike, tokens: str | None = None, tags: str | None = None,
                     cache_dir: str | os.PathLike | None = None) -> TaggedFile:
    """CoNLL-2003 style text (``.conll``, ``.txt``, ``.tsv``, ``.csv`` or any other suffix: a token per line,
    the tag in the last column, blank lines between sentences, ``-DOCSTART-`` lines skipped) or a table (JSON
    lines / records, Parquet, saved dataset) with a list of tokens and a list of tags per row. Tags must be BIO / IOB2 (``O``, ``B-X``,
    ``I-X``); ``I-X`` after ``O`` or another type is accepted (seqeval reads it as a new entity) and counted
    in the log."""
    path = Path(path)
    if path.is_file() and FORMATS.get(path.suffix.lower(), "csv") == "csv":  # CoNLL sets often end in .tsv
        out = _read_conll(path)
    else:
        out = _read_tagged_table(path, tokens, tags, cache_dir)
    if not out.words:
        raise DataFileError(f"{path}: no sentences")
    loose = sum(_starts_with_inside(s) for s in out.tags)
    if loose:
        log.info("%s: %d sentence(s) have an I- tag that does not continue an entity (IOB1 style); scored as "
                 "the start of a new entity, as seqeval does", path, loose)
    log.info("%s: %d sentences, %d tokens", path, len(out.words), sum(map(len, out.words)))
    return out


def _starts_with_inside(tags: Sequence[str]) -> bool:
    prev = "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            return True
        prev = t
    return False


def check_tag(tag: str, place: str) -> str:
    if not TAG.fullmatch(tag):
        raise DataFileError(f"{place}: tag {tag!r} is not BIO (O, B-TYPE or I-TYPE)")
    return tag


def _read_conll(path: Path) -> TaggedFile:
    check_text_file(path)
    words: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[int] = []
    width: int | None = None
    cur_w: list[str] = []
    cur_t: list[str] = []
    with path.open(encoding="utf-8-sig") as f:
        for n, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields or fields[0] == "-DOCSTART-":
                if cur_w:
                    words.append(cur_w)
                    tags.append(cur_t)
                    cur_w, cur_t = [], []
                continue
            if len(fields) < 2:
                raise DataFileError(f"{path}:{n}: 1 column; expected a token and its tag")
            if width is None:
                width = len(fields)
            elif len(fields) != width:
                raise DataFileError(f"{path}:{n}: {len(fields)} columns, earlier lines have {width}")
            if not cur_w:
                lines.append(n)
            cur_w.append(fields[0])
            cur_t.append(check_tag(fields[-1], f"{path}:{n}"))
    if cur_w:
        words.append(cur_w)
        tags.append(cur_t)
    return TaggedFile(path, words, tags, lines)


def _read_tagged_table(path: Path, tokens: str | None, tags: str | None, cache_dir: Any) -> TaggedFile:
    present = column_names(path)
    listing = ", ".join(map(repr, present))
    for role, name in (("tokens", tokens), ("tags", tags)):
        if name is not None and name not in present:
            raise DataFileError(f"{path}: no {role} column {name!r}; the file has {listing}")
    tokens = tokens or next((n for n in TOKEN_NAMES if n in present), None)
    tags = tags or next((n for n in TAG_NAMES if n in present and n != tokens), None)
    if tokens is None or tags is None:
        raise DataFileError(f"{path}: no {'tokens' if tokens is None else 'tags'} column found (looked for "
                            f"{', '.join(TOKEN_NAMES if tokens is None else TAG_NAMES)}); the file has {listing}")
    rows = read_table(path, [tokens, tags], cache_dir=cache_dir)
    feature = rows.features[tags]
    inner = getattr(feature, "feature", None)
    if inner is None and isinstance(feature, list) and feature:  # datasets' List feature
        inner = feature[0]
    names = getattr(inner, "names", None)
    out = TaggedFile(path, [], [], None)
    for r, row in enumerate(rows):
        w, t = row[tokens], row[tags]
        if not isinstance(w, list) or not isinstance(t, list):
            raise DataFileError(f"{where(path, r)}: {tokens!r} and {tags!r} must be lists")
        if len(w) != len(t):
            raise DataFileError(f"{where(path, r)}: {len(w)} tokens but {len(t)} tags")
        if not w:
            raise DataFileError(f"{where(path, r)}: no tokens")
        if names:
            t = [names[i] for i in t]
        elif any(isinstance(x, int) for x in t):
            raise DataFileError(f"{where(path, r)}: tags are numbers without names; write the tag names "
                                "(O, B-PER, I-PER, ...)")
        t = [str(x) for x in t]
        bad = next((x for x in t if not TAG.fullmatch(x)), None)
        if bad is not None:
            check_tag(bad, where(path, r))
        out.words.append([str(x) for x in w])
        out.tags.append(t)
    return out


def encode_tags(f: TaggedFile, labels: LabelMap) -> list[list[int]]:
    """Tag ids per sentence; a tag the training file never had names its sentence."""
    index = labels.label2id
    out = []
    for i, sentence in enumerate(f.tags):
        unseen = [t for t in sentence if t not in index]
        if unseen:
            raise DataFileError(f"{f.where(i)}: tag {unseen[0]!r} is not among the training tags "
                                f"({_short(labels.names)})")
        out.append([index[t] for t in sentence])
    return out


# ----------------------------------------------------------------------------- notes
def data_notes(train_labels: Sequence[Any] | None, names: Sequence[str] | None = None,
               train_texts: Sequence[str] | None = None, validation_texts: Sequence[str] | None = None,
               train_path: str | os.PathLike = "training file") -> list[str]:
    """Notes, not errors, about the data: texts in both training and validation (count), a majority class
    that dominates (its share is the score to beat), labels with very few training examples.

    ``train_labels``: label ids (or names) of the training rows; ``names``: the label names by id."""
    notes: list[str] = []
    if train_texts is not None and validation_texts is not None:
        seen = set(train_texts)
        both = sum(t in seen for t in validation_texts)
        if both:
            notes.append(f"{both} of {len(validation_texts)} validation texts also appear in the training file: "
                         "validation scores overstate what the model does on new text")
    if train_labels is not None and len(train_labels):
        counts = Counter(train_labels)

        def show(x: Any) -> str:
            return names[x] if names is not None and isinstance(x, int | np.integer) else str(x)

        top, n = counts.most_common(1)[0]
        share = n / len(train_labels)
        if len(counts) > 1 and share >= IMBALANCE_SHARE:
            notes.append(f"{train_path}: {share:.1%} of the training rows are {show(top)!r}: always answering it "
                         f"scores accuracy {share:.4f} (the majority baseline); read macro F1, not accuracy")
        few = sorted(show(k) for k, c in counts.items() if c < FEW_EXAMPLES)
        if few:
            notes.append(f"{train_path}: label(s) with fewer than {FEW_EXAMPLES} training examples: "
                         f"{_short(few)}; expect poor scores on them")
        if names is not None:
            absent = [n for i, n in enumerate(names) if i not in counts and n not in counts]
            if absent:
                notes.append(f"{train_path}: label(s) never seen in training: {_short(absent)}")
    return notes
