"""Train CIFAR-10 runs on a lent GPU machine that has no copy of CIFAR-10.

Such a machine receives at most 64 MiB of files, so the 236 MB data set cannot travel with the code. Instead:

- `pack` (here, beside the real data): writes every training label (the seeded subsets are drawn from them), the images
  of the subsets the runs will draw, the full test set, and the content hashes that `prepare_data` records for each
  run when it reads the full data set, plus the commit of this clean checkout.
- `train` (on the GPU machine): rebuilds a full-size training set whose images outside those subsets are zeros, so
  `subsample` draws exactly the same images. Each run refuses to start unless its subset's content hash equals the
  one computed from the real data. Its record keeps the real data set's hash and the packed commit, because the
  copy there has no `.git`. Runs go in parallel processes, and each record is copied to `--copy-to` as it is written.

    ./run python tools/device_runs.py pack --n 100 --seeds 0 1 2 3 4 --out .devpack/cifar10-n100.npz
    python3 tools/device_runs.py train --pack .devpack/cifar10-n100.npz --runs resnet18 scat_v1:4 --seeds 0 1 2 3 4

`--jpeg` packs the JPEG files of an ImageFolder copy instead of their pixels (about 300 bytes an image against 3 KB:
500 per class and 5 seeds take 8.9 MiB, not 83.5); `--val-per-class` packs and trains subsets with validation images
(the full-data row: `--n 4000 --val-per-class 1000`).
"""
import argparse, hashlib, json, os, subprocess, sys, tarfile, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

def clean_head(allow_dirty=False) -> str:
    ("HEAD's commit; exits when the checkout has uncommitted changes (the records would name the wrong code) "
     "unless allowed.")
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT, capture_output=True,
                           text=True).stdout
    if dirty.strip() and not allow_dirty: sys.exit(f'device_runs pack: commit first; uncommitted changes:\n{dirty}')
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    return head + ('+dirty' if dirty.strip() else '')

# what a run executes: the records name its commit, so it must be that commit's
CODE = ('settings.ini', 'wavescat', 'tools')

