#!/usr/bin/env python3
"""Build the ``python-docs`` sample corpus from Debian's Python HTML documentation.

Source: the Python 3.11 library reference as shipped by Debian's ``python3-doc`` /
``python3.11-doc`` packages (``apt-get install python3-doc``), HTML under
``/usr/share/doc/python3.11/html``.  The documentation is licensed under the PSF
License Agreement (see ``python-docs/LICENSE.md``).

What it does, per selected library page:

* keeps the main text (``div.body``) and drops navigation, sidebars, header/footer,
  "¶" permalinks, footnotes, images and a configured list of sections (to keep the
  corpus small: see ``PAGES`` below);
* converts the HTML to Markdown-ish plain text: paragraphs, ``inline code``, fenced
  code blocks, lists, simple pipe tables, "Note:" admonitions, and API entries as
  ``## signature`` headings followed by their description;
* splits each page into documents: a section (h2/h3/...) that fits in ``MAX_WORDS``
  becomes one document; a bigger one is split into its introduction, its
  subsections and its API entries: one document per function/class of at least
  ``ENTRY_MIN_WORDS`` (a class too big for one document is split into the class and
  its methods), smaller entries join the current document up to ``GROUP_MAX_WORDS``,
  and prose between entries leads into the next entry's document; an introduction
  under ``MIN_WORDS`` is carried into the next document and any other document under
  ``MIN_WORDS`` is merged into its neighbour;
* writes ``<out>/<module>/<slug>.md``, each starting with ``# <module> — <title>``,
  and ``<out>/LICENSE.md`` (source, PSF licence text taken from the same HTML, changes).

The output is deterministic: same HTML in, same files (names and bytes) out.

Usage::

    apt-get install -y python3-doc
    .venv/bin/python sample_corpora/build_python_docs.py \
        [--html /usr/share/doc/python3.11/html] [--out sample_corpora/python-docs]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment

MAX_WORDS = 1500  # a section up to this size stays one document
GROUP_MAX_WORDS = 700  # small entries are merged into the previous document up to this size
ENTRY_MIN_WORDS = 150  # an API entry at least this big gets its own document
MIN_WORDS = 60  # documents smaller than this are merged into a neighbour

# Section titles that add nothing when used as a parent in a nested title
# ("sqlite3 — Reference: Connection objects" -> "sqlite3 — Connection objects").
GENERIC_PARENTS = {
    "reference", "module contents", "module-level functions", "classes and functions",
    "other utilities", "functions", "special typing primitives", "using the subprocess module",
    "examples", "how-to guides", "introduction", "directory and files operations",
}


@dataclass
class Page:
    file: str  # HTML file under library/
    module: str  # label used in titles
    folder: str  # output subfolder
    root_slug: str = "overview"  # slug of the page-introduction document
    drop: tuple[str, ...] = ()  # section ids to leave out
    drop_entries: tuple[str, ...] = ()  # API entries (name without the module prefix) to leave out


PAGES: list[Page] = [
    Page("itertools.html", "itertools", "itertools", drop=("itertools-recipes",)),
    Page("functools.html", "functools", "functools"),
    Page("collections.html", "collections", "collections", drop=(
        "userlist-objects", "userstring-objects",
    )),
    Page("concurrent.futures.html", "concurrent.futures", "concurrent.futures"),
    Page("multiprocessing.html", "multiprocessing", "multiprocessing", drop=(
        "miscellaneous", "connection-objects", "synchronization-primitives",
        "shared-ctypes-objects", "managers", "proxy-objects",
        "module-multiprocessing.connection", "authentication-keys", "logging",
        "programming-guidelines", "examples", "module-multiprocessing.dummy",
    )),
    Page("subprocess.html", "subprocess", "subprocess", drop=(
        "windows-popen-helpers", "notes", "replacing-the-os-spawn-family",
        "replacing-os-popen-os-popen2-os-popen3", "replacing-functions-from-the-popen2-module",
    )),
    Page("os.path.html", "os.path", "os.path"),
    Page("pathlib.html", "pathlib", "pathlib"),
    Page("shutil.html", "shutil", "shutil"),
    Page("tempfile.html", "tempfile", "tempfile", drop=("deprecated-functions-and-variables",)),
    Page("glob.html", "glob", "glob"),
    Page("fnmatch.html", "fnmatch", "fnmatch"),
    Page("re.html", "re", "re", drop=(
        "writing-a-tokenizer", "simulating-scanf", "making-a-phonebook", "text-munging",
        "checking-for-a-pair",
    )),
    Page("json.html", "json", "json", drop=(
        "implementation-limitations", "repeated-names-within-an-object",
        "top-level-non-object-non-array-values",
    )),
    Page("csv.html", "csv", "csv"),
    Page("sqlite3.html", "sqlite3", "sqlite3", drop=(
        "module-constants", "blob-objects", "prepareprotocol-objects",
        "sqlite-and-python-types", "default-adapters-and-converters",
        "how-to-adapt-custom-python-types-to-sqlite-values",
        "how-to-convert-sqlite-values-to-custom-python-types",
        "adapter-and-converter-recipes", "how-to-work-with-sqlite-uris", "explanation",
    ), drop_entries=(
        "Connection.blobopen", "Connection.enable_load_extension", "Connection.load_extension",
        "Connection.serialize", "Connection.deserialize", "Connection.setlimit", "Connection.getlimit",
        "Connection.set_authorizer", "Connection.set_progress_handler",
        "Connection.create_window_function", "enable_callback_tracebacks",
    )),
    Page("time.html", "time", "time", drop=("clock-id-constants", "timezone-constants"),
         drop_entries=("tzset", "pthread_getcpuclockid", "clock_settime", "clock_settime_ns")),
    Page("random.html", "random", "random"),
    Page("statistics.html", "statistics", "statistics", drop=("normaldist-examples-and-recipes",)),
    Page("math.html", "math", "math"),
    Page("heapq.html", "heapq", "heapq"),
    Page("bisect.html", "bisect", "bisect"),
    Page("contextlib.html", "contextlib", "contextlib", drop=(
        "single-use-reusable-and-reentrant-context-managers",
        "catching-exceptions-from-enter-methods", "cleaning-up-in-an-enter-implementation",
    )),
    Page("dataclasses.html", "dataclasses", "dataclasses", drop=(
        "descriptor-typed-fields", "re-ordering-of-keyword-only-parameters-in-init",
    )),
    Page("enum.html", "enum", "enum", drop=("supported-sunder-names",),
         drop_entries=("EnumCheck", "FlagBoundary")),
    Page("string.html", "string", "string", drop=("custom-string-formatting",)),
    Page("textwrap.html", "textwrap", "textwrap"),
    Page("difflib.html", "difflib", "difflib", drop=("a-command-line-interface-to-difflib",),
         drop_entries=("HtmlDiff", "diff_bytes")),
    Page("hashlib.html", "hashlib", "hashlib", drop=(
        "examples", "credits", "constants", "blake2", "shake-variable-length-digests",
    )),
    Page("secrets.html", "secrets", "secrets"),
    Page("gzip.html", "gzip", "gzip", drop=("command-line-interface",)),
    Page("zipfile.html", "zipfile", "zipfile", drop=(
        "pyzipfile-objects", "command-line-interface", "decompression-pitfalls", "path-objects",
    )),
    Page("pickle.html", "pickle", "pickle", drop=(
        "data-stream-format", "persistence-of-external-objects", "dispatch-tables",
        "custom-reduction-for-types-functions-and-other-objects", "out-of-band-buffers",
        "performance", "comparison-with-marshal",
        "handling-stateful-objects",
    )),
    Page("copy.html", "copy", "copy"),
    Page("pprint.html", "pprint", "pprint", drop=("example",)),
    Page("weakref.html", "weakref", "weakref", drop=("comparing-finalizers-with-del-methods",)),
    Page("operator.html", "operator", "operator"),
    Page("array.html", "array", "array"),
    Page("queue.html", "queue", "queue"),
    Page("sched.html", "sched", "sched"),
    Page("socket.html", "socket", "socket", drop=(
        "socket-families", "exceptions", "constants", "other-functions", "socket-objects",
        "notes-on-socket-timeouts",
    )),
]

CODE_LANGS = {
    "python3": "python", "python": "python", "pycon": "pycon", "py": "python",
    "default": "python", "sh": "sh", "shell-session": "console", "console": "console",
    "bash": "sh", "none": "", "text": "", "c": "c", "sql": "sql", "json": "json",
    "ini": "ini", "cfg": "ini", "pytb": "pytb", "html": "html", "xml": "xml",
    "doscon": "console", "powershell": "powershell", "csv": "",
}

# Boilerplate note on modules missing on WebAssembly platforms (dropped).
WASM_NOTE = "This module does not work or is not available on WebAssembly platforms"

unknown_blocks: dict[str, int] = {}


# --------------------------------------------------------------------------- text


def clean_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def words(text: str) -> int:
    return len(text.split())


def classes(el: Tag) -> list[str]:
    return el.get("class") or []


def inline(el) -> str:
    """Inline text of an element, with `code` spans kept as backticks."""
    return inline_nodes([el])


def inline_nodes(nodes) -> str:
    """Inline text of a run of sibling nodes."""
    out: list[str] = []

    def rec(node) -> None:
        if isinstance(node, Comment):
            return
        if isinstance(node, NavigableString):
            out.append(str(node))
            return
        if not isinstance(node, Tag):
            return
        cls = classes(node)
        if node.name == "a" and ("headerlink" in cls or "footnote-reference" in cls):
            return
        if node.name in ("img", "script", "style"):
            return
        if node.name == "br":
            out.append(" ")
            return
        if node.name == "code" or (node.name == "span" and "pre" in cls and node.parent.name != "code"):
            text = clean_ws(node.get_text())
            if text:
                out.append("`" + text + "`")
            return
        if node.name == "span" and "versionmodified" in cls:
            out.append(node.get_text())
            return
        for child in node.children:
            rec(child)

    for node in nodes:
        rec(node)
    text = clean_ws("".join(out))
    text = text.replace("¶", "")
    # Adjacent code spans written as separate literals: `a``b` -> `ab` is wrong, keep a space.
    text = re.sub(r"`\s*`", "` `", text) if "``" in text else text
    return text.strip()


def plain(el) -> str:
    """Plain text (no backticks), used for signatures and headings."""
    for a in el.find_all("a", class_="headerlink"):
        a.decompose()
    return clean_ws(el.get_text()).replace("¶", "").strip()


def heading_text(sec: Tag) -> str:
    h = sec.find(re.compile(r"^h[1-6]$"), recursive=False)
    return plain(h) if h is not None else ""


def is_entry(el: Tag) -> bool:
    c = classes(el)
    return el.name == "dl" and "py" in c


def entry_name(dl: Tag, module: str) -> str:
    dt = dl.find("dt", recursive=False)
    ident = dt.get("id") if dt is not None else None
    if not ident and dt is not None:
        pre = dt.find("span", class_="sig-prename")
        name = dt.find("span", class_="sig-name")
        ident = (plain(pre) if pre else "") + (plain(name) if name else "")
    ident = ident or "entry"
    for prefix in (module + ".", "asyncio."):
        if ident.startswith(prefix):
            ident = ident[len(prefix):]
            break
    return ident


def fence(code: str, lang: str) -> str:
    code = code.rstrip("\n")
    code = "\n".join(line.rstrip() for line in code.split("\n"))
    while code.startswith("\n"):
        code = code[1:]
    return f"```{lang}\n{code}\n```"


def indent(text: str, prefix: str) -> str:
    return "\n".join((prefix + line) if line.strip() else "" for line in text.split("\n"))


# --------------------------------------------------------------------------- blocks


class Renderer:
    def __init__(self, module: str, drop: set[str], drop_entries: set[str]):
        self.module = module
        self.drop = drop
        self.drop_entries = drop_entries

    def dropped(self, dl: Tag) -> bool:
        return entry_name(dl, self.module) in self.drop_entries

    # ---- dispatch

    def blocks(self, el: Tag, level: int) -> list[str]:
        """Render the block-level children of ``el``."""
        out: list[str] = []
        pending_inline: list = []

        def flush_inline() -> None:
            if pending_inline:
                text = inline_nodes(pending_inline)
                if text:
                    out.append(text)
                pending_inline.clear()

        for child in el.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                pending_inline.append(child)  # whitespace too: it separates inline tags
                continue
            if not isinstance(child, Tag):
                continue
            if child.name in ("a", "em", "strong", "code", "span", "cite", "abbr", "sup", "sub", "kbd", "strike"):
                if child.name == "span" and not child.get_text().strip():
                    continue
                pending_inline.append(child)
                continue
            flush_inline()
            out.extend(self.block(child, level))
        flush_inline()
        return [b for b in out if b.strip()]

    def block(self, el: Tag, level: int) -> list[str]:
        name, cls = el.name, classes(el)
        if name == "section":
            if el.get("id") in self.drop:
                return []
            return self.section_full(el, level + 1)
        if re.fullmatch(r"h[1-6]", name):
            return [("#" * min(6, level + 1)) + " " + plain(el)]
        if name == "p":
            if "availability" in cls:
                return self.availability(el, level)
            if "rubric" in cls:
                if plain(el).lower().startswith("footnote"):
                    return []
                return [("#" * min(6, level + 2)) + " " + plain(el)]
            text = inline(el)
            if text.startswith("Source code:") or text.startswith(WASM_NOTE):
                return []
            nested = [c for c in el.find_all(["p", "div", "pre", "ul", "ol", "dl"], recursive=False)]
            if nested:  # malformed nesting: render inline prefix and nested blocks separately
                return self.blocks(el, level)
            return [text] if text else []
        if name == "div":
            if any(c.startswith("highlight") for c in cls) or "doctest" in cls:
                return self.code_block(el)
            if "admonition" in cls:
                return self.admonition(el, level)
            if {"versionadded", "versionchanged", "deprecated", "deprecated-removed"} & set(cls):
                return self.blocks(el, level)
            if {"toctree-wrapper", "footnote-list", "contents"} & set(cls):
                return []
            if "line-block" in cls:
                return ["\n".join(inline(line) for line in el.find_all("div", class_="line"))]
            # impl-detail, topic, compound, container, responsive wrappers ...
            return self.blocks(el, level)
        if name == "pre":
            return [fence(el.get_text(), "")]
        if name in ("ul", "ol"):
            return [self.listing(el, level, ordered=(name == "ol"))]
        if name == "dl":
            if is_entry(el):
                return self.entry(el, level)
            if "footnote" in cls:
                return []
            if "field-list" in cls:
                return [self.field_list(el, level)]
            return self.deflist(el, level)
        if name == "table":
            if "footnote" in cls:
                return []
            return [self.table(el)]
        if name == "blockquote":
            return self.blocks(el, level)
        if name == "aside":
            if "footnote" in cls or "footnote-list" in " ".join(cls):
                return []
            return self.blocks(el, level)
        if name in ("hr", "img", "figure", "script", "style", "span", "input", "form", "nav"):
            return []
        unknown_blocks[f"{name}.{'.'.join(cls)}"] = unknown_blocks.get(f"{name}.{'.'.join(cls)}", 0) + 1
        text = inline(el)
        return [text] if text else []

    # ---- specific blocks

    def availability(self, el: Tag, level: int) -> list[str]:
        head = []
        for child in el.children:
            if isinstance(child, Tag) and child.name in ("p", "div", "ul", "pre"):
                break
            head.append(child)
        text = inline_nodes(head)
        text = re.sub(r",?\s*not (Emscripten|WASI)", "", text).strip().rstrip(",.").strip()
        text = re.sub(r"\s+:", ":", text)
        out = [text + "."] if text and not text.endswith(":") else []
        for child in el.children:
            if isinstance(child, Tag) and child.name in ("p", "div", "ul", "pre"):
                out.extend(self.block(child, level))
        return out

    def code_block(self, el: Tag) -> list[str]:
        lang = ""
        for c in classes(el):
            if c.startswith("highlight-"):
                lang = CODE_LANGS.get(c[len("highlight-"):], "")
        pre = el.find("pre")
        if pre is None:
            return []
        return [fence(pre.get_text(), lang)]

    def admonition(self, el: Tag, level: int) -> list[str]:
        title_el = el.find("p", class_="admonition-title", recursive=False)
        title = plain(title_el) if title_el is not None else "Note"
        body = []
        for child in el.children:
            if child is title_el or not isinstance(child, Tag):
                continue
            body.extend(self.block(child, level))
        text = "\n\n".join(body)
        if text.startswith(WASM_NOTE):
            return []
        if not body:
            return []
        if body[0].startswith("```") or body[0].startswith("- ") or body[0].startswith("|"):
            return [f"{title}:"] + body
        return [f"{title}: {body[0]}"] + body[1:]

    def listing(self, el: Tag, level: int, ordered: bool) -> str:
        items = []
        for i, li in enumerate(el.find_all("li", recursive=False), 1):
            parts = self.blocks(li, level)
            body = "\n\n".join(parts) if parts else ""
            marker = f"{i}. " if ordered else "- "
            lines = body.split("\n")
            pad = " " * len(marker)
            items.append(marker + lines[0] + ("\n" + indent("\n".join(lines[1:]), pad) if len(lines) > 1 else ""))
        # compact list when every item is a single line
        sep = "\n" if all("\n" not in it for it in items) else "\n\n"
        return sep.join(items)

    def field_list(self, el: Tag, level: int) -> str:
        lines = []
        for dt in el.find_all("dt", recursive=False):
            dd = dt.find_next_sibling("dd")
            key = plain(dt).rstrip(":")
            if dd is None:
                continue
            body = self.blocks(dd, level)
            if len(body) == 1 and "\n" not in body[0]:
                lines.append(f"{key}: {body[0]}")
            else:
                lines.append(f"{key}:\n" + "\n".join(body))
        return ("\n\n" if any("\n" in line for line in lines) else "\n").join(lines)

    def deflist(self, el: Tag, level: int) -> list[str]:
        out = []
        for dt in el.find_all("dt", recursive=False):
            term = inline(dt)
            dd = dt.find_next_sibling(["dd", "dt"])
            body = self.blocks(dd, level) if dd is not None and dd.name == "dd" else []
            if body and not body[0].startswith(("```", "- ", "|")):
                out.append(term + "\n" + body[0])
                out.extend(body[1:])
            else:
                out.append(term)
                out.extend(body)
        return out

    def table(self, el: Tag) -> str:
        rows = []
        header_rows = 0
        for tr in el.find_all("tr"):
            cells = tr.find_all(["td", "th"], recursive=False)
            texts = []
            for c in cells:
                parts = self.blocks(c, 6)
                t = " ".join(p.replace("\n", " ") for p in parts)
                t = t.replace("|", "\\|")
                texts.append(clean_ws(t))
            if not any(texts):
                continue
            rows.append("| " + " | ".join(texts) + " |")
            if tr.parent.name == "thead":
                header_rows = len(rows)
        if header_rows:
            ncol = rows[header_rows - 1].count(" | ") + 1
            rows.insert(header_rows, "|" + "---|" * ncol)
        return "\n".join(rows)

    def signature(self, dt: Tag) -> str:
        dt = dt.__copy__()
        for a in dt.find_all("a", class_="headerlink"):
            a.decompose()
        # Methods and attributes are shown without their class: qualify them from the id
        # ("create_function(...)" -> "sqlite3.Connection.create_function(...)").
        name = dt.find("span", class_="sig-name")
        ident = dt.get("id") or ""
        if name is not None and dt.find("span", class_="sig-prename") is None:
            short = name.get_text()
            if ident.endswith("." + short):
                name.insert_before(NavigableString(ident[: -len(short)]))
        return clean_ws(dt.get_text()).replace("¶", "")

    def entry(self, dl: Tag, level: int) -> list[str]:
        """An API entry: its signature line(s) as a heading, then its description."""
        if self.dropped(dl):
            return []
        out = []
        hashes = "#" * min(6, level + 2)
        for dt in dl.find_all("dt", recursive=False):
            out.append(f"{hashes} {self.signature(dt)}")
        for dd in dl.find_all("dd", recursive=False):
            out.extend(self.blocks(dd, level + 1))
        return out

    def section_full(self, sec: Tag, level: int, top: bool = False) -> list[str]:
        """A whole section as blocks; ``top`` omits its own heading (it is the doc title)."""
        out = []
        for child in sec.children:
            if not isinstance(child, Tag):
                continue
            if re.fullmatch(r"h[1-6]", child.name):
                if not top:
                    out.append(("#" * min(6, level + 1)) + " " + plain(child))
                continue
            out.extend(self.block(child, level))
        return out


# --------------------------------------------------------------------------- splitting


@dataclass
class Doc:
    slug: str
    title: str
    names: list[str] = field(default_factory=list)  # API names merged into this doc
    parts: list[str] = field(default_factory=list)
    prefix: str = ""  # section title shown before the API names ("Using the subprocess Module: run")

    @property
    def n_words(self) -> int:
        return sum(words(p) for p in self.parts)

    def full_title(self, module: str) -> str:
        if self.names and (len(self.names) > 1 or self.prefix):
            label = ", ".join(self.names[:6]) + (", …" if len(self.names) > 6 else "")
            return f"{module} — {self.prefix}: {label}" if self.prefix else f"{module} — {label}"
        return f"{module} — {self.title}"


def slugify(text: str) -> str:
    s = text.lower()
    s = re.sub(r"^module-(?=\w+\.)", "", s)  # "module-json.tool" -> "json.tool"
    s = re.sub(r"[^a-z0-9_.]+", "-", s).strip("-.")
    return s[:60].strip("-.") or "section"


class Splitter:
    def __init__(self, page: Page):
        self.page = page
        self.r = Renderer(page.module, set(page.drop), set(page.drop_entries))

    def words_of(self, parts: list[str]) -> int:
        return sum(words(p) for p in parts)

    def section_title(self, sec: Tag, parents: list[str]) -> str:
        own = heading_text(sec)
        useful = [p for p in parents if p.lower() not in GENERIC_PARENTS]
        return ": ".join(useful[-1:] + [own]) if useful else own

    def split_section(self, sec: Tag, parents: list[str], is_root: bool) -> list[Doc]:
        level = 1
        if is_root:
            h1 = heading_text(sec)
            title = h1.split(" — ", 1)[1] if " — " in h1 else h1
            slug = self.page.root_slug
        else:
            title = self.section_title(sec, parents)
            slug = slugify(sec.get("id") or heading_text(sec))
        full = self.r.section_full(sec, level, top=True)
        if self.words_of(full) <= MAX_WORDS:
            return [Doc(slug, title, [], full)]

        child_parents = [] if is_root else parents + [heading_text(sec)]
        items: list[tuple[str, list]] = []
        for child in sec.children:
            if not isinstance(child, Tag) or re.fullmatch(r"h[1-6]", child.name):
                continue
            if child.name == "section":
                if child.get("id") not in self.page.drop:
                    items.append(("docs", self.split_section(child, child_parents, False)))
            elif is_entry(child):
                kind = "dropped" if self.r.dropped(child) else "entry"
                items.append((kind, self.split_entry(child, level)))
            else:
                items.append(("prose", self.r.block(child, level)))
        return self.assemble(Doc(slug, title, [], []), items, keep_slug=is_root)

    def split_entry(self, dl: Tag, level: int) -> list[Doc]:
        if self.r.dropped(dl):
            return []
        name = entry_name(dl, self.page.module)
        parts = self.r.entry(dl, level)
        if self.words_of(parts) <= MAX_WORDS:
            return [Doc(slugify(name), name, [name], parts)]
        # Too big (a class with many methods): the class itself, then its members.
        head = Doc(slugify(name), name, [name], [])
        hashes = "#" * min(6, level + 2)
        for dt in dl.find_all("dt", recursive=False):
            head.parts.append(f"{hashes} {self.r.signature(dt)}")
        items: list[tuple[str, list]] = []
        for dd in dl.find_all("dd", recursive=False):
            for child in dd.children:
                if isinstance(child, Tag) and is_entry(child):
                    kind = "dropped" if self.r.dropped(child) else "entry"
                    items.append((kind, self.split_entry(child, level + 1)))
                elif isinstance(child, Tag):
                    items.append(("prose", self.r.block(child, level + 1)))
                elif isinstance(child, NavigableString) and not isinstance(child, Comment) and child.strip():
                    items.append(("prose", [clean_ws(str(child))]))
        return self.assemble(head, items, keep_slug=True)

    def assemble(self, head: Doc, items: list[tuple[str, list]], keep_slug: bool) -> list[Doc]:
        """Group a section's (or big class's) content into documents.

        ``head`` collects the text before the first entry; each API entry big enough starts
        its own document and small ones join the current document (up to GROUP_MAX_WORDS);
        prose between entries is a lead-in to the next entry's document; subsections
        bring their own documents. A head under MIN_WORDS is carried into the next document
        (which takes the head's file name when ``keep_slug``: page overviews, classes).
        """
        docs: list[Doc] = []
        cur: Doc | None = head
        lead: list[str] = []  # prose seen after an entry: introduces the next one
        pending: list[str] = []  # a head too small to stand alone

        def close() -> None:
            nonlocal cur, pending
            if cur is not None and cur.parts:
                if cur is head and cur.n_words < MIN_WORDS:
                    pending = cur.parts
                else:
                    docs.append(cur)
            cur = None

        def take_pending(d: Doc, adopt: bool) -> None:
            nonlocal pending
            if pending:
                d.parts[:0] = pending
                pending = []
                if adopt:  # the entry doc also carries the section's (class's) name
                    if keep_slug:
                        d.slug = head.slug
                    if head.names:
                        d.names[:0] = [n for n in head.names if n not in d.names]
                    else:
                        d.prefix = head.title

        after_dropped = False
        for kind, payload in items:
            if kind == "dropped":
                after_dropped = True
                continue
            if kind == "prose" and payload and payload[0].startswith(TRAILER_PREFIXES):
                # version notes / "See also" placed after an entry belong to that entry
                if after_dropped:
                    continue
                if cur is not None and cur is not head and not lead:
                    cur.parts.extend(payload)
                    continue
            after_dropped = False
            if kind == "prose":
                if not payload:
                    continue
                if cur is head:
                    head.parts.extend(payload)
                elif cur is None and not docs:
                    cur = head
                    head.parts.extend(payload)
                else:
                    lead.extend(payload)
            elif kind == "entry":
                for d in payload:
                    small = d.n_words < ENTRY_MIN_WORDS
                    if (not lead and small and cur is not None and cur.parts
                            and cur.n_words + d.n_words <= GROUP_MAX_WORDS):
                        cur.parts.extend(d.parts)
                        if cur.names:
                            cur.names.extend(d.names)
                        continue
                    close()
                    d.parts[:0] = lead
                    lead = []
                    take_pending(d, adopt=True)
                    cur = d
            else:  # documents of a subsection
                if not payload:
                    continue
                if lead:
                    (cur or docs[-1]).parts.extend(lead)
                    lead = []
                close()
                take_pending(payload[0], adopt=False)
                docs.extend(payload)
        if lead:
            target = cur if cur is not None else (docs[-1] if docs else head)
            target.parts.extend(lead)
            if target is head and cur is None:
                cur = head
        close()
        if pending:
            docs.append(Doc(head.slug, head.title, list(head.names), pending))
        return docs


TRAILER_PREFIXES = ("New in version", "Changed in version", "Deprecated since", "See also", "Deprecated")


def merge_small(docs: list[Doc]) -> list[Doc]:
    """Merge documents under MIN_WORDS into their previous (or next) neighbour."""
    changed = True
    while changed and len(docs) > 1:
        changed = False
        for i, d in enumerate(docs):
            if d.n_words >= MIN_WORDS:
                continue
            j = i - 1 if i > 0 else i + 1
            target = docs[j]
            if j < i:
                target.parts.extend(d.parts)
                if target.names:
                    target.names.extend(d.names)
            else:
                target.parts[:0] = d.parts
                if target.names:
                    target.names[:0] = d.names
                target.slug, target.title = d.slug, d.title
            del docs[i]
            changed = True
            break
    return docs


# --------------------------------------------------------------------------- main


def normalise_headings(parts: list[str]) -> list[str]:
    """Shift headings so the shallowest one inside a document is ``##``."""
    levels = [len(m.group(1)) for p in parts if not p.startswith("```")
              for m in [re.match(r"^(#+) ", p)] if m]
    if not levels:
        return parts
    shift = min(levels) - 2
    out = []
    for p in parts:
        m = re.match(r"^(#+) ", p) if not p.startswith("```") else None
        if m and shift:
            p = "#" * min(6, max(2, len(m.group(1)) - shift)) + p[len(m.group(1)):]
        out.append(p)
    return out


def tidy(md: str) -> str:
    md = md.replace("\u00a0", " ").replace("\u200b", "")
    md = re.sub(r"[ \t]+\n", "\n", md)
    md = re.sub(r"\n{3,}", "\n\n", md)
    return md.strip() + "\n"


def build(html_root: Path, out: Path) -> list[tuple[str, int, int]]:
    lib = html_root / "library"
    if out.exists():
        if any(out.iterdir()) and not (out / "LICENSE.md").exists():
            raise SystemExit(f"{out} is not empty and has no LICENSE.md: not a corpus folder, not touching it")
        for p in sorted(out.iterdir()):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)

    written: list[tuple[str, int, int]] = []
    used: set[str] = set()
    for page in PAGES:
        soup = BeautifulSoup((lib / page.file).read_text(encoding="utf-8"), "html.parser")
        body = soup.select_one("div.body")
        if body is None:
            raise SystemExit(f"{page.file}: no div.body")
        root = body.find("section", recursive=False)
        splitter = Splitter(page)
        docs = merge_small(splitter.split_section(root, [], True))
        for d in docs:
            slug = d.slug
            rel = f"{page.folder}/{slug}.md"
            if rel in used and d.names:  # an API entry named like a section: qualify it
                slug = slugify(f"{page.module}.{d.names[0]}")
                rel = f"{page.folder}/{slug}.md"
            n = 2
            while rel in used:
                rel = f"{page.folder}/{slug}-{n}.md"
                n += 1
            used.add(rel)
            text = tidy(f"# {d.full_title(page.module)}\n\n" + "\n\n".join(normalise_headings(d.parts)))
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append((rel, words(text), len(text.encode("utf-8"))))
    return written


