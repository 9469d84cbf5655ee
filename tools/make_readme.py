"""Write README.md from nbs/index.ipynb: its markdown cells, and code cells (not `#|`-hidden) as python blocks.

nbdev's own `nbdev_readme` does the same through Quarto, which cannot be installed without internet access (its
PyPI package downloads the binary at build time). `--check` exits 1 when README.md is out of date.
"""
import sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT / 'nbs' / 'index.ipynb') -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = ['<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->']
    for c in nb.cells:
        src = c.source.strip()
        if not src or src.startswith('#| hide'): continue
        if c.cell_type == 'markdown':
            parts.append(src)
        elif c.cell_type == 'code':
            parts.append(f'```python\n{src}\n```')
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `./run python tools/make_readme.py`')
    else:
        readme.write_text(text)
