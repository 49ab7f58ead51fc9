"""Tests for workbench.ingest.readers: real files in tmp_path, no mocks."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest

from workbench.errors import InputError
from workbench.ingest.readers import content_hash, count_candidate_files, iter_sources
from workbench.types import SkippedFile, SourceDocument

SCIFACT = Path("/work/shared/eval/scifact")


# --------------------------------------------------------------------------- helpers


def _run(root: Path, **kw) -> tuple[dict[str, SourceDocument], dict[str, str]]:
    """(documents by doc_id, skip reasons by path) for one iter_sources run."""
    docs: dict[str, SourceDocument] = {}
    skips: dict[str, str] = {}
    for item in iter_sources(root, **kw):
        if isinstance(item, SourceDocument):
            assert item.doc_id not in docs
            docs[item.doc_id] = item
        else:
            assert isinstance(item, SkippedFile)
            skips[item.path] = item.reason
    return docs, skips


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def _pdf_bytes(text: str | None, title: str | None = None) -> bytes:
    """A minimal valid one-page PDF (Helvetica, one text object), xref offsets computed exactly."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode("latin-1") if text is not None else b""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title is not None:
        objects.append(f"<< /Title ({title}) >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    trailer = b"<< /Size %d /Root 1 0 R" % (len(objects) + 1)
    if title is not None:
        trailer += b" /Info %d 0 R" % len(objects)
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# --------------------------------------------------------------------------- root handling


def test_missing_root_raises_input_error_at_call_time(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match="no such file or folder"):
        iter_sources(missing)  # raises before any next()
    with pytest.raises(InputError, match="no such file or folder"):
        count_candidate_files(missing)


def test_single_file_root_uses_file_name_as_doc_id(tmp_path: Path) -> None:
    f = _write(tmp_path / "sub" / "note.txt", "hello world\n")
    docs, skips = _run(f)
    assert not skips
    doc = docs["note.txt"]
    assert doc.path == str(f)
    assert doc.title == "note"  # .txt: always the stem
    assert doc.text == "hello world\n"
    assert count_candidate_files(f) == 1


def test_single_unsupported_file_root_is_reported(tmp_path: Path) -> None:
    f = _write(tmp_path / "image.png", b"\x89PNG")
    docs, skips = _run(f)
    assert not docs
    assert skips == {str(f): "unsupported file type .png"}


# --------------------------------------------------------------------------- walk


def test_walk_is_sorted_recursive_and_ignores_hidden_and_unsupported(tmp_path: Path) -> None:
    _write(tmp_path / "b.md", "# B\n")
    _write(tmp_path / "a" / "z.txt", "z")
    _write(tmp_path / "a" / "c.rst", "C\n=\n")
    _write(tmp_path / "c.TXT", "upper-case extension")
    _write(tmp_path / ".wb" / "index.md", "# workspace, must be ignored")
    _write(tmp_path / ".hidden.md", "# hidden file")
    _write(tmp_path / "a" / ".git" / "HEAD.txt", "hidden folder")
    _write(tmp_path / "data.csv", "x,y")
    _write(tmp_path / "queries.jsonl", '{"_id": "q"}')  # only corpus.jsonl is a document
    _write(tmp_path / "empty_dir" / "readme.bin", b"\x00\x01")
    order = [item.doc_id for item in iter_sources(tmp_path) if isinstance(item, SourceDocument)]
    assert order == ["a/c.rst", "a/z.txt", "b.md", "c.TXT"]
    # Deterministic: a second run yields the same items in the same order.
    assert list(iter_sources(tmp_path)) == list(iter_sources(tmp_path))
    assert count_candidate_files(tmp_path) == 4
    for item in iter_sources(tmp_path):
        assert Path(item.path).is_absolute()


def test_files_of_other_types_are_counted_by_extension_when_asked(tmp_path: Path) -> None:
    """A folder of .docx beside .md files: the walk says how many files of which types it passed
    over (the summary names them) and yields nothing for them; hidden and excluded files are not
    counted, nor are folders."""
    _write(tmp_path / "a.md", "# A\n")
    _write(tmp_path / "report.docx", b"PK\x03\x04")
    _write(tmp_path / "sub" / "Notes.DOCX", b"PK\x03\x04")
    _write(tmp_path / "sub" / "sheet.xlsx", b"PK")
    _write(tmp_path / "Makefile", "all:")
    _write(tmp_path / ".hidden.docx", b"PK")
    _write(tmp_path / "drafts" / "old.docx", b"PK")
    (tmp_path / "emptydir.docx").mkdir()
    not_read: dict[str, int] = {}
    items = list(iter_sources(tmp_path, exclude=("drafts",), not_read=not_read))
    assert [i.doc_id for i in items] == ["a.md"]
    assert not_read == {".docx": 2, ".xlsx": 1, "": 1}
    assert count_candidate_files(tmp_path) == 1  # a.md: files of other types are not tried


def test_a_workspace_inside_the_folder_is_never_read(tmp_path: Path) -> None:
    """`wb index p -w p/ws`: the workspace's run logs and model cards are not documents (every
    training run rewrote them, so the folder re-indexed itself); it is named as skipped."""
    _write(tmp_path / "docs" / "owls.md", "# Owls\nowls hoot")
    _write(tmp_path / "ws" / "wb.toml", "[models]\n")
    _write(tmp_path / "ws" / "runs" / "r1" / "log.txt", "step 1 loss 0.5")
    _write(tmp_path / "ws" / "runs" / "r1" / "model" / "README.md", "# card")
    docs, skips = _run(tmp_path)
    assert list(docs) == ["docs/owls.md"]
    assert list(skips) == [str(tmp_path / "ws")] and "wb workspace" in skips[str(tmp_path / "ws")]


def test_symlink_loop_is_reported_and_walk_terminates(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "doc.md", "# Doc\ntext")
    os.symlink("..", tmp_path / "a" / "loop")
    docs, skips = _run(tmp_path)
    assert list(docs) == ["a/doc.md"]
    assert skips == {str(tmp_path / "a" / "loop"): "symlink loop"}
    assert count_candidate_files(tmp_path) == 2


def test_self_referencing_file_symlink_is_a_loop(tmp_path: Path) -> None:
    os.symlink("self.md", tmp_path / "self.md")
    docs, skips = _run(tmp_path)
    assert not docs
    assert skips == {str(tmp_path / "self.md"): "symlink loop"}


def test_broken_symlink_and_followed_file_symlink(tmp_path: Path) -> None:
    target = _write(tmp_path / "real" / "target.md", "# Target\nbody")
    os.symlink(tmp_path / "does-not-exist.md", tmp_path / "broken.md")
    os.symlink(target, tmp_path / "link.md")
    outside = _write(tmp_path.parent / f"{tmp_path.name}-outside.md", "# Outside\nelsewhere")
    os.symlink(outside, tmp_path / "out.md")
    docs, skips = _run(tmp_path)
    # The link is followed; the document keeps the link's own path. The file it names is one
    # document, however many ways the walk reaches it (here the link first: names sort so).
    assert docs["link.md"].path == str(tmp_path / "link.md") and docs["link.md"].text.endswith("body")
    assert docs["out.md"].text.endswith("elsewhere")  # a link to a file outside the folder: read as any file
    assert skips == {str(tmp_path / "broken.md"): "broken symlink",
                     str(tmp_path / "real" / "target.md"): "already read as link.md"}


def test_folder_symlinked_twice_is_read_once(tmp_path: Path) -> None:
    _write(tmp_path / "b" / "doc.txt", "x")
    os.symlink(tmp_path / "b", tmp_path / "c")
    docs, skips = _run(tmp_path)
    assert list(docs) == ["b/doc.txt"]
    assert skips == {str(tmp_path / "c"): "already read as b"}


# --------------------------------------------------------------------------- skip reasons


def test_skip_reasons_for_bad_files(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.txt", b"")
    blank = _write(tmp_path / "blank.md", "  \n\t\n")
    binary = _write(tmp_path / "binary.txt", b"abc\x00def" * 10)
    latin1 = _write(tmp_path / "latin1.txt", "café déjà vu".encode("latin-1"))
    big = _write(tmp_path / "big.md", "x" * 2000)
    ok = _write(tmp_path / "ok.txt", "fine")
    wordless = _write(tmp_path / "zw.txt", "\u200b\u200b --- !!\n")  # it was indexed as its title, "zw"
    digits = _write(tmp_path / "n.txt", "\u200b 42")
    docs, skips = _run(tmp_path, max_file_bytes=1000)
    assert list(docs) == ["n.txt", "ok.txt"]
    assert skips[str(empty)] == "empty"
    assert skips[str(blank)] == "empty"
    assert skips[str(binary)] == "binary"
    assert skips[str(latin1)] == "invalid UTF-8"
    assert skips[str(big)] == "too large (2.0 KB > 1.0 KB limit)"
    assert skips[str(wordless)] == "no words to index"
    assert len(skips) == 6 and str(digits) not in skips
    assert str(ok) not in skips


def test_bom_is_dropped_and_offsets_point_into_text(tmp_path: Path) -> None:
    raw = "# Title\r\nline one\r\n\r\nline two\r\n"
    _write(tmp_path / "bom.md", b"\xef\xbb\xbf" + raw.encode("utf-8"))
    docs, _ = _run(tmp_path)
    doc = docs["bom.md"]
    assert doc.text == raw  # CRLF kept, BOM dropped
    assert doc.title == "Title"
    assert doc.text[doc.text.index("line two") :].startswith("line two")


def _unreadable_case(root: Path) -> tuple[dict[str, SourceDocument], dict[str, str]]:
    """Run iter_sources over ``root`` without read permission on its contents.

    As root, file permissions are not enforced, so the walk runs with the effective
    uid switched to ``nobody`` (65534) and switched back afterwards.
    """
    if os.geteuid() != 0:
        return _run(root)
    os.seteuid(65534)
    try:
        return _run(root)
    finally:
        os.seteuid(0)


def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX permissions needed")
    # A world-traversable folder so that uid 'nobody' can reach it (tmp_path is 0700 under root).
    root = Path(tempfile.mkdtemp(prefix="wb-readers-"))
    try:
        root.chmod(0o755)
        locked = _write(root / "locked.txt", "secret")
        locked.chmod(0o000)
        locked_dir = root / "locked_dir"
        _write(locked_dir / "inner.txt", "inner")
        locked_dir.chmod(0o000)
        _write(root / "open.txt", "public").chmod(0o644)
        docs, skips = _unreadable_case(root)
        assert list(docs) == ["open.txt"]
        assert skips == {
            str(locked): "unreadable: Permission denied",
            str(locked_dir): "unreadable: Permission denied",
        }
    finally:
        (root / "locked_dir").chmod(0o755)
        for p in sorted(root.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
        root.rmdir()


# --------------------------------------------------------------------------- titles and text


def test_markdown_titles(tmp_path: Path) -> None:
    _write(tmp_path / "atx.md", "intro\n\n```\n# not a title (code)\n```\n\n## Sub\n# Real Title #\n")
    _write(tmp_path / "setext.markdown", "Setext Title\n============\n\nbody\n")
    _write(tmp_path / "front.md", "---\ntitle: \"From Front Matter\"\n---\n# Heading\n")
    _write(tmp_path / "none.md", "no heading here\n## only level two\n")
    docs, _ = _run(tmp_path)
    assert docs["atx.md"].title == "Real Title"
    assert docs["setext.markdown"].title == "Setext Title"
    assert docs["front.md"].title == "From Front Matter"
    assert docs["none.md"].title == "none"
    assert docs["atx.md"].text == (tmp_path / "atx.md").read_text()  # kept as is
    # front matter leaves the text (no "title:" in chunks, snippets or BM25), every offset kept
    front = (tmp_path / "front.md").read_text()
    text = docs["front.md"].text
    assert len(text) == len(front) and text.index("# Heading") == front.index("# Heading")
    assert "title" not in text and "---" not in text and text.count("\n") == front.count("\n")
    _write(tmp_path / "rule.md", "---\nno closing rule, so a plain horizontal rule\n")
    assert _run(tmp_path)[0]["rule.md"].text.startswith("---\nno closing")


def test_rst_titles(tmp_path: Path) -> None:
    _write(tmp_path / "under.rst", ".. comment\n\nMy Document\n===========\n\nText.\n")
    _write(tmp_path / "over.rst", "~~~~~~~~~~~\n Overlined\n~~~~~~~~~~~\n\nText.\n")
    _write(tmp_path / "dash.rst", "Dash Title\n----------\nText.\n")
    _write(tmp_path / "plain.rst", "just a paragraph\nof text\n")
    docs, _ = _run(tmp_path)
    assert docs["under.rst"].title == "My Document"
    assert docs["over.rst"].title == "Overlined"
    assert docs["dash.rst"].title == "Dash Title"
    assert docs["plain.rst"].title == "plain"


HTML_PAGE = """<!doctype html>
<html><head><title>  Page   Title </title><style>body { color: red }</style>
<script>var tracking = "SCRIPT_TEXT";</script></head>
<body>
<header><a href="/">HEADER_TEXT</a></header>
<nav><ul><li>NAV_ITEM_ONE</li><li>NAV_ITEM_TWO</li></ul></nav>
<main>
  <h1>Main Heading</h1>
  <p>First   paragraph with <b>bold</b> and <a href="#">a link</a>.</p>
  <!-- COMMENT_TEXT -->
  <ul><li>item one</li><li>item two</li></ul>
  <script>alert("INLINE_SCRIPT")</script>
  <p>Second<br>line</p>
  <pre>  code   keeps
    spacing</pre>
</main>
<aside>ASIDE_OUTSIDE_MAIN</aside>
<footer>FOOTER_TEXT</footer>
</body></html>
"""


def test_html_extraction_drops_chrome_and_finds_title(tmp_path: Path) -> None:
    _write(tmp_path / "page.html", HTML_PAGE)
    docs, skips = _run(tmp_path)
    assert not skips
    doc = docs["page.html"]
    assert doc.title == "Page Title"
    for junk in ("SCRIPT_TEXT", "HEADER_TEXT", "NAV_ITEM", "COMMENT_TEXT", "INLINE_SCRIPT", "FOOTER_TEXT",
                 "ASIDE_OUTSIDE_MAIN", "color: red"):
        assert junk not in doc.text
    assert doc.text == (
        "Main Heading\n\n"
        "First paragraph with bold and a link.\n\n"
        "item one\nitem two\n\n"
        "Second\nline\n\n"
        "  code   keeps\n    spacing"
    )


def test_html_title_falls_back_to_h1_then_stem_and_prefers_article(tmp_path: Path) -> None:
    _write(tmp_path / "h1.htm", "<html><body><nav>menu</nav><article><h1>Article H1</h1><p>Body</p></article>"
                                "<div>outside the article</div></body></html>")
    _write(tmp_path / "bare.html", "<p>just text</p>")
    _write(tmp_path / "chrome_only.html", "<html><body><nav>only navigation</nav></body></html>")
    docs, skips = _run(tmp_path)
    assert docs["h1.htm"].title == "Article H1"
    assert docs["h1.htm"].text == "Article H1\n\nBody"
    assert docs["bare.html"].title == "bare"
    assert docs["bare.html"].text == "just text"
    assert skips == {str(tmp_path / "chrome_only.html"): "empty"}


# --------------------------------------------------------------------------- PDF


def test_pdf_text_and_metadata_title(tmp_path: Path) -> None:
    _write(tmp_path / "hello.pdf", _pdf_bytes("Hello PDF world", title="Greeting"))
    _write(tmp_path / "untitled.pdf", _pdf_bytes("Hello PDF world"))
    docs, skips = _run(tmp_path)
    assert not skips
    assert docs["hello.pdf"].text.strip() == "Hello PDF world"
    assert docs["hello.pdf"].title == "Greeting"
    assert docs["untitled.pdf"].title == "untitled"


def test_pdf_skip_reasons(tmp_path: Path) -> None:
    garbage = _write(tmp_path / "garbage.pdf", "this is not a PDF at all\n")
    blank = _write(tmp_path / "blank.pdf", _pdf_bytes(None))
    truncated = _write(tmp_path / "truncated.pdf", _pdf_bytes("Hello PDF world")[:150])
    docs, skips = _run(tmp_path)
    assert not docs
    assert skips[str(garbage)].startswith("unparseable PDF: ")
    assert skips[str(truncated)].startswith("unparseable PDF: ")
    assert skips[str(blank)] == "no text in PDF"


# --------------------------------------------------------------------------- BEIR


def _corpus_lines() -> list[str]:
    return [
        json.dumps({"_id": "doc-1", "title": "One", "text": "first text"}),
        json.dumps({"_id": "0042", "text": "no title field"}),
        "{not json",
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"_id": "doc-3", "title": "no text"}),
        "",
        json.dumps({"_id": "doc-1", "title": "dup", "text": "again"}),
        json.dumps({"_id": "doc-4", "title": "", "text": "  "}),
        json.dumps({"_id": 7, "title": None, "text": "integer id"}),
        json.dumps(["not", "an", "object"]),
    ]


def test_beir_folder_reads_only_corpus_and_keeps_ids(tmp_path: Path) -> None:
    corpus = _write(tmp_path / "corpus.jsonl", "\n".join(_corpus_lines()) + "\n")
    _write(tmp_path / "queries.jsonl", json.dumps({"_id": "q1", "text": "query"}) + "\n")
    _write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n")
    _write(tmp_path / "README.md", "# not part of a BEIR corpus")
    items = list(iter_sources(tmp_path))
    docs = [i for i in items if isinstance(i, SourceDocument)]
    skips = {i.path: i.reason for i in items if isinstance(i, SkippedFile)}
    assert [d.doc_id for d in docs] == ["0042", "doc-1", "7"]  # in line order: doc-1's last row is line 7
    assert all(d.path == str(corpus) for d in docs)
    assert docs[0].title == "" and docs[0].text == "no title field"
    # an _id given twice keeps its last row, as BEIR's GenericDataLoader does (qrels were judged on it)
    assert docs[1].content_hash == content_hash("dup", "again")
    assert skips[f"{corpus}:1"] == "duplicate _id doc-1 (line 7 replaces it)"
    assert skips[f"{corpus}:3"].startswith("malformed JSON: ")
    assert skips[f"{corpus}:4"] == "missing _id"
    assert skips[f"{corpus}:5"] == "missing text"
    assert skips[f"{corpus}:8"] == "empty"
    assert skips[f"{corpus}:10"].startswith("malformed JSON: expected an object")
    assert len(skips) == 6  # the blank line 6 is ignored
    assert count_candidate_files(tmp_path) == 10
    # The corpus file itself as root gives the same records.
    assert list(iter_sources(corpus)) == items


def test_nested_corpus_ids_are_prefixed_with_their_folder(tmp_path: Path) -> None:
    _write(tmp_path / "sets" / "scifact" / "corpus.jsonl", json.dumps({"_id": "1", "text": "a"}) + "\n")
    _write(tmp_path / "notes.md", "# Notes")
    docs, _ = _run(tmp_path)
    assert list(docs) == ["notes.md", "sets/scifact/1"]
    assert count_candidate_files(tmp_path) == 2


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact corpus not present")
def test_scifact_corpus_reads_every_row() -> None:
    docs, skips = _run(SCIFACT)
    assert not skips
    assert len(docs) == 5183 == count_candidate_files(SCIFACT)


# --------------------------------------------------------------------------- content hash


def test_content_hash_tracks_title_and_text(tmp_path: Path) -> None:
    f = _write(tmp_path / "doc.md", "# Title\nbody v1\n")
    (h1,) = (d.content_hash for d in iter_sources(tmp_path))
    assert h1 == hashlib.sha256("Title\x00# Title\nbody v1\n".encode()).hexdigest()
    os.utime(f, (1, 1))  # touching the file does not change the hash
    (h_same,) = (d.content_hash for d in iter_sources(tmp_path))
    assert h_same == h1
    f.write_text("# Title\nbody v2\n")
    (h2,) = (d.content_hash for d in iter_sources(tmp_path))
    assert h2 != h1
    f.write_text("# Other\nbody v2\n")
    (h3,) = (d.content_hash for d in iter_sources(tmp_path))
    assert h3 not in (h1, h2)
    assert content_hash("a", "b") != content_hash("ab", "")  # the separator matters


def test_utf16_with_a_bom_and_html_in_its_declared_charset_are_read(tmp_path: Path) -> None:
    """A UTF-16 text file with its BOM is text (it was "binary": it holds NUL bytes), and an HTML
    page that says <meta charset="iso-8859-1"> is read in it; undeclared non-UTF-8 stays refused."""
    _write(tmp_path / "utf16.txt", "\ufeffcafé au lait\n".encode("utf-16-le"))
    _write(tmp_path / "latin.html", b'<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head>'
                                    b"<body><p>caf\xe9 espresso</p></body></html>")
    _write(tmp_path / "lying.html", b"<html><body><p>caf\xe9</p></body></html>")
    docs, skips = _run(tmp_path)
    assert docs["utf16.txt"].text == "café au lait\n"
    assert docs["latin.html"].title == "Café" and "café espresso" in docs["latin.html"].text
    assert skips == {str(tmp_path / "lying.html"): "invalid UTF-8"}


def test_names_no_id_can_hold_are_skipped_with_a_reason_and_the_rest_is_read(tmp_path):
    """A file name that is not UTF-8 (bytes kept as surrogates), one with a newline, and a folder
    with an undecodable name: skipped, each shown with escaped characters (printable, JSON-safe);
    the other files are read as usual."""
    root = os.fsencode(tmp_path)
    for name in (b"caf\xe9.md", b"new\nline.md", "ls\u2028sep.md".encode(), b"dir\xff/inner.md", b"good.md",
                 b"odd\xe9.docx"):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(b"# Title\n\nsome text about apples\n")
    docs, skips = _run(tmp_path)
    assert list(docs) == ["good.md"]
    assert skips == {
        f"{tmp_path}/caf\\xe9.md": "name not valid UTF-8 (rename it)",
        f"{tmp_path}/dir\\xff": "name not valid UTF-8 (rename it)",
        f"{tmp_path}/new\\nline.md": "name with a control character, e.g. a newline (rename it)",
        f"{tmp_path}/ls\\u2028sep.md": "name with a control character, e.g. a newline (rename it)",
    }
    json.dumps(list(skips)).encode("utf-8")  # what `wb index --json` prints
    with pytest.raises(InputError, match=r"caf\\xe9.md: the path is not valid UTF-8"):  # given as the root
        _run(Path(os.fsdecode(os.path.join(root, b"caf\xe9.md"))))
    _docs, single = _run(tmp_path / "new\nline.md")
    assert list(single.values()) == ["name with a control character, e.g. a newline (rename it)"]


def test_exclude_globs_match_names_at_any_depth_and_paths_from_the_root(tmp_path):
    for rel in ("a.md", "node_modules/x.md", "sub/node_modules/y.md", "drafts/d.md", "sub/drafts/e.md",
                "site/app.min.html", "notes/keep.md"):
        _write(tmp_path / rel, "# T\n\ntext\n")
    docs, _ = _run(tmp_path, exclude=("node_modules/", "./drafts/*", "*.min.html"))
    assert sorted(docs) == ["a.md", "notes/keep.md", "sub/drafts/e.md"]  # drafts/* is the top drafts only
    from workbench.ingest.readers import reads

    assert not reads(tmp_path, tmp_path / "sub" / "node_modules" / "y.md", ("node_modules",))
    assert reads(tmp_path, tmp_path / "sub" / "drafts" / "e.md", ("./drafts/*",))


def test_a_row_cut_short_is_reported_at_its_end_column(tmp_path: Path) -> None:
    row = '{"_id": "d3", "text": "x"'
    corpus = _write(tmp_path / "corpus.jsonl", json.dumps({"_id": "d1", "text": "a"}) + "\n" + row + "\n")
    skips = {i.path: i.reason for i in iter_sources(corpus) if isinstance(i, SkippedFile)}
    assert skips == {f"{corpus}:2": f"malformed JSON: Expecting ',' delimiter at column {len(row) + 1}"}


# --------------------------------------------------------------------------- review fixes (fix-ingest)


def test_a_beir_id_that_cannot_name_a_document_skips_its_row_and_the_rest_is_read(tmp_path: Path) -> None:
    """A lone surrogate escape in an _id (no store can encode it) crashed the whole run; an _id
    with a tab, newline or carriage return would split TREC and TSV lines, as a file name would."""
    corpus = _write(tmp_path / "corpus.jsonl", "\n".join([
        json.dumps({"_id": "ok1", "text": "hello world"}),
        '{"_id": "bad\\ud800", "text": "surrogate id"}',
        json.dumps({"_id": "m\tn", "text": "tab id"}),
        json.dumps({"_id": "m\nn", "text": "newline id"}),
        json.dumps({"_id": "m\rn", "text": "carriage return id"}),
        json.dumps({"_id": "ok2", "text": "still read"}),
    ]) + "\n")
    docs, skips = _run(corpus)
    assert list(docs) == ["ok1", "ok2"]
    assert skips[f"{corpus}:2"] == "_id is not valid Unicode (a lone surrogate)"
    for line, shown in ((3, "m\\tn"), (4, "m\\nn"), (5, "m\\rn")):
        assert skips[f"{corpus}:{line}"].startswith(f"_id holds a control character ({shown}): "), skips
    assert len(skips) == 4
    from workbench.ingest.readers import corpus_documents

    with pytest.raises(InputError, match=r"corpus.jsonl:2: _id is not valid Unicode"):
        corpus_documents(corpus)  # training data is never silently thinned


def test_a_symlink_to_a_parent_of_the_indexed_folder_is_a_loop_and_nothing_beside_it_is_read(tmp_path: Path) -> None:
    root = tmp_path / "notes" / "docs"
    _write(root / "a.txt", "a")
    _write(tmp_path / "notes" / "other" / "secret.txt", "secret")
    _write(tmp_path / "outside.txt", "outside")
    os.symlink("..", root / "up")  # the folder holding the indexed one
    os.symlink(str(tmp_path), root / "top")  # an ancestor further up (as a link to ~ or / would be)
    docs, skips = _run(root)
    assert list(docs) == ["a.txt"]
    assert skips == {str(root / "top"): "symlink loop", str(root / "up"): "symlink loop"}
    assert count_candidate_files(root) == 3


def test_utf32_with_a_bom_is_read_and_nuls_anywhere_are_binary(tmp_path: Path) -> None:
    _write(tmp_path / "le.txt", "hello utf32 world".encode("utf-32"))  # FF FE 00 00: was read as UTF-16
    _write(tmp_path / "be.md", b"\x00\x00\xfe\xff" + "# Big\nendian body".encode("utf-32-be"))
    _write(tmp_path / "late.txt", b"x" * 20_000 + b"\x00tail")  # past the first 8 KiB
    _write(tmp_path / "fake16.txt", b"\xff\xfe" + b"a\x00\x00\x00b\x00")  # a BOM, then NUL characters
    docs, skips = _run(tmp_path)
    assert docs["le.txt"].text == "hello utf32 world"
    assert docs["be.md"].title == "Big" and docs["be.md"].text == "# Big\nendian body"
    assert skips == {str(tmp_path / "late.txt"): "binary", str(tmp_path / "fake16.txt"): "binary"}


def test_an_html_title_never_comes_from_svg_math_or_template(tmp_path: Path) -> None:
    _write(tmp_path / "icon.html", "<html><body><svg><title>svg icon title</title></svg>"
                                   "<h1>Real Heading</h1><p>body text</p></body></html>")
    _write(tmp_path / "math.html", "<html><body><math><title>formula</title></math>"
                                   "<template><title>tpl</title></template><p>x</p></body></html>")
    _write(tmp_path / "head.html", "<html><head><title>Page</title></head><body><svg><title>icon</title></svg>"
                                   "<h1>H</h1><p>x</p></body></html>")
    docs, _ = _run(tmp_path)
    assert docs["icon.html"].title == "Real Heading"
    assert docs["math.html"].title == "math"  # no page title and no <h1>: the stem
    assert docs["head.html"].title == "Page"


@pytest.mark.parametrize("indicator", [">", "|", ">-", "|-", "|+", ">2", "> # folded"])
def test_a_front_matter_block_scalar_title_is_joined(tmp_path: Path, indicator: str) -> None:
    path = _write(tmp_path / "h.md", f"---\ntitle: {indicator}\n  Folded\n  title\nauthor: me\n---\nbody\n")
    docs, _ = _run(path)
    assert docs["h.md"].title == "Folded title"


def test_an_empty_front_matter_block_scalar_falls_back_to_the_heading(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.md", "---\ntitle: >\nauthor: me\n---\n# Heading\nbody\n")
    docs, _ = _run(path)
    assert docs["h.md"].title == "Heading"
