"""Runs as scheduler jobs through submitit: one job per (config, seed), each executing the training notebook into
its run folder exactly as `reproduce` does on this machine (`experiment.execute_run`).

    executor = make_executor("slurm", job_dir, JobOptions(partition="gpu"))
    jobs = submit(executor, [(notebook, config, seed, profile, out_dir, data_dir), ...])   # one job array

A job is requeued when the scheduler warns of preemption or of its time limit (submitit's SIGUSR2 handler calls
`NotebookJob.checkpoint`, which asks for the same call again); the requeued job executes the notebook again, and
the run resumes from the checkpoint its folder got at its last evaluation. <job_dir> holds submitit's pickles and
logs (<job>_0_log.out, <job>_0_log.err) and `JOBS`, which names each run folder's last job, whose state
`scheduler_states` reads back (queued, running, unknown, or ended).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import submitit

from compressm.errors import CompressmError, ConfigError, excerpt

Executor = Literal["local", "submitit-local", "slurm"]  # local: in this process (`reproduce`'s thread pool)
EXECUTORS: tuple[str, ...] = Executor.__args__
JOBS = "jobs.json"
_SUBMITIT_CLUSTER = {"submitit-local": "local", "slurm": "slurm"}
MAX_TIMEOUTS = 10  # requeues after a time limit (each one is at least a time limit of progress); preemption: no cap
# Slurm states (sacct) of a job that has not ended; any other state (COMPLETED, FAILED, CANCELLED, TIMEOUT,
# NODE_FAIL, OUT_OF_MEMORY, ...) leaves the run's own record to say what happened. UNKNOWN: sacct does not list
# the job (not yet, or no longer: purged, or another cluster's); its run may be resubmitted, and the run folder's
# lock keeps a second job from writing it while the first still does.
_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "SUSPENDED", "CONFIGURING"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
SchedulerState = Literal["queued", "running", "unknown"]


@dataclass(frozen=True)
class JobOptions:
    """What each job asks the scheduler for; the defaults fit one paper-profile sCIFAR run (Table 3).

    That run takes a few hours on an H100 (`costs.gpu_hours`), so 6 hours leave room for a slower GPU; a run
    that outlives the limit is requeued and resumes.
    """

    partition: str | None = None  # None: the cluster's default partition
    gpus: int = 1
    cpus: int = 8
    mem_gb: int = 32
    time_min: int = 360
    array_parallelism: int = 64  # slurm: at most this many jobs of one array at once
    sbatch: tuple[tuple[str, str | bool], ...] = ()  # more sbatch options: (("account", "lab"), ("exclusive", True))

    def __post_init__(self):
        for name in ("gpus", "cpus", "mem_gb", "time_min", "array_parallelism"):
            minimum = 0 if name == "gpus" else 1
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name.replace('_', '-')} must be an integer >= {minimum}, got {excerpt(value)}")
        for key, value in self.sbatch:  # a line break would end the #SBATCH line and demote the directives after it
            if any(char in f"{key}={value}" for char in "\n\r"):
                raise ConfigError(f"--sbatch {excerpt(f'{key}={value}')}: an sbatch option is one line; remove the"
                                  " line break")


def make_executor(executor: Executor, job_dir: Path | str, options: JobOptions) -> submitit.AutoExecutor:
    """The submitit executor of `executor` ('submitit-local' or 'slurm'), writing pickles and logs into job_dir
    (made if missing; a one-line error if it cannot be)."""
    if executor not in _SUBMITIT_CLUSTER:
        raise ConfigError(f"executor {executor!r} does not submit jobs; choose one of {', '.join(_SUBMITIT_CLUSTER)}")
    cluster = _SUBMITIT_CLUSTER[executor]
    try:
        made = submitit.AutoExecutor(folder=job_dir, cluster=cluster, **{f"{cluster}_max_num_timeout": MAX_TIMEOUTS})
    except RuntimeError as error:  # no srun on this machine
        raise ConfigError(f"cannot submit to slurm from here ({error})") from None
    except OSError as error:  # e.g. job_dir is a file
        raise CompressmError(f"job folder {job_dir} cannot be made ({error.strerror}); choose another --job-dir") \
            from None
    made.update_parameters(name="compressm", timeout_min=options.time_min, gpus_per_node=options.gpus,
                           cpus_per_task=options.cpus, mem_gb=options.mem_gb, slurm_partition=options.partition,
                           slurm_array_parallelism=options.array_parallelism,
                           slurm_additional_parameters={"requeue": True, **dict(options.sbatch)})
    return made


class NotebookJob(submitit.helpers.Checkpointable):
    """One run as a job: `experiment.execute_run(notebook, config, seed, profile, out_dir, data_dir, root)`.

    Checkpointable's `checkpoint` resubmits the same call: nothing to save here, the run's folder already
    holds its checkpoint, and the notebook resumes from it.
    """

    def __call__(self, notebook: Path | str, config: str, seed: int, profile: str, out_dir: Path | str,
                 data_dir: Path | str, root: Path | str) -> tuple[str, str]:
        from compressm.experiment import execute_run

        return execute_run(Path(notebook), config, seed, profile, Path(out_dir), Path(data_dir), Path(root))


def submit(executor: submitit.AutoExecutor, calls: list[tuple]) -> list[submitit.Job]:
    """Submit one NotebookJob per call (its arguments), as one job array where the executor has arrays."""
    if not calls:
        return []
    with executor.batch():
        jobs = [executor.submit(NotebookJob(), *call) for call in calls]
    return jobs


def log_path(job_dir: Path | str, job_id: str) -> Path:
    """A job's standard output (its error stream is beside it, .err)."""
    return Path(job_dir) / f"{job_id}_0_log.out"


