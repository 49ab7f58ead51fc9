"""Prompt templates and named instruction presets.

A template is a ``str.format`` pattern over ``{text}`` and, for queries, ``{instruction}``.
Instructions are applied to queries only; documents always use the document template that the
index was built with (recorded in the index settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workbench.errors import UsageError

INSTRUCTION_PRESETS: dict[str, str] = {
    "none": "",
    "scifact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "python-docs": "Given a question about Python, retrieve the documentation section that answers it",
    "qa": "Given a question, retrieve passages that answer the question",
    "web": "Given a web search query, retrieve relevant passages that answer the query",
    "duplicate": "Retrieve passages that are semantically equivalent to the given text",
}


@dataclass(frozen=True)
class PromptTemplates:
    """How a model wants its inputs written.

    ``query`` may use ``{instruction}`` and ``{text}``; ``document`` uses ``{text}`` only.
    ``instruction_format`` renders a non-empty instruction before it enters ``{instruction}``
    (for plain bi-encoders it becomes a prefix followed by a space; LLM embedders put it in a
    ``Instruct: ...`` line).
    """

    query: str = "{instruction}{text}"
    document: str = "{text}"
    instruction_format: str = "{instruction}: "

    def render_query(self, text: str, instruction: str = "") -> str:
        """The query as the model reads it. A query template that already holds a task (a
        sentence-transformers prompt ``Instruct: TASK\nQuery:``, as Qwen3-Embedding's) takes a
        given ``instruction`` in place of TASK: one task, not the built-in one plus the user's."""
        task = _builtin_task(self.query)
        if instruction and task is not None:
            head, cue = task
            return f"{head}{instruction}{cue}{text}"
        rendered = self.instruction_format.format(instruction=instruction) if instruction else ""
        return self.query.format(instruction=rendered, text=text)

    def render_document(self, text: str) -> str:
        return self.document.format(text=text)

    def query_prompt(self, instruction: str = "") -> str:
        """What every query rendered with ``instruction`` begins with before its text (the rendered
        instruction, a template's fixed head): the prompt a model with ``include_prompt: false``
        leaves out of its pooling. "" when the template does not end with ``{text}``."""
        return _head(self.render_query("\0", instruction))

    def document_prompt(self) -> str:
        """As ``query_prompt``, for documents."""
        return _head(self.render_document("\0"))


def _head(rendered: str) -> str:
    """The part of a text rendered around a NUL placeholder before it, when the placeholder ends it."""
    head, mark, tail = rendered.rpartition("\0")
    return head if mark and not tail else ""


_BUILTIN_TASK = re.compile(r"\A(Instruct:[ \t]*)[^{}]+?(\n[^\n{}]*)\{instruction\}\{text\}\Z", re.S)


def _builtin_task(query_template: str) -> tuple[str, str] | None:
    """(``"Instruct: "``, the cue after the task, ``"\nQuery:"``) when ``query_template`` is a
    sentence-transformers prompt that names its own task (``Instruct: TASK\nQuery:{instruction}{text}``),
    else None."""
    match = _BUILTIN_TASK.match(query_template)
    return (match.group(1), match.group(2)) if match else None


def template_fields(template: str) -> set[str]:
    """The ``{field}`` names a prompt template uses (``{{`` and ``}}`` are braces); ValueError for a
    template ``str.format`` cannot read (an unclosed brace)."""
    from string import Formatter

    return {name for _lit, name, _spec, _conv in Formatter().parse(template) if name is not None}


def template_problem(template: str, fields: tuple[str, ...]) -> str | None:
    """What is wrong with a prompt template that may name ``fields`` and must hold ``{text}``
    (``"is not a valid template (...)"``, ``"names {foo}: ..."``, ``"must hold {text}, ..."``), or
    None: shared by wb.toml's ``[models]`` templates and a training run's ``query_template``."""
    try:
        named = template_fields(template)
    except ValueError as exc:
        return f"is not a valid template ({exc}); write a brace as {{{{ or }}}}"
    unknown = sorted(named - set(fields))
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in fields)
        return f"names {', '.join('{' + n + '}' for n in unknown)}: it may use {allowed} only"
    if "text" not in named:
        return f"must hold {{text}}, where the {'query' if 'instruction' in fields else 'document'} goes"
    return None