def code_hashes() -> dict:
    "Git's blob hash of every file under `CODE` that git tracks (computed from the files, so it works without .git)."
    files = subprocess.run(['git', 'ls-files', *CODE], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return {f: blob_hash(ROOT / f) for f in files}

def blob_hash(path) -> str:
    b = Path(path).read_bytes()
    return hashlib.sha1(b'blob %d\0' % len(b) + b).hexdigest()

def check_code(meta):
    ("Exit unless the files here are the packed commit's "
     "(the copy sent to the GPU machine may have drifted since `pack`).")
    differ = [f for f, h in meta['code'].items() if not (ROOT / f).is_file() or blob_hash(ROOT / f) != h]
    if differ: sys.exit(f"device_runs: these files differ from commit {meta['git'][:10]}, "
                        f"which the pack and the records name: {', '.join(differ[:5])}"
                        f"{' ...' if len(differ) > 5 else ''}; pack again from this checkout")

def pack(a):
    from wavescat.cifar10 import load_cifar10
    from wavescat.subsets import content_hash, data_name, subsample
    commit = clean_head(a.allow_dirty)
    jpeg_folder = jpeg_source(a.data) if a.jpeg else None  # refused before the long decode
    train, test = load_cifar10(a.data)
    subsets = {s: subsample(train, a.n, s, a.val_per_class) for s in a.seeds}
    keep = np.unique(np.concatenate([np.concatenate([t.idx.numpy(), v.idx.numpy()]) for t, v in subsets.values()]))
    hashes = {subset_key(a.n, a.val_per_class, s): content_hash(t, v, test) for s, (t, v) in subsets.items()}
    meta = dict(source=data_name(train.source), classes=list(train.classes), dataset_hash=content_hash(train, test),
                n_train=len(train), hashes=hashes, git=commit, code=code_hashes())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    images = (jpeg_images(jpeg_folder, train, test, keep) if a.jpeg
              else dict(x_keep=train.x[keep].numpy(), x_test=test.x.numpy()))
    np.savez_compressed(a.out, y_train=train.y.numpy().astype(np.int8), keep=keep,
                        y_test=test.y.numpy().astype(np.int8), meta=json.dumps(meta), **images)
    print(f'{a.out}: {len(keep)} training images of {len(train)}, {len(test)} test images, '
          f'{os.path.getsize(a.out) / 2**20:.1f} MiB, commit {commit[:10]}')

def subset_key(n_per_class, val_per_class, seed) -> str:
    "A packed subset's name: '100-0' (100 per class, seed 0), '4000+1000-0' with 1000 validation images per class"
    return f"{n_per_class}{f'+{val_per_class}' if val_per_class else ''}-{seed}"

def jpeg_source(data) -> Path:
    "The ImageFolder tree `--jpeg` packs from; exits when the data set is in another layout"
    from wavescat.cifar10 import find_cifar10
    layout, folder = find_cifar10(data)
    if layout != 'imagefolder': sys.exit(f'device_runs pack --jpeg: {folder} is the {layout} layout; --jpeg needs '
                                         'an ImageFolder tree of .jpg files (train/<class>/*.jpg, test/<class>/*.jpg)')
    return folder

def jpeg_images(folder, train, test, keep) -> dict:
    ("The packed images as the source's own JPEG files (about 0.9 KB each against 3 KB of pixels): "
     "concatenated bytes and their offsets")
    import torch
    from wavescat.cifar10 import list_image_folder
    out = {}
    for name, split, idx, ref in (('keep', 'train', keep, train), ('test', 'test', np.arange(len(test)), test)):
        files, y = list_image_folder(folder / split)
        if not torch.equal(y, ref.y) or any(files[i].suffix.lower() not in ('.jpg', '.jpeg') for i in idx):
            sys.exit(f'device_runs pack --jpeg: {folder / split} holds files other than .jpg, or not the set decoded')
        blobs = [np.fromfile(files[i], np.uint8) for i in idx]
        out[f'jpeg_{name}'] = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
        out[f'jpeg_{name}_offsets'] = np.cumsum([0] + [len(b) for b in blobs])
    return out

def decode_packed(z, name) -> np.ndarray:
    "The images `jpeg_images` packed under `name`, decoded as `wavescat.images.decode_images` decodes files"
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    buf, off = torch.from_numpy(z[f'jpeg_{name}']), z[f'jpeg_{name}_offsets']
    imgs = decode_jpeg([buf[off[i]:off[i + 1]] for i in range(len(off) - 1)], mode=ImageReadMode.RGB)
    return torch.stack(imgs).numpy() if imgs else np.zeros((0, 3, 32, 32), np.uint8)

def load_pack(path):
    import torch
    from wavescat.images import ImageSet
    z = np.load(path)
    meta = json.loads(str(z['meta']))
    x_keep, x_test = ((decode_packed(z, 'keep'), decode_packed(z, 'test')) if 'jpeg_keep' in z
                      else (z['x_keep'], z['x_test']))
    x = np.zeros((meta['n_train'], *x_keep.shape[1:]), np.uint8)
    x[z['keep']] = x_keep
    as_set = lambda x, y: ImageSet(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), tuple(meta['classes']),
                                   meta['source'])
    return as_set(x, z['y_train']), as_set(x_test, z['y_test']), meta

def one(a):
    "One run, in this process, on the packed data."
    import wavescat.core as core, wavescat.train as T
    train_full, test_full, meta = load_pack(a.pack)
    check_code(meta)
    T.load_dataset = lambda name, root=None, download=False: (train_full, test_full)
    prepare = T.prepare_data
    def prepare_packed(cfg):
        d = prepare(cfg)
        key = subset_key(cfg.n_per_class, cfg.val_per_class, cfg.seed)
        if key not in meta['hashes']:
            raise SystemExit(f"n_per_class={cfg.n_per_class}, seed={cfg.seed}: the pack holds only the subsets "
                             f"(n_per_class[+val_per_class]-seed) {', '.join(meta['hashes'])}; "
                             "pack this size and seed (pack --n N [--val-per-class V] --seeds S ...)")
        if d.record['hash'] != meta['hashes'][key]:
            raise SystemExit(f"n_per_class={cfg.n_per_class}, seed={cfg.seed}: subset content hash {d.record['hash']} "
                             f"is not the real data's {meta['hashes'][key]}: "
                             "the pack is damaged or was made by other code; pack again")
        d.record['dataset_hash'] = meta['dataset_hash']
        return d
    T.prepare_data = prepare_packed
    core.git_commit = lambda: meta['git']
    model, L = (a.run.split(':') + [None])[:2]
    params = dict(model=model, n_per_class=a.n, seed=a.seed, protocol=a.protocol, checkpoint_every=a.checkpoint_every,
                  val_per_class=a.val_per_class)
    if L: params['L'] = int(L)
    if a.epochs: params['epochs'] = a.epochs  # a quick check of the whole path
    if a.out_dir: params['out_dir'] = a.out_dir
    rec = T.train(**params)
    print(f"{rec['run_id']}: test {rec['metrics']['test_acc']:.2f} % in {rec['time_s']:.0f} s")

