"""mkdocs hook: expand ``<!-- api-members: napari_carspatial.PKG -->`` in an API page into one
mkdocstrings entry per name of the package's ``__all__``, grouped by the module that defines it.

The pages then list exactly the public API: a name added to ``__all__`` appears in the reference
without editing the page, and a name removed disappears. A name that is also a submodule of the
package (``analysis.quantify`` the function vs ``analysis/quantify.py``) is documented from its
defining module, because the static loader would otherwise find the submodule.
"""

from __future__ import annotations

import functools
import html
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

MARKER = re.compile(r"^<!-- api-members: (napari_carspatial(?:\.\w+)*) -->$", re.M)


def _summary(module) -> str:
    doc = inspect.getdoc(module) or module.__name__
    return doc.strip().split("\n\n")[0].replace("\n", " ").rstrip(".")


@functools.cache
def _sources(package_dir: Path) -> tuple[str, ...]:
    return tuple(p.read_text(encoding="utf-8") for p in sorted(package_dir.rglob("*.py")))


def _comment(package_dir: Path, name: str) -> str:
    """The ``#:`` comment above ``NAME = ...`` in a module of the package (``""`` if none)."""
    pat = re.compile(rf"((?:^#:.*\n)+)^{re.escape(name)}\b[^\n=]*=", re.M)
    for text in _sources(package_dir):
        m = pat.search(text)
        if m:
            return " ".join(line[2:].strip() for line in m.group(1).splitlines())
    return ""


def members(package: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """``([(section title, [mkdocstrings identifiers])], [constant names])`` for ``__all__``."""
    pkg = importlib.import_module(package)
    submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    sections: dict[str, list[str]] = {}
    constants = []
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            constants.append(name)
            continue
        home = obj.__module__
        ident = f"{home}.{name}" if name in submodules else f"{package}.{name}"
        sections.setdefault(home, []).append(ident)
    titles = {h: _summary(importlib.import_module(h)) for h in sections}
    return [(titles[h], sections[h]) for h in sorted(sections)], constants


def expand(package: str) -> str:
    groups, constants = members(package)
    out = []
    for title, idents in groups:
        out.append(f"## {title}\n")
        out.extend(f"::: {ident}\n" for ident in idents)
    if constants:
        pkg = importlib.import_module(package)
        root = Path(pkg.__file__).parent.parent  # napari_carspatial/: constants may be re-exported
        out.append("## Constants\n")
        out.append("| name | value | meaning |\n|---|---|---|")
        for name in constants:
            value = repr(getattr(pkg, name))
            value = value if len(value) <= 80 else value[:77] + "..."
            text = _comment(root, name).replace("|", "\\|")
            out.append(f"| `{name}` | <code>{html.escape(value)}</code> | {text} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 (mkdocs hook signature)
    return MARKER.sub(lambda m: expand(m.group(1)), markdown)


# Sphinx roles in the docstrings (``:func:`~napari_carspatial.io.read_table` ``) reach the HTML as
# ``:func:<code>~napari_carspatial.io.read_table</code>``; turn them into optional autorefs: a link
# when the target is in the reference, plain code otherwise (never a warning).
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|attr|mod|exc|obj|const|term):<code>(~?)([^<]+)</code>")


def _role(match, package: str | None) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    title = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
    if target.startswith("napari_carspatial."):
        ident = target
    elif package and not target.startswith("."):
        ident = f"{package}.{target}"
    else:
        return f"<code>{title}</code>"
    return f'<autoref identifier="{html.escape(ident)}" optional><code>{html.escape(title)}</code></autoref>'


def on_page_content(content, page, config, files):  # noqa: ARG001 (mkdocs hook signature)
    m = MARKER.search(page.file.content_string or "") if page.file.src_uri.startswith("api/") else None
    package = m.group(1) if m else None
    return ROLE.sub(lambda r: _role(r, package), content)
