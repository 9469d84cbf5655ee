"The experiment notebooks, executed headlessly by papermill with tiny parameters on the fake CIFAR-10."
import ast, dataclasses, json
from pathlib import Path
import pytest

pm = pytest.importorskip('papermill')
from conftest import execute, errors, outputs_text
NBS = Path(__file__).resolve().parents[1] / 'nbs'
pytestmark = pytest.mark.slow

@pytest.fixture(scope='module')
def env(fake_cifar, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('nbruns')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('WAVESCAT_CACHE', str(tmp / 'cache'))  # the kernels inherit it; restored after this module
        yield dict(tmp=tmp, out=tmp / 'runs', common=dict(n_per_class=2, epochs=1, batch_size=10, test_subset=10,
                   data_root=str(fake_cifar['batches']), download=False, out_dir=str(tmp / 'runs'), device='cpu'))


def test_baseline(env):
    nb = execute('baseline.ipynb', env['tmp'] / 'baseline.ipynb', **env['common'])
    assert not errors(nb)
    (folder,) = [p for p in env['out'].iterdir() if p.name.startswith('resnet18-n2-s0-')]
    rec = json.loads((folder / 'record.json').read_text())
    assert rec['params']['model'] == 'resnet18' and rec['params']['epochs'] == 1 and rec['data']['n_test'] == 10
    assert {'test_acc', 'val_acc', 'train_acc', 'train_loss', 'test_loss'} <= set(rec['metrics'])
    assert (folder / 'learning_curves.png').stat().st_size > 10_000

@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='this machine has CUDA')
def test_a_device_this_machine_lacks_stops_the_validation_cell(env, tmp_path):
    "Issue 27: `-p device cuda` on a CPU machine used to pass the validation cell and fail in the next one."
    with pytest.raises(pm.PapermillExecutionError, match="Parameter device='cuda' but CUDA is not available") as e:
        execute('baseline.ipynb', tmp_path / 'b.ipynb', **{**env['common'], 'device': 'cuda'})
    assert "notebook_params(globals(), _before)" in str(e.value)  # the validation cell, not a later one

def test_scat_v1(env):
    nb = execute('scat_v1.ipynb', env['tmp'] / 'scat_v1.ipynb', L=2, **env['common'])
    assert not errors(nb)
    (folder,) = [p for p in env['out'].iterdir() if p.name.startswith('scat_v1-L2-n2-s0-')]
    rec = json.loads((folder / 'record.json').read_text())
    assert rec['params']['L'] == 2
    pngs = sorted(p.name for p in folder.glob('*.png'))
    assert 'learning_curves.png' in pngs and 'first_layer_channels.png' in pngs
    assert 'filters_start_end.png' not in pngs  # fixed filters

def test_hybrid(env, tmp_path):
    nb = execute('hybrid.ipynb', tmp_path / 'hybrid.ipynb', **{**env['common'], 'out_dir': str(tmp_path / 'runs')})
    assert not errors(nb)
    (folder,) = (tmp_path / 'runs').iterdir()
    rec = json.loads((folder / 'record.json').read_text())
    assert folder.name.startswith('scat_hybrid-L8-n2-s0-') and rec['params']['dataset'] == 'cifar10'
    assert (folder / 'learning_curves.png').stat().st_size > 10_000 and 'trainable parameters' in outputs_text(nb)

def test_era_v1_with_scattering_and_its_gallery(env, tmp_path):
    nb = execute('era_v1.ipynb', tmp_path / 'era.ipynb', model='scat_era_v1', L=2, norm='group',
                 **{**env['common'], 'out_dir': str(tmp_path / 'runs')})
    assert not errors(nb)
    (folder,) = (tmp_path / 'runs').iterdir()
    rec = json.loads((folder / 'record.json').read_text())
    assert (rec['params']['augment'] == 'era' and rec['params']['norm'] == 'group'
            and folder.name.startswith('scat_era_v1-L2-n2-s0-'))
    assert (folder / 'misclassified.png').stat().st_size > 5_000
    with pytest.raises(pm.PapermillExecutionError, match="Parameter model must be 'era_v1' or 'scat_era_v1'"):
        execute('era_v1.ipynb', tmp_path / 'bad.ipynb', model='resnet18',
                **{**env['common'], 'out_dir': str(tmp_path / 'runs')})

