"""Tests for compressm.distill: the authors' loss, loading the teacher from its record (and the one-line errors when
it is missing), and distillation runs end to end on generated MNIST and CIFAR-10 files, resumed exactly."""

import hashlib

import jax
import numpy as np
import pytest
from fakes import write_fake_cifar10, write_fake_mnist

from compressm import distill, records, train as train_module
from compressm.configs import get_config
from compressm.data import load_dataset
from compressm.errors import CompressmError, ConfigError
from compressm.experiment import _plan, run_experiment
from compressm.train import build_model, resolved_recurrence, run_keys, train

SEED = 5
# A tiny student: 8 steps, evaluations at 4 and 8, 64 examples per split, batches of 16 (its teacher keeps the
# packaged config: a teacher is never an @overrides variant)
STUDENT = {"steps": 8, "eval_every": 4, "data_limit": 64, "batch_size": 16}


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_distillation_loss_is_the_authors_formula():
    """alpha T^2 CE(softmax(log p_t / T), softmax(log p_s / T)) + (1 - alpha) CE(labels, p_s), with the paper's
    CE(q, p) = -sum q log(p + 1e-8), written out in numpy from the log-probabilities (rtol 1e-5: float32)."""
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(2, 6, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 6)
    ce = lambda q, p: np.mean(-np.sum(q * np.log(p + 1e-8), axis=-1))
    log_p = lambda z: np.log(_softmax(z))
    for temperature, alpha in ((2.0, 0.5), (1.0, 0.0), (4.0, 1.0), (2.0, 0.3)):
        expected = (alpha * temperature**2 * ce(_softmax(log_p(teacher) / temperature),
                                                 _softmax(log_p(student) / temperature))
                    + (1 - alpha) * ce(np.eye(10)[labels], _softmax(student)))
        loss = distill.distillation_loss(student, teacher, labels, temperature, alpha)
        assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_soft_term_is_smallest_when_the_student_matches_the_teacher():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(4, 10)).astype(np.float32)
    labels = np.zeros(4, np.int32)
    at_teacher = distill.distillation_loss(teacher, teacher, labels, 2.0, 1.0)
    gradient = jax.grad(lambda s: distill.distillation_loss(s, teacher, labels, 2.0, 1.0))(teacher)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-6)  # the soft term's minimum: student = teacher
    assert float(distill.distillation_loss(teacher + rng.normal(size=teacher.shape), teacher, labels, 2.0, 1.0)) \
        > float(at_teacher)


# ---------------------------------------------------------------- the teacher's record

def _dataset(config, data_dir):
    return load_dataset(config.dataset, data_dir, key=run_keys(SEED)["split"], limit=config.data_limit)


def write_teacher(root, student, data_dir, *, status="complete"):
    """A record of the teacher of `student` with its initial parameters (no training: the tests need its shapes and
    a record, not a good teacher), or a failed record; returns the folder."""
    config = distill.teacher_config(student)
    folder = records.run_dir(root, config, SEED)
    if status == "failed":
        records.save_failure(folder, config, SEED, "the kernel died")
        return folder
    dataset = _dataset(config, data_dir)
    recurrence = resolved_recurrence(config)
    model = build_model(config, dataset, (config.model.state_size,) * config.model.num_blocks, recurrence)
    variables = jax.jit(lambda key, x: model.init({"params": key}, x, train=False))(jax.random.PRNGKey(SEED),
                                                                                    dataset.train_x[:2])
    with records.claimed(folder, config, SEED):
        metrics = records.metrics_record(config, SEED, status=status, recurrence=recurrence,
                                         summary={"train_time_s": 12.5})
        records.save_run(folder, metrics, {}, variables)
    return folder


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"), n_train=300, n_test=100)


def test_a_missing_or_unfinished_teacher_is_one_line_naming_the_command(tmp_path, mnist_dir):
    student = get_config("smnist_distill_n13", "smoke", STUDENT)
    for make in (lambda: None, lambda: write_teacher(tmp_path, student, mnist_dir, status="failed")):
        make()
        with pytest.raises(CompressmError) as info:
            distill.load_teacher(student, SEED, tmp_path)
        message = str(info.value)
        assert "\n" not in message and "smnist_baseline seed 5 (smoke profile)" in message
        assert f"python -m compressm train smnist_baseline --seed {SEED} --profile smoke --runs {tmp_path}" in message
    with pytest.raises(CompressmError, match="whose record .* is missing"):  # reproduce checks before any run
        _plan(["smnist_distill_n13"], [SEED + 1], "smoke", tmp_path, mnist_dir)


@pytest.mark.parametrize("teacher, fragment", [("smnist_nope", "unknown config 'smnist_nope'"),
                                               ("smnist_distill_n47", "itself a distillation config"),
                                               ("scifar_baseline", "trained on scifar, not smnist")])
