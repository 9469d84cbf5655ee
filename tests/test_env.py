"The environment: where requirements.lock covers the machine, ./run installed exactly its versions."
import platform, re, sys
import pytest
from wavescat.core import environment, installed_packages, lock_pins
from conftest import ROOT

def lock_python() -> str:
    "The Python version the lock was compiled for, as ./run (the one place that says it) declares it."
    return re.search(r'^LOCK_PYTHON=(\S+)', (ROOT / 'run').read_text(), re.M)[1]

def test_installed_packages_equal_the_lock():
    here = f'{platform.system()}-{platform.machine()} Python {sys.version_info[0]}.{sys.version_info[1]}'
    if here != f'Linux-x86_64 Python {lock_python()}': pytest.skip(f'requirements.lock does not cover {here}')
    env = environment()
    assert env['lock'] is not None, ('installed packages differ from requirements.lock:\n'
                                     + '\n'.join(env['lock_differences']))
    assert installed_packages() == lock_pins(ROOT / 'requirements.lock')
