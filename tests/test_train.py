"Training-loop behaviour that needs several runs: resume after an interruption, skip finished runs."
import json, os
import pytest, torch
from wavescat.config import check_config, run_dir
from wavescat.runs import read_record
from wavescat.train import train

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

STRONG_PARTS = dict(ema=0.5, augment='trivial', tta='flip', precision='bf16')  # their state and draws resume too

@pytest.mark.parametrize('extra', [{}, STRONG_PARTS], ids=['plain', 'ema-trivial-flip-bf16'])
def test_interrupted_run_resumes_to_the_same_record(tiny, tmp_path, extra):
    tiny = {**tiny, **extra}
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
    w_full, w_resumed = (torch.load(d / full['run_id'] / 'model.pt') for d in (tmp_path / 'a', tmp_path / 'b'))
    assert all(torch.equal(w_full[k], w_resumed[k]) for k in w_full)  # bit for bit

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
    assert ({'train_loss', 'train_acc', 'lr', 'seconds', 'images_per_s'}
            <= set(rec['history'][0]))  # validation: with eval_every
    assert set(rec['versions']) >= {'python', 'torch', 'kymatio', 'wavescat', 'git'}
    assert rec['data']['n_train'] == 20 and rec['data']['n_val'] == 10 and len(rec['data']['train_indices_hash']) == 16

LEARNING_RUN = dict(model='resnet18', n_per_class=5, epochs=8, batch_size=10, lr=0.01, schedule='onecycle',
                    augment='none', device='cpu', progress_every=float('inf'))

def learned(metrics) -> bool:
    "Far from chance (10 %, cross-entropy ln 10 = 2.30) on the training images, measured without augmentation."
    return metrics['train_acc'] >= 50 and metrics['train_loss'] <= 1.2

@pytest.fixture
def learning_run(fake_cifar, tmp_path, monkeypatch):
    monkeypatch.setenv('WAVESCAT_CACHE', str(tmp_path / 'cache'))
    return lambda: train(**LEARNING_RUN, data_root=str(fake_cifar['batches']), out_dir=str(tmp_path))

def test_training_learns_the_fake_colours(learning_run):
    """Each fake class has its own colour: any correct trainer fits the 50 training images, on any torch version.

    Margin of `LEARNING_RUN`, measured once over seeds 0-19 (`/tmp` script, not kept): train accuracy 80-100 %
    (median 98) and loss 0.03-0.40, the same numbers with torch 2.15.0 (the lock) and 2.14.1; a trainer whose
    optimiser never steps (the test below) 8-12 % and 2.34-2.59 over seeds 0-4. `learned` asks for >= 50 % and
    <= 1.2, about midway. (The earlier version of this test, lr 0.05 with a plain cosine, gave 30-60 % over 8 seeds on
    torch 2.15: its loss spiked to 5-10 mid-run, so it passed or failed by the random stream.)"""
    rec = learning_run()
    assert learned(rec['metrics']), rec['metrics']

def test_the_learning_check_fails_a_trainer_that_does_not_step(learning_run, monkeypatch):
    monkeypatch.setattr(torch.optim.SGD, 'step', lambda self, closure=None: None)
    rec = learning_run()
    assert not learned(rec['metrics']), rec['metrics']

# Issue 10: a run can be trusted before its results are committed. One test (or more) per problem of the issue.
# They catch the base classes of the new errors (DataMismatchError, CorruptRunFileError: ValueError; RunLockedError:
# RuntimeError) and check their messages, so that against the old code they fail on behaviour, not on an import.

def _interrupt_at(epoch):
    def hook(h):
        if h['epoch'] == epoch: raise Interrupt
    return hook

def test_finished_run_on_other_data_is_not_reused(tiny, tmp_path):
    "1: same parameters, same out_dir, other data: an error naming both sources, not the old record."
    from wavescat.cifar10 import make_fake_cifar10
    train(out_dir=str(tmp_path / 'runs'), **tiny)
    other = make_fake_cifar10(tmp_path / 'other', n_train=5, n_test=2, seed=1)
    with pytest.raises(ValueError, match=r'was made on other data: batches/cifar-10-batches-py '
                                         r'\(content hash [0-9a-f]{16}, n_train 20, n_test 20\); '
                                         r'this call uses .*other/batches/cifar-10-batches-py'):
        train(out_dir=str(tmp_path / 'runs'), **{**tiny, 'data_root': str(other['batches'])})

