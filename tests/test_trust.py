"""Runs you can trust: a checkpoint belongs to its run (its identity; the commit is recorded), a record's files are checked against
the digests its metrics.json keeps, YAML never expands aliases, and output folders that are not run folders are
refused. Each case is one a hostile re-test found (issue 28); training happens once, a smoke run at N = 13."""

import hashlib
import json
import shutil
from pathlib import Path

import flax.serialization
import pytest
import yaml
from fakes import write_fake_mnist, write_fake_run

from compressm import records, train as train_module
from compressm.cli import main
from compressm.configs import get_config
from compressm.data import load_dataset
from compressm.errors import CompressmError
from compressm.experiment import run_experiment
from compressm.train import initial_state, make_optimizer, run_keys, state_dict, train

CONFIG, SEED = "smnist_scratch_n13", 5  # a packaged config: its record counts in the book


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSM_RUNS", str(tmp_path / "default-runs"))


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("fake-mnist"), n_train=300, n_test=100)


@pytest.fixture(scope="module")
def record(tmp_path_factory, fake_data) -> Path:
    """A complete, counted smoke record of smnist_scratch_n13 (40 steps), as the library writes it."""
    root = tmp_path_factory.mktemp("runs")
    run_experiment(CONFIG, SEED, "smoke", root=root, data_dir=fake_data, progress=False)
    return records.run_dir(root, get_config(CONFIG, "smoke"), SEED)


def _copy(record: Path, root: Path) -> Path:
    """The record copied to the same place under runs folder `root`."""
    target = root / record.relative_to(record.parents[2])
    shutil.copytree(record, target)
    return target


def _run(capsys, *argv) -> tuple[int, str]:
    """(exit status, the one `error:` line) of the command line; fails unless stdout is empty and stderr one line."""
    status = main(list(argv))
    captured = capsys.readouterr()
    lines = captured.err.strip("\n").splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: "), captured
    return status, lines[0]


# ---------------------------------------------------------------- digests of every file a record holds

def test_a_record_keeps_the_digest_of_every_file_it_holds(record):
    digests = records.load_metrics(record)["files"]
    assert set(digests) == {"config.yaml", "hsv.npz", "params.msgpack"}  # the checkpoint is gone; no notebook
    for name, digest in digests.items():
        assert hashlib.sha256((record / name).read_bytes()).hexdigest() == digest
    row = records.load_runs(record.parents[2]).iloc[0]
    assert (row.status, row.counted, row.reason) == ("complete", True, "")


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _garbage(file: Path) -> None:
    file.write_bytes(b"\x93garbage" * 10)


def _comment(file: Path) -> None:
    file.write_text(file.read_text() + "# edited\n")


@pytest.mark.parametrize("name, damage", [("hsv.npz", _truncate), ("params.msgpack", _garbage),
                                          ("config.yaml", _comment)])
def test_a_damaged_record_is_never_counted_and_every_reader_names_the_file(capsys, tmp_path, record, fake_data,
                                                                          name, damage):
    """Today a truncated hsv.npz or a garbage params.msgpack still counts, `reproduce` skips the run, and `train`
    on the folder ends in a traceback that does not name the file."""
    folder = _copy(record, tmp_path / "runs")
    damage(folder / name)
    runs = records.load_runs(tmp_path / "runs")
    (row,) = runs.itertuples()
    assert (row.status, row.counted, row.config, row.seed) == ("damaged", False, CONFIG, SEED)
    assert str(folder / name) in row.reason and "delete that folder and re-run the run" in row.reason
    note = records.left_out_note(runs)
    assert note.startswith(f"Left out: {CONFIG} seed {SEED} (smoke profile), damaged: {folder / name}")
    with pytest.raises(records.DamagedRecord, match=str(folder / name)):
        records.verify_record(folder)
    common = ["--profile", "smoke", "--runs", str(tmp_path / "runs"), "--data-dir", str(fake_data)]
    for argv in (["train", CONFIG, "--seed", str(SEED), "--no-progress", *common],
                 ["reproduce", "--config", CONFIG, "--seeds", str(SEED), "--no-book", *common]):
        status, line = _run(capsys, *argv)
        assert status == 2 and f"{folder / name} " in line and "re-run the run to make it anew" in line


@pytest.mark.parametrize("name, damage, load", [("hsv.npz", _truncate, records.load_hsvs),
                                                ("params.msgpack", _garbage, records.load_variables)])
