"""The index settings recorded with an index: which models and templates built it.

A query must encode with the same models and document template the index was built with; a
mismatch is a WorkspaceError telling the user to re-index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from workbench.config import WorkspaceConfig
from workbench.encoders.layout import read_layout
from workbench.encoders.templates import PromptTemplates, templates_for
from workbench.models.registry import fingerprint, resolve_role


@dataclass(frozen=True)
class IndexSettings:
    dense_name: str
    dense_path: str
    dense_fingerprint: str
    colbert_name: str
    colbert_fingerprint: str
    sparse_name: str
    sparse_path: str
    sparse_fingerprint: str
    query_template: str
    document_template: str
    instruction_format: str
    chunk_tokens: int
    chunk_overlap: int
    sparse_step: float

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def templates(self) -> PromptTemplates:
        return PromptTemplates(self.query_template, self.document_template, self.instruction_format)

    def models_of(self, models):
        """``models`` (a ModelsConfig) with the index roles this index was built with (for labels:
        the models that answer when wb.toml names others)."""
        from dataclasses import replace

        return replace(models, dense=self.dense_name, colbert=self.colbert_name, sparse=self.sparse_name)

    def differences(self, other: "IndexSettings") -> list[str]:
        """Names of the settings that differ in what the index holds (paths excluded: a moved cache
        is not a change; the query side too: no document vector depends on it)."""
        skip = {"dense_path", "sparse_path", *QUERY_SIDE}
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if k not in skip and mine[k] != theirs.get(k)]

    def same_dense_model(self, other: "IndexSettings") -> bool:
        return (self.dense_name, self.dense_fingerprint) == (other.dense_name, other.dense_fingerprint)

    def with_query_side(self, other: "IndexSettings") -> "IndexSettings":
        """These settings encoding queries as ``other`` says (its query template and instruction
        format): what a query uses when wb.toml changes only them, no re-indexing needed."""
        from dataclasses import replace

        return replace(self, **{k: getattr(other, k) for k in QUERY_SIDE})

    def with_builtins_located(self) -> "IndexSettings":
        """These settings loading each built-in dense or sparse model (recorded by its name) from its
        folder in the model cache of now, when that holds the very model (the same fingerprint): an
        index records the folder it was built from, and a moved ``WB_MODEL_CACHE`` (the same
        built-ins installed elsewhere, the old folder gone) must not send the load there. Anything
        else keeps its recorded path (a changed or missing model is the change check's to say)."""
        from dataclasses import replace

        from workbench.models.cache import BUILTIN_MODELS, builtin_model_path

        moved = {}
        for role in ("dense", "sparse"):
            name, path = getattr(self, f"{role}_name"), getattr(self, f"{role}_path")
            if name not in BUILTIN_MODELS:
                continue
            here = str(builtin_model_path(name))
            if here != path and fingerprint(here) == getattr(self, f"{role}_fingerprint"):
                moved[f"{role}_path"] = here
        return replace(self, **moved) if moved else self


QUERY_SIDE = ("query_template", "instruction_format")  # how a query is encoded: no document depends on it


def settings_from_config(config: WorkspaceConfig) -> IndexSettings:
    """Resolve the configured models (ModelError if a built-in is not installed)."""
    dense = resolve_role("dense", config.models)
    colbert = resolve_role("colbert", config.models)
    sparse = resolve_role("sparse", config.models)
    layout = read_layout(dense.path)
    layout.check("dense model")
    templates = templates_for(dense.name, layout.kind, dense.path)
    return IndexSettings(
        dense_name=dense.name,
        dense_path=dense.path,
        dense_fingerprint=fingerprint(dense.path),
        colbert_name=colbert.name,
        colbert_fingerprint=fingerprint(colbert.path),
        sparse_name=sparse.name,
        sparse_path=sparse.path,
        sparse_fingerprint=fingerprint(sparse.path),
        query_template=config.models.dense_query_template or templates.query,
        document_template=config.models.dense_document_template or templates.document,
        instruction_format=templates.instruction_format,
        chunk_tokens=config.index.chunk_tokens,
        chunk_overlap=config.index.chunk_overlap,
        sparse_step=config.index.sparse_step,
    )


def settings_from_dict(data: dict) -> IndexSettings:
    return IndexSettings(**data)