def test_checkpoint_made_on_other_data_is_not_resumed(tiny, tmp_path):
    from wavescat.cifar10 import make_fake_cifar10
    with pytest.raises(Interrupt): train(out_dir=str(tmp_path), on_epoch_end=_interrupt_at(1), **tiny)
    other = make_fake_cifar10(tmp_path / 'other', n_train=5, n_test=2, seed=1)
    with pytest.raises(ValueError, match='checkpoint.pt was made on other data'):
        train(out_dir=str(tmp_path), **{**tiny, 'data_root': str(other['batches'])})

def test_record_is_portable(tiny, tmp_path):
    rec = train(out_dir=str(tmp_path), **{**tiny, 'epochs': 1})
    assert rec['data']['source'] == 'batches/cifar-10-batches-py' and str(tmp_path) not in json.dumps(rec)
    assert rec['params']['out_dir'] is None and rec['params']['data_root'] is None  # given, but this machine's

def test_bad_out_dir_fails_before_training(tiny, tmp_path):
    "2: an out_dir that is a file fails before the first epoch, naming the parameter and the folder."
    (tmp_path / 'file').write_text('')
    epochs = []
    with pytest.raises(OSError, match=f'Parameter out_dir: cannot write run files in {tmp_path / "file"}'):
        train(out_dir=str(tmp_path / 'file'), on_epoch_end=epochs.append, **tiny)
    assert epochs == []

@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_read_only_out_dir_fails_before_training(tiny, tmp_path):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o500)
    epochs = []
    try:
        with pytest.raises(OSError, match='Parameter out_dir: cannot write run files'):
            train(out_dir=str(ro), on_epoch_end=epochs.append, **tiny)
    finally: ro.chmod(0o700)
    assert epochs == []

_TRAINER = '''
import json, os, sys, time, pathlib
from wavescat.train import train
kw = json.loads(sys.argv[1]); flag = pathlib.Path(kw.pop('flag'))
def hook(h):
    if h['epoch'] == 1:
        (flag / 'started').write_text(str(os.getpid()))
        for _ in range(600):  # bounded: at most 60 s
            if (flag / 'go').exists(): return
            time.sleep(0.1)
        raise SystemExit('the test never said go')
    if kw.get('die_at') == h['epoch']: os.kill(os.getpid(), 9)
train(on_epoch_end=hook, **{k: v for k, v in kw.items() if k != 'die_at'})
'''

def _start_trainer(kw, flag, **extra):
    import subprocess, sys
    flag.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, '-c', _TRAINER, json.dumps({**kw, **extra, 'flag': str(flag)})],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))

def _wait_for(path, proc, seconds=240):
    import time
    for _ in range(seconds * 10):
        if path.exists(): return
        if proc.poll() is not None: pytest.fail(f'the trainer ended early:\n{proc.stdout.read()}')
        time.sleep(0.1)
    proc.kill(); pytest.fail(f'no {path} after {seconds} s')

def test_second_process_fails_fast_while_the_first_trains(tiny, tmp_path, capsys):
    ("3: one trainer per run: a second process fails at once naming the holder; "
     "once the first is done, its record is reused.")
    kw = {**tiny, 'out_dir': str(tmp_path / 'runs')}
    first = _start_trainer(kw, tmp_path / 'flag')
    try:
        _wait_for(tmp_path / 'flag' / 'started', first)
        with pytest.raises(RuntimeError, match=rf'is being trained by another process \(pid {first.pid} on '):
            train(**kw)
        (tmp_path / 'flag' / 'go').write_text('')
        out, _ = first.communicate(timeout=240)
    finally: first.kill()
    assert first.returncode == 0, out
    rec = train(**kw)
    assert 'finished earlier' in capsys.readouterr().out and len(rec['history']) == 3
    assert sorted(os.listdir(tmp_path / 'runs' / rec['run_id'])) == ['model.pt', 'record.json']

