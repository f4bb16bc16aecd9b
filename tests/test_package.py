"""The installed names: the stage commands are `calr_stages`, never a bare `stages` package."""
import subprocess
import sys


def test_stage_commands_install_as_calr_stages_not_stages(tmp_path):
    code = ("import importlib.util as u, calr_stages.cli as c; "
            "print(u.find_spec('stages') is None, c.__name__, hasattr(c, 'app'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "calr_stages.cli", "True"]  # outside the repo folder