def load_jobs(job_dir: Path | str) -> dict[str, dict]:
    """{run folder: {'job': id, 'executor': name}}: each run's last job submitted from job_dir (one-line
    CompressmError if the file is damaged)."""
    file = Path(job_dir) / JOBS
    if not file.is_file():
        return {}
    try:
        jobs = json.loads(file.read_text())
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        jobs = None
    if not (isinstance(jobs, dict) and all(isinstance(job, dict) and {"job", "executor"} <= set(job)
                                           for job in jobs.values())):
        raise CompressmError(f"{file} is damaged (not the JSON this library writes); delete it: the runs' own"
                             " records keep their progress, and the next call resubmits runs that are not complete,"
                             " queued or running")
    return jobs


def save_jobs(job_dir: Path | str, jobs: dict[str, dict]) -> None:
    """Write the `load_jobs` mapping (to a temporary file, then renamed)."""
    file = Path(job_dir) / JOBS
    tmp = file.with_name(f".{JOBS}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(jobs, indent=1, sort_keys=True))
    os.replace(tmp, file)


def scheduler_states(jobs: list[dict | None]) -> list[SchedulerState | None]:
    """For each job from `load_jobs` (or None): 'queued', 'running', 'unknown' (sacct does not list it), or None
    once it has ended.

    Slurm: its state in sacct (one call for all). submitit-local: the job id is its controller's pid, alive
    until the job ends.
    """
    slurm = [job["job"] for job in jobs if job and job["executor"] == "slurm"]
    for job_id in slurm:
        submitit.SlurmJob.watcher.register_job(job_id)
    if slurm:
        submitit.SlurmJob.watcher.update()
    return [job and (_slurm_state(job["job"]) if job["executor"] == "slurm" else _local_state(job["job"]))
            for job in jobs]


def _slurm_state(job_id: str) -> SchedulerState | None:
    state = submitit.SlurmJob.watcher.get_state(job_id, mode="cache").split()[0].upper()  # 'CANCELLED by 12'
    if state == "UNKNOWN":
        return "unknown"
    return "queued" if state in _QUEUED else "running" if state in _RUNNING else None


def _local_state(job_id: str) -> Literal["running"] | None:
    try:
        alive = b"submitit" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except OSError:  # no such process (a zombie has an empty cmdline)
        alive = False
    return "running" if alive else None
