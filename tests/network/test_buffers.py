"""network/buffers.py is the one list of the step's intermediate buffers: the reference's and the
dump's names come from it, and docs/fortran.md's Setup table must say the same."""

import re
from pathlib import Path

from cudnn_denoise.network import buffers, reference
from cudnn_denoise.port import dump_format

DOCS = Path(__file__).resolve().parents[2] / "docs" / "fortran.md"


def setup_rows() -> dict[str, str]:
    """The Setup section's buffer table: first cell's names (`a1/h1`) -> the row's last cell."""
    text = DOCS.read_text()
    section = text[text.index("## Setup"):text.index("3. Descriptors")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name] = cells[2]
    return rows


def test_names_pair_up_as_the_step_uses_them():
    assert [b.name for b in buffers.ACTIVATIONS] == ["a1", "h1", "a2", "h2", "y"]
    assert [b.intermediate for b in buffers.GRADIENTS] == ["dconv3", "drelu2", "dconv2", "drelu1", "dconv1"]
    assert buffers.trace_name("h1", False) == buffers.trace_name("a1", False) == "a1/h1"
    assert buffers.trace_name("dh2", False) == "da2/dh2" and buffers.trace_name("dh2", True) == "dh2"
    assert buffers.trace_name("y", False) == "y"
    assert buffers.layer_buffers(2, False) == ("a2/h2", "a2/h2", "da2/dh2", "da2/dh2")


def test_reference_and_dump_names_come_from_the_list():
    assert reference.ACTIVATIONS == tuple(b.intermediate for b in buffers.ACTIVATIONS)
    assert reference.OUTPUT == buffers.OUTPUT.intermediate
    assert {b.intermediate for b in buffers.BUFFERS} <= set(dump_format.ORDER)


def test_the_docs_setup_table_names_every_buffer_and_its_dump_name():
    rows = setup_rows()
    for b in buffers.BUFFERS:
        shared = buffers.trace_name(b.name, keep_intermediates=False)
        assert shared in rows, f"docs/fortran.md Setup: no row for `{shared}`"
        assert f"`{b.intermediate}`" in rows[shared], f"docs/fortran.md Setup: `{shared}` should name `{b.intermediate}`"
    text = DOCS.read_text()
    kept = re.search(r"With `keep_intermediates`[^,]*, (.*?) are\s+eight separate buffers", text, re.S)
    assert kept, "docs/fortran.md Setup: the keep_intermediates sentence is gone"
    separate = set(re.findall(r"`([^`]+)`", kept.group(1)))
    assert separate == {b.name for b in buffers.BUFFERS if b.channels > 1}
