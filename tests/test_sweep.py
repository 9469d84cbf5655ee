"Sweeps across real worker processes: a 2-worker cluster, a worker killed mid-run, a sweep that trains nothing."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from distributed import Client, LocalCluster
from wavescat.sweep import grid, sweep
from wavescat.train import train

pytestmark = pytest.mark.slow

def tiny(fake_cifar, out_dir, **kw):
    return dict(n_per_class=2, batch_size=4, test_subset=10, device='cpu', data_root=str(fake_cifar['batches']),
                out_dir=str(out_dir), **kw)

@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv('WAVESCAT_CACHE', str(tmp_path / 'cache'))

def test_two_workers_run_four_runs_and_a_failure_stops_none(fake_cifar, tmp_path, cache_env):
    configs = grid(model='scat_v1', L=[1, 2], seed=[0, 1], epochs=1, **tiny(fake_cifar, tmp_path / 'runs'))
    configs[1] = grid(model='scat_v1', L=1, seed=1, epochs=1,
                      **{**tiny(fake_cifar, tmp_path / 'runs'), 'data_root': str(tmp_path / 'missing')})[0]
    with LocalCluster(n_workers=2, threads_per_worker=1, host='127.0.0.1',
                      dashboard_address=None) as cluster, Client(cluster) as client:
        res = sweep(configs, client=client, progress_every=5)
    assert res.status.tolist() == ['finished', 'failed', 'finished', 'finished']
    assert 'missing' in res.error[1] and 'load_cifar10' in res.traceback[1]
    assert all((tmp_path / 'runs' / r / 'record.json').exists() for r in res.run_id[[0, 2, 3]])

def _start(cmd, log, env):
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

def _wait_for(predicate, timeout, what):
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout: raise TimeoutError(f'waited {timeout} s for {what}')
        time.sleep(0.05)

def _scheduler_address(sfile, timeout=60):
    "The address in a scheduler file, once the scheduler has written it whole (the file appears empty first)."
    def parsed():
        try: return json.loads(sfile.read_text())['address']
        except (FileNotFoundError, json.JSONDecodeError, KeyError): return None
    _wait_for(parsed, timeout, f'the scheduler file {sfile}')
    return parsed()

