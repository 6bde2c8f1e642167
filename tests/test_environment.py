"""mlx in its environment: a foreign package of the same import name is pointed out, once."""

import os
import subprocess
import sys


def _fake_apple_mlx(site):
    """A distribution called ``mlx`` (as Apple's MLX is) visible on ``site``."""
    info = site / "mlx-0.29.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mlx\nVersion: 0.29.0\n")
    (info / "top_level.txt").write_text("mlx\n")


def _python(code, site=None):
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )


def test_a_foreign_mlx_distribution_is_named_in_one_line(tmp_path):
    _fake_apple_mlx(tmp_path)
    imported = _python("import mlx", site=tmp_path)
    (line,) = imported.stderr.splitlines()
    assert "another package named mlx" in line and "0.29.0" in line
    command = _python(
        "from click.testing import CliRunner\n"
        "from mlx.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n",
        site=tmp_path,
    )
    assert command.stderr.count("another package named mlx") == 1


def test_without_one_import_is_silent():
    assert _python("import mlx").stderr == ""
