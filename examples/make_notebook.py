"""Writes examples/notebook.ipynb from examples/notebook.py (cells split at `# %%` lines;
`# %% [markdown]` cells have their `# ` prefixes removed). No dependencies.

    python3 examples/make_notebook.py           # writes it
    python3 examples/make_notebook.py --check   # fails if it is not what notebook.py makes
"""
import json
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
cells, kind, lines = [], None, []


def flush():
    if kind is None:
        return
    text = "\n".join(lines).strip("\n")
    if kind == "markdown":
        text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
        cells.append({"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)})
    else:
        cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": text.splitlines(keepends=True)})


for line in (here / "notebook.py").read_text().splitlines():
    if line.startswith("# %%"):
        flush()
        kind, lines = ("markdown" if "[markdown]" in line else "code"), []
    else:
        lines.append(line)
flush()
nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}, "language_info": {"name": "python"}},
      "nbformat": 4, "nbformat_minor": 5}
text = json.dumps(nb, indent=1) + "\n"
if "--check" in sys.argv[1:]:
    if (here / "notebook.ipynb").read_text() != text:
        sys.exit(f"{here / 'notebook.ipynb'} is not what {here / 'notebook.py'} makes: run python3 {here / 'make_notebook.py'}")
    print(f"{here / 'notebook.ipynb'} is up to date ({len(cells)} cells)")
else:
    (here / "notebook.ipynb").write_text(text)
    print(f"wrote {here / 'notebook.ipynb'}: {len(cells)} cells")