def test_a_bad_teacher_config_is_a_config_error(teacher, fragment):
    student = get_config("smnist_distill_n13", "smoke", {"objective.teacher": teacher})
    with pytest.raises(ConfigError, match=fragment):
        distill.teacher_config(student)


def test_train_takes_the_teacher_its_config_names_and_no_other(tmp_path, mnist_dir):
    student = get_config("smnist_distill_n13", "smoke", STUDENT)
    dataset = _dataset(student, mnist_dir)
    with pytest.raises(CompressmError, match="pass teacher=distill.load_teacher"):
        train(student, SEED, dataset, progress=False)
    write_teacher(tmp_path, student, mnist_dir)
    teacher = distill.load_teacher(student, SEED, tmp_path)
    with pytest.raises(CompressmError, match="takes no teacher"):
        train(get_config("smnist_scratch_n13", "smoke", STUDENT), SEED, dataset, teacher=teacher, progress=False)
    with pytest.raises(CompressmError, match="learns from smnist_baseline seed 6"):
        train(student, SEED + 1, dataset, teacher=teacher, progress=False)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, mnist_dir):
    """A teacher record and an uninterrupted distillation run of 8 steps."""
    root = tmp_path_factory.mktemp("runs")
    student = get_config("smnist_distill_n13", "smoke", STUDENT)
    teacher_dir = write_teacher(root, student, mnist_dir)
    result = run_experiment("smnist_distill_n13", SEED, "smoke", root=root, data_dir=mnist_dir, overrides=STUDENT,
                            progress=False)
    return root, student, teacher_dir, result, mnist_dir


def test_the_record_keeps_the_teachers_identity_and_the_students_time(distilled):
    root, student, teacher_dir, result, _ = distilled
    folder = records.run_dir(root, student, SEED)
    metrics = records.load_metrics(folder)
    assert metrics["status"] == "complete" and metrics["summary"]["final_state_sizes"] == [13]
    assert metrics["teacher"] == {
        "config": "smnist_baseline", "profile": "smoke", "seed": SEED,
        "params_sha256": hashlib.sha256((teacher_dir / "params.msgpack").read_bytes()).hexdigest(),
        "commit": records.load_metrics(teacher_dir)["environment"]["commit"]}
    assert metrics["summary"]["train_time_s"] > 0  # the student's own steps (with the teacher's forward passes)
    assert all(np.isfinite(row["train_loss"]) for row in metrics["history"])


def test_an_interrupted_distillation_resumes_exactly_and_refuses_a_changed_teacher(tmp_path, monkeypatch, distilled):
    root, student, _, uninterrupted, mnist_dir = distilled
    dataset = _dataset(student, mnist_dir)
    teacher = distill.load_teacher(student, SEED, root)
    real_step, calls = train_module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # after the checkpoint of step 4
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(student, SEED, dataset, out_dir=tmp_path / "run", teacher=teacher, progress=False)
    monkeypatch.setattr(train_module, "train_step", real_step)
    other = teacher._replace(identity={**teacher.identity, "params_sha256": "0" * 64})
    with pytest.raises(CompressmError, match="the teacher changed since this run started"):
        train(student, SEED, dataset, out_dir=tmp_path / "run", teacher=other, progress=False)
    resumed = train(student, SEED, dataset, out_dir=tmp_path / "run", teacher=teacher, progress=False).metrics
    strip = lambda m: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in m["history"]]
    assert resumed["resumes"] == [4] and strip(resumed) == strip(uninterrupted.metrics)
    assert resumed["summary"]["test_acc"] == uninterrupted.metrics["summary"]["test_acc"]
    assert resumed["teacher"] == uninterrupted.metrics["teacher"]


def test_scifar_distillation_on_generated_cifar_files(tmp_path):
    """The sCIFAR students' path (configs only in this project: no CIFAR-10 here) on CIFAR-format files: a
    student of N = 58 learns from an N = 384 teacher record, both with smoke's two blocks of width 16."""
    data_dir = write_fake_cifar10(tmp_path / "data", n_train_per_batch=20, n_test=40)
    overrides = {"steps": 4, "eval_every": 2, "data_limit": 32, "batch_size": 8}
    student = get_config("scifar_distill_n58", "smoke", overrides)
    write_teacher(tmp_path / "runs", student, data_dir)
    result = run_experiment("scifar_distill_n58", SEED, "smoke", root=tmp_path / "runs", data_dir=data_dir,
                            overrides=overrides, progress=False)
    assert result.metrics["summary"]["final_state_sizes"] == [58, 58]
    assert result.metrics["teacher"]["config"] == "scifar_baseline"
    assert records.is_complete(records.run_dir(tmp_path / "runs", student, SEED))