def test_a_record_from_before_digests_loads_and_its_unreadable_files_are_one_line_errors(tmp_path, record, name,
                                                                                        damage, load):
    """Records written before digests were kept are read unchecked (the committed runs keep their counts); a file
    of theirs that does not parse is still a one-line error naming it, not BadZipFile or a msgpack error."""
    folder = _copy(record, tmp_path / "runs")
    metrics = json.loads((folder / "metrics.json").read_text())
    del metrics["files"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    damage(folder / name)
    row = records.load_runs(tmp_path / "runs").iloc[0]
    assert (row.status, row.counted) == ("complete", True)
    with pytest.raises(records.DamagedRecord, match=f"{folder / name} is unreadable"):
        load(folder)


@pytest.mark.parametrize("digests", [True, False])
def test_a_student_whose_teacher_parameters_are_damaged_is_one_error_line(capsys, tmp_path, fake_data, digests):
    student = get_config("smnist_distill_n13", "smoke")
    teacher = get_config(student.objective.teacher, "smoke")
    folder = records.run_dir(tmp_path / "runs", teacher, SEED)
    with records.claimed(folder, teacher, SEED):
        records.save_run(folder, records.metrics_record(teacher, SEED, status="complete", recurrence="conv"), {}, {})
    if not digests:  # a teacher record from before digests were kept
        metrics = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "files"}))
    _garbage(folder / "params.msgpack")
    status, line = _run(capsys, "train", "smnist_distill_n13", "--seed", str(SEED), "--profile", "smoke", "--runs",
                        str(tmp_path / "runs"), "--data-dir", str(fake_data), "--no-progress")
    assert status == 2 and f"{folder / 'params.msgpack'} " in line and "re-run the run to make it anew" in line
    assert not records.run_dir(tmp_path / "runs", student, SEED).exists()


# ---------------------------------------------------------------- a checkpoint belongs to its run

@pytest.fixture(scope="module")
def states(fake_data):
    """Initial run states (as a checkpoint holds them) of the config and of a wider one, and the data set."""
    config, wide = get_config(CONFIG, "smoke"), get_config(CONFIG, "smoke", {"model.width": 16})
    dataset = load_dataset("smnist", fake_data, key=run_keys(1)["split"], limit=config.data_limit)
    state = lambda c: state_dict(initial_state(c, dataset, make_optimizer(c.optim, c.steps), run_keys(1)["init"]))
    return {"config": config, "wide": wide, "dataset": dataset, "state": state(config), "wide_state": state(wide)}


def _refused(folder: Path, states: dict, seed: int, fragment: str) -> None:
    """`train` of (config, seed) on `folder` stops at once with a one-line error naming the checkpoint and holding
    `fragment`, and writes no record."""
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(CompressmError) as info:
        train(states["config"], seed, states["dataset"], out_dir=folder, progress=False)
    message = str(info.value)
    assert "\n" not in message and f"{folder / records.CHECKPOINT} " in message and fragment in message, message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and records.record_state(folder) == "unfinished"


@pytest.mark.parametrize("other", ["seed", "config", "width"])
def test_another_runs_checkpoint_is_refused(tmp_path, states, other):
    """Today seed 2's checkpoint copied into seed 1's folder trains on and makes a complete "seed 1" record that
    counts; another config's is taken the same way, and one of another width ends in a flax shape traceback."""
    config, seed = states["config"], 1
    folder = records.run_dir(tmp_path, config, seed)
    theirs = {"seed": (config, 2, states["state"]), "width": (states["wide"], 1, states["wide_state"]),
              "config": (get_config("smnist_baseline", "smoke"), 1, states["state"])}[other]
    with records.claimed(folder, config, seed):
        records.save_checkpoint(folder, *theirs)
    _refused(folder, states, seed, f"is the checkpoint of another run ('{records.describe(*theirs[:2])}'), not of"
                                   f" {records.describe(config, seed)}; delete it to start this run over")


@pytest.mark.parametrize("case, fragment", [
    ("wrong_structure", "does not hold a run state of this model (KeyError('rollback'))"),
    ("old_layout", "does not hold a run state of this model (KeyError('chosen'))"),  # RunState.best, before
    ("wide_state", "does not hold a run state of this model (ValueError('an array of shape"),
    ("no_identity", "carries no run identity"),
])
def test_a_checkpoint_that_holds_no_state_of_this_run_is_refused(tmp_path, states, case, fragment):
    """Valid msgpack of the wrong structure (today KeyError: 'rollback'), the layout before RunState.chosen, the
    arrays of another width under this run's identity, and a checkpoint without identity."""
    config, folder = states["config"], tmp_path / "run"
    state = states["state"]
    saved = {"wrong_structure": {"step": 4, "history": []},
             "old_layout": {**{k: v for k, v in state.items() if k != "chosen"}, "best": state["chosen"]["paper"]},
             "wide_state": states["wide_state"], "no_identity": state}[case]
    with records.claimed(folder, config, 1):
        if case == "no_identity":
            (folder / records.CHECKPOINT).write_bytes(flax.serialization.msgpack_serialize(saved))
        else:
            records.save_checkpoint(folder, config, 1, saved)
    _refused(folder, states, 1, fragment)


