"Data loading, caching, subsets and batches: the parts a notebook cannot test well (files, processes, bad input)."
import os, pickle, shutil, time
from pathlib import Path
import pytest, torch
from wavescat.cifar10 import CIFAR10_CLASSES, load_cifar10
from wavescat.data import Batches
from wavescat.images import DataNotFoundError, ImageSet
from wavescat.subsets import subsample, indices_hash
from conftest import run_python

@pytest.mark.parametrize('layout', ['batches', 'imagefolder'])
def test_both_layouts_give_the_true_arrays(fake_cifar, cache, layout):
    xtr, ytr, xte, yte = fake_cifar['arrays']
    train, test = load_cifar10(fake_cifar[layout], cache=cache)
    assert train.x.dtype == torch.uint8 and train.x.shape == (50, 3, 32, 32)
    assert torch.equal(train.x, xtr) and torch.equal(train.y, ytr)
    assert torch.equal(test.x, xte) and torch.equal(test.y, yte)
    assert train.classes == CIFAR10_CLASSES

def test_root_from_environment(fake_cifar, cache, monkeypatch):
    monkeypatch.setenv('WAVESCAT_DATA', str(fake_cifar['imagefolder']))
    train, _ = load_cifar10(cache=cache)
    assert torch.equal(train.x, fake_cifar['arrays'][0])

def test_the_official_folder_itself_is_accepted(fake_cifar, cache):
    train, _ = load_cifar10(fake_cifar['batches'] / 'cifar-10-batches-py', cache=cache)
    assert len(train) == 50

def test_jpeg_tree_and_grayscale_converted(tmp_path, cache):
    from PIL import Image
    from wavescat.cifar10 import make_fake_cifar10
    fake = make_fake_cifar10(tmp_path / 'f', n_train=3, n_test=1, fmt='jpg')
    gray = fake['imagefolder'] / 'train' / 'cat' / '0009.jpg'
    Image.open(gray).convert('L').save(gray)
    train, _ = load_cifar10(fake['imagefolder'], cache=cache)
    i = 3 * 3 + 0  # 'cat' is class 3, its first file
    assert train.x.shape == (30, 3, 32, 32)
    assert torch.equal(train.x[i, 0], train.x[i, 1]) and torch.equal(train.x[i, 1], train.x[i, 2])
    # JPEG is lossy: each image's mean colour is close to the truth, the pixels are not equal
    err = (train.x[:9].float().mean((2, 3)) - fake['arrays'][0][:9].float().mean((2, 3))).abs()
    assert err.max() < 4 and not torch.equal(train.x[:9], fake['arrays'][0][:9])

def test_cache_is_used_then_invalidated_by_a_changed_source(tmp_path, cache):
    from wavescat.cifar10 import make_fake_cifar10
    fake = make_fake_cifar10(tmp_path / 'f', n_train=2, n_test=1)
    root = fake['imagefolder']
    load_cifar10(root, cache=cache)
    files = list(cache.glob('*.pt'))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    load_cifar10(root, cache=cache)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    # replace one image by another of a different colour: the next load must see the new pixels
    target = root / 'train' / 'ship' / '0016.png'
    shutil.copy(root / 'train' / 'airplane' / '0000.png', target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    train, _ = load_cifar10(root, cache=cache)
    assert torch.equal(train.x[16], train.x[0])
    assert len(list(cache.glob('*.pt'))) == 1  # the stale cache was removed
    # adding a file is seen too
    shutil.copy(target, root / 'train' / 'ship' / '0099.png')
    train, _ = load_cifar10(root, cache=cache)
    assert len(train) == 21

def test_corrupt_cache_is_rebuilt(fake_cifar, cache):
    load_cifar10(fake_cifar['batches'], cache=cache)
    (f,) = cache.glob('*.pt')
    f.write_bytes(b'not a torch file')
    train, _ = load_cifar10(fake_cifar['batches'], cache=cache)
    assert torch.equal(train.x, fake_cifar['arrays'][0])

def test_missing_root_lists_what_was_tried(tmp_path, cache):
    with pytest.raises(DataNotFoundError) as e: load_cifar10(tmp_path / 'nowhere', cache=cache)
    msg = str(e.value)
    assert str(tmp_path / 'nowhere') in msg and 'does not exist' in msg
    assert 'cifar-10-batches-py' in msg and 'ImageFolder' in msg and 'download=True' in msg

def test_wrong_layout_is_explained(tmp_path, cache):
    (tmp_path / 'images').mkdir()
    with pytest.raises(DataNotFoundError, match='neither cifar-10-batches-py/ nor train/ \\+ test/'):
        load_cifar10(tmp_path, cache=cache)

def test_wrong_class_folders_are_named(tmp_path, cache):
    from wavescat.cifar10 import make_fake_cifar10
    fake = make_fake_cifar10(tmp_path / 'f', n_train=1, n_test=1)
    (fake['imagefolder'] / 'train' / 'cat').rename(fake['imagefolder'] / 'train' / 'kitten')
    with pytest.raises(ValueError, match=r"missing \['cat'\], unexpected \['kitten'\]"):
        load_cifar10(fake['imagefolder'], cache=cache)

@pytest.mark.parametrize('fmt', ['jpg', 'png'])
def test_corrupt_image_is_named(tmp_path, cache, fmt):
    from wavescat.cifar10 import make_fake_cifar10
    fake = make_fake_cifar10(tmp_path / 'f', n_train=2, n_test=1, fmt=fmt)
    bad = fake['imagefolder'] / 'train' / 'dog' / f'0010.{fmt}'
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match='0010'):
        load_cifar10(fake['imagefolder'], cache=cache)