def test_a_worker_killed_mid_run_and_the_run_resumes_elsewhere(fake_cifar, tmp_path, cache_env):
    ("dask scheduler + 2 dask workers on 127.0.0.1; the sweep goes through `--scheduler`; "
     "one worker is killed -9 mid-run.")
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    out = tmp_path / 'runs'
    run = tiny(fake_cifar, out, epochs=4, checkpoint_every=1)
    procs, logs = [], open(tmp_path / 'cluster.log', 'w')
    try:
        sfile = tmp_path / 'scheduler.json'
        procs.append(_start([sys.executable, '-m', 'distributed.cli.dask_scheduler', '--host', '127.0.0.1',
                             '--port', '0', '--no-dashboard', '--scheduler-file', str(sfile)], logs, env))
        address = _scheduler_address(sfile)
        workers = [_start([sys.executable, '-m', 'distributed.cli.dask_worker', address, '--nthreads', '1',
                           '--no-nanny', '--host', '127.0.0.1', '--no-dashboard'], logs, env) for _ in range(2)]
        procs += workers
        flags = [f'--{k.replace("_", "-")}={v}' for k, v in run.items()]
        cli = subprocess.Popen([sys.executable, '-m', 'wavescat.sweep', '--model', 'resnet18', '--seed', '0', '1',
                                *flags, '--scheduler', address, '--progress-every', '5'],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, start_new_session=True)
        procs.append(cli)
        ckpts = lambda: list(out.glob('*/checkpoint.pt'))
        _wait_for(lambda: len(ckpts()) == 2 or cli.poll() is not None, 240, 'both runs to write a checkpoint')
        assert cli.poll() is None, cli.stdout.read()
        assert not list(out.glob('*/record.json'))  # both mid-run
        os.kill(workers[0].pid, signal.SIGKILL)
        stdout, _ = cli.communicate(timeout=300)
        assert cli.returncode == 0, stdout
    finally:
        for p in procs:
            if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
        logs.close()
    records = sorted(out.glob('*/record.json'))
    assert len(records) == 2 and not list(out.glob('*/checkpoint.pt'))
    for f in records:
        rec = json.loads(f.read_text())
        assert [h['epoch'] for h in rec['history']] == list(range(1, 5))  # every epoch, once
        alone = train(**{**run, 'out_dir': str(tmp_path / 'alone'), 'seed': rec['params']['seed']},
                      progress_every=float('inf'))
        assert rec['run_id'] == alone['run_id'] and rec['metrics'] == alone['metrics']
    again = subprocess.run([sys.executable, '-m', 'wavescat.sweep', '--model', 'resnet18', '--seed', '0', '1', *flags,
                            '--scheduler', 'tcp://127.0.0.1:9'], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr  # finished runs are read: no cluster is even contacted
    assert again.stdout.count('earlier') >= 2, again.stdout

def _sweep_cli(run, *extra, env):
    flags = [f'--{k.replace("_", "-")}={v}' for k, v in run.items()]
    return subprocess.Popen([sys.executable, '-m', 'wavescat.sweep', '--model', 'resnet18', '--seed', '0', '1', *flags,
                             '--progress-every', '5', *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)

def _worker_processes(pid):
    "The Dask worker processes that the embedded cluster of the process `pid` spawned."
    import psutil
    return [p for p in psutil.Process(pid).children() if 'spawn_main' in ' '.join(p.cmdline())]

def test_the_embedded_clusters_only_worker_killed_mid_run(fake_cifar, tmp_path, cache_env):
    "Issue 27: with one worker killed -9 the sweep used to wait forever; now a new embedded cluster resumes the runs."
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    out = tmp_path / 'runs'
    run = tiny(fake_cifar, out, epochs=4, checkpoint_every=1, precision='fp32')
    cli = _sweep_cli(run, '--cpu-runs', '1', '--worker-timeout', '10', env=env)
    try:
        _wait_for(lambda: list(out.glob('*/checkpoint.pt')) or cli.poll() is not None, 240, 'a checkpoint')
        assert cli.poll() is None and not list(out.glob('*/record.json'))
        (worker,) = _worker_processes(cli.pid)
        worker.kill()
        stdout, _ = cli.communicate(timeout=300)
    finally:
        if cli.poll() is None: os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 0, stdout
    assert 'resuming from' in stdout, stdout
    for f in sorted(out.glob('*/record.json')):
        rec = json.loads(f.read_text())
        assert [h['epoch'] for h in rec['history']] == list(range(1, 5))  # every epoch, once
        alone = train(**{**run, 'out_dir': str(tmp_path / 'alone'), 'seed': rec['params']['seed']},
                      progress_every=float('inf'))
        assert rec['metrics'] == alone['metrics']  # resumed: the same numbers as without the kill
        w, w_alone = (torch.load(d / rec['run_id'] / 'model.pt') for d in (out, tmp_path / 'alone'))
        assert all(torch.equal(w[k], w_alone[k]) for k in w)
    assert len(list(out.glob('*/record.json'))) == 2

def test_a_cluster_left_without_workers_stops_the_sweep(fake_cifar, tmp_path, cache_env):
    "A cluster the sweep does not own cannot be restarted: it stops within the timeout, non-zero, with the table."
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    out = tmp_path / 'runs'
    run = tiny(fake_cifar, out, epochs=30, checkpoint_every=1, precision='fp32', lr=0.001)
    procs, logs = [], open(tmp_path / 'cluster.log', 'w')
    try:
        sfile = tmp_path / 'scheduler.json'
        procs.append(_start([sys.executable, '-m', 'distributed.cli.dask_scheduler', '--host', '127.0.0.1',
                             '--port', '0', '--no-dashboard', '--scheduler-file', str(sfile)], logs, env))
        address = _scheduler_address(sfile)
        worker = _start([sys.executable, '-m', 'distributed.cli.dask_worker', address, '--nthreads', '1', '--no-nanny',
                         '--host', '127.0.0.1', '--no-dashboard'], logs, env)
        procs.append(worker)
        cli = _sweep_cli(run, '--scheduler', address, '--worker-timeout', '10', env=env); procs.append(cli)
        _wait_for(lambda: list(out.glob('*/checkpoint.pt')) or cli.poll() is not None, 240, 'a checkpoint')
        os.kill(worker.pid, signal.SIGKILL); t0 = time.time()
        stdout, _ = cli.communicate(timeout=120)
        waited = time.time() - t0
    finally:
        for p in procs:
            if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
        logs.close()
    assert cli.returncode == 1 and waited < 60, (cli.returncode, waited, stdout)
    assert ('no worker left' in stdout and stdout.count('stopped') >= 2
            and 'run the same command again' in stdout), stdout

def test_sigterm_prints_what_is_left_and_the_checkpointed_run_resumes_first(fake_cifar, tmp_path, cache_env):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    out = tmp_path / 'runs'
    # so many epochs that no run finishes while the sweep shuts down (30 did on a fast CI machine: no checkpoint left),
    # at a rate so low that it cannot diverge meanwhile (lr 0.1 keeps this tiny run's loss above 2 ln 10 for epochs 1-5)
    run = tiny(fake_cifar, out, epochs=1000, checkpoint_every=1, precision='fp32', lr=0.001)
    cli = _sweep_cli(run, '--cpu-runs', '1', '--seed', '1', env=env)
    try:
        _wait_for(lambda: list(out.glob('*/checkpoint.pt')) or cli.poll() is not None, 240, 'a checkpoint')
        cli.send_signal(signal.SIGTERM)
        stdout, _ = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None: os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 143, (cli.returncode, stdout)
    assert 'sweep stopped (interrupted)' in stdout and stdout.count(' stopped ') >= 2, stdout
    assert not _worker_processes_alive(out), 'the embedded cluster was closed'
    started = {p.parent.name for p in out.glob('*/checkpoint.pt')}
    assert len(started) == 1 and not list(out.glob('*/record.json')), sorted(map(str, out.glob('*/*')))
    # resumed with seed 0 too, which seed by seed would start first: the run with a checkpoint (seed 1) still does
    again = _sweep_cli(run, '--cpu-runs', '1', '--seed', '0', '1', env=env)
    try:
        first = next((l for l in again.stdout if ' on cpu: epochs ' in l), '')
        again.send_signal(signal.SIGTERM); again.communicate(timeout=120)
    finally:
        if again.poll() is None: os.killpg(again.pid, signal.SIGKILL)
    assert first.split(' on cpu')[0] in started and 'epochs 1..1000' not in first, first

def _worker_processes_alive(out) -> bool:
    "Whether a run under `out` is still locked by a live process (a worker that outlived its sweep)."
    import fcntl
    for lock in out.glob('*/lock'):
        with open(lock) as f:
            try: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError: return True
    return False
