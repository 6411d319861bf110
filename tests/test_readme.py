"""The README's install commands: every extra they name exists, the CPU-only one brings no GPU
library and reads MRC and TIFF; a clone does not show the runs that the README's commands write as
untracked; no doc points a reader at the project's internal folders or issue numbers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU_PACKAGES = re.compile(r"^(cupy|nvidia-|torch)", re.IGNORECASE)


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def readme_installs() -> list[list[str]]:
    """The extras of each `pip install -e ".[...]"` in the README."""
    return [
        group.split(",")
        for group in re.findall(
            r'pip install -e "\.\[([a-z0-9,]+)\]"', (ROOT / "README.md").read_text()
        )
    ]


def test_every_extra_the_readme_names_exists():
    installs = readme_installs()
    assert len(installs) >= 4
    assert {name for group in installs for name in group} <= set(extras())


def test_the_readme_has_a_cpu_only_install_without_gpu_libraries():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cpu_only = installs_without_cuda(readme_installs())
    assert cpu_only, "no install without cuda12 or cuda13 in the README"
    for group in cpu_only:
        needs = project["dependencies"] + [dep for name in group for dep in extras()[name]]
        assert not [dep for dep in needs if GPU_PACKAGES.match(dep)], group
        assert {"mrc", "tiff"} <= set(group), f"{group}: reads no MRC or no TIFF micrographs"


def installs_without_cuda(installs):
    return [group for group in installs if not {"cuda12", "cuda13", "test"} & set(group)]


def test_runs_are_ignored_by_git():
    assert "runs/" in (ROOT / ".gitignore").read_text().splitlines()


# What a reader of the docs cannot follow: a path into the project's own working folders, an
# internal issue or pull-request number, the project's internal rule names.
UNREADABLE = re.compile(r"\.\./shared|(?<![\w&])#\d+\b|\b(?:issue|pull request|PR) #?\d+|\bPrinciple\b",
                        re.IGNORECASE)


def test_no_doc_points_at_internal_folders_or_issue_numbers():
    docs = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*") if p.is_file())]
    found = [f"{doc.relative_to(ROOT)}:{number}: {line.strip()}"
             for doc in docs for number, line in enumerate(doc.read_text().splitlines(), 1)
             if UNREADABLE.search(line)]
    assert not found, "\n".join(found)
