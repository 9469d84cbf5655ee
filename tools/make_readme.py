"""Write README.md from nbs/index.ipynb and docs/*.md from nbs/docs/*.ipynb, with their generated blocks.

A page is a notebook's markdown cells, and its code cells (not `#|`-hidden) as python blocks. Between
`<!-- generated: NAME -->` and `<!-- /generated: NAME -->` a page holds the text that `BLOCKS[NAME]` computes from
the committed records, the features CSV or the benches' JSON: `--update` rewrites those blocks in the notebooks,
then writes the pages; `--check` exits 1 when a block or a page is out of date (CI runs it).

nbdev's own `nbdev_readme` does the same through Quarto, which cannot be installed without internet access (its
PyPI package downloads the binary at build time).
"""
import json, re, sys
from functools import cache
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
PAGES = {ROOT / 'nbs' / 'index.ipynb': ROOT / 'README.md',
         **{nb: ROOT / 'docs' / f'{nb.stem}.md' for nb in sorted((ROOT / 'nbs' / 'docs').glob('*.ipynb'))}}
BLOCK = re.compile(r'<!-- generated: (\w+) -->\n(?:.*?\n)?<!-- /generated: \1 -->', re.S)  # (may be empty)

def blocks() -> dict:
    "Every generated block's text, computed now from what is committed."
    from wavescat import analyses as an, results as ex
    from wavescat.records import STRONG, load_diverged, load_records, variant_protocol
    from wavescat.bench import format_table
    from wavescat.sweep_bench import format_sweep_bench
    from wavescat.config import config_table
    runs, diverged = load_records(ROOT / 'outputs' / 'runs'), load_diverged(ROOT / 'outputs' / 'runs')
    csv = ROOT / 'outputs' / 'features' / 'study-J2-L8-o2.csv'
    bench = lambda name: json.loads((ROOT / 'outputs' / 'bench' / f'{name}.json').read_text())
    study = dict(protocol='study')
    bf16 = variant_protocol('fast', precision='bf16')  # the controls, the size curve and the L sweep run in bf16
    curves = ((bf16, 'outputs/figures/size_curve_bf16.png'), (STRONG, 'outputs/figures/size_curve_strong.png'))
    return {
        'intro': ex.intro_markdown,
        'front_fast': lambda: ex.front_markdown(ex.headline(runs), 'outputs/figures/headline.png'),
        'front_study': lambda: ex.front_markdown(ex.headline(runs, **study), 'outputs/figures/headline_study.png'),
        'front_strong': lambda: ex.front_markdown(ex.headline(runs, protocol=STRONG),
                                                  'outputs/figures/headline_strong.png'),
        'fast': lambda: ex.results_markdown(ex.headline(runs), figure='../outputs/figures/headline.png'),
        'study': lambda: ex.results_markdown(ex.headline(runs, **study),
                                             figure='../outputs/figures/headline_study.png'),
        'strong': lambda: ex.results_markdown(ex.headline(runs, protocol=STRONG),
                                              figure='../outputs/figures/headline_strong.png'),
        'parity': lambda: an.parity_markdown(runs),
        'why': lambda: an.why_markdown(runs, diverged=diverged),
        'front_controls': lambda: an.controls_recipes_markdown(runs, (bf16, STRONG)),
        'controls_strong': lambda: an.controls_markdown(runs, STRONG),
        'size_curve': lambda: an.size_curve_markdown(runs, bf16, '../outputs/figures/size_curve_bf16.png',
                                                     diverged=diverged),
        'size_curve_published': an.parametric_size_markdown,
        'size_curve_strong': lambda: an.size_curve_markdown(runs, STRONG, '../outputs/figures/size_curve_strong.png',
                                                            diverged=diverged),
        'front_size': lambda: '\n\n'.join(f'**`{p}`**: ' + an.size_curve_markdown(runs, p, fig, table=False,
                                                                                  diverged=diverged)
                                            for p, fig in curves),
        'is_random': lambda: an.is_random_markdown(runs),
        'front_is_random': lambda: an.is_random_markdown(runs, bf16),
        'front_l_sweep': lambda: an.l_sweep(runs, bf16)[1] + '\n\n![v1 against L, beside the published single runs]'
                                 '(outputs/figures/accuracy_vs_L.png)',
        'l_sweep': lambda: '\n\n'.join(f'**`{p}`**: ' + an.l_sweep_markdown(runs, p) for p in ('fast', bf16)),
        'comparisons': lambda: ex.comparisons_markdown(runs),
        'front_linear': lambda: an.linear_baseline_markdown(runs, choice=False),
        'linear_baseline': lambda: an.linear_baseline_markdown(runs, diverged=diverged),
        'run_times': lambda: ex.run_times_markdown(runs, recipes=('fast', bf16, STRONG, 'study')),
        'features': lambda: ex.features_markdown(csv, runs),
        'bench': lambda: format_table(bench('cpu')),
        'sweep_bench': lambda: format_sweep_bench(bench('sweep')),
        'parameters': config_table,
    }

def fill(text: str, made: dict) -> str:
    "`text` with every generated block replaced by its current content."
    def one(m):
        if m[1] not in made: sys.exit(f'make_readme: no block generator named {m[1]!r}; known: {", ".join(made)}')
        return f'<!-- generated: {m[1]} -->\n{made[m[1]]()}\n<!-- /generated: {m[1]} -->'
    return BLOCK.sub(one, text)

def render(nb_path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    rel = Path(nb_path).relative_to(ROOT)
    parts = [f'<!-- generated from {rel} by tools/make_readme.py: edit the notebook, not this file -->']
    for c in nb.cells:
        src = c.source.strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c.cell_type == 'markdown' else f'```python\n{src}\n```')
    return '\n\n'.join(parts) + '\n'

def stale_blocks(nb_path, made: dict) -> list[str]:
    "The names of the generated blocks in `nb_path` whose text is not what the records give now."
    nb = nbformat.read(nb_path, as_version=4)
    return [m[1] for c in nb.cells if c.cell_type == 'markdown' for m in BLOCK.finditer(c.source)
            if m[0] != fill(m[0], made)]

def update(nb_path, made: dict):
    "Rewrite the generated blocks in the notebook's JSON (kept as nbdev_clean leaves it)."
    nb = json.loads(Path(nb_path).read_text())
    for c in nb['cells']:
        if c['cell_type'] != 'markdown': continue
        lines = fill(''.join(c['source']), made).split('\n')
        c['source'] = [l + '\n' for l in lines[:-1]] + [lines[-1]]
    Path(nb_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

if __name__ == '__main__':
    made = {k: cache(f) for k, f in blocks().items()}  # each computed once, when a page asks for it
    if '--update' in sys.argv:
        for nb in PAGES: update(nb, made)
    problems = []
    for nb, page in PAGES.items():
        if '--check' in sys.argv:
            problems += [f'{nb.relative_to(ROOT)}: the block {b!r} is out of date' for b in stale_blocks(nb, made)]
            if not page.exists() or page.read_text() != render(nb):
                problems.append(f'{page.relative_to(ROOT)} is out of date with {nb.relative_to(ROOT)}')
        else:
            page.parent.mkdir(exist_ok=True); page.write_text(render(nb))
    if problems: sys.exit('\n'.join(problems) + '\nrun `./run python tools/make_readme.py --update`, review, commit')
