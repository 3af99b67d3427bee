"""Token classification data (data/tagging.py): tags on first word pieces, predictions back onto words, and
entities with character offsets into the original text."""

from __future__ import annotations

import pytest

from mobilebert.data import tagging as T
from mobilebert.tokenizer import BUNDLED_VOCAB, MobileBertTokenizer

pytest.importorskip("seqeval")


@pytest.fixture(scope="module")
def tok() -> MobileBertTokenizer:
    return MobileBertTokenizer.default()


def test_tag_on_first_piece_and_minus_100_elsewhere(tok):
    words = [["Johanson", "visited", "U.S.", "firms"]]
    enc = T.encode_tagged(tok, words, [[1, 0, 3, 0]], max_length=32)
    pieces = tok.convert_ids_to_tokens(enc.input_ids[0])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert pieces[1:-1] == [p for w in words[0] for p in tok.tokenize(w)]
    first = {}
    for i, w in enumerate(enc.word_ids[0]):
        if w is not None:
            first.setdefault(w, i)
    expected = [-100] * len(pieces)
    for w, i in first.items():
        expected[i] = [1, 0, 3, 0][w]
    assert enc.labels[0] == expected
    assert len(set(enc.word_ids[0]) - {None}) == 4 and sum(x != -100 for x in enc.labels[0]) == 4
    assert enc.token_type_ids[0] == [0] * len(pieces)


