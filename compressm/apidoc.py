"""The library reference the book prints: every public function and class of the modules, with its call signature
(parameters and defaults, without annotations: the docstrings give shapes and types) and the first paragraph of
its docstring."""

import importlib
import inspect
from pathlib import Path

import pandas as pd

from compressm.records import REPO


def _default(value) -> str:
    """A default as the reader should see it: paths inside the repository relative to it, never a machine path."""
    if isinstance(value, Path):
        return repr(str(value.relative_to(REPO))) if value.is_relative_to(REPO) else "a path"
    return repr(value)


def call_signature(function) -> str:
    """'reduce_lru(params, tau, *, system='complex', ...)': names, kinds and defaults, no annotations."""
    parts, star = [], False
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        star = star or p.kind is p.VAR_POSITIONAL
        parts.append(prefix + p.name + ("" if p.default is p.empty else f"={_default(p.default)}"))
    return f"{function.__name__}({', '.join(parts)})"


def summary(obj) -> str:
    """The first paragraph of an object's docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def api_table(module_names) -> pd.DataFrame:
    """One row per public function or class defined in each `compressm.<name>`: how to call it
    ('lru.init_nu_log(key, n, r_min, r_max)', 'class model.LRUBlock') and what it does."""
    rows = []
    for module_name in module_names:
        module = importlib.import_module(f"compressm.{module_name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__ or not callable(obj):
                continue
            call = f"{module_name}.{call_signature(obj)}" if inspect.isfunction(obj) else f"class {module_name}.{name}"
            rows.append((call, summary(obj)))
    return pd.DataFrame(rows, columns=["call", "what it does"])
