"""The README's quickstart, followed literally on a folder and on an array, ends with `compare` saying identical.

The commands are read from README.md itself (the first two code blocks of the quickstart: the folder and the
array), so the test follows whatever the README says. The data: scikit-learn's digits as a folder of PNG files
and as the array scikit-learn holds (values 0..16), both fitted by the shipped digits model.
"""

import re
import shlex
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from sklearn.datasets import load_digits

from acncodec.cli import main
from acncodec.data import export_png, load

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_blocks() -> list[list[list[str]]]:
    text = README.read_text()
    section = text[text.index("## Quickstart"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = []
    for block in blocks:
        lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
        commands.append([shlex.split(line)[1:] for line in lines if line.startswith("acncodec ")])
    return commands


def test_quickstart_on_a_folder_and_on_an_array(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export_png(load("digits:150"), tmp_path / "my_images")
    np.save(tmp_path / "my_array.npy", load_digits().images.astype(np.uint8)[:150])
    blocks = quickstart_blocks()
    folder, array = blocks[0], blocks[1]
    assert any(c[0] == "compare" for c in folder) and any(c[0] == "compare" for c in array)
    for commands in (folder, array):
        for args in commands:
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, (args, result.output)
        assert commands[-1][0] == "compare"
        assert result.stdout.startswith("identical: 150 images, every pixel equal"), result.output