def debian_package_version(package: str) -> str:
    try:
        import subprocess

        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, check=True)
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_license(html_root: Path, out: Path, written: list[tuple[str, int, int]]) -> None:
    soup = BeautifulSoup((html_root / "license.html").read_text(encoding="utf-8"), "html.parser")
    psf = soup.find("section", id="psf-license-agreement-for-python-release")
    bsd = soup.find("section", id="zero-clause-bsd-license-for-code-in-the-python-release-documentation")
    if psf is None or bsd is None:
        raise SystemExit("license.html: PSF / 0BSD sections not found")
    psf_title = plain(psf.find("h2") or psf.find("h3"))
    version = psf_title.rsplit(" ", 1)[-1]
    copyright_soup = BeautifulSoup((html_root / "copyright.html").read_text(encoding="utf-8"), "html.parser")
    notices = [clean_ws(p.get_text()) for p in copyright_soup.select("div.body p")
               if "Copyright" in p.get_text()]
    pages = ", ".join(dict.fromkeys(page.file for page in PAGES))
    text = f"""# License and source of the python-docs sample corpus

## Source

The documents in this folder are excerpts of the Python {version} documentation (the
Library Reference), taken from the HTML documentation shipped by Debian 12 ("bookworm")
in the packages `python3-doc` {debian_package_version("python3-doc")} and `python3.11-doc`
{debian_package_version("python3.11-doc")} (HTML under `{html_root}`).
Upstream: https://docs.python.org/3.11/library/

Pages used (under `library/`): {pages}.

{chr(10).join(notices)}

## Licence

The Python documentation is licensed under the PSF License Agreement; since Python 3.8.6,
examples, recipes and other code in the documentation are dual licensed under the PSF
License Agreement and the Zero-Clause BSD license. Both texts follow, copied from the
documentation's "History and License" page (`license.html`), which also gives the full
history and the licences of software incorporated into Python; Debian's copy of the
licence is in `/usr/share/doc/python3.11-doc/copyright`.

### {psf_title}

```text
{psf.find("pre").get_text().strip()}
```

### {plain(bsd.find("h2") or bsd.find("h3"))}

```text
{bsd.find("pre").get_text().strip()}
```

## Changes made (PSF License Agreement, clause 3)

This is a derivative work of the Python {version} documentation. Changes:

- Only some library pages are included, and some of their sections and API entries are
  left out to keep the corpus small (the list is in `sample_corpora/build_python_docs.py`).
- Each page is split into documents: one per section (h2/h3) or, for large sections, one
  per function/class or per group of small functions; tiny sections are merged into a
  neighbour. Each document starts with a `# <module> — <title>` line written by us.
- The HTML was converted to Markdown-like plain text: navigation, sidebars, headers and
  footers, "¶" permalinks, index anchors, footnotes, images and hyperlink targets removed;
  inline code shown in backticks, code examples as fenced blocks, tables as pipe tables,
  admonitions as "Note: ..." paragraphs; method signatures qualified with their class
  name; notes about WebAssembly platforms dropped and "not Emscripten, not WASI" removed
  from availability lines.
- The text itself is otherwise unchanged.

Totals: {len(written)} documents, {sum(w for _, w, _ in written)} words.
"""
    (out / "LICENSE.md").write_text(tidy(text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=Path("/usr/share/doc/python3.11/html"),
                    help="root of the Python HTML docs (python3-doc package)")
    ap.add_argument("--out", type=Path, default=here / "python-docs")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every document")
    args = ap.parse_args(argv)
    if not (args.html / "library").is_dir():
        print(f"{args.html}/library not found: apt-get install python3-doc", file=sys.stderr)
        return 2
    written = build(args.html, args.out)
    write_license(args.html, args.out, written)
    if args.verbose:
        for rel, w, b in written:
            print(f"{w:6d} {b:7d}  {rel}")
    if unknown_blocks:
        print("unhandled block types (rendered as text):", unknown_blocks, file=sys.stderr)
    tw = sum(w for _, w, _ in written)
    tb = sum(b for _, _, b in written)
    mods = sorted({rel.split("/")[0] for rel, _, _ in written})
    print(f"{len(written)} documents, {tw} words, {tb} bytes, {len(mods)} module folders -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
