"""MkDocs hooks for the laser-jax docs (named in mkdocs.yml; excluded from the pages).

1. Figures stay where the experiments wrote them. A page links a committed figure by its path relative to
   ``docs/``, e.g. ``![IOI](../experiments/results/ioi.png)``, which GitHub renders as is; this hook adds each such
   figure to the build (under ``figures/``) so that the same link resolves on the built site, with no copy in
   ``docs/``. A link to a figure that does not exist is left alone, so MkDocs reports it.
2. The docstrings use reStructuredText roles (``:func:`apply```, ``:data:`~laser_jax.devices.MESH_AXES```); the API
   pages show the name as code without the role, and ``~`` keeps the last part of the name only, as Sphinx does.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

_FIGURE = re.compile(r"\]\((\.\./[^)\s]+\.(?:png|svg|jpg|jpeg|gif))\)")
_ROLE = r":(?:py:)?(?:func|class|data|meth|mod|attr|exc|obj|const|ref|term):"
_ROLE_SHORT = re.compile(_ROLE + r"<code>~(?:[\w.]*\.)?([\w]+(?:\(\))?)</code>")
_ROLE_PLAIN = re.compile(_ROLE + r"(?=<code>)")


def on_files(files, config):
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    for page in sorted(docs.rglob("*.md")):
        folder = page.parent.relative_to(docs).as_posix()
        for link in _FIGURE.findall(page.read_text(encoding="utf-8")):
            src_uri = posixpath.normpath(posixpath.join(folder, link))
            source = (page.parent / link).resolve()
            if files.get_file_from_path(src_uri) is not None or not source.is_file():
                continue
            figure = File.generated(config, src_uri, abs_src_path=str(source), inclusion=InclusionLevel.INCLUDED)
            figure.dest_uri = "figures/" + source.relative_to(root).as_posix()
            files.append(figure)
    return files


def on_page_content(html, page, config, files):
    return _ROLE_PLAIN.sub("", _ROLE_SHORT.sub(r"<code>\1</code>", html))
