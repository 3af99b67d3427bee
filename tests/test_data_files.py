"""The user's own files (data/files.py): every format read alike, columns detected, label maps, and every bad
input refused with one line naming the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mobilebert.data import files as F

datasets = pytest.importorskip("datasets")

ROWS = [("a fine film", "pos"), ("NA", "neg"), ("123", "pos"), ('said "no", twice', "neg")]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "hf-cache"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_all_formats(d: Path) -> list[Path]:
    """The same rows as CSV, TSV, JSONL, JSON array, Parquet and a save_to_disk folder."""
    ds = datasets.Dataset.from_dict({"text": [t for t, _ in ROWS], "label": [lab for _, lab in ROWS]})
    csv_text = "text,label\n" + "".join('"' + t.replace('"', '""') + f'",{lab}\n' for t, lab in ROWS)
    paths = [write(d / "a.csv", csv_text),
             write(d / "a.tsv", "text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in ROWS)),  # TSV: no quoting
             write(d / "a.jsonl", "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS)),
             write(d / "a.json", json.dumps([{"text": t, "label": lab} for t, lab in ROWS]))]
    ds.to_parquet(str(d / "a.parquet"))
    ds.save_to_disk(str(d / "saved"))
    return [*paths, d / "a.parquet", d / "saved"]


def test_every_format_gives_the_same_rows(tmp_path, cache):
    for path in make_all_formats(tmp_path):
        f = F.read_text_file(path, cache_dir=cache)
        assert f.texts() == [t for t, _ in ROWS], path  # "NA" and "123" stay text
        assert [F.label_name(v) for v in f.label_values()] == [lab for _, lab in ROWS], path
        assert f.columns == F.Columns("text", None, "label", ("text", "label")), path
        assert [t for b, _ in f.batches(3) for t in b] == f.texts()


@pytest.mark.parametrize("task, text, pair, label", [
    ("MRPC", "#1 String", "#2 String", "Quality"), ("RTE", None, None, None), ("STS-B", None, None, "score"),
    ("CoLA", None, None, None),
])
def test_glue_tsv_files_read_as_glue_reads_them(shared_data, cache, task, text, pair, label):
    """The GLUE TSVs (unquoted, with stray quotes) give the same texts and labels as data/glue.py."""
    from mobilebert.data import glue

    path = shared_data / "glue" / task / "dev.tsv"
    t = glue.get_task(task.lower().replace("-", ""))
    if t.no_header:  # CoLA has no header line: write one, as a user would
        body = path.read_text(encoding="utf-8")
        path = cache.parent / "cola.tsv"
        path.write_text("\t".join(t.no_header) + "\n" + body, encoding="utf-8")
    ref = glue.read_glue(t, path, "dev")
    f = F.read_text_file(path, text=text, text_pair=pair, label=label, cache_dir=cache)
    assert f.texts() == [e.text_a for e in ref]
    assert (f.pairs() or [None] * len(ref)) == [e.text_b for e in ref]
    if t.is_regression:
        np.testing.assert_allclose(F.regression_targets(f), [e.label for e in ref], rtol=1e-6)
    else:
        np.testing.assert_array_equal(F.LabelMap(t.labels).encode(f), [e.label for e in ref])


def test_csv_rows_are_memory_mapped(tmp_path, cache):
    f = F.read_text_file(make_all_formats(tmp_path)[0], cache_dir=cache)
    assert f.rows.cache_files and all(Path(c["filename"]).is_file() for c in f.rows.cache_files)


def test_bom_and_blank_lines_and_multiline_fields(tmp_path, cache):
    p = write(tmp_path / "b.csv", b'\xef\xbb\xbftext,label\n"two\nlines",x\n\n"ok",y\n')
    f = F.read_text_file(p, cache_dir=cache)
    assert f.texts() == ["two\nlines", "ok"] and f.label_values() == ["x", "y"]
    assert f.where(1) == f"{p}:5"  # the line where the row starts, past the multi-line field and the blank


@pytest.mark.parametrize("header, given, expected", [
    (["sentence1", "sentence2", "label"], {}, ("sentence1", "sentence2", "label", ("text", "text_pair", "label"))),
    (["question", "sentence", "label"], {}, ("question", "sentence", "label", ("text", "text_pair", "label"))),
    (["text", "sentence1", "sentence2", "labels"], {}, ("text", None, "labels", ("text", "label"))),
    (["sentence", "score"], {"label": "score"}, ("sentence", None, "score", ("text",))),
    (["review", "stars", "label"], {"text": "review", "label": "stars"}, ("review", None, "stars", ())),
    (["a", "b", "y"], {"text": "a", "text_pair": "b", "label": "y"}, ("a", "b", "y", ())),
])
def test_column_detection(header, given, expected):
    assert F.choose_columns("f.csv", header, **given) == F.Columns(*expected)


def test_describe_says_which_columns_were_used():
    c = F.choose_columns("f.csv", ["sentence", "label", "id"])
    assert c.describe() == "text 'sentence' (detected), label 'label' (detected)"
    pair = F.choose_columns("f.csv", ["sentence1", "sentence2", "y"], label="y")
    assert pair.describe() == "text 'sentence1' (detected), text pair 'sentence2' (detected), label 'y'"


def test_label_map_order_and_config_round_trip():
    assert F.LabelMap.from_values(["pos", "neg", "pos"]).names == ("neg", "pos")
    assert F.LabelMap.from_values(["10", "9", 1, 2.0]).names == ("1", "2", "9", "10")  # numeric when all integers
    tags = F.LabelMap.from_values(["I-PER", "O", "B-LOC", "B-PER", "I-LOC"], tags=True)
    assert tags.names == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    m = F.LabelMap(("negative", "positive"))
    assert m.id2label == {0: "negative", 1: "positive"} and m.label2id == {"negative": 0, "positive": 1}
    as_json = json.loads(json.dumps({"id2label": m.id2label}))["id2label"]  # keys become strings in config.json
    assert F.LabelMap.from_config(as_json) == m


def test_mixed_label_types_read_as_names(tmp_path, cache):
    f = F.read_text_file(write(tmp_path / "m.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n'),
                         cache_dir=cache)
    assert [F.label_name(v) for v in f.label_values()] == ["1", "x"]


def test_labels_encode_by_name_whatever_the_file_type(tmp_path, cache):
    train = F.read_text_file(write(tmp_path / "t.csv", "text,label\na,1\nb,0\nc,1\n"), cache_dir=cache)
    val = F.read_text_file(write(tmp_path / "v.jsonl", '{"text": "d", "label": 0}\n{"text": "e", "label": 1}\n'),
                           cache_dir=cache)
    m = F.LabelMap.from_file(train)
    assert m.names == ("0", "1") and val.label_set() == {"0", "1"}
    np.testing.assert_array_equal(m.encode(train), [1, 0, 1])
    np.testing.assert_array_equal(m.encode(val), [0, 1])


def test_classlabel_of_a_saved_dataset_reads_as_names(tmp_path, cache):
    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]}, features=feats).save_to_disk(str(tmp_path / "d"))
    f = F.read_text_file(tmp_path / "d", cache_dir=cache)
    assert f.label_values() == ["pos", "neg"] and f.label_set() == {"pos", "neg"}
    np.testing.assert_array_equal(F.LabelMap(("neg", "pos")).encode(f), [1, 0])
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, -1]}, features=feats).save_to_disk(str(tmp_path / "u"))
    with pytest.raises(ValueError, match=r"u: row 2: missing label"):
        F.read_text_file(tmp_path / "u", cache_dir=cache)


def test_multilabel_lists_and_separators(tmp_path, cache):
    p = write(tmp_path / "m.csv", 'text,labels\na,"[""x"", ""y""]"\nb,[]\nc,y|z\n')
    f = F.read_text_file(p, cache_dir=cache)
    m = F.multilabel_map(f, separator="|")
    assert m.names == ("x", "y", "z")
    np.testing.assert_array_equal(m.encode_multi(f, "|"), [[1, 1, 0], [0, 0, 0], [0, 1, 1]])
    j = F.read_text_file(write(tmp_path / "m.jsonl", '{"text": "a", "labels": ["y"]}\n{"text": "b", "labels": []}\n'),
                         cache_dir=cache)
    np.testing.assert_array_equal(m.encode_multi(j), [[0, 1, 0], [0, 0, 0]])


def test_regression_targets(tmp_path, cache):
    f = F.read_text_file(write(tmp_path / "r.csv", "sentence1,sentence2,label\na,b,0.5\nc,d,4\n"), cache_dir=cache)
    np.testing.assert_allclose(F.regression_targets(f), [0.5, 4.0])


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_and_jsonl_tags_read_alike(tmp_path, cache):
    c = F.read_tagged_file(write(tmp_path / "train.conll", "\ufeff" + CONLL))  # no trailing blank line
    tsv = F.read_tagged_file(write(tmp_path / "train.tsv", CONLL.replace(" ", "\t")))  # .tsv: CoNLL too
    assert (tsv.words, tsv.tags) == (c.words, c.tags)
    assert c.words == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert c.tags == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert c.where(1) == f"{tmp_path / 'train.conll'}:7"
    rows = "".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in zip(c.words, c.tags, strict=True))
    j = F.read_tagged_file(write(tmp_path / "train.jsonl", rows), cache_dir=cache)
    assert (j.words, j.tags) == (c.words, c.tags)
    m = F.LabelMap.from_values(c.tag_set(), tags=True)
    assert F.encode_tags(c, m) == [[m.label2id["B-ORG"], 0, m.label2id["B-MISC"]],
                                   [m.label2id["B-PER"], m.label2id["I-PER"]]]


def test_saved_dataset_with_classlabel_tags(tmp_path, cache):
    names = ["O", "B-PER", "I-PER"]
    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    datasets.Dataset.from_dict({"tokens": [["Ann", "Lee", "ran"]], "ner_tags": [[1, 2, 0]]},
                               features=feats).save_to_disk(str(tmp_path / "ner"))
    t = F.read_tagged_file(tmp_path / "ner", cache_dir=cache)
    assert t.tags == [["B-PER", "I-PER", "O"]]


# ----------------------------------------------------------------------------- every bad input, one line each
BAD_TEXT = [
    # (file name, content, read_text_file kwargs, expected line or None, words in the message)
    ("a.csv", "text,label\nx,1\n", {"label": "stars"}, None, ["no label column 'stars'", "'text', 'label'"]),
    ("a.csv", "review,stars\nx,1\n", {}, None, ["no text column found", "'review', 'stars'", "--text-column"]),
    ("a.csv", "text,stars\nx,1\n", {}, None, ["no label column found", "--label-column"]),
    ("a.csv", "", {}, None, ["the file is empty"]),
    ("a.csv", "\n  \n", {}, None, ["the file is empty"]),
    ("a.csv", "text,label\n", {}, None, ["no data rows (only a header)"]),
    ("a.json", "[]", {}, None, ["no records"]),
    ("a.csv", "text,label\nok,1\n  ,0\n", {}, 3, ["empty text in column 'text'"]),
    ("a.tsv", "sentence1\tsentence2\tlabel\na\tb\t1\nc\t\t0\nd\t\t0\n", {}, 3,
     ["empty text pair in column 'sentence2'", "(and 1 more row(s))"]),
    ("a.csv", "text,label\nok,1\nfine,\n", {}, 3, ["missing label in column 'label'"]),
    ("a.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": null}\n', {}, 3, ["missing label"]),
    ("a.jsonl", '{"text": "a", "label": 1}\n["b", 0]\n', {}, 2, ["a JSON list, not an object"]),
    ("a.jsonl", '"just text"\n', {}, 1, ["a JSON str, not an object"]),
    ("a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 1\n', {}, 2, ["not valid JSON"]),
    ("a.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": "x"}\n', {}, 3,
     ["column 'label' holds str here but int on line 1"]),
    ("a.jsonl", '{"text": "a", "label": 1}\n{"text": 5, "label": 2}\n', {}, 2, ["text column 'text' holds 5, not text"]),
    ("a.json", '[{"text": "a", "label": 1}, 3]', {}, None, ["record 2 is a JSON int, not an object"]),
    ("a.json", '{\n  "data": [{"text": "a", "label": 1}]\n}\n', {}, None, ["one JSON object (keys 'data')"]),
    ("a.csv", b"text,label\nhi,1\nh\xe9llo,0\n", {}, 3, ["not UTF-8 (byte 0xe9)"]),
    ("a.csv", "text,label\nhi,1\nthere,0,extra\n", {}, 3, ["3 field(s), the header has 2"]),
    ("a.csv", 'text,label\n"unclosed,1\nok,1\n', {}, 2, ["1 field(s), the header has 2", "never closed"]),
    ("a.csv", "text,text,label\na,b,1\n", {}, 1, ["column(s) 'text' appear more than once"]),
    ("a.xlsx", "text,label\n", {}, None, ["unknown file type '.xlsx'"]),
    ("missing.csv", None, {}, None, ["no such file"]),
]


@pytest.mark.parametrize("name, content, kw, line, words", BAD_TEXT, ids=[f"{c[0]}-{c[4][0][:24]}" for c in BAD_TEXT])
def test_bad_text_files(tmp_path, cache, name, content, kw, line, words):
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(ValueError) as e:
        F.read_text_file(path, cache_dir=cache, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    if line is not None:
        assert msg.startswith(f"{path}:{line}: ")
    for w in words:
        assert w in msg, msg


def test_datasetdict_folder_names_its_splits(tmp_path, cache):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"], "label": [0]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"holds the splits train; name one folder, e\.g\. .*dd/train"):
        F.read_text_file(tmp_path / "dd", cache_dir=cache)


def test_validation_label_unseen_in_training(tmp_path, cache):
    train = F.read_text_file(write(tmp_path / "t.csv", "text,label\na,pos\nb,neg\n"), cache_dir=cache)
    val = F.read_text_file(write(tmp_path / "v.csv", "text,label\nc,pos\nd,neutral\n"), cache_dir=cache)
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'v.csv'}:3: label 'neutral' is not among the training "
                                         r"labels \(neg, pos\)$"):
        F.LabelMap.from_values(train.label_values()).encode(val)


@pytest.mark.parametrize("content, separator, line, words", [
    ("text,labels\na,x\n", None, 2, ["is not a list", "--label-separator"]),
    ('text,labels\na,"[""x"""\n', None, 2, ["not a valid JSON list"]),
    ("text,labels\na,x|q\n", "|", 2, ["label 'q' is not among the training labels"]),
])
def test_bad_multilabel_values(tmp_path, cache, content, separator, line, words):
    p = write(tmp_path / "m.csv", content)
    f = F.read_text_file(p, cache_dir=cache)
    with pytest.raises(ValueError) as e:
        F.LabelMap(("x",)).encode_multi(f, separator)
    assert str(e.value).startswith(f"{p}:{line}: ") and all(w in str(e.value) for w in words)


