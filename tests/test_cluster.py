"""Tests for compressm.cluster and `experiment.reproduce_jobs`: runs as submitit jobs. submitit's local executor
runs them as processes here (a smoke table end to end; a job preempted, requeued and resumed); slurm is faked by
`sbatch`, `sacct` and `srun` scripts on PATH, to check the job script, the array and the status of a later call."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from fakes import write_fake_mnist

from compressm import cluster, records
from compressm.cli import main
from compressm.configs import get_config
from compressm.errors import ConfigError
from compressm.experiment import TRAIN_NOTEBOOK, reproduce_jobs
from compressm.results import aggregate, book_runs



@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("fake-mnist"), n_train=300, n_test=100)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_job_options_check_themselves():
    assert cluster.JobOptions().gpus == 1
    with pytest.raises(ConfigError, match="time-min must be an integer >= 1, got 0"):
        cluster.JobOptions(time_min=0)
    with pytest.raises(ConfigError, match="gpus must be an integer >= 0, got -1"):
        cluster.JobOptions(gpus=-1)
    with pytest.raises(ConfigError, match="executor 'local' does not submit jobs"):
        cluster.make_executor("local", "jobs", cluster.JobOptions())


def _notebook(path: Path, body: str) -> Path:
    """A notebook with the training notebook's parameters, then `body`."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    parameters = nbformat.v4.new_code_cell('config = ""\nseed = 0\nprofile = ""\nout_dir = ""\ndata_dir = ""')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def _stalling_notebook(path: Path, eval_every: int) -> Path:
    """The training notebook's call, but the first attempt of seed 1 (no checkpoint yet) stalls after its first
    evaluation (and checkpoint), until the test preempts its job."""
    return _notebook(path, f"""import time
from pathlib import Path
from compressm import train
from compressm.experiment import run_experiment
if seed == 1 and not (Path(out_dir) / "checkpoint.msgpack").exists():
    step, calls = train.train_step, []
    def stalling_step(*args, **kwargs):
        calls.append(1)
        if len(calls) > {eval_every}:
            time.sleep(300)
        return step(*args, **kwargs)
    train.train_step = stalling_step
run_experiment(config, seed, profile, out_dir=out_dir, data_dir=data_dir, progress=False)""")


@pytest.mark.slow
def test_smoke_runs_as_local_jobs_complete_aggregate_and_a_preempted_one_resumes(tmp_path, fake_data):
    """Seeds 1 and 2 of the smoke baseline as submitit-local jobs. Seed 1's job is preempted after its first
    checkpoint (SIGUSR2, as slurm warns), requeued, and its run resumes from that checkpoint; later calls report
    statuses and resubmit nothing; the records aggregate into the table's row."""
    eval_every, runs = get_config("smnist_baseline", "smoke").eval_every, tmp_path / "runs"
    notebook = _stalling_notebook(tmp_path / "stalling.ipynb", eval_every)
    call = dict(executor="submitit-local", root=runs, data_dir=fake_data, notebook=notebook, profile="smoke",
                build=False)
    first = reproduce_jobs(["smnist_baseline"], (1, 2), options=cluster.JobOptions(gpus=0), **call)
    assert first[["seed", "before", "status"]].values.tolist() == [[1, "new", "submitted"], [2, "new", "submitted"]]
    for row in first.itertuples():  # the job function and arguments slurm gets too
        job = cluster.submitit.core.utils.DelayedSubmission.load(runs / "jobs" / f"{row.job}_submitted.pkl")
        assert isinstance(job.function, cluster.NotebookJob)
        assert job.args == (notebook.resolve(), "smnist_baseline", row.seed, "smoke", Path(row.path),
                            fake_data.resolve(), runs.resolve())  # the runs folder: where a student finds its teacher
    stalled, done = Path(first.path[0]), Path(first.path[1])
    _wait_for(lambda: (stalled / records.CHECKPOINT).is_file() and records.is_complete(done), 300, "the runs")
    middle = reproduce_jobs(["smnist_baseline"], (1, 2), **call)
    assert middle[["before", "status"]].values.tolist() == [["running", "running"], ["complete", "complete"]]
    assert middle.job.tolist() == first.job.tolist()  # nothing resubmitted

    task = subprocess.run(["pgrep", "-P", first.job[0]], capture_output=True, text=True).stdout.split()
    os.kill(int(task[0]), signal.SIGUSR2)  # what slurm sends before preemption or the time limit
    _wait_for(lambda: records.is_complete(stalled), 300, "the requeued job")
    assert records.load_metrics(stalled)["resumes"] == [eval_every]
    assert "Requeued job" in Path(first.log[0]).read_text()
    last = reproduce_jobs(["smnist_baseline"], (1, 2), **call)
    assert set(last.before) == set(last.status) == {"complete"} and last.job.tolist() == first.job.tolist()
    finished = book_runs(runs).query("finished")  # smoke runs: plumbing, so aggregated directly
    (row,) = aggregate(finished, 2).itertuples()
    assert (row.config, row.n_seeds, row.seeds) == ("smnist_baseline", 2, "1 2") and 0 <= row.acc_top3 <= 100


