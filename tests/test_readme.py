"""The README's Python examples run as written, and the ten-line one actually learns."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run_and_the_tiny_net_learns(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["loss"].item() < 0.1
    out = capsys.readouterr().out
    assert "loss after 100 steps" in out and "ok   input 1 (4, 3, 3, 3)" in out