def test_regression_value_not_a_number(tmp_path, cache):
    p = write(tmp_path / "r.csv", "text,label\na,1.5\nb,high\n")
    with pytest.raises(ValueError, match=rf"^{p}:3: score 'high' is not a finite number$"):
        F.regression_targets(F.read_text_file(p, cache_dir=cache))


BAD_TAGS = [
    ("t.conll", "EU B-ORG\nrejects O\nGerman JJ B-MISC\n", 3, ["3 columns, earlier lines have 2"]),
    ("t.conll", "EU\n", 1, ["1 column; expected a token and its tag"]),
    ("t.conll", "EU B-ORG\n\nPeter PER\n", 3, ["tag 'PER' is not BIO"]),
    ("t.conll", "EU E-ORG\n", 1, ["tag 'E-ORG' is not BIO"]),
    ("t.conll", b"EU B-ORG\nK\xf6ln B-LOC\n", 2, ["not UTF-8"]),
    ("t.conll", "-DOCSTART- O\n\n", None, ["no sentences"]),
    ("t.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', 1, ["2 tokens but 1 tags"]),
    ("t.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"], "tags": ["PER"]}\n', 2, ["tag 'PER' is not BIO"]),
    ("t.jsonl", '{"tokens": ["a"], "tags": [1]}\n', 1, ["tags are numbers without names"]),
    ("t.jsonl", '{"words": ["a"], "tags": ["O"]}\n', None, []),  # fine: "words" is a tokens name
    ("t.jsonl", '{"text": "a", "tags": ["O"]}\n', None, ["no tokens column found", "'text', 'tags'"]),
]