def test_a_checkpoint_of_another_code_commit_resumes_and_the_record_names_each_segments_commit(tmp_path, states,
                                                                                               monkeypatch):
    """A long run outlives the code that began it (the paper-budget campaign spans sessions): its checkpoint is
    taken on another commit, and the record lists the commit of every segment."""
    config, folder = states["config"], tmp_path / "run"
    monkeypatch.setattr(records, "_git_commit", lambda: "0" * 40)
    with records.claimed(folder, config, 1):
        records.save_checkpoint(folder, config, 1, {**states["state"], "commits": ["0" * 40]})
    monkeypatch.undo()
    metrics = train(config, 1, states["dataset"], out_dir=folder, progress=False).metrics
    assert metrics["status"] == "complete" and metrics["resumes"] == [states["state"]["step"]]
    assert metrics["commits"] == ["0" * 40, records.library_commit()]


def test_the_same_runs_checkpoint_resumes(tmp_path, states, monkeypatch):
    """The control: a checkpoint of this run and commit is taken (the run stops at its first step here)."""
    config, folder = states["config"], tmp_path / "run"
    with records.claimed(folder, config, 1):
        records.save_checkpoint(folder, config, 1, states["state"])

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_step", stop)
    with pytest.raises(KeyboardInterrupt):
        train(config, 1, states["dataset"], out_dir=folder, progress=False)


# ---------------------------------------------------------------- output folders

def _train_into(capsys, out: Path, fake_data: Path, config: str = CONFIG) -> tuple[int, str]:
    return _run(capsys, "train", config, "--seed", "3", "--profile", "smoke", "--out", str(out), "--data-dir",
                str(fake_data), "--no-progress")


def test_out_into_a_users_folder_is_refused_and_overwrites_nothing(capsys, tmp_path, fake_data):
    """Today the run writes its hsv.npz and params.msgpack over the user's files of those names."""
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("hsv.npz", "params.msgpack", "notes.txt"):
        (mine / name).write_text(f"my {name}")
    status, line = _train_into(capsys, mine, fake_data)
    assert status == 2 and f"{mine} is not a run folder (it holds ['hsv.npz', 'notes.txt', 'params.msgpack'] and" \
                           " no config.yaml); changed nothing: choose another --out" in line
    assert {p.name: p.read_text() for p in mine.iterdir()} == {n: f"my {n}" for n in ("hsv.npz", "params.msgpack",
                                                                                     "notes.txt")}


def test_an_unrelated_config_yaml_is_not_a_run_folder_and_gets_no_advice_to_delete(capsys, tmp_path, fake_data):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("learning_rate: 3\n")
    status, line = _train_into(capsys, mine, fake_data)
    assert status == 2 and f"{mine} is not a run folder (its config.yaml is not a run's)" in line
    assert "choose another --out" in line and "delete" not in line
    assert [p.name for p in mine.iterdir()] == ["config.yaml"]


def test_a_link_to_another_configs_folder_is_refused(capsys, tmp_path, fake_data):
    """Today a symlinked --out writes into the folder of smnist_baseline seed 3, which then holds this run."""
    theirs = records.run_dir(tmp_path / "runs", get_config("smnist_baseline", "smoke"), 3)
    theirs.mkdir(parents=True)
    (tmp_path / "link").symlink_to(theirs)
    status, line = _train_into(capsys, tmp_path / "link", fake_data)
    assert status == 2 and f"{tmp_path / 'link'} is the folder of smnist_baseline seed 3 (smoke profile)" in line
    assert list(theirs.iterdir()) == []


# ---------------------------------------------------------------- YAML: no aliases, bounded excerpts

def test_set_values_with_yaml_aliases_are_refused(capsys, tmp_path):
    """Today a 324-character alias bomb in --set expands to gigabytes; an alias of any size is refused now."""
    status, line = _run(capsys, "train", CONFIG, "--seed", "0", "--profile", "smoke", "--runs", str(tmp_path),
                        "--set", "steps=[&a [1, 2], *a]", "--no-progress")
    assert status == 2 and "--set value '[&a [1, 2], *a]' is not a number, word or YAML value (anchors and aliases" \
                           in line


def test_a_huge_bad_value_is_shown_as_a_short_excerpt(capsys, tmp_path):
    """Today the whole value is formatted into the message (here 30 kB)."""
    status, line = _run(capsys, "train", CONFIG, "--seed", "0", "--profile", "smoke", "--runs", str(tmp_path),
                        "--set", "steps=[" + "1, " * 10_000 + "1]", "--no-progress")
    assert status == 2 and "steps = [1, 1, 1, 1, 1, 1, ...] should be of type int" in line and len(line) < 200


def test_a_config_yaml_with_aliases_in_a_run_folder_is_one_line_for_the_book(tmp_path):
    folder = write_fake_run(tmp_path, "smnist_baseline", "smoke", 1)
    values = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(f"x: &a [1, 2]\ny: *a\n{yaml.safe_dump(values)}")
    with pytest.raises(CompressmError, match="config.yaml is not valid YAML .ComposerError") as info:
        records.load_runs(tmp_path)
    assert "\n" not in str(info.value)
