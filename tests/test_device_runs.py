("tools/device_runs.py: the packed data gives the very subsets of the real data, "
 "and runs on it refuse a subset it lacks.")
import importlib.util, json, os, subprocess, sys
import numpy as np, pytest, torch
from conftest import ROOT
from wavescat.cifar10 import load_cifar10
from wavescat.subsets import content_hash, data_name, subsample

TOOL = ROOT / 'tools' / 'device_runs.py'

def tool(*args, cache):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, 'WAVESCAT_CACHE': str(cache)}, timeout=300)

@pytest.fixture
def packed(fake_cifar, tmp_path):
    out = tmp_path / 'pack.npz'
    r = tool('pack', '--data', fake_cifar['batches'], '--n', 2, '--seeds', 0, 1, '--out', out, '--allow-dirty',
             cache=tmp_path / 'cache')
    assert r.returncode == 0, r.stderr
    return out

def load_tool():
    spec = importlib.util.spec_from_file_location('device_runs', TOOL)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m

def with_meta(pack, out, **changes):
    "A copy of `pack` whose metadata has `changes` (what a pack made elsewhere, or by other code, would hold)."
    z = dict(np.load(pack))
    z['meta'] = json.dumps({**json.loads(str(z['meta'])), **changes})
    np.savez(out, **z)
    return out

def test_pack_rebuilds_the_real_subsets(packed, fake_cifar, tmp_path):
    train, test = load_cifar10(fake_cifar['batches'], cache=tmp_path / 'cache')
    rtrain, rtest, meta = load_tool().load_pack(packed)
    assert torch.equal(rtrain.y, train.y) and torch.equal(rtest.x, test.x) and torch.equal(rtest.y, test.y)
    assert not torch.equal(rtrain.x, train.x)  # the images no packed subset uses stay behind
    for s in (0, 1):
        real, packed_set = subsample(train, 2, s), subsample(rtrain, 2, s)
        assert torch.equal(packed_set[0].idx, real[0].idx) and torch.equal(packed_set[0].x, real[0].x)
        assert meta['hashes'][f'2-{s}'] == content_hash(*real, test) == content_hash(*packed_set, rtest)
    assert meta['dataset_hash'] == content_hash(train, test) and meta['source'] == data_name(train.source)

def test_a_run_on_the_pack_records_the_real_data(packed, tmp_path):
    packed = with_meta(packed, tmp_path / 'marked.npz', git='packed-commit-marker')  # git here would give another value
    r = tool('one', '--pack', packed, '--run', 'resnet18', '--seed', 0, '--n', 2, '--epochs', 1,
             '--out-dir', tmp_path / 'runs', cache=tmp_path / 'cache')
    assert r.returncode == 0, r.stderr
    (rec_file,) = (tmp_path / 'runs').glob('resnet18-n2-s0-*/record.json')
    rec, meta = json.loads(rec_file.read_text()), load_tool().load_pack(packed)[2]
    assert rec['data']['hash'] == meta['hashes']['2-0'] and rec['data']['dataset_hash'] == meta['dataset_hash']
    assert rec['versions']['git'] == 'packed-commit-marker' and rec['params']['epochs'] == 1

def test_a_subset_the_pack_lacks_is_refused_before_training(packed, tmp_path):
    r = tool('one', '--pack', packed, '--run', 'resnet18', '--seed', 2, '--n', 2, '--epochs', 1,
             '--out-dir', tmp_path / 'runs', cache=tmp_path / 'cache')
    lacks = 'n_per_class=2, seed=2: the pack holds only the subsets (n_per_class[+val_per_class]-seed) 2-0, 2-1'
    assert r.returncode != 0 and lacks in r.stderr, r.stderr
    assert not list((tmp_path / 'runs').glob('resnet18-*'))

