"Training-loop behaviour that needs several runs: resume after an interruption, skip finished runs."
import json, os
import pytest, torch
from wavescat.train import train, check_config, run_dir, read_record

class Interrupt(Exception): pass

@pytest.fixture
def tiny(fake_cifar, tmp_path, monkeypatch):
    monkeypatch.setenv('WAVESCAT_CACHE', str(tmp_path / 'cache'))
    return dict(model='resnet18', n_per_class=2, val_per_class=1, epochs=3, batch_size=8, checkpoint_every=1,
                data_root=str(fake_cifar['batches']), device='cpu', progress_every=float('inf'))

def _strip_times(rec):
    rec = json.loads(json.dumps(rec))
    for h in rec['history']: h.pop('seconds'); h.pop('images_per_s')
    for k in ('time_s', 'images_per_s', 'finished', 'params'): rec.pop(k)
    return rec

def test_interrupted_run_resumes_to_the_same_record(tiny, tmp_path):
    full = train(out_dir=str(tmp_path / 'a'), **tiny)

    def stop_after_2(h):
        if h['epoch'] == 2: raise Interrupt
    with pytest.raises(Interrupt): train(out_dir=str(tmp_path / 'b'), on_epoch_end=stop_after_2, **tiny)
    folder = tmp_path / 'b' / full['run_id']
    assert (folder / 'checkpoint.pt').exists() and not (folder / 'record.json').exists()
    assert torch.load(folder / 'checkpoint.pt', weights_only=False)['epoch'] == 2

    resumed = train(out_dir=str(tmp_path / 'b'), **tiny)
    assert _strip_times(resumed) == _strip_times(full)
    assert not (folder / 'checkpoint.pt').exists()

def test_finished_run_is_never_overwritten(tiny, tmp_path):
    rec = train(out_dir=str(tmp_path), **tiny)
    f = tmp_path / rec['run_id'] / 'record.json'
    before = f.stat().st_mtime_ns
    assert train(out_dir=str(tmp_path), **tiny) == rec
    assert f.stat().st_mtime_ns == before

def test_record_keys(tiny, tmp_path):
    rec = train(out_dir=str(tmp_path), **{**tiny, 'epochs': 1})
    assert {'params', 'metrics', 'history', 'time_s', 'images_per_s', 'device', 'versions', 'data'} <= set(rec)
    assert {'model', 'L', 'n_per_class', 'seed', 'epochs'} <= set(rec['params'])
    assert {'test_acc', 'val_acc', 'train_acc', 'train_loss', 'test_loss'} <= set(rec['metrics'])
    assert {'train_loss', 'train_acc', 'val_loss', 'val_acc', 'lr', 'seconds'} <= set(rec['history'][0])
    assert set(rec['versions']) >= {'python', 'torch', 'kymatio', 'wavescat', 'git'}
    assert rec['data']['n_train'] == 20 and rec['data']['n_val'] == 10 and len(rec['data']['train_indices_hash']) == 16

def test_training_learns_the_fake_colours(fake_cifar, tmp_path, monkeypatch):
    "Each fake class has its own colour: a few epochs must beat chance (10 %) clearly."
    monkeypatch.setenv('WAVESCAT_CACHE', str(tmp_path / 'cache'))
    rec = train(model='resnet18', n_per_class=5, epochs=8, batch_size=10, lr=0.05, augment=False, data_root=str(fake_cifar['batches']),
                device='cpu', out_dir=str(tmp_path), progress_every=float('inf'))
    assert rec['metrics']['train_acc'] >= 60, rec['metrics']
