"What is committed under outputs/ (records, executed notebooks, tables) must read the same on any machine."
import json, re, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r'(?<![\w.:/])/(tmp|work|home|root|Users|mnt|scratch|private)/[^\s"\'`]*')

def committed_outputs():
    files = subprocess.run(['git', 'ls-files', 'outputs'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / f for f in files if f.endswith(('.json', '.ipynb', '.csv', '.md'))]

def test_the_machine_path_pattern():
    for bad in ['"/tmp/h/x.ipynb"', 'at /work/main/outputs', "'/home/me/data'"]: assert MACHINE_PATH.search(bad), bad
    for ok in ['outputs/features.ipynb', 'https://example.org/home/page', '../shared/data/cifar10-jpeg', 'a/tmp/b']:
        assert not MACHINE_PATH.search(ok), ok

def test_committed_outputs_hold_no_machine_paths():
    "papermill writes its output path into the notebook: execute to a scratch file and copy, and that path leaks."
    files = committed_outputs()
    assert len(files) >= 20, files
    leaks = {str(f.relative_to(ROOT)): m.group(0) for f in files
             if (m := MACHINE_PATH.search(f.read_text(errors='replace')))}
    assert leaks == {}, f'absolute machine paths in committed outputs (make them relative): {leaks}'

def test_executed_notebooks_name_themselves():
    "An executed notebook's papermill metadata names the notebook it ran and itself, relative to the repository."
    for f in (p for p in committed_outputs() if p.suffix == '.ipynb'):
        pm = json.loads(f.read_text())['metadata'].get('papermill')
        if pm: assert pm['output_path'] == str(f.relative_to(ROOT)), (f, pm['output_path'])

def test_committed_run_ids_recompute_from_their_params():
    "A committed run id never changes meaning: every record's id is its params' id under today's `run_id`."
    import dataclasses
    from wavescat.config import TrainConfig, check_config, run_id
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    recs = sorted((ROOT / 'outputs' / 'runs').glob('*/record.json'))
    assert len(recs) >= 147, len(recs)
    wrong = {}
    for f in recs:
        rec = json.loads(f.read_text())
        params = {'precision': 'fp32', **rec['params']}  # records from before `precision`: no precision in their id
        assert set(params) <= names, (f, set(params) - names)
        if (rid := run_id(check_config(**params))) != f.parent.name or rid != rec['run_id']: wrong[f.parent.name] = rid
    assert wrong == {}, f'run ids that no longer follow from their records: {wrong}'

def test_the_executed_report_read_every_committed_record():
    "outputs/report.ipynb must be re-executed whenever records are committed: it prints the digest of the ids it read."
    from wavescat.records import records_digest
    files = subprocess.run(['git', 'ls-files', 'outputs/runs/*/record.json'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    ids = [Path(f).parent.name for f in files]
    text = json.dumps([c.get('outputs') for c in json.loads((ROOT / 'outputs' / 'report.ipynb').read_text())['cells']])
    m = re.search(r'(\d+) runs from [^,]+, made in \d+ software environment\(s\); records digest ([0-9a-f]{12})', text)
    assert m, 'outputs/report.ipynb does not say which records it read: re-execute it'
    assert (int(m[1]), m[2]) == (len(ids), records_digest(ids)), \
        (f'outputs/report.ipynb read {m[1]} records, {len(ids)} are committed: '
         're-execute it (./run papermill nbs/report.ipynb outputs/report.ipynb)')

def test_each_protocol_label_holds_one_precision():
    "Tables select runs by protocol label, which names precision only where it is not the device's usual one."
    import pandas as pd
    from wavescat.records import load_diverged, load_records
    runs = ROOT / 'outputs' / 'runs'
    df = pd.concat([load_records(runs)[['protocol', 'precision']], load_diverged(runs)[['protocol', 'precision']]])
    mixed = df.groupby('protocol').precision.unique().loc[lambda s: s.str.len() > 1]
    assert mixed.empty, ('these protocol labels pool runs of several precisions (a CUDA bf16 run beside CPU fp32 '
                         f'ones?), so every table would pair them: {mixed.to_dict()}')

def test_committed_benches_measured_something():
    "A `--quick` bench checks that the code runs and measures nothing: the pages quote full benches only."
    benches = sorted((ROOT / 'outputs' / 'bench').glob('*.json'))
    assert {f.name for f in benches} >= {'cpu.json', 'sweep.json'}, benches
    quick = [f.name for f in benches if json.loads(f.read_text())['quick']]
    assert quick == [], f'quick benches committed (run them without --quick): {quick}'
