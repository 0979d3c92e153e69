"""The documentation's commands and links (README.md, WORKSPACE.md, docs/**/*.md).

Every fenced shell block carries a marker on the line just before its fence (the
convention is in WORKSPACE.md): `<!-- quick -->` (this test runs it) or
`<!-- needs: REASON, ... -->` with reasons from `NEEDS` (not run here). The quick blocks
run with `bash`, the repository root as the working directory, this interpreter as
`python`, and every `--workdir=` / `--out=` path moved under the test's tmp_path. Every
relative markdown link must name an existing file, and an anchor one of its headings.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = ["README.md", "WORKSPACE.md"] + sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
README_MAX_LINES = 210

# Why a documented command is not run by this test.
NEEDS = {
    "install": "pip-installs or creates a virtual environment",
    "data": "reads a dataset that is not embedded (prepared or given by you)",
    "gpu": "is GPU-scale",
    "long": "takes longer than this test may (over ~20 s on CI's CPU)",
    "network": "downloads",
    "cluster": "runs under SLURM or across hosts",
    "values": "has placeholders to fill in (DIR, [optional] parts, ...)",
}
SHELL = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"^<!--\s*(quick|needs:\s*([a-z, ]+?))\s*-->$")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
# Things a quick command must never do (no network, no installs, no cluster).
NOT_QUICK = re.compile(r"\b(pip|curl|wget|git clone|srun|sbatch|huggingface-cli)\b")
WORKDIR = re.compile(r"(--(?:workdir|out)=)(\S+)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _read(rel):
  with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
    return f.read().split("\n")


def _split(lines):
  """(prose lines with fenced blocks blanked, [(line number, language, marker, text)])."""
  prose, blocks, i = list(lines), [], 0
  while i < len(lines):
    m = FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    start = i
    i += 1
    while i < len(lines) and not lines[i].startswith("```"):
      i += 1
    marker = lines[start - 1].strip() if start else ""
    blocks.append((start + 1, m.group(1), marker, "\n".join(lines[start + 1:i])))
    for j in range(start, min(i + 1, len(lines))):
      prose[j] = ""
    i += 1
  return prose, blocks


def _shell_blocks():
  for rel in DOCS:
    for line, lang, marker, text in _split(_read(rel))[1]:
      if lang in SHELL:
        yield f"{rel}:{line}", marker, text


def _quick_blocks():
  return [pytest.param(text, id=where) for where, marker, text in _shell_blocks()
          if marker == "<!-- quick -->"]


def test_every_shell_block_is_marked_quick_or_with_what_it_needs():
  bad = []
  for where, marker, text in _shell_blocks():
    m = MARKER.match(marker)
    if not m:
      bad.append(f"{where}: no marker line before the fence (found {marker!r})")
    elif m.group(1) == "quick":
      if NOT_QUICK.search(text):
        bad.append(f"{where}: marked quick but installs, downloads or needs a cluster")
    else:
      reasons = {r.strip() for r in m.group(2).split(",") if r.strip()}
      if not reasons or reasons - set(NEEDS):
        bad.append(f"{where}: unknown needs {sorted(reasons - set(NEEDS))}; "
                   f"known: {sorted(NEEDS)}")
  assert not bad, "\n".join(bad)
  assert _quick_blocks(), "the docs show no quick command"


def _slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(rel):
  seen, out = {}, set()
  for line in _split(_read(rel))[0]:
    m = re.match(r"^#{1,6} (.*)$", line)
    if m:
      s = _slug(m.group(1))
      n = seen.get(s, 0)
      seen[s] = n + 1
      out.add(s if n == 0 else f"{s}-{n}")
  return out


def test_every_relative_link_resolves():
  bad = []
  for rel in DOCS:
    for number, line in enumerate(_split(_read(rel))[0], 1):
      for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
          continue
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
        where = f"{rel}:{number}: {target}"
        if not os.path.exists(os.path.join(ROOT, dest)):
          bad.append(f"{where}: {dest} does not exist")
        elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
          bad.append(f"{where}: no heading #{anchor} in {dest}")
  assert not bad, "\n".join(bad)


def test_readme_stays_short():
  assert len(_read("README.md")) <= README_MAX_LINES


@pytest.mark.parametrize("text", _quick_blocks())
def test_quick_command_runs(text, tmp_path):
  moved = []

  def to_tmp(m):
    assert not os.path.isabs(m.group(2)), f"a quick command writes to {m.group(2)}"
    moved.append(tmp_path / m.group(2))
    return m.group(1) + str(tmp_path / m.group(2))

  script = WORKDIR.sub(to_tmp, text)
  assert moved, "a quick command must name its --workdir (or --out) to keep the repo clean"
  # As tests/conftest.py: tiny runs, so skip most XLA optimizations (compile time).
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
         "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
  out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
  for path in moved:
    assert path.exists(), f"{path} was not written"
