"""The repository describes itself: no file sends its reader outside it.

- No file tracked by git mentions a relative path out of the repository
  into a sibling "shared" folder, or an absolute path into /work/ (where
  the development machine keeps its checkouts): a newcomer who clones
  the project has neither.
- Every relative Markdown link in README.md and docs/*.md points at a
  file or folder of the repository, and an anchor into a Markdown file
  names one of its headings.

Needs no servers: it reads the files `git ls-files` lists. This file is
the only one excluded from the scan, because it has to name the patterns.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# "../shared" anywhere; "/work/" followed by a name, when it starts a path
# (not "home/work/x", not "~/work/x"). "/work/" alone, as a marker string a
# test looks for in error messages, names no path and is not matched.
FORBIDDEN = (
    ("a path to ../shared", re.compile(rb"\.\./shared")),
    ("an absolute path into /work/", re.compile(rb"(?<![\w.~/-])/work/[\w.-]")),
)

# [text](target "title") and ![alt](target); <target> form too.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:


def git_files(*extra):
    """Paths git knows, relative to the root, as posix strings."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", *extra],
                             check=True, capture_output=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"cannot list the repository's files with git: {e}")
    return [p for p in out.decode().split("\0") if p]


def forbidden_mentions(name, data):
    """(line number, what, line) for each forbidden mention in data."""
    found = []
    for what, pattern in FORBIDDEN:
        for m in pattern.finditer(data):
            line_no = data.count(b"\n", 0, m.start()) + 1
            start = data.rfind(b"\n", 0, m.start()) + 1
            end = data.find(b"\n", m.end())
            line = data[start:end if end >= 0 else len(data)]
            found.append((line_no, what, line.decode(errors="replace").strip()[:160]))
    return found


def strip_code(text):
    """Markdown without fenced blocks and code spans (links there are text)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def link_targets(text):
    text = strip_code(text)
    return [m.group(1) for m in INLINE_LINK.finditer(text)] + \
        [m.group(1) for m in REFERENCE_LINK.finditer(text)]


def heading_anchors(text):
    """The anchors GitHub makes for a Markdown file's headings."""
    anchors, seen = set(), {}
    for m in HEADING.finditer(FENCE.sub("", text)):
        title = re.sub(r"`|\*\*|__", "", m.group(1))
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text
        slug = re.sub(r"[^\w\- ]", "", title.lower(), flags=re.U).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def broken_links(md_path, text, known_files, read):
    """(target, why) for each relative link of text (the Markdown file at
    md_path, relative to ROOT) that does not resolve. known_files: the
    repository's files; read(path) gives a Markdown file's text."""
    known_dirs = {p.rsplit("/", i)[0] for p in known_files
                  for i in range(1, p.count("/") + 1)}
    base = Path(md_path).parent
    broken = []
    for target in link_targets(text):
        if not target or EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        if path_part.startswith("/"):
            broken.append((target, "absolute path; use a path relative to the file"))
            continue
        if path_part:
            parts = []
            for piece in (base / path_part).as_posix().split("/"):
                if piece in ("", "."):
                    continue
                if piece == "..":
                    if not parts:
                        parts = None
                        break
                    parts.pop()
                else:
                    parts.append(piece)
            if parts is None:
                broken.append((target, "leaves the repository"))
                continue
            resolved = "/".join(parts)
        else:
            resolved = md_path
        if resolved not in known_files and resolved not in known_dirs and resolved != "":
            broken.append((target, f"{resolved} is not a file of the repository"))
            continue
        if anchor and resolved.endswith(".md") and resolved in known_files:
            if anchor not in heading_anchors(read(resolved)):
                broken.append((target, f"{resolved} has no heading for #{anchor}"))
    return broken


def markdown_pages():
    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    return [p.relative_to(ROOT).as_posix() for p in pages if p.is_file()]


def read_text(rel):
    return (ROOT / rel).read_text(encoding="utf-8")


# ---------------------------------------------------------------- checkers

def test_checker_finds_forbidden_mentions():
    # The checks below are only worth something if they can fail.
    sample = (b"see `../shared/API.md`\nfine /work/ marker\n"
              b"run /work/wt/x/bin\nhome/work/x and ~/work/y\n")
    found = forbidden_mentions("sample", sample)
    assert [(n, what) for n, what, _ in found] == [
        (1, "a path to ../shared"), (3, "an absolute path into /work/")]


def test_checker_finds_broken_links():
    known = {"README.md", "docs/api.md", "docs/design.md", "docs/page.md", "src/lib/http.c"}
    text = ("# A heading\n[ok](design.md) [ok](../src/lib/http.c) [ok](../src/lib/) "
            "[ok](#a-heading) [ok](api.md#22-errors) [ok](api.md#events-on-rabbitmq) "
            "[web](https://example.org/x.md) `[code](nowhere.md)`\n"
            "[gone](missing.md) [out](../../etc/passwd) [abs](/docs/api.md) "
            "[anchor](api.md#no-such)\n"
            "[ref]: ../docs/nothing.md\n"
            "```\n[fenced](also-nowhere.md)\n```\n")
    pages = {"docs/api.md": "# API\n\n## 2.2 Errors\n\n## Events on `RabbitMQ`\n",
             "docs/page.md": text}
    broken = broken_links("docs/page.md", text, known, lambda p: pages[p])
    assert [t for t, _ in broken] == [
        "missing.md", "../../etc/passwd", "/docs/api.md", "api.md#no-such",
        "../docs/nothing.md"]


# ------------------------------------------------------------------ checks

def test_no_tracked_file_points_outside_the_repository():
    offenders = []
    for rel in git_files():
        if rel == THIS:
            continue
        path = ROOT / rel
        if not path.is_file():  # deleted in the work tree, or a submodule
            continue
        for line_no, what, line in forbidden_mentions(rel, path.read_bytes()):
            offenders.append(f"{rel}:{line_no}: {what}: {line}")
    assert not offenders, (
        "files that send the reader outside the repository (describe it in "
        "docs/api.md or docs/design.md and link there):\n" + "\n".join(offenders))


def test_markdown_links_point_at_files_of_the_repository():
    # Files git tracks, and new ones not yet added (but not ignored ones,
    # such as build output, which a fresh clone does not have).
    known = set(git_files()) | set(git_files("--others", "--exclude-standard"))
    pages = markdown_pages()
    assert "README.md" in pages and "docs/api.md" in pages and "docs/design.md" in pages
    problems = []
    for page in pages:
        for target, why in broken_links(page, read_text(page), known, read_text):
            problems.append(f"{page}: ({target}): {why}")
    assert not problems, "broken links:\n" + "\n".join(problems)
