"""Keep the API reference to the public API: no private base classes, no private module paths.

autodoc shows what the code says, and the code has private helpers that are none of the reader's
business. Two hooks keep them off the pages:

* ``autodoc-process-bases``: a private base class (``class GCN(_GraphNet)``) is replaced by its own
  public bases, so the page says "Bases: Module" instead of naming a class the reader cannot import
  or look up;
* ``autodoc-process-docstring``: a cross-reference to an object of a private module written with its
  full path (``:func:`neuronlab.experiments._common.setup_chapter```) is shown by its name alone
  (``setup_chapter()``), as if written with ``~``; the link still resolves;
* ``missing-reference``: a short reference inside a package's submodule (``:func:`load_dataset``` in
  ``neuronlab.data.registry``) that names what the package re-exports (``neuronlab.data.load_dataset``,
  documented once, on the package's page) links there.
"""

from __future__ import annotations

import re
from typing import Any, List

__all__ = ["is_private_name", "public_bases", "shorten_private_paths", "resolve_reexported", "setup"]

# A role whose target has a private component before the object's name: pkg._mod.obj (not dunders).
_PRIVATE_TARGET = re.compile(r"(:(?:py:)?[a-z]+:`)((?:[A-Za-z]\w*\.)+_(?!_)\w*\.[\w.]+`)")


def is_private_name(name: str) -> bool:
    """A single leading underscore: ``_GraphNet`` and ``_common`` are private, ``__main__`` is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _public_ancestors(base: Any) -> List[Any]:
    name = getattr(base, "__name__", "")
    if not isinstance(base, type) or not is_private_name(name):
        return [base]
    found: List[Any] = []
    for parent in base.__bases__:
        found.extend(_public_ancestors(parent))
    return found


def public_bases(app, name, obj, options, bases: list) -> None:
    """``autodoc-process-bases``: replace every private base by its nearest public ancestors (in place)."""
    result: List[Any] = []
    for base in bases:
        for public in _public_ancestors(base):
            if not any(public is seen for seen in result):
                result.append(public)
    bases[:] = result


def shorten_private_paths(app, what, name, obj, options, lines: list) -> None:
    """``autodoc-process-docstring``: ``:role:`a._b.c``` becomes ``:role:`~a._b.c``` (shown as ``c``)."""
    for i, line in enumerate(lines):
        lines[i] = _PRIVATE_TARGET.sub(r"\1~\2", line)


def resolve_reexported(app, env, node, contnode):
    """``missing-reference``: resolve ``name`` from module ``a.b.c`` as ``a.b.name`` or ``a.name``."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    module = node.get("py:module") or ""
    domain = env.get_domain("py")
    parts = module.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:depth] + [target])
        if candidate in domain.objects:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], candidate,
                                       node, contnode)
    return None


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-bases", public_bases)
    app.connect("autodoc-process-docstring", shorten_private_paths)
    app.connect("missing-reference", resolve_reexported)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