def bundle(copy_to, started):
    "The records written since `started`, as one tar file in `copy_to` (the machine returns few files)."
    recs = [p for p in (ROOT / 'outputs' / 'runs').glob('*/record.json') if p.stat().st_mtime >= started]
    tmp = Path(copy_to) / 'records.tar.tmp'
    with tarfile.open(tmp, 'w') as t:
        for p in recs: t.add(p, arcname=str(p.relative_to(ROOT)))
    os.replace(tmp, Path(copy_to) / 'records.tar')
    return len(recs)

def train(a):
    import wavescat.core as core
    check_code(load_pack(a.pack)[2])
    core.versions()  # fails here, not after training, when wavescat or kymatio is not installed
    started, logs = time.time(), Path(a.logs); logs.mkdir(parents=True, exist_ok=True)
    jobs = {}
    for run in a.runs:
        for s in a.seeds:
            name = f"{run.replace(':', '-L')}-s{s}"
            cmd = ([sys.executable, __file__, 'one', '--pack', a.pack, '--run', run, '--seed', str(s), '--n', str(a.n),
                    '--val-per-class', str(a.val_per_class), '--protocol', a.protocol,
                    '--checkpoint-every', str(a.checkpoint_every)]
                   + (['--epochs', str(a.epochs)] if a.epochs else []))
            with open(logs / f'{name}.log', 'w') as log:  # the child keeps its own handle
                jobs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    while jobs:
        time.sleep(5)
        for name, p in list(jobs.items()):
            if p.poll() is None and time.time() - started < a.deadline: continue
            if p.poll() is None: p.kill(); p.wait()
            print(f'{time.time() - started:6.0f} s  {name}: exit {p.returncode}', flush=True)
            del jobs[name]
            if a.copy_to: bundle(a.copy_to, started)
    print(f'{time.time() - started:.0f} s; records: {bundle(a.copy_to, started) if a.copy_to else "-"}')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('pack'); c.add_argument('--data', default=os.environ.get('WAVESCAT_DATA'))
    c.add_argument('--n', type=int, default=100); c.add_argument('--seeds', type=int, nargs='+', required=True)
    c.add_argument('--val-per-class', type=int, default=0); c.add_argument('--out', required=True)
    c.add_argument('--jpeg', action='store_true',
                   help="pack the source's JPEG files, not decoded pixels: 3x smaller (an ImageFolder of .jpg only)")
    c.add_argument('--allow-dirty', action='store_true',
                   help='pack from a checkout with uncommitted changes (records say +dirty)')
    for name in ('one', 'train'):
        c = sub.add_parser(name); c.add_argument('--pack', required=True); c.add_argument('--n', type=int, default=100)
        c.add_argument('--val-per-class', type=int, default=0)
        c.add_argument('--protocol', default='study'); c.add_argument('--checkpoint-every', type=int, default=25)
        c.add_argument('--epochs', type=int, default=None, help="the protocol's unless given")
        if name == 'one':
            c.add_argument('--run', required=True); c.add_argument('--seed', type=int, required=True)
            c.add_argument('--out-dir')
        else:
            c.add_argument('--runs', nargs='+', required=True, help="model or model:L, e.g. resnet18 scat_v1:4")
            c.add_argument('--seeds', type=int, nargs='+', required=True)
            c.add_argument('--logs', default='logs/device')
            c.add_argument('--copy-to', default=os.environ.get('OUT'))
            c.add_argument('--deadline', type=float, default=420)
    a = p.parse_args()
    dict(pack=pack, one=one, train=train)[a.cmd](a)
