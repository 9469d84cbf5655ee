import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='session')
def fake_cifar(tmp_path_factory):
    "A tiny CIFAR-10 in both layouts (5 train, 2 test images per class)."
    from wavescat.cifar10 import make_fake_cifar10
    return make_fake_cifar10(tmp_path_factory.mktemp('fake_cifar'), n_train=5, n_test=2)

@pytest.fixture
def cache(tmp_path):
    return tmp_path / 'cache'

@pytest.fixture(scope='session')
def real_cifar_root():
    root = os.environ.get('WAVESCAT_DATA')
    if not root: pytest.skip('WAVESCAT_DATA is not set: no real CIFAR-10 here')
    return root

def run_python(code: str, **env) -> str:
    "Run `code` in a fresh interpreter (no shared RNG or import state) and return its stdout."
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout

NBS = ROOT / 'nbs'

def execute(name, out_path, **params):
    "Run the notebook `nbs/name` headlessly with papermill (parameters injected), from nbs/ as JupyterLab would."
    import papermill as pm
    return pm.execute_notebook(str(NBS / name), str(out_path), parameters=params, kernel_name='python3',
                               cwd=str(NBS), progress_bar=False, log_output=False)

def errors(nb):
    "The error outputs of an executed notebook."
    return [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])
            if o.get('output_type') == 'error']

def outputs_text(nb) -> str: return json.dumps([c.get('outputs') for c in nb.cells])