def test_scat_v1_learnable(env, tmp_path):
    nb = execute('scat_v1.ipynb', tmp_path / 'scat_v1.ipynb', L=2, learnable=True, init='random', filter_lr=0.05,
                 **env['common'])
    assert not errors(nb)
    (folder,) = [p for p in env['out'].iterdir()
                 if p.name.startswith('scat_v1-L2-n2-s0-') and 'filters' in json.loads((p / 'record.json').read_text())]
    rec = json.loads((folder / 'record.json').read_text())
    assert rec['params']['learnable'] is True and rec['params']['init'] == 'random'
    assert rec['filters']['start'] != rec['filters']['end']  # training moved them
    assert (folder / 'filters_start_end.png').stat().st_size > 3_000  # a 2x2 grid of filters


def test_is_random_runs_a_sweep_then_reuses_it(env, tmp_path):
    common = {**env['common'], 'out_dir': str(tmp_path / 'runs')}
    nb = execute('is_random.ipynb', tmp_path / 'is_random.ipynb', Ls=[2], n_runs=2, **common)
    assert not errors(nb)
    assert len(list((tmp_path / 'runs').glob('*/record.json'))) == 4  # baseline and L=2, seeds 0 and 1
    (study,) = (tmp_path / 'studies').iterdir()
    assert (study / 'is_random.png').exists() and (study / 'summary.csv').exists()
    assert 'scat_v1 L=2 vs resnet18 over 2 paired seeds' in outputs_text(nb)  # the computed verdict
    again = execute('is_random.ipynb', tmp_path / 'again.ipynb', Ls=[2], n_runs=2, **common)
    assert (not errors(again) and '4/4 done (4 earlier)' in outputs_text(again)
            and 'submitted' not in outputs_text(again))

def test_l_sweep(env, tmp_path):
    nb = execute('l_sweep.ipynb', tmp_path / 'l_sweep.ipynb', Ls=[1, 3],
                 **{**env['common'], 'out_dir': str(tmp_path / 'runs')})
    assert not errors(nb)
    assert (sorted(p.name.split('-n2')[0] for p in (tmp_path / 'runs').iterdir())
            == ['resnet18', 'scat_v1-L1', 'scat_v1-L3'])
    (study,) = (tmp_path / 'studies').iterdir()
    assert (study / 'l_sweep.png').stat().st_size > 10_000

def test_report(env, tmp_path):
    "The report on runs of its own: two models, two seeds, and a protocol-choice run that never saw the test set."
    from wavescat.train import train
    common = {**env['common'], 'out_dir': str(tmp_path / 'runs'), 'eval_every': 1, 'progress_every': float('inf'),
              'test_subset': 0, 'precision': 'fp32'}  # fp32 on any machine, so the protocol label below is fixed
    for seed in (0, 1):
        train(**{**common, 'seed': seed}); train(**{**common, 'seed': seed, 'model': 'scat_v1', 'L': 4})
    train(**{**common, 'val_per_class': 1, 'evaluate_test': False})
    figs = tmp_path / 'figures'
    nb = execute('report.ipynb', tmp_path / 'report.ipynb', out_dir=str(tmp_path / 'runs'), figures_dir=str(figs),
                 protocol='study, epochs=1, batch_size=10', n_per_class=2)
    assert not errors(nb)
    assert 'scat_v1 L=4 vs resnet18 over 2 paired seeds' in outputs_text(nb)  # the computed verdict
    assert (figs / 'headline.png').stat().st_size > 10_000
    assert (figs / 'accuracy_vs_L.png').exists() and (figs / 'learning_curves.png').exists()
    text = outputs_text(nb)  # the sections without runs of their own say so, by name
    assert 'No model has `fast` runs in both fp32 and bf16' in text
    assert ("No finished control runs (scat_v1_random, resnet18_narrow, scat_v1_blur) "
            "with protocol 'study, epochs=1" in text)
    assert 'No subset size has finished runs of both models yet.' in text and 'Fewer than two values of L' in text

def test_report_without_records_says_how(tmp_path):
    nb = execute('report.ipynb', tmp_path / 'report.ipynb', out_dir=str(tmp_path / 'empty'),
                 figures_dir=str(tmp_path / 'f'))
    assert not errors(nb)
    assert 'No run records' in json.dumps([c.get('outputs') for c in nb.cells])