@pytest.mark.parametrize("name, content, line, words", BAD_TAGS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_TAGS)])
def test_bad_tag_files(tmp_path, cache, name, content, line, words):
    path = write(tmp_path / name, content)
    if not words:
        assert F.read_tagged_file(path, cache_dir=cache).words == [["a"]]
        return
    with pytest.raises(ValueError) as e:
        F.read_tagged_file(path, cache_dir=cache)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    if line is not None:
        assert msg.startswith(f"{path}:{line}: ")
    assert all(w in msg for w in words), msg


def test_validation_tag_unseen_in_training(tmp_path):
    train = F.read_tagged_file(write(tmp_path / "t.conll", "EU B-ORG\nsays O\n"))
    val = F.read_tagged_file(write(tmp_path / "v.conll", "EU B-ORG\n\nAnn B-PER\n"))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'v.conll'}:3: tag 'B-PER' is not among the training tags"):
        F.encode_tags(val, F.LabelMap.from_values(train.tag_set(), tags=True))


# ----------------------------------------------------------------------------- notes
def test_notes_duplicates_imbalance_and_rare_labels():
    notes = F.data_notes([0] * 90 + [1] * 8 + [2] * 2, ["ham", "spam", "phish"],
                         train_texts=["a", "b", "c"], validation_texts=["b", "c", "d", "e"], train_path="t.csv")
    assert any(n.startswith("2 of 4 validation texts also appear in the training file") for n in notes)
    assert any("90.0% of the training rows are 'ham'" in n and "0.9000" in n for n in notes)
    assert any("fewer than 5 training examples: phish" in n for n in notes)
    assert F.data_notes([0, 1, 0, 1] * 5, ["a", "b"], ["x"], ["y"]) == []
