"""Indexing runs that have not ended, as the manifest records them, and what a query says of them.

`wb index` marks a root in the manifest's ``UNFINISHED_RUN`` meta ({root: documents it set out to
index}) before it encodes anything and clears the mark when the run has ended. Every write stays
crash-safe (complete documents only), but until the mark is cleared the index lacks some of that
root's documents: a query says so (running now, or cut off by Ctrl-C or a kill), and the next run
of the root says it continued it. Light on purpose: the query path imports it.
"""

from __future__ import annotations

UNFINISHED_RUN = "unfinished_runs"  # manifest meta: {root: documents to index} of runs that have not ended


def unfinished_note(workspace, unfinished: dict | None) -> str:
    """What a query of ``workspace`` should say when an indexing run of it has not ended
    (``unfinished``: the manifest's UNFINISHED_RUN): running now, or cut off (Ctrl-C, kill). ""
    when none."""
    if not unfinished:
        return ""
    first = sorted(unfinished)[0]
    root = first + (f" (and {len(unfinished) - 1} more folders)" if len(unfinished) > 1 else "")
    if workspace.being_written():
        return (f"`wb index` of {root} is running: documents it has not reached yet are missing, and until it "
                "ends dense and ColBERT may answer with documents it removed or edited as they were (BM25 and "
                "sparse already see them gone or new): answers can mix the old and the new state")
    again = resume_command(workspace, first if len(unfinished) == 1 else None)
    return (f"the indexing run of {root} was cut off before its end: documents it had not reached are missing "
            f"(an edited one answers as it was, or from some modes not at all); {again} continues it")


def cut_off_note(unfinished: dict, workspace=None) -> str:
    """Why a workspace holds no documents although indexing began and no writer holds it now: its
    first run was cut off before writing any."""
    first = sorted(unfinished)[0]
    again = resume_command(workspace, first) if workspace is not None else f"`wb index {first}`"
    return f"the first indexing run of {first} was cut off before it wrote a document: {again} continues it"


def hint_flag(workspace) -> str:
    """The ``-w`` a `wb index` hint about ``workspace`` needs (``Workspace.flag``): a model variant's
    commands run on its parent workspace, so the parent's."""
    from workbench.variants import is_variant, parent_workspace

    return parent_workspace(workspace).flag if is_variant(workspace) else workspace.flag


def resume_command(workspace, root: str | None) -> str:
    """The `wb index` (in backquotes) that continues a run of ``root`` (None: of every root) in
    ``workspace`` (with ``-w`` where it is not the default one): for a model variant (``<parent>/variants/NAME/``) the parent's `wb index --model
    ROLE=NAME ...` with the variant's models, since `wb index ROOT` indexes the parent."""
    from workbench.variants import is_variant, model_flags

    flag = hint_flag(workspace)
    if is_variant(workspace):
        return f"`wb index {model_flags(workspace)}{flag}`"
    return f"`wb index {root}{flag}`" if root else f"`wb index{flag}`"
