"The README's commands: what a new user copies must behave as the README says."
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / 'README.md').read_text()

def test_every_papermill_command_logs_its_output():
    "Without --log-output papermill prints nothing until the notebook ends: the main command would look hung for hours."
    cmds = re.findall(r'\./run papermill[^`\n]*', README)
    assert len(cmds) >= 5, cmds
    assert [c for c in cmds if '--log-output' not in c] == []