def test_lock_of_a_killed_trainer_is_taken_over(tiny, tmp_path, capsys):
    "3: kill -9 during training: the lock does not outlive its holder; the next start says so and resumes."
    kw = {**tiny, 'out_dir': str(tmp_path / 'runs')}
    (tmp_path / 'flag').mkdir(); (tmp_path / 'flag' / 'go').write_text('')
    first = _start_trainer(kw, tmp_path / 'flag', die_at=2)
    out, _ = first.communicate(timeout=240)
    assert first.returncode == -9, out
    rec = train(**kw)
    out = capsys.readouterr().out
    assert f'taking over the lock of pid {first.pid} on ' in out and 'resuming from' in out and 'after epoch 2' in out
    assert len(rec['history']) == 3

def test_corrupt_record_is_named(tiny, tmp_path):
    "4: a damaged record.json: the error names the file and what to do."
    rec = train(out_dir=str(tmp_path), **{**tiny, 'epochs': 1})
    f = tmp_path / rec['run_id'] / 'record.json'
    f.write_text(f.read_text()[:100])
    with pytest.raises(ValueError, match=f'{f} is not a readable run record .* delete it'):
        train(out_dir=str(tmp_path), **{**tiny, 'epochs': 1})

def test_truncated_checkpoint_is_kept_aside_and_the_run_restarts(tiny, tmp_path, capsys):
    "4: a truncated checkpoint.pt is renamed, not deleted, and the run trains from epoch 1, saying so."
    full = train(out_dir=str(tmp_path / 'a'), **tiny)
    with pytest.raises(Interrupt): train(out_dir=str(tmp_path / 'b'), on_epoch_end=_interrupt_at(2), **tiny)
    folder = tmp_path / 'b' / full['run_id']
    ck = folder / 'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:1000])
    rec = train(out_dir=str(tmp_path / 'b'), **tiny)
    assert f'cannot read the checkpoint {ck}' in capsys.readouterr().out
    assert [p.name.split('-')[0] for p in folder.glob('checkpoint.pt.corrupt-*')] == ['checkpoint.pt.corrupt']
    assert _strip_times(rec) == _strip_times(full)  # trained again from scratch, to the same result

def test_changing_checkpoint_every_resumes_the_same_run(tiny, tmp_path, capsys):
    "5: checkpoint_every and eval_every are not part of the run: changing them resumes, to the same result."
    full = train(out_dir=str(tmp_path / 'a'), **tiny)
    with pytest.raises(Interrupt): train(out_dir=str(tmp_path / 'b'), on_epoch_end=_interrupt_at(2), **tiny)
    rec = train(out_dir=str(tmp_path / 'b'), **{**tiny, 'checkpoint_every': 2, 'eval_every': 3})
    assert 'after epoch 2' in capsys.readouterr().out
    assert rec['run_id'] == full['run_id']
    assert rec['metrics'] == full['metrics']

def test_leftovers_are_removed_on_the_next_start(tiny, tmp_path, capsys):
    "6: a kill during the final writes leaves a temporary file or the checkpoint; the next start removes them."
    rec = train(out_dir=str(tmp_path), **tiny)
    folder = tmp_path / rec['run_id']
    (folder / 'model.pt.1a2b3c4d.tmp').write_bytes(b'half a model')
    (folder / 'checkpoint.pt').write_bytes(b'a checkpoint the kill did not let us delete')
    assert train(out_dir=str(tmp_path), **tiny) == rec
    assert sorted(os.listdir(folder)) == ['model.pt', 'record.json']

def test_resume_after_the_last_epoch_says_so(tiny, tmp_path, capsys):
    "6: killed after the last checkpoint but before the record: no 'epochs 4..3', a final evaluation."
    with pytest.raises(Interrupt): train(out_dir=str(tmp_path), on_epoch_end=_interrupt_at(3), **tiny)
    capsys.readouterr()
    rec = train(out_dir=str(tmp_path), **tiny)
    out = capsys.readouterr().out
    assert 'all 3 epochs done earlier; final evaluation' in out and 'epochs 4..3' not in out
    assert len(rec['history']) == 3

def test_test_subset_too_large_names_test_subset(tiny, tmp_path):
    "9: the fake test set has 2 images per class: asking for 30 blames test_subset, before training."
    with pytest.raises(ValueError, match=r'Parameter test_subset=30 asks for 3 test images per class.*use at most 20'):
        train(out_dir=str(tmp_path), **{**tiny, 'test_subset': 30})
    assert not list(tmp_path.glob('*/checkpoint.pt'))