@pytest.mark.parametrize('params, message', [
    (dict(epochs=0), 'Parameter epochs must be an int >= 1, got 0'),
    (dict(epoch=3), "Unknown parameter 'epoch'"),
    (dict(n_per_class='100'), 'Parameter n_per_class must be an int in 1..5000'),
])
def test_bad_parameter_stops_in_the_validation_cell(env, tmp_path, params, message):
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute('baseline.ipynb', tmp_path / 'bad.ipynb', **{**env['common'], **params})
    assert message in str(e.value)
    nb = json.loads((tmp_path / 'bad.ipynb').read_text())
    failed = [c for c in nb['cells']
              if c['cell_type'] == 'code' and any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
    assert len(failed) == 1 and 'experiment_config' in ''.join(failed[0]['source'])

def test_bad_L_in_scat_v1(env, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match='Parameter L must be None or an int in 1..20'):
        execute('scat_v1.ipynb', tmp_path / 'bad.ipynb', L=21, **env['common'])

@pytest.mark.parametrize('name', ['report.ipynb', 'features.ipynb', 'deformation.ipynb', 'biomass.ipynb'])
def test_a_misspelt_parameter_stops_the_validation_cell(tmp_path, name):
    ("The notebooks with parameters of their own check them with `check_known`: "
     "the name, the known ones, before any work.")
    with pytest.raises(pm.PapermillExecutionError, match="Unknown parameter 'nonsense'; this notebook takes ") as e:
        execute(name, tmp_path / name, nonsense=1)
    assert 'check_known(params' in str(e.value)

def _params_cell(name) -> str:
    nb = json.loads((NBS / name).read_text())
    (cell,) = [c for c in nb['cells'] if 'parameters' in c['metadata'].get('tags', [])]
    return ''.join(cell['source'])

@pytest.mark.parametrize('name', ['baseline.ipynb', 'scat_v1.ipynb', 'hybrid.ipynb', 'era_v1.ipynb', 'is_random.ipynb',
                                  'l_sweep.ipynb', 'protocol.ipynb', 'protocol_strong.ipynb'])
def test_parameters_cell_is_generated_from_the_config(name):
    ("Each experiment notebook's parameters are TrainConfig's (names, defaults, docs): "
     "regenerate with nbparams.write_parameters.")
    from wavescat.nbparams import NOTEBOOK_PARAMETERS, NOTEBOOK_DEFAULTS, parameters_cell
    from wavescat.config import TrainConfig
    assert _params_cell(name) == parameters_cell(**NOTEBOOK_PARAMETERS[name])
    seen = pm.inspect_notebook(str(NBS / name))  # what papermill (and --help-notebook) reads from that cell
    spec = NOTEBOOK_PARAMETERS[name]
    defaults = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **NOTEBOOK_DEFAULTS,
                **spec.get('overrides', {})}
    for k, p in seen.items():
        expected = spec['extra'][k][0] if k in spec.get('extra', {}) else defaults[k]
        assert ast.literal_eval(p['default']) == expected, k
    if 'only' not in spec:
        assert set(seen) == (set(spec.get('extra', {}))
                             | {f.name for f in dataclasses.fields(TrainConfig)} - set(spec.get('skip', ())))

def test_protocol_chooses_on_validation_data(env, tmp_path):
    nb = execute('protocol.ipynb', tmp_path / 'protocol.ipynb', max_epochs=2, n_per_class=2, val_per_class=1,
                 eval_every=1, **{k: env['common'][k] for k in ('data_root', 'device', 'download')},
                 out_dir=str(tmp_path / 'runs'))
    assert not errors(nb)
    choice = json.loads((tmp_path / 'protocol.json').read_text())
    assert choice['fast']['epochs'] in (1, 2) and len(choice['run_ids']) == 8 + 2 * 2
    recs = [json.loads(f.read_text()) for f in (tmp_path / 'runs').glob('*/record.json')]
    assert len(recs) == 12 and all('test_acc' not in r['metrics'] and r['params']['model'] == 'resnet18' for r in recs)
    assert (tmp_path / 'figures' / 'protocol.png').stat().st_size > 10_000

