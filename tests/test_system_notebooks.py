"The other systems' notebooks (deformation robustness, biomass regression), executed by papermill on fake data."
import json
from pathlib import Path
import pytest
import torch

pm = pytest.importorskip('papermill')
from conftest import execute, errors, outputs_text
NBS = Path(__file__).resolve().parents[1] / 'nbs'
pytestmark = pytest.mark.slow


def test_biomass_runs_end_to_end_on_the_fake_layout(tmp_path):
    from wavescat.biomass import make_fake_biomass
    root = make_fake_biomass(tmp_path / 'bio', n_images=6, size=(460, 900))
    nb = execute('biomass.ipynb', tmp_path / 'biomass.ipynb', data_root=str(root), epochs=2, batch_size=4,
                 pretrained=False, device='cpu', out_dir=str(tmp_path / 'runs'))
    rec = json.loads((tmp_path / 'runs' / 'biomass-resnet18-s0-e2' / 'record.json').read_text())
    assert ([h['epoch'] for h in rec['history']] == [1, 2]
            and rec['data'] == dict(source='bio', n_images=6, n_train=5, n_val=1))
    assert {'val_mse', 'train_mse', 'val_weighted_r2', 'train_weighted_r2'} <= set(rec['metrics'])
    assert (tmp_path / 'runs' / 'biomass-resnet18-s0-e2' / 'predictions.png').stat().st_size > 10_000
    assert '5 for training, 1 for validation (split by image' in outputs_text(nb)

def test_biomass_says_where_it_looked(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match='looked for train.csv'):
        execute('biomass.ipynb', tmp_path / 'b.ipynb', data_root=str(tmp_path / 'nothing'), epochs=1)

def test_deformation_notebook_with_a_trained_run(fake_cifar, tmp_path, monkeypatch):
    "With a finished ResNet18 run in runs_dir, its first layer joins pixels and scattering in every figure."
    monkeypatch.setenv('WAVESCAT_CACHE', str(tmp_path / 'cache'))
    from wavescat.train import train
    kw = dict(model='resnet18', n_per_class=2, epochs=1, batch_size=10, device='cpu',
              data_root=str(fake_cifar['batches']), out_dir=str(tmp_path / 'runs'), progress_every=float('inf'))
    # a recipe-choice run (no test score): sorts first, never used
    train(seed=0, val_per_class=1, evaluate_test=False, **kw)
    train(seed=1, test_subset=10, **kw)
    nb = execute('deformation.ipynb', tmp_path / 'deformation.ipynb', n_images=10, steps=3,
                 data_root=str(fake_cifar['batches']), runs_dir=str(tmp_path / 'runs'),
                 figures_dir=str(tmp_path / 'figs'))
    text = outputs_text(nb)
    assert ('ResNet18 first layer (trained): resnet18-n2-s1-' in text
            and 'ScatResNet18 v1 first layer (trained): no finished run' in text)
    assert (sorted(p.name for p in (tmp_path / 'figs').glob('*.png'))
            == [f'deformation_{k}.png' for k in ('displacement', 'rotation', 'scaling', 'translation')])
    import pandas as pd
    table = pd.read_csv(tmp_path / 'figs' / 'deformation_crossings.csv')
    assert set(table.representation) == {'pixels', 'scattering J=1 L=4', 'scattering J=2 L=8',
                                         'ResNet18 first layer (trained)'}