def test_wrong_image_size_is_named(tmp_path, cache):
    from PIL import Image
    from wavescat.cifar10 import make_fake_cifar10
    fake = make_fake_cifar10(tmp_path / 'f', n_train=2, n_test=1)
    big = fake['imagefolder'] / 'test' / 'frog' / '0006.png'
    Image.new('RGB', (40, 32)).save(big)
    with pytest.raises(ValueError, match=r'0006.png is \(3, 32, 40\)'):
        load_cifar10(fake['imagefolder'], cache=cache)

def test_corrupt_pickle_is_an_error(tmp_path, cache):
    from wavescat.cifar10 import make_fake_cifar10
    fake = make_fake_cifar10(tmp_path / 'f', n_train=1, n_test=1)
    (fake['batches'] / 'cifar-10-batches-py' / 'data_batch_3').write_bytes(b'garbage')
    with pytest.raises(ValueError, match=r'data_batch_3 is not a readable CIFAR-10 batch'):
        load_cifar10(fake['batches'], cache=cache)

@pytest.mark.parametrize('bad', [0, 6, 2.5, '100', None, -1])
def test_bad_n_per_class(fake_cifar, cache, bad):
    train, _ = load_cifar10(fake_cifar['batches'], cache=cache)
    with pytest.raises(ValueError, match=r'n_per_class must be an int in 1\.\.5, got'):
        subsample(train, bad, seed=0)

def test_subsets_are_identical_in_two_fresh_processes(fake_cifar):
    code = ('from wavescat.cifar10 import load_cifar10; from wavescat.subsets import subsample; '
            'from wavescat.data import Batches; import torch; torch.manual_seed({s}); '
            f'tr, _ = load_cifar10({str(fake_cifar["batches"])!r}); '
            'a, v = subsample(tr, 3, seed=7, val_per_class=1); '
            'b = Batches(a, 8, shuffle=True, augment="basic", seed=7); '
            'x, y = next(iter(b)); print(a.idx.tolist(), v.idx.tolist(), y.tolist(), float(x.sum()))')
    # different global RNG states must not matter
    assert run_python(code.format(s=1)) == run_python(code.format(s=2))

def test_nesting_and_validation_disjoint(fake_cifar, cache):
    train, _ = load_cifar10(fake_cifar['batches'], cache=cache)
    for seed in range(5):
        small, val = subsample(train, 2, seed, val_per_class=1)
        large, val2 = subsample(train, 4, seed, val_per_class=1)
        assert set(small.idx.tolist()) < set(large.idx.tolist())
        assert torch.equal(val.idx, val2.idx)
        assert not set(large.idx.tolist()) & set(val.idx.tolist())
        assert small.counts().tolist() == [2] * 10 and val.counts().tolist() == [1] * 10
    assert indices_hash(subsample(train, 2, 0)[0]) != indices_hash(subsample(train, 2, 1)[0])

def test_batches_cover_and_normalise(fake_cifar, cache):
    train, _ = load_cifar10(fake_cifar['batches'], cache=cache)
    b = Batches(train, 16, shuffle=True, augment='none', seed=0)
    xs, ys = zip(*b)
    x = torch.cat(xs)
    assert x.dtype == torch.float32 and x.shape == (50, 3, 32, 32)
    assert sorted(torch.cat(ys).tolist()) == sorted(train.y.tolist())
    # without augmentation, the batch is exactly the normalised images
    plain = next(iter(Batches(train, 50)))[0]
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    assert torch.allclose(plain, (train.x.float() / 255 - mean) / std, atol=1e-5)

def test_augmentation_changes_images_but_keeps_content(fake_cifar, cache):
    train, _ = load_cifar10(fake_cifar['batches'], cache=cache)
    plain = next(iter(Batches(train, 50)))[0]
    aug = next(iter(Batches(train, 50, augment='basic', seed=1, pad_mode='reflect')))[0]
    assert not torch.equal(plain, aug)
    # reflect padding moves pixels around but keeps each image's colour statistics close
    assert torch.allclose(plain.mean((2, 3)), aug.mean((2, 3)), atol=0.3)

def test_bad_batch_arguments(fake_cifar, cache):
    train, _ = load_cifar10(fake_cifar['batches'], cache=cache)
    with pytest.raises(ValueError, match='pad_mode'): Batches(train, 8, pad_mode='edge')
    with pytest.raises(ValueError, match='batch_size'): Batches(train, 0)

def test_real_cifar10(real_cifar_root):
    train, test = load_cifar10(real_cifar_root)
    assert (len(train), len(test)) == (50000, 10000)
    assert train.counts().tolist() == [5000] * 10 and test.counts().tolist() == [1000] * 10
    for bad in (0, 6000, 2.5, '100'):
        with pytest.raises(ValueError, match=r'n_per_class must be an int in 1\.\.5000'): subsample(train, bad, 0)
    a, _ = subsample(train, 100, seed=0)
    b, _ = subsample(train, 500, seed=0)
    assert set(a.idx.tolist()) < set(b.idx.tolist()) and a.counts().tolist() == [100] * 10