def test_strong_protocol_chooses_on_validation_data(env, tmp_path):
    "The strong grid on tiny runs: 2 x 1 candidates, then 1 finalist x 2 seeds at both lengths; four variants a run."
    nb = execute('protocol_strong.ipynb', tmp_path / 'protocol_strong.ipynb', screen_epochs=1, full_epochs=2,
                 finalists=1, n_seeds=2, ema_decay=0.5, augments=['basic', 'trivial'], weight_decays=[5e-4],
                 n_per_class=2, val_per_class=1, eval_every=1,
                 **{k: env['common'][k] for k in ('data_root', 'device', 'download')}, out_dir=str(tmp_path / 'runs'))
    assert not errors(nb)
    choice = json.loads((tmp_path / 'protocol_strong.json').read_text())
    assert choice['strong']['epochs'] in (1, 2) and choice['strong']['augment'] in ('basic', 'trivial')
    assert choice['strong']['ema'] in (0.0, 0.5) and choice['strong']['tta'] in ('none', 'flip')
    assert (choice['chosen']['epochs'] == choice['strong']['epochs']
            and len(choice['val_acc']) == 2 * 2 * 2)  # 2 lengths x 4
    recs = [json.loads(f.read_text()) for f in (tmp_path / 'runs').glob('*/record.json')]
    assert len(recs) == 2 + 1 + 2 == len(choice['run_ids'])  # stage 2 reuses the finalist's seed-0 screen run
    assert all('test_acc' not in r['metrics'] and r['params']['ema'] == 0.5 and 'val_acc_ema_flip' in r['metrics']
               for r in recs)
    with pytest.raises(pm.PapermillExecutionError, match='Parameter augments must be a non-empty list'):
        execute('protocol_strong.ipynb', tmp_path / 'bad.ipynb', augments=['heavy'], out_dir=str(tmp_path / 'runs'))
    assert (tmp_path / 'figures' / 'protocol_strong.png').stat().st_size > 10_000

def test_features_study_resumes(env, tmp_path):
    ("The features notebook on the fake CIFAR-10 (a small transform): the table, the figure, "
     "and a second run that fits nothing.")
    params = dict(sizes=[2, 3], n_seeds=2, classifiers=['logistic', 'random_forest'], J=2, L=2, max_order=1,
                  device='cpu', data_root=env['common']['data_root'], download=False, out_dir=str(tmp_path / 'runs'))
    nb = execute('features.ipynb', tmp_path / 'features.ipynb', **params)
    assert not errors(nb)
    import pandas as pd
    rows = pd.read_csv(tmp_path / 'features' / 'study-J2-L2-o1.csv')
    assert len(rows) == 2 * 2 * 2 and set(rows.classifier) == {'logistic', 'random_forest'}
    assert (tmp_path / 'features' / 'features-J2-L2-o1.png').stat().st_size > 10_000
    stores = sorted(p.name.split('-')[:3] for p in (tmp_path / 'features' / 'cv-J2-L2-o1').glob('*.json'))
    assert stores == [['logistic', f'{n}pc', f'seed{s}']
                      for n in (2, 3) for s in (0, 1)]  # each search's CV scores, kept
    for lr, acc in ((0.01, 40.0), (0.001, 45.0)):  # two validation-only scat_linear runs: the notebook picks the lr
        rec = dict(run_id=f'scat_linear-L2-n3-s0-{lr}', data={}, time_s=1.0, images_per_s=1.0, device='cpu', history=[],
                   params=dict(model='scat_linear', L=2, learnable=False, lr=lr, n_per_class=3, val_per_class=2, seed=0,
                               protocol='fast', evaluate_test=False, test_subset=0),
                   metrics=dict(val_acc=acc, train_acc=60.0))
        (tmp_path / 'runs' / rec['run_id']).mkdir(parents=True)
        (tmp_path / 'runs' / rec['run_id'] / 'record.json').write_text(json.dumps(rec))
    again = execute('features.ipynb', tmp_path / 'again.ipynb', **params)
    assert not errors(again)
    assert pd.read_csv(tmp_path / 'features' / 'study-J2-L2-o1.csv').equals(rows)
    choice = pd.read_csv(tmp_path / 'features' / 'linear-lr-choice-J2-L2.csv')
    assert choice[choice.chosen].lr.tolist() == [0.001] and choice['mean'].tolist() == [45.0, 40.0]
    assert ('fixed filters, 3/class: lr 0.001 (validation 45.00 % over 1 seeds)'
            in json.dumps([c.get('outputs', []) for c in again.cells]))
