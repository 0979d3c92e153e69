"""experiments/train.py: configuration and data errors end with one line on stderr and
exit status 2 (a traceback only with --verbose)."""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIGITS = "--config=configs/maoal_digits.py"


def _cases(tmp):
  empty = os.path.join(tmp, "empty")
  os.makedirs(empty, exist_ok=True)
  return {
      "unknown method": ([DIGITS, "--config.method.name=nope"], "nope"),
      "unknown solver": ([DIGITS, "--config.hyper.solver=nope"], "nope"),
      "unknown partition": ([DIGITS, "--config.method.partition=nope"], "nope"),
      "unknown runner": ([DIGITS, "--config.runner=nope"], "nope"),
      "wrong override type": ([DIGITS, "--config.optim.num_steps=many"], "num_steps"),
      "missing data directory": (["--config=configs/auxilearn_nyuv2.py",
                                  f"--config.data.kwargs.root={tmp}/missing"], "missing"),
      "unprepared dataset": (["--config=configs/maoal_cifar100_20.py",
                              f"--config.data.kwargs.data_dir={empty}"], "prepare"),
  }


def test_every_user_error_is_one_line_and_status_2(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  cases = _cases(str(tmp_path))
  procs = {  # all at once: each is mostly interpreter and JAX start-up
      name: subprocess.Popen(
          [sys.executable, "-m", "experiments.train", *args,
           f"--workdir={tmp_path / name.replace(' ', '_')}"],
          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for name, (args, _) in cases.items()}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    lines = [l for l in err.splitlines() if l.strip()]
    assert proc.returncode == 2, (name, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, err[-2000:])
    assert cases[name][1] in lines[0], (name, lines[0])
    assert lines[0].endswith("(--verbose for the traceback)")
    assert "Traceback" not in out + err


def test_verbose_shows_the_traceback(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.train", DIGITS, "--config.method.name=nope",
       f"--workdir={tmp_path}", "--verbose"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  assert "Traceback (most recent call last)" in out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith("error: ")