def test_files_get_the_umask_mode(tiny, tmp_path):
    "9: records, weights and caches are readable to the group (umask 022: 0644), not 0600."
    old = os.umask(0o022)
    try: rec = train(out_dir=str(tmp_path), **{**tiny, 'epochs': 1})
    finally: os.umask(old)
    folder = tmp_path / rec['run_id']
    for f in [folder / 'record.json', folder / 'model.pt', *(tmp_path / 'cache').glob('*.pt')]:
        assert f.stat().st_mode & 0o777 == 0o644, f

def test_fast_protocol_is_the_committed_choice():
    ("PROTOCOLS['fast'] is what nbs/protocol.ipynb chose on validation data (outputs/protocol.json); "
     "fields added later are off.")
    import dataclasses
    from pathlib import Path
    from wavescat.config import PROTOCOLS, TrainConfig
    chosen = json.loads((Path(__file__).resolve().parents[1] / 'outputs' / 'protocol.json').read_text())['fast']
    off = {f.name: f.metadata['id_default'] for f in dataclasses.fields(TrainConfig)
           if f.name in set(PROTOCOLS['fast']) - set(chosen)}
    assert set(off) == {'ema', 'tta'} and off == {'ema': 0.0, 'tta': 'none'}
    assert PROTOCOLS['fast'] == {**chosen, **off}

def test_strong_protocol_is_the_committed_choice():
    "PROTOCOLS['strong'] is what nbs/protocol_strong.ipynb chose on validation data (outputs/protocol_strong.json)."
    from pathlib import Path
    from wavescat.config import PROTOCOLS
    committed = json.loads((Path(__file__).resolve().parents[1] / 'outputs' / 'protocol_strong.json').read_text())
    assert PROTOCOLS['strong'] == committed['strong']
    assert committed['chosen'] == dict(recipe='basic wd0.005', epochs=200, weights='ema', tta='flip')

@pytest.fixture
def small_disk(tmp_path):
    "A 20 MiB tmpfs, as a full disk would be (mounting needs the right to; skipped, visibly, without it)."
    import subprocess
    d = tmp_path / 'disk'; d.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', str(d)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f'cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}')
    yield d
    subprocess.run(['umount', str(d)], check=True)

def test_a_full_disk_is_found_before_training(tiny, small_disk):
    "Issue 27: ResNet18 (45 MB of weights) on a 20 MiB disk used to train an epoch and die in torch's words."
    epochs = []
    with pytest.raises(OSError, match=f'Parameter out_dir: {small_disk}/runs/resnet18-n2-s0-\\w+ has 20.0 MiB free '
                                      'and this run needs up to 21'):
        train(out_dir=str(small_disk / 'runs'), on_epoch_end=epochs.append, **tiny)
    assert epochs == [] and list((small_disk / 'runs').iterdir()) == []  # no epoch, no empty run folder

def test_a_write_that_fills_the_disk_names_the_file(small_disk):
    from wavescat.core import atomic_save
    with pytest.raises(OSError, match=f'{small_disk}/big.pt was not written: the disk is full'):
        atomic_save(torch.zeros(30 * 2**20 // 4), small_disk / 'big.pt')
    assert list(small_disk.iterdir()) == []  # nothing half-written

@pytest.mark.parametrize('model', ['scat_v1_random', 'resnet18_narrow', 'scat_v1_blur'])
def test_the_controls_train_and_reload(tiny, tmp_path, model):
    "Issue 28's controls go where scat_v1 goes; the reloaded model (random filters included) scores what the run did."
    from wavescat.data import load_dataset
    from wavescat.runs import load_run_model
    from wavescat.evaluate import evaluate
    rec = train(out_dir=str(tmp_path), **{**tiny, 'model': model, 'L': 2, 'epochs': 1, 'precision': 'fp32'})
    assert rec['run_id'].startswith(f'{model}-L2-n2-s0-')
    test = load_dataset('cifar10', tiny['data_root'])[1]
    assert (evaluate(load_run_model(tmp_path / rec['run_id']), test, torch.device('cpu'))[1]
            == rec['metrics']['test_acc'])
