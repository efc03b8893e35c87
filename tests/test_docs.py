"""The docs: every ``laser-jax`` command line in README.md and docs/*.md parses, and ``mkdocs build --strict`` passes.

A command line is any line of a fenced code block (not a ``python`` one), with its backslash continuations joined,
or any inline code span, that holds the word ``laser-jax`` as a shell word (so ``srun ... laser-jax sweep ...`` and
``OUT=dir laser-jax table ...`` count; ``laser_jax.load_model`` and ``laser-jax: error: ...`` do not). From that word
on, up to a shell operator (``&``, ``|``, ``;``, ``>``) or a comment, it is parsed with the real parser,
``laser_jax.cli.build_parser()``. A bare ``laser-jax COMMAND`` (a reference to a command in prose) only has to name
a subcommand that exists, and a bare ``laser-jax`` is the program's name. ``lm-eval`` passes its unknown arguments
through to lm-evaluation-harness, so its lines are parsed with ``parse_known_args``. Lines with placeholders (``…``,
``SRC``) are not skipped: the docs give concrete commands.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from laser_jax.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PROG = "laser-jax"
OPERATORS = {"&", "&&", "|", "||", ";", ">", ">>", "2>", "2>&1", "<"}
PASS_THROUGH = {"lm-eval"}  # subcommands whose unknown arguments go to another program

_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fenced_and_prose(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(fenced shell lines with continuations joined, prose lines), each as (line number, text)."""
    commands, prose = [], []
    fence, language, pending, start = None, "", "", 0
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, language = match.group(2), match.group(3).lower()
            else:
                prose.append((number, line))
            continue
        if line.strip().startswith(fence[0] * len(fence)) and not line.strip()[len(fence):].strip():
            if pending:
                commands.append((start, pending))
            fence, pending = None, ""
            continue
        if language in ("python", "py", "pycon", "toml", "yaml", "json", "text"):  # text: a program's output
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append((start, pending + line))
        pending = ""
    return commands, prose


def inline_spans(prose: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Inline code spans of the prose (a span may run over a line break), with the line each starts on."""
    text = "\n".join(line for _, line in prose)
    numbers = [number for number, _ in prose]
    spans = []
    for match in _INLINE.finditer(text):
        line_index = text.count("\n", 0, match.start())
        spans.append((numbers[line_index], " ".join(match.group(2).split())))
    return spans


def command_lines() -> list[tuple[str, str]]:
    """Every ``laser-jax`` command line of the docs, as (``file:line``, the command from ``laser-jax`` on)."""
    found = []
    for path in doc_files():
        commands, prose = fenced_and_prose(path.read_text(encoding="utf-8"))
        for number, line in commands + inline_spans(prose):
            try:
                words = shlex.split(line, comments=True)
            except ValueError as error:  # unbalanced quotes: not a shell line we can check
                if PROG in line.split():
                    found.append((f"{path.relative_to(ROOT)}:{number}", f"unparseable shell line ({error}): {line}"))
                continue
            if PROG not in words:
                continue
            words = words[words.index(PROG):]
            for index, word in enumerate(words):
                if word in OPERATORS or word.startswith((">", "2>")):
                    words = words[:index]
                    break
            found.append((f"{path.relative_to(ROOT)}:{number}", shlex.join(words)))
    return found


def parse(line: str) -> str | None:
    """None when ``line`` parses; else argparse's message."""
    argv = shlex.split(line)[1:]
    parser = build_parser()
    stderr, stdout = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            if not argv:  # the program's name in prose
                return None
            if len(argv) == 1 and not argv[0].startswith("-"):  # a bare `laser-jax COMMAND` in prose
                subcommands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
                return None if argv[0] in subcommands else f"no subcommand {argv[0]!r}"
            if argv and argv[0] in PASS_THROUGH:
                parser.parse_known_args(argv)
            else:
                parser.parse_args(argv)
    except SystemExit as exit:
        if exit.code in (0, None):  # --help, --version
            return None
        return stderr.getvalue().strip() or f"exit {exit.code}"
    return None


LINES = command_lines()


def test_the_docs_hold_command_lines():
    """The extraction finds the README's commands, so the parse test below is not vacuous."""
    readme = [line for where, line in LINES if where.startswith("README.md")]
    assert any(line.startswith("laser-jax synthetic --preset quick") for line in readme), readme
    assert any(line.startswith("laser-jax sweep ") for line in readme), readme
    assert any(line.startswith("laser-jax table ") for line in readme), readme
    assert len(LINES) >= 20, LINES


@pytest.mark.parametrize("where, line", LINES, ids=[f"{where} {line[len(PROG) + 1:][:50]}" for where, line in LINES])
def test_command_line_parses(where, line):
    problem = parse(line)
    assert problem is None, f"{where}: `{line}` does not parse: {problem}"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "sweep" / "index.html").is_file()


def test_readme_fits_on_a_screen_and_its_links_resolve():
    """The README stays short, and its relative links (not built by MkDocs) name files that exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md grew past 200 lines: move the detail into docs/"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (ROOT / target.split("#")[0]).exists(), f"README.md links {target}, which does not exist"