PLAIN = PromptTemplates()
E5 = PromptTemplates(query="query: {instruction}{text}", document="passage: {text}")
LLM_EMBEDDER = PromptTemplates(
    query="{instruction}Query: {text}", document="{text}", instruction_format="Instruct: {instruction}\n"
)


def resolve_instruction(value: str | None) -> str:
    """Turn ``--instruction`` (a preset name, free text, or None) into the instruction text.

    A value that names a preset (in any case) gives the preset's text; any other value of two or more words is
    used verbatim. A single word that is not a preset is refused (UsageError): it is a mistyped
    preset far more often than an instruction. A trailing colon is dropped (templates add their own
    separator).
    """
    if not value:
        return ""
    text = value.strip()
    name = text.rstrip(":").strip().lower()  # `-i SciFact:` names the preset too
    if name in INSTRUCTION_PRESETS:
        return INSTRUCTION_PRESETS[name]
    if not text.rstrip(":").strip():
        raise UsageError("the instruction is empty")
    if len(text.rstrip(":").split()) == 1:
        raise UsageError(f"unknown instruction preset '{text}' (presets: {', '.join(INSTRUCTION_PRESETS)}); "
                         "a free-text instruction has more than one word")
    return text.rstrip(":").rstrip()


def templates_for(model_name: str, kind: str, path: str | None = None) -> PromptTemplates:
    """The templates a model is served with: those its training recorded (``templates`` in a
    trained folder's ``wb_model.json``, so a run's custom ``query_template`` is served as it was
    trained), else the query and document prompts of its sentence-transformers config
    (``config_sentence_transformers.json``: e5's "query: "/"passage: ", nomic's "search_query: "/
    "search_document: "), else defaults picked from its name and layout kind (``causal-lm`` → LLM
    style)."""
    if path:
        from pathlib import Path

        from workbench.encoders.layout import read_json

        saved = read_json(Path(path) / "wb_model.json").get("templates")
        if isinstance(saved, dict) and all(isinstance(saved.get(k), str) for k in ("query", "document",
                                                                                     "instruction_format")):
            return PromptTemplates(saved["query"], saved["document"], saved["instruction_format"])
        prompted = _sentence_transformers_prompts(read_json(Path(path) / "config_sentence_transformers.json"))
        if prompted is not None:
            return prompted
    low = model_name.lower()
    if kind == "causal-lm":
        return LLM_EMBEDDER
    if "e5" in low.split("/")[-1]:
        return E5
    return PLAIN


_QUERY_PROMPTS = ("query", "search_query")
_DOCUMENT_PROMPTS = ("document", "passage", "search_document", "corpus")


def _sentence_transformers_prompts(config: dict) -> PromptTemplates | None:
    """Templates from a sentence-transformers config's ``prompts`` (None when it names no query or
    document prompt): each prompt is a literal prefix (its braces escaped), the instruction goes
    between the query prompt and the text."""
    prompts = config.get("prompts")
    if not isinstance(prompts, dict):
        return None
    query = next((prompts[k] for k in _QUERY_PROMPTS if isinstance(prompts.get(k), str)), None)
    document = next((prompts[k] for k in _DOCUMENT_PROMPTS if isinstance(prompts.get(k), str)), None)
    if not query and not document:
        return None

    def literal(text: str | None) -> str:
        return (text or "").replace("{", "{{").replace("}", "}}")

    return PromptTemplates(query=literal(query) + "{instruction}{text}", document=literal(document) + "{text}")
