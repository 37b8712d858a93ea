"""RAG baselines: chunking, corpus loading, BM25 and dense retrieval on toy documents."""

import json

import pytest

from gag_core.errors import ConfigError, DataError
from gag_core.corpus import Document, chunk_documents, chunk_text, load_corpus
from gag_core.retrieval import BM25Retriever, DenseRetriever, format_knowledge
from gag_core.models import embedded_sentence_encoder_path, load_sentence_encoder

DOCS = [
    "Veridite is a green mineral with a monoclinic crystal system, first found near Lake Ostrava in 1847.",
    "The Zurich railway station opened in 1847 and serves over four hundred thousand passengers daily.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose and oxygen.",
    "The violin has four strings tuned in perfect fifths and is played with a horsehair bow.",
    "Mount Kilimanjaro, a dormant volcano in Tanzania, is the highest mountain in Africa.",
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria in a fermented starter.",
]


# --- chunking -----------------------------------------------------------------------------------

def test_chunk_by_words_sizes_and_overlap():
    text = " ".join(f"w{i}" for i in range(10))
    assert chunk_text(text, 4, 1) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_text(text, 4, 0) == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"]
    assert chunk_text(text, 20, 5) == [text]
    assert chunk_text(text, 5, 2) == ["w0 w1 w2 w3 w4", "w3 w4 w5 w6 w7", "w6 w7 w8 w9"]  # no overlap-only tail
    assert chunk_text("", 4, 1) == [] and chunk_text("   \n ", 4, 1) == []


def test_chunk_keeps_original_spacing():
    assert chunk_text("one  two\nthree four", 3, 0) == ["one  two\nthree", "four"]


@pytest.mark.parametrize("size, overlap", [(4, 4), (4, 5), (0, 0), (4, -1), (4.0, 1)])
def test_chunk_rejects_bad_sizes(size, overlap):
    with pytest.raises(ConfigError, match="size_tokens > overlap_tokens >= 0"):
        chunk_text("a b c", size, overlap)


def test_chunk_by_tokenizer_tokens():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(embedded_sentence_encoder_path()))
    text = "Veridite crystallises in the monoclinic system. " * 6
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    chunks = chunk_text(text, 16, 4, tokenizer=tok)
    assert len(chunks) == -(-(n - 4) // 12)          # ceil((n - overlap) / step)
    assert all(len(tok(c, add_special_tokens=False)["input_ids"]) <= 16 for c in chunks)
    assert chunks[0].startswith("Veridite") and all(c in text for c in chunks)


def test_chunk_documents_never_span_documents():
    docs = [Document("a", "one two three"), Document("b", "four five")]
    assert chunk_documents(docs, 2, 0) == ["one two", "three", "four five"]


# --- corpus loading -----------------------------------------------------------------------------

def test_load_jsonl(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"id": 7, "text": "alpha"}) + "\n\n" + json.dumps({"body": "beta"}) + "\n")
    with pytest.raises(DataError, match="line 3: expected an object with a string 'text' field"):
        load_corpus(path)
    path.write_text(json.dumps({"id": 7, "text": "alpha"}) + "\n\n" + json.dumps({"text": "beta ü"}) + "\n")
    assert load_corpus(path) == [Document("7", "alpha"), Document("corpus:3", "beta ü")]


def test_load_jsonl_custom_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"body": "gamma"}) + "\n")
    assert load_corpus(path, text_field="body") == [Document("c:1", "gamma")]


def test_bad_jsonl_line_names_line_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "fine too"}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load_corpus(path)
    path.write_text('{"text": "fine"}\n["a", "list"]\n')
    with pytest.raises(DataError, match="line 2: expected an object"):
        load_corpus(path)


def test_load_text_file_and_folder(tmp_path):
    (tmp_path / "notes.md").write_text("# Veridite\nGreen.")
    assert load_corpus(tmp_path / "notes.md") == [Document("notes.md", "# Veridite\nGreen.")]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "ignored.csv").write_text("x,y")
    assert load_corpus(tmp_path) == [Document("a.txt", "ay"), Document("notes.md", "# Veridite\nGreen."),
                                     Document("sub/b.txt", "bee")]


def test_load_corpus_errors(tmp_path):
    with pytest.raises(DataError, match="Corpus not found"):
        load_corpus(tmp_path / "missing.jsonl")
    (tmp_path / "data.csv").write_text("a")
    with pytest.raises(DataError, match="Unsupported corpus file 'data.csv'"):
        load_corpus(tmp_path / "data.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No .txt or .md files"):
        load_corpus(tmp_path / "empty")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_corpus(tmp_path / "latin1.txt")


def test_format_knowledge():
    assert format_knowledge(["alpha ", ("beta", 0.5)]) == "[1] alpha\n\n[2] beta"
    assert format_knowledge([]) == ""


# --- retrieval ------------------------------------------------------------------------------------

QUERIES = [
    ("What crystal system does veridite have?", 0),
    ("When did the Zurich station open?", 1),
    ("How do plants make glucose from sunlight?", 2),
    ("How many strings does a violin have?", 3),
    ("What is the tallest mountain in Africa?", 4),
    ("What makes sourdough rise?", 5),
]


def test_bm25_finds_right_chunk():
    bm25 = BM25Retriever(DOCS)
    for query, want in QUERIES:
        hits = bm25.search(query, k=2)
        assert hits[0][0] == DOCS[want], query
        assert len(hits) == 2 and hits[0][1] >= hits[1][1]


def test_bm25_k_larger_than_corpus_and_unknown_words():
    bm25 = BM25Retriever(DOCS[:3])
    assert len(bm25.search("veridite", k=10)) == 3
    assert [s for _, s in bm25.search("qwertyuiop the", k=2)] == [0.0, 0.0]
    batch = bm25.search_batch(["veridite", "photosynthesis"], k=1)
    assert [hits[0][0] for hits in batch] == [DOCS[0], DOCS[2]]
    assert bm25.search_batch([], k=1) == []
    with pytest.raises(ConfigError, match="positive integer"):
        bm25.search("x", k=0)
    with pytest.raises(DataError, match="zero chunks"):
        BM25Retriever([])


def test_bm25_on_a_corpus_of_stop_words_or_no_words():
    bm25 = BM25Retriever(["the and of it", "is it a was"])  # used to crash inside bm25s
    hits = bm25.search("what was it", k=2)
    assert hits[0][0] == "is it a was" and hits[0][1] > hits[1][1]
    with pytest.raises(DataError, match="no words BM25 can index"):
        BM25Retriever(["...", " !? "])


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_encoder()


def test_encoder_is_loaded_once(encoder):
    assert load_sentence_encoder() is encoder
    assert (embedded_sentence_encoder_path() / "config.json").is_file()


def test_dense_finds_right_chunk(encoder):
    dense = DenseRetriever(DOCS, encoder=encoder)
    results = dense.search_batch([q for q, _ in QUERIES], k=3)
    for (query, want), hits in zip(QUERIES, results):
        assert hits[0][0] == DOCS[want], query
        assert len(hits) == 3 and hits[0][1] >= hits[1][1] >= hits[2][1]
        assert -1.0 <= hits[2][1] <= hits[0][1] <= 1.0 + 1e-5


def test_dense_k_larger_than_corpus(encoder):
    dense = DenseRetriever(DOCS[:2], encoder=encoder)
    hits = dense.search("a green mineral", k=5)
    assert [h[0] for h in hits] == [DOCS[0], DOCS[1]]
    with pytest.raises(ConfigError):
        dense.search("x", k=-1)