def test_code_other_than_the_packed_commit_is_refused(packed, tmp_path):
    code = json.loads(str(np.load(packed)['meta']))['code']
    assert 'wavescat/train.py' in code and 'tools/device_runs.py' in code
    drifted = with_meta(packed, tmp_path / 'drifted.npz', code={**code, 'wavescat/train.py': '0' * 40})
    r = tool('one', '--pack', drifted, '--run', 'resnet18', '--seed', 0, '--n', 2, '--epochs', 1,
             '--out-dir', tmp_path / 'runs', cache=tmp_path / 'cache')
    assert r.returncode != 0 and 'these files differ from commit' in r.stderr and 'wavescat/train.py' in r.stderr
    assert not list((tmp_path / 'runs').glob('resnet18-*'))

@pytest.fixture(scope='module')
def fake_jpeg(tmp_path_factory):
    from wavescat.cifar10 import make_fake_cifar10
    return make_fake_cifar10(tmp_path_factory.mktemp('fake_jpeg'), n_train=5, n_test=2, fmt='jpg')['imagefolder']

def test_a_jpeg_pack_holds_the_files_and_gives_the_same_subsets(fake_jpeg, tmp_path):
    "`--jpeg` packs the source's JPEG files, not their pixels; decoded there, the subsets hash as the real ones."
    out = tmp_path / 'jpeg.npz'
    r = tool('pack', '--data', fake_jpeg, '--n', 2, '--seeds', 0, 1, '--out', out, '--allow-dirty', '--jpeg',
             cache=tmp_path / 'cache')
    assert r.returncode == 0, r.stderr
    z = np.load(out)
    assert 'x_keep' not in z and 'x_test' not in z and z['jpeg_keep'].dtype == np.uint8
    assert z['jpeg_keep'][:2].tolist() == [0xFF, 0xD8]  # a JPEG's first bytes
    train, test = load_cifar10(fake_jpeg, cache=tmp_path / 'cache')
    rtrain, rtest, meta = load_tool().load_pack(out)
    assert torch.equal(rtest.x, test.x) and torch.equal(rtrain.y, train.y)
    for s in (0, 1):
        assert meta['hashes'][f'2-{s}'] == content_hash(*subsample(rtrain, 2, s), rtest)
        assert torch.equal(subsample(rtrain, 2, s)[0].x, subsample(train, 2, s)[0].x)

def test_jpeg_packing_from_the_batches_layout_is_refused(fake_cifar, tmp_path):
    r = tool('pack', '--data', fake_cifar['batches'], '--n', 2, '--seeds', 0, '--out', tmp_path / 'p.npz',
             '--allow-dirty', '--jpeg', cache=tmp_path / 'cache')
    assert r.returncode != 0 and '--jpeg needs an ImageFolder tree of .jpg files' in r.stderr, r.stderr
    assert not (tmp_path / 'p.npz').exists()

def test_a_pack_with_validation_images_trains_that_subset(fake_cifar, tmp_path):
    "`--val-per-class` packs the validation images too, and a run asks for the subset with them."
    out = tmp_path / 'val.npz'
    r = tool('pack', '--data', fake_cifar['batches'], '--n', 2, '--val-per-class', 1, '--seeds', 0, '--out', out,
             '--allow-dirty', cache=tmp_path / 'cache')
    assert r.returncode == 0, r.stderr
    train, test = load_cifar10(fake_cifar['batches'], cache=tmp_path / 'cache')
    meta = load_tool().load_pack(out)[2]
    assert meta['hashes'] == {'2+1-0': content_hash(*subsample(train, 2, 0, 1), test)}, meta['hashes']
    r = tool('one', '--pack', out, '--run', 'resnet18', '--seed', 0, '--n', 2, '--epochs', 1, '--out-dir',
             tmp_path / 'runs', cache=tmp_path / 'cache')  # without its validation images: not in the pack
    assert r.returncode != 0 and 'the pack holds only the subsets (n_per_class[+val_per_class]-seed) 2+1-0' in r.stderr
    r = tool('one', '--pack', out, '--run', 'resnet18', '--seed', 0, '--n', 2, '--val-per-class', 1, '--epochs', 1,
             '--out-dir', tmp_path / 'runs', cache=tmp_path / 'cache')
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(f.read_text()) for f in (tmp_path / 'runs').glob('resnet18-*/record.json')]
    assert rec['params']['val_per_class'] == 1 and rec['data']['hash'] == meta['hashes']['2+1-0']