def test_waiting_for_a_job_whose_kernel_dies_reports_it_failed(tmp_path, fake_data):
    notebook = _notebook(tmp_path / "die.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    outcome = reproduce_jobs(["smnist_baseline"], (3,), "smoke", "submitit-local", options=cluster.JobOptions(gpus=0),
                             root=tmp_path / "runs", data_dir=fake_data, notebook=notebook, wait=True)
    assert outcome[["before", "status"]].values.tolist() == [["new", "failed"]]
    assert "DeadKernelError" in outcome.reason[0]
    assert records.load_metrics(outcome.path[0])["status"] == "failed"


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch (keeps each job script, answers job ids 4242, 4243, ...), sacct (prints ./sacct.txt) and srun."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": 'n=$(ls "$FAKE_SLURM"/script_* 2>/dev/null | wc -l)\ncp "$1" "$FAKE_SLURM/script_$n"\n'
                  'echo "Submitted batch job $((4242 + n))"',
        "sacct": 'echo "JobID|State|NodeList"\ncat "$FAKE_SLURM/sacct.txt" 2>/dev/null || true',
        "srun": "exit 0",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    return tmp_path


def test_slurm_gets_one_job_array_with_the_options_and_a_later_call_reports_without_resubmitting(
        fake_slurm, fake_data):
    configs, runs = ["smnist_baseline", "smnist_tau0.02"], fake_slurm / "runs"
    options = cluster.JobOptions(partition="gpu", time_min=240, sbatch=(("account", "lab"), ("exclusive", True)))
    call = dict(seeds=(1,), profile="smoke", executor="slurm", root=runs, data_dir=fake_data, build=False)
    first = reproduce_jobs(configs, options=options, **call)
    assert first[["before", "status", "job"]].values.tolist() == [["new", "submitted", "4242_0"],
                                                                  ["new", "submitted", "4242_1"]]
    assert first.log[0] == str(runs / "jobs" / "4242_0_0_log.out")
    script = (fake_slurm / "script_0").read_text()
    for line in ("--array=0-1%2", "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--time=240", "--requeue", "--account=lab", "--exclusive", "--signal=USR2@90"):
        assert f"#SBATCH {line}\n" in script
    for row in first.itertuples():  # the job function and arguments the local executors get
        job = cluster.submitit.core.utils.DelayedSubmission.load(runs / "jobs" / f"{row.job}_submitted.pkl")
        assert isinstance(job.function, cluster.NotebookJob)
        assert job.args == (TRAIN_NOTEBOOK, row.config, 1, "smoke", Path(row.path), fake_data.resolve(),
                            runs.resolve())

    (fake_slurm / "sacct.txt").write_text("4242_0|PENDING|\n4242_1|RUNNING|node7\n")
    later = reproduce_jobs(configs, **call)
    assert later[["before", "status", "job"]].values.tolist() == [["queued", "queued", "4242_0"],
                                                                  ["running", "running", "4242_1"]]
    (fake_slurm / "sacct.txt").write_text("4242_0|CANCELLED by 1000|\n4242_1|RUNNING|node7\n")
    config = get_config("smnist_baseline", "smoke")
    with records.claimed(records.run_dir(runs, config, 1), config, 1) as folder:  # it had made a checkpoint
        records.save_checkpoint(folder, config, 1, {"step": 10})
    again = reproduce_jobs(configs, **call)
    assert again[["before", "status", "job"]].values.tolist() == [["unfinished", "submitted", "4243"],
                                                                  ["running", "running", "4242_1"]]
    assert "--array" not in (fake_slurm / "script_1").read_text()  # one job: no array
    assert not (fake_slurm / "script_2").exists()


