"""Every shell command the book and the README show runs as written (the rule is on the Setup page, book/setup.md).

Commands come from the ```bash / ```console / ```shell blocks of README.md and book/*.md, the markdown cells of
book/*.ipynb, and inline code in their text that starts with `python -m compressm`, `papermill`, `make` or
`pip` (one that names a subcommand without arguments must exist). A `\\` continues a line, `&&` chains
commands, `#` starts a comment, and a comment `# needs ...` says what a command needs that a test machine
lacks. Every command is checked without running it (`check_command`). Then, in the order shown, the block
commands that train run at the smoke profile and seed 42 in a temporary folder that is also the runs folder,
and the quick ones (`configs`, `download` where the data is, `mkdir`) run as written; each distinct command
once, so a run that several commands make trains once.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA, needs_mnist

from compressm import cli
from compressm.configs import get_config
from compressm.paper import table_configs
from compressm.records import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "book").glob("*.md")), *sorted((REPO / "book").glob("*.ipynb"))]
BLOCK = re.compile(r"^```(?:bash|console|shell)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`((?:python -m compressm|papermill|make|pip) [^`]*)`")
NEEDS = re.compile(r"\s#\s*(needs .*)$")
PYTHON = re.compile(r"(\S*/)?python3?$")
TRAINS, QUICK = {"train", "reproduce"}, {"configs", "download"}
SMOKE_SEED = "42"


def _text(page: Path) -> str:
    if page.suffix == ".ipynb":
        cells = json.loads(page.read_text())["cells"]
        return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    return page.read_text()


def shown_commands() -> list[tuple[str, list[str], str | None, bool]]:
    """(where, argv, what it needs or None, in a block) of every command shown, in page order."""
    found = []
    for page in PAGES:
        text, name = _text(page), page.relative_to(REPO)
        for block in BLOCK.finditer(text):
            first_line = text.count("\n", 0, block.start(1)) + 1
            for offset, line in enumerate(block.group(1).replace("\\\n", " ").splitlines()):
                line = line.removeprefix("$ ")
                needs = NEEDS.search(line)
                argv = shlex.split(line, comments=True)
                while argv:
                    part, argv = (argv[:argv.index("&&")], argv[argv.index("&&") + 1:]) if "&&" in argv else (argv, [])
                    found.append((f"{name}:{first_line + offset}", part, needs and needs.group(1), True))
        for inline in INLINE.finditer(text):
            found.append((f"{name}:{text.count(chr(10), 0, inline.start()) + 1}", shlex.split(inline.group(1)), None,
                          False))
    return found


COMMANDS = shown_commands()


def _compressm_args(argv: list[str]) -> list[str] | None:
    """The arguments after `python -m compressm`, or None for another program."""
    if len(argv) >= 3 and PYTHON.fullmatch(argv[0]) and argv[1:3] == ["-m", "compressm"]:
        return argv[3:]
    return None


def check_command(argv: list[str]) -> None:
    """AssertionError unless the command would start: its program's own parser accepts it, and the configs,
    notebook parameters and files it names exist. `make` is dry-run and its `python -m compressm` lines checked."""
    args = _compressm_args(argv)
    if args is not None:
        try:  # a command named without its arguments (`python -m compressm reproduce`) must exist
            parsed = cli.parser().parse_args(args + ["--help"] * (len(args) == 1))
        except SystemExit as stop:
            assert stop.code == 0, f"python -m compressm rejects {shlex.join(args)}"
            return  # --help
        if parsed.command in TRAINS:
            names = [parsed.config] if parsed.command == "train" else parsed.config or table_configs(parsed.table)
            for name in names:
                get_config(name, parsed.profile)
    elif argv[0] == "papermill":
        import papermill as pm
        from papermill.cli import papermill as papermill_cli

        options = papermill_cli.make_context("papermill", argv[1:]).params
        declared = pm.inspect_notebook(str(REPO / options["notebook_path"]))
        assert {name for name, _ in options["parameters"]} <= set(declared), options["parameters"]
    elif argv[0] == "make":
        dry = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        for line in dry.stdout.splitlines():
            if _compressm_args(shlex.split(line)) is not None:
                check_command(shlex.split(line))
    elif Path(argv[0]).name == "pip":
        for option, value in zip(argv, argv[1:]):
            assert option not in ("-r", "-e") or (REPO / value).exists(), f"{value} is not in the repository"
    elif argv[0] == "mkdir" or (PYTHON.fullmatch(argv[0]) and argv[1:3] == ["-m", "venv"]):
        pass
    else:
        raise AssertionError(f"no rule for {argv[0]!r}: add one to check_command (and to the Setup page)")


def _smoke_path(token: str) -> str:
    """'runs/cpu/x/seed_7/train.ipynb' -> 'runs/smoke/x/seed_42/train.ipynb'; other tokens unchanged."""
    return re.sub(r"seed_\d+", f"seed_{SMOKE_SEED}", re.sub(r"runs/(paper|cpu)/", "runs/smoke/", token))


def smoke_version(argv: list[str]) -> list[str]:
    """A command that trains, at the smoke profile and seed 42: profile and seed options and run folders in paths
    changed, everything else as shown; reproduce gets --no-book (tests/test_book.py builds the book)."""
    smoke = {"--profile": "smoke", "--seed": SMOKE_SEED, "profile": "smoke", "seed": SMOKE_SEED}
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token in ("--profile", "--seed"):
            out += [token, smoke[token]]
            i += 2
        elif token == "-p" and argv[i + 1] in ("profile", "seed"):
            out += [token, argv[i + 1], smoke[argv[i + 1]]]
            i += 3
        elif token == "--seeds":
            out += [token, SMOKE_SEED]
            i += 1
            while i < len(argv) and argv[i].isdigit():
                i += 1
        else:
            out.append(_smoke_path(token))
            i += 1
    assert "smoke" in out, f"{shlex.join(argv)} trains but names no profile: show --profile"
    reproduce = (_compressm_args(argv) or [None])[0] == "reproduce"
    return out + ["--no-book"] if reproduce and "--no-book" not in out else out


def _what_runs(argv: list[str]) -> list[str] | None:
    """The command the test runs for a block command: its smoke version, itself, or None (check only)."""
    args = _compressm_args(argv)
    if argv[0] == "papermill" or (args and args[0] in TRAINS):
        return smoke_version(argv)
    if argv[0] == "mkdir":
        return [_smoke_path(token) for token in argv]
    return argv if args and args[0] in QUICK else None


@pytest.mark.parametrize("where, argv, needs, in_block", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_shown_parses(where, argv, needs, in_block):
    check_command(argv)
    if needs:
        pytest.skip(f"parses; not run, it {needs}")


def test_the_pages_show_the_commands_a_reader_needs():
    shown = {shlex.join(argv) for _, argv, _, in_block in COMMANDS if in_block}
    assert {"python -m compressm download smnist", "make book", "make test",
            "python3 -m venv .venv", ".venv/bin/pip install -r requirements.txt",
            "python -m compressm reproduce --config smnist_tau0.02 --profile cpu --seeds 7 --no-book"} <= shown
    assert smoke_version(shlex.split("papermill book/train.ipynb runs/cpu/a/seed_7/train.ipynb -p seed 7 -p profile"
                                     " cpu -p out_dir runs/cpu/a/seed_7")) == shlex.split(
        "papermill book/train.ipynb runs/smoke/a/seed_42/train.ipynb -p seed 42 -p profile smoke"
        " -p out_dir runs/smoke/a/seed_42")
    assert smoke_version(shlex.split("python -m compressm reproduce --table 2 --profile cpu --seeds 8 42 123")) == \
        shlex.split("python -m compressm reproduce --table 2 --profile smoke --seeds 42 --no-book")


@pytest.mark.slow
@needs_mnist
def test_the_commands_shown_run_as_written_at_the_smoke_profile(tmp_path):
    (tmp_path / "book").symlink_to(REPO / "book")  # paths relative to the repository root resolve
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "COMPRESSM_RUNS": str(tmp_path / "runs"), "COMPRESSM_DATA": str(SHARED_DATA),
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    done, failed = set(), []
    for where, argv, needs, in_block in COMMANDS:
        command = _what_runs(argv) if in_block and not needs else None
        if command is None or tuple(command) in done:
            continue
        done.add(tuple(command))
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            failed.append(f"{where}: {shlex.join(command)}\n{result.stderr[-2000:]}")
    assert not failed, "\n\n".join(failed)
    run = tmp_path / "runs" / "smoke" / "smnist_tau0.01" / f"seed_{SMOKE_SEED}"  # the Reproducing page's new seed
    assert (run / "metrics.json").is_file() and (run / "train.ipynb").is_file()