def test_labels_agree_with_transformers_word_ids(tok):
    """The same word_ids (and so the same labels) as transformers' fast tokenizer with is_split_into_words."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizerFast(str(BUNDLED_VOCAB), do_lower_case=True)
    words = [["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."], ["Straße", "3,5%"]]
    ours = T.encode_tagged(tok, words, max_length=64)
    for i, w in enumerate(words):
        ref = hf(w, is_split_into_words=True)
        assert ours.input_ids[i] == ref["input_ids"]
        assert ours.word_ids[i] == ref.word_ids()


def test_truncation_counts_and_cut_words_predict_o(tok):
    words = [["alpha"] * 10, ["beta"]]
    enc = T.encode_tagged(tok, words, [[1] * 10, [2]], max_length=6)
    assert [len(x) for x in enc.input_ids] == [6, 3] and enc.truncated == 1
    # pieces predicted 1 for the 4 words that fit; the 6 cut-off words come back as O (id 0)
    assert T.word_predictions([0, 1, 1, 1, 1, 0], enc.word_ids[0], enc.n_words[0], fill=0) == [1] * 4 + [0] * 6


def test_word_predictions_read_the_first_piece(tok):
    enc = T.encode_tagged(tok, [["Johanson", "ran"]], max_length=16)
    n = len(enc.input_ids[0])
    # every piece predicts its own position; the word takes its first piece's
    assert T.word_predictions(list(range(n)), enc.word_ids[0], 2, fill=0) == [1, n - 2]


def test_unpieced_words_are_counted(tok):
    enc = T.encode_tagged(tok, [["a", "\u200b", "b"]], [[1, 2, 1]], max_length=16)
    assert enc.unpieced == 1


@pytest.mark.parametrize("text, words", [
    ("Peter Blackburn lives in Paris.", ["Peter", "Blackburn", "lives", "in", "Paris", "."]),
    ('He said "Acme Corp, U.S." (again)!', ["He", "said", '"', "Acme", "Corp", ",", "U.S.", '"', "(", "again", ")",
                                             "!"]),
    ("  J. Smith\tand\nA.B.C.  ", ["J.", "Smith", "and", "A.B.C."]),
    ("", []),
])
def test_split_words_keeps_offsets(text, words):
    spans = T.split_words(text)
    assert [text[s:e] for s, e in spans] == words


def test_entities_with_character_offsets():
    text = "Yesterday Peter Blackburn flew from New York to Paris."
    spans = T.split_words(text)
    tags = ["O", "B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "B-LOC", "O"]
    ents = T.entities(text, spans, tags, scores=[1.0] * 10)
    assert [(e["type"], e["text"]) for e in ents] == [("PER", "Peter Blackburn"), ("LOC", "New York"), ("LOC", "Paris")]
    for e in ents:
        assert text[e["start"]:e["end"]] == e["text"] and e["score"] == 1.0
    # seqeval chunking: an I- after O starts an entity; a type change splits it; an entity may end the text
    assert [e["text"] for e in T.entities(text, spans, ["O", "I-PER", "I-LOC", "O", "O", "O", "O", "O", "O", "B-LOC"])] \
        == ["Peter", "Blackburn", "."]


def test_encode_text_matches_split_words(tok):
    texts = ["Ann Lee met Bob.", ""]
    w = T.encode_text(tok, texts, max_length=16)
    enc, spans = w.rows, w.spans
    assert enc.n_words == [5, 0] and enc.input_ids[1] == [tok.cls_token_id, tok.sep_token_id]
    assert [texts[0][s:e] for s, e in spans[0]] == ["Ann", "Lee", "met", "Bob", "."]
    assert w.text_of_row == [0, 1] and enc.input_ids[0] == T.encode_tagged(tok, [["Ann", "Lee", "met", "Bob", "."]],
                                                                           max_length=16).input_ids[0]


def test_long_texts_are_read_in_overlapping_windows(tok):
    text = " ".join(f"Smithson{i}" for i in range(30))  # several pieces per word: windows must not cut a word
    w = T.encode_text(tok, [text, "short one"], max_length=16)
    full = tok.backend.encode(text.split(), is_pretokenized=True, add_special_tokens=False).word_ids
    rows = [r for r, t in enumerate(w.text_of_row) if t == 0]
    assert len(rows) > 3 and w.text_of_row[-1] == 1 and all(len(ids) <= 16 for ids in w.rows.input_ids)
    for r in rows[1:]:  # each window starts at a word's first piece
        first = w.rows.word_ids[r][1]
        assert full.index(first) == next(i for i, x in enumerate(full) if x == first)
        assert w.rows.word_ids[r][1:3] == full[full.index(first):full.index(first) + 2]
    assert set().union(*(set(w.rows.word_ids[r]) - {None} for r in rows)) == set(range(30))
    # each word read where it sits farthest from an edge: give every piece its word id as the prediction and
    # its row number as the score; the word that opens window 2 also sits well inside window 1, so comes from there
    preds = [[-1 if x is None else x for x in wids] for wids in w.rows.word_ids]
    scores = [[float(r)] * len(wids) for r, wids in enumerate(w.rows.word_ids)]
    (ids, word_scores), (short_ids, _) = T.merge_windows(w, preds, scores, fill=-9)
    assert ids == list(range(30)) and short_ids == [0, 1]
    assert word_scores[w.rows.word_ids[rows[1]][1]] == 0.0


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="at least 3"):
        T.encode_tagged(tok, [["a"]], max_length=2)
    with pytest.raises(ValueError, match="sentence 0: 2 words but 1 tags"):
        T.encode_tagged(tok, [["a", "b"]], [[0]])
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        T.entities("a b", [(0, 1), (2, 3)], ["O"])


def test_pieces_fit_together_a_tiny_tagger_learns_its_sentences(tmp_path, tok):
    """CoNLL file -> label map -> first-piece labels -> MobileBertForTokenClassification -> word predictions
    -> seqeval scores: a tiny model memorises four sentences (entity F1 1.0), so the parts agree on alignment."""
    import torch
    from conftest import tiny_config

    from mobilebert import MobileBertForTokenClassification
    from mobilebert.data import files as F
    from mobilebert.data.metrics import entity_metrics

    conll = ("Ann NNP B-PER\nLee NNP I-PER\nvisited VBD O\nMontpellier NNP B-LOC\n\n"
             "Bob NNP B-PER\nflew VBD O\nto TO O\nNew NNP B-LOC\nYork NNP I-LOC\n\n"
             "Paris NNP B-LOC\nwelcomed VBD O\nJohanson NNP B-PER\n\n"
             "nothing NN O\nhere RB O\n")
    (tmp_path / "t.conll").write_text(conll, encoding="utf-8")
    data = F.read_tagged_file(tmp_path / "t.conll")
    labels = F.LabelMap.from_values(data.tag_set(), tags=True)
    enc = T.encode_tagged(tok, data.words, F.encode_tags(data, labels), max_length=16)
    width = max(map(len, enc.input_ids))

    def pad(rows, value):
        return torch.tensor([r + [value] * (width - len(r)) for r in rows])

    ids, y = pad(enc.input_ids, 0), pad(enc.labels, T.IGNORE)
    mask = pad([[1] * len(r) for r in enc.input_ids], 0)
    torch.manual_seed(0)
    model = MobileBertForTokenClassification(tiny_config(vocab_size=tok.vocab_size, num_labels=len(labels),
                                                         id2label=labels.id2label))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(60):
        loss = model(ids, mask, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pieces = model(ids, mask).logits.argmax(-1).tolist()
    o = labels.label2id["O"]
    words = [T.word_predictions(p, w, n, fill=o) for p, w, n in zip(pieces, enc.word_ids, enc.n_words, strict=True)]
    predicted = [[labels.names[i] for i in s] for s in words]
    assert entity_metrics(data.tags, predicted)["f1"] == 1.0