def test_a_job_sacct_does_not_list_is_unknown_and_resubmitted(fake_slurm, fake_data):
    """Today a job missing from sacct shows "queued" forever and is never resubmitted."""
    call = dict(seeds=(1,), profile="smoke", executor="slurm", root=fake_slurm / "runs", data_dir=fake_data,
                build=False)
    first = reproduce_jobs(["smnist_baseline"], **call)
    assert first[["before", "status", "job"]].values.tolist() == [["new", "submitted", "4242"]]
    (fake_slurm / "sacct.txt").write_text("")  # purged from the accounting, or never there
    again = reproduce_jobs(["smnist_baseline"], **call)
    assert again[["before", "status", "job"]].values.tolist() == [["unknown", "submitted", "4243"]]
    assert cluster.scheduler_states([{"job": "4243", "executor": "slurm"}]) == ["unknown"]


def test_a_damaged_jobs_json_is_one_error_line(capsys, tmp_path, fake_data):
    """Today a JSONDecodeError traceback."""
    job_dir = tmp_path / "jobs"
    job_dir.mkdir()
    for content in ("{not json", '["a list"]', '{"/runs/x": {"job": "1"}}'):
        (job_dir / cluster.JOBS).write_text(content)
        status = main(["reproduce", "--config", "smnist_baseline", "--seeds", "1", "--profile", "smoke", "--no-book",
                       "--runs", str(tmp_path / "runs"), "--data-dir", str(fake_data), "--executor", "submitit-local",
                       "--gpus", "0", "--job-dir", str(job_dir)])
        captured = capsys.readouterr()
        assert status == 2 and captured.out == "" and captured.err.count("\n") == 1
        assert captured.err.startswith(f"error: {job_dir / cluster.JOBS} is damaged") and "delete it" in captured.err


def test_a_line_break_in_an_sbatch_option_is_refused(capsys, tmp_path, fake_data):
    """Today it ends the #SBATCH line, so the directives after it (cpus, mem, time, requeue) are silently dropped."""
    with pytest.raises(ConfigError, match="an sbatch option is one line"):
        cluster.JobOptions(sbatch=(("account", "lab\n#SBATCH --qos=high"),))
    status = main(["reproduce", "--config", "smnist_baseline", "--seeds", "1", "--profile", "smoke", "--no-book",
                   "--runs", str(tmp_path / "runs"), "--data-dir", str(fake_data), "--executor", "slurm",
                   "--sbatch", "account=lab\nqos=high"])
    err = capsys.readouterr().err
    assert status == 2 and err == "error: --sbatch 'account=lab\\nqos=high': an sbatch option is one line; remove the" \
                                  " line break\n"
    assert not (tmp_path / "runs").exists()


def test_reproduce_help_shows_the_executor_and_job_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["reproduce", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--executor {local,submitit-local,slurm}", "--partition", "--gpus", "--cpus", "--mem-gb",
                   "--time-min", "--array-parallelism", "--sbatch KEY=VALUE", "--job-dir", "--wait",
                   "(default 360)", "(default 1)"):
        assert option in text


@pytest.mark.parametrize("args, fragments", [
    (["--partition", "gpu", "--wait"], ["--partition, --wait: options for jobs; add --executor slurm"]),
    (["--gpus", "0"], ["--gpus: options for jobs"]),
    (["--executor", "submitit-local", "--jobs", "2"], ["--jobs applies to --executor local"]),
    (["--executor", "submitit-local", "--time-min", "0"], ["time-min must be an integer >= 1, got 0"]),
    (["--executor", "slurm", "--sbatch", "=lab"], ["argument --sbatch: --sbatch expects KEY=VALUE or KEY"]),
    pytest.param(["--executor", "slurm"], ["cannot submit to slurm from here", "srun"],
                 marks=pytest.mark.skipif(shutil.which("srun") is not None, reason="a slurm machine")),
])
def test_bad_job_options_are_one_error_line(capsys, tmp_path, fake_data, args, fragments):
    argv = ["reproduce", "--config", "smnist_baseline", "--seeds", "1", "--profile", "smoke", "--no-book",
            "--runs", str(tmp_path / "runs"), "--data-dir", str(fake_data), *args]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(f in lines[0] for f in fragments), lines
    assert not (tmp_path / "runs").exists()
