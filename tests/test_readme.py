"The README's and docs/' commands: what a new user copies must behave as the page says."
import importlib.util, re
from pathlib import Path
import papermill as pm

ROOT = Path(__file__).resolve().parents[1]
README = '\n'.join(p.read_text() for p in [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))])

def test_every_papermill_command_logs_its_output():
    "Without --log-output papermill prints nothing until the notebook ends: the main command would look hung for hours."
    cmds = re.findall(r'\./run papermill[^`\n]*', README)
    assert len(cmds) >= 5, cmds
    assert [c for c in cmds if '--log-output' not in c] == []

def test_every_notebook_parameter_in_the_readme_exists():
    "A `-p name value` the notebook does not declare would be silently ignored by papermill (it only warns)."
    seen = 0
    for cmd in re.findall(r'\./run papermill[^`\n]*', README):
        nb = re.search(r'(nbs/\w+\.ipynb)', cmd).group(1)
        declared = set(pm.inspect_notebook(str(ROOT / nb)))
        names = re.findall(r'-p (\w+) ', cmd) + re.findall(r'-y "(\w+):', cmd)
        assert set(names) <= declared, (f'{cmd}: {sorted(set(names) - declared)} '
                                        f'not among {nb} parameters {sorted(declared)}')
        seen += len(names)
    assert seen >= 20, seen

def test_list_parameters_go_through_yaml():
    ("papermill's `-p` never parses a list: `-p sizes \"[10, 100]\"` hands the notebook the string '[10, 100]'; "
     "lists need `-y`.")
    values = re.findall(r'-p \w+ ("[^"]*"|\'[^\']*\'|[^\s`)]+)', README)
    assert len(values) >= 20, values
    assert [v for v in values if v.strip('"\'').lstrip().startswith(('[', '{'))] == []


def test_the_pages_link_to_pages_that_exist():
    "The front page is short and links to the rest: every relative link of README.md and docs/*.md must resolve."
    pages = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
    broken = [(p.name, link) for p in pages for link in re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', p.read_text())
              if not (p.parent / link).exists()]
    assert len(pages) >= 5 and broken == [], broken
    assert len((ROOT / 'README.md').read_text().splitlines()) <= 150

def test_generated_blocks_are_filled_even_when_empty():
    "A block just added to a page is empty: make_readme must fill it (and --check must see it), never pass over it."
    spec = importlib.util.spec_from_file_location('make_readme', ROOT / 'tools' / 'make_readme.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    made, want = {'x': lambda: 'new'}, 'a\n<!-- generated: x -->\nnew\n<!-- /generated: x -->\nb'
    for old in ('', 'old\n', 'two\nlines\n'):
        assert mod.fill(f'a\n<!-- generated: x -->\n{old}<!-- /generated: x -->\nb', made) == want
