"""analysis.executors: the same grid through a local pool, submitit and Ray; failures captured with logs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.executors import executor_options, map_runs
from analysis.executors.local import local_slots
from analysis.executors.logged import run_logged
from analysis.executors.slurm import slurm_executor
from tests import _executor_jobs as jobs

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("local", "slurm", "ray")


@pytest.fixture(autouse=True)
def workers_import_tests(monkeypatch):
    """Workers (spawned, submitit and Ray processes) import the job functions from ``tests``."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + path if path else ""))


@pytest.fixture(scope="module")
def ray_instance():
    """One lean local Ray instance shared by the Ray tests of this module."""
    import ray  # an optional extra for users; the dev extra installs it, so a missing one fails here
    if ray.is_initialized():
        yield ray
        return
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + saved if saved else "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def backend_options(executor: str) -> dict:
    """Options that make each backend run on this machine, without a cluster."""
    return {"sequential": {}, "local": {}, "slurm": {"cluster": "local", "timeout_min": 5, "poll_s": 0.2},
            "ray": {"num_cpus": 1}}[executor]


def grid(root: Path) -> list:
    """Three runs, the last a group of two models (as the batched path sends)."""
    def run(latent_size, seed):
        return {"run_dir": str(root / f"latent_size={latent_size}" / f"seed={seed}"),
                "latent_size": latent_size, "seed": seed}
    return [run(1, 0), run(2, 0), [run(4, 0), run(4, 1)]]


def read_results(root: Path) -> dict:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.glob("*/*/result.json"))}


# ----------------------------------------------------------------------------- the three backends agree


def test_three_backends_give_identical_results(tmp_path):
    import ray
    ray_was_running = ray.is_initialized()
    results, tables = {}, {}
    for executor in BACKENDS:
        root = tmp_path / executor
        seen = []
        options = backend_options(executor)
        if executor == "ray" and not ray_was_running:
            # map_runs starts a local instance itself and must shut it down again
            options["ray_init"] = {"num_cpus": 2, "log_to_driver": False, "configure_logging": False}
        outcomes = map_runs(jobs.grid_job, grid(root), executor=executor, workers=2,
                            log_dir=tmp_path / f"logs-{executor}", callback=seen.append, **options)
        assert [o.ok for o in outcomes] == [True, True, True], [o.error for o in outcomes]
        assert [o.item for o in outcomes] == grid(root)  # the items' order, whatever the completion order
        assert sorted(map(id, seen)) == sorted(map(id, outcomes))  # the callback saw every outcome once
        assert isinstance(outcomes[2].result, list) and len(outcomes[2].result) == 2  # the group item
        for outcome in outcomes:
            log = outcome.log_path.read_text()
            assert "starting run latent_size=" in log and "# done in" in log
            assert "written to file descriptor 2" in log  # output of native code is captured too
        results[executor] = [o.result for o in outcomes]
        tables[executor] = read_results(root)
    assert len(tables["local"]) == 4
    assert results["slurm"] == results["local"] and results["ray"] == results["local"]
    assert tables["slurm"] == tables["local"] and tables["ray"] == tables["local"]
    assert ray.is_initialized() == ray_was_running


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("executor", BACKENDS)
def test_failed_run_is_reported_with_its_log_and_retried(tmp_path, executor, request):
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    items = grid(tmp_path / "runs")[:2] + [{"run_dir": str(tmp_path / "runs" / "latent_size=8" / "seed=0"),
                                             "latent_size": 8, "seed": 0}]
    poisoned = items[1]
    jobs.poison_path(poisoned["run_dir"]).parent.mkdir(parents=True, exist_ok=True)
    jobs.poison_path(poisoned["run_dir"]).touch()
    names = [f"latent_size={i['latent_size']}/seed={i['seed']}" for i in items]

    first = map_runs(jobs.grid_job, items, executor=executor, workers=2, log_dir=tmp_path / "logs",
                     names=names, **backend_options(executor))
    assert [o.ok for o in first] == [True, False, True]
    failed = first[1]
    assert failed.error == "RuntimeError: injected failure in seed=0" and failed.result is None
    assert failed.log_path == tmp_path / "logs" / "latent_size=2" / "seed=0.log"
    log = failed.log_path.read_text()
    assert "starting run latent_size=2" in log and "Traceback" in log and "injected failure" in log
    finished = {i["run_dir"]: os.stat(jobs.result_path(i["run_dir"])) for i in items if jobs.is_done(i)}
    assert len(finished) == 2 and not jobs.is_done(poisoned)

    # The node is repaired; the next invocation runs only what is not done and completes the grid.
    jobs.poison_path(poisoned["run_dir"]).unlink()
    todo = [i for i in items if not jobs.is_done(i)]
    second = map_runs(jobs.grid_job, todo, executor=executor, log_dir=tmp_path / "logs",
                      names=[n for n, i in zip(names, items) if i in todo], **backend_options(executor))
    assert todo == [poisoned] and [o.ok for o in second] == [True]
    assert "# done in" in second[0].log_path.read_text()
    assert all(jobs.is_done(i) for i in items)
    for run_dir, before in finished.items():  # finished results were not touched
        after = os.stat(jobs.result_path(run_dir))
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("executor", BACKENDS)
def test_a_dying_worker_takes_down_only_its_own_run(tmp_path, executor, request):
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    items = grid(tmp_path / "runs")[:2]
    items[0]["crash"] = True  # SIGKILL: what an out-of-memory kill or a segfault looks like
    outcomes = map_runs(jobs.grid_job, items, executor=executor, workers=2, log_dir=tmp_path / "logs",
                        **backend_options(executor))
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error and outcomes[0].result is None and outcomes[0].seconds is None
    log = outcomes[0].log_path.read_text()
    assert "starting run latent_size=1" in log and "# map_runs:" in log  # the parent recorded the death
    assert jobs.is_done(items[1]) and not jobs.is_done(items[0])


# ----------------------------------------------------------------------------- local pool details


def test_a_local_worker_is_pinned_to_its_gpu_and_uses_one_thread(tmp_path):
    # Pretend GPU 3 exists: only CUDA_VISIBLE_DEVICES is set, the job never touches CUDA.
    # (Round-robin over several GPUs is checked on local_slots below, without spawning.)
    outcome, = map_runs(jobs.environment_job, ["x"], workers=1, log_dir=tmp_path, gpus=["3"],
                        threads_per_worker=1)
    assert outcome.ok, outcome.error
    env = outcome.result
    assert env["cuda_visible_devices"] == "3" and env["omp_num_threads"] == "1" and env["torch_threads"] == 1
    assert env["pid"] != os.getpid()  # a run of the local pool is its own process


def test_local_slots():
    slots = local_slots(workers=3, gpus=["2", "5"], threads_per_worker=2)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["2", "5", "2"]  # round-robin over the GPUs
    assert all(s["OMP_NUM_THREADS"] == "2" for s in slots)
    assert len(local_slots(workers=None, gpus=["0", "1"])) == 2  # one slot per GPU by default
    cpu = local_slots(workers=2, gpus=[])
    assert len(cpu) == 2 and all("CUDA_VISIBLE_DEVICES" not in s for s in cpu)
    assert int(cpu[0]["OMP_NUM_THREADS"]) == max(1, len(os.sched_getaffinity(0)) // 2)
    with pytest.raises(ValueError, match="threads_per_worker"):
        local_slots(workers=1, gpus=[], threads_per_worker=0)


def test_a_result_larger_than_a_pipe_buffer_comes_back(tmp_path):
    outcomes = map_runs(jobs.large_result_job, [1 << 20], workers=1, log_dir=tmp_path, timeout_min=5)
    assert outcomes[0].ok and outcomes[0].result == jobs.large_result_job(1 << 20)


def test_sequential_executor_runs_here_and_still_captures_failures(tmp_path):
    items = grid(tmp_path / "runs")
    jobs.poison_path(items[1]["run_dir"]).parent.mkdir(parents=True, exist_ok=True)
    jobs.poison_path(items[1]["run_dir"]).touch()
    outcomes = map_runs(jobs.environment_job, [0], executor="sequential", log_dir=tmp_path / "a")
    assert outcomes[0].result["pid"] == os.getpid()
    seen = []
    outcomes = map_runs(jobs.grid_job, items, executor="sequential", log_dir=tmp_path / "b", callback=seen.append)
    assert [o.ok for o in outcomes] == [True, False, True] and seen == outcomes  # in order, each reported
    assert "RuntimeError: injected failure" in outcomes[1].log_path.read_text()
    assert isinstance(outcomes[2].result, list) and len(outcomes[2].result) == 2  # the group item


# ----------------------------------------------------------------------------- slurm without a cluster


def sweep_parser():
    """The real ``entropy-ae sweep`` parser, so the test also proves the flags are wired into the CLI."""
    from analysis.cli import build_parser

    parser = build_parser()

    class SweepOnly:
        def parse_args(self, argv):
            return parser.parse_args(["sweep", "--out", "unused", *argv])

    return SweepOnly()


def test_an_option_for_another_backend_is_refused_by_the_sweep_command(tmp_path, capsys):
    from analysis.cli import main

    code = main(["sweep", "--data", "synthetic[n_train=64,n_val=16,n_test=32]", "--image-size", "16",
                 "--latent-sizes", "1", "--seeds", "0", "--epochs", "1", "--out", str(tmp_path / "s"),
                 "--executor", "local", "--slurm-partition", "gpu"])
    assert code == 2
    assert "--slurm-partition" in capsys.readouterr().err
    assert not (tmp_path / "s" / "results.csv").exists()


def test_slurm_command_line_options_reach_the_job_array_script(tmp_path):
    """From ``entropy-ae sweep`` flags to the sbatch script, with submitit's own SLURM mock (no cluster here)."""
    from submitit.slurm import test_slurm
    args = sweep_parser().parse_args(
        ["--executor", "slurm", "--slurm-partition", "gpu", "--slurm-gpus-per-node", "1", "--slurm-cpus-per-task",
         "4", "--slurm-mem-gb", "16", "--timeout-min", "90", "--slurm-setup", "module load cuda",
         "--slurm-param", "qos=high"])
    options = executor_options(args)
    with test_slurm.mocked_slurm():
        executor = slurm_executor(tmp_path, workers=4, **options)
        array = executor.map_array(run_logged, [jobs.grid_job] * 10, list(range(10)), ["x"] * 10, [4] * 10)
        script = Path(array[0].paths.submission_file).read_text()
    for line in ("#SBATCH --array=0-9%4", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB", "#SBATCH --time=90", "#SBATCH --qos=high",
                 "module load cuda"):
        assert line in script, f"{line!r} missing from\n{script}"
    assert len({job.job_id.split("_")[0] for job in array}) == 1  # one array, not ten jobs


def test_command_line_options_for_another_executor_are_refused():
    parser = sweep_parser()
    assert executor_options(parser.parse_args(["--executor", "ray", "--ray-num-gpus", "0.25"])) == {"num_gpus": 0.25}
    assert executor_options(parser.parse_args([])) == {}
    with pytest.raises(ValueError, match="--slurm-partition do\\(es\\) not apply to --executor local"):
        executor_options(parser.parse_args(["--slurm-partition", "gpu"]))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        executor_options(parser.parse_args(["--executor", "slurm", "--slurm-param", "qos"]))


# ----------------------------------------------------------------------------- bad input


def test_bad_arguments_are_refused_before_anything_runs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="executor must be one of sequential, local, slurm, ray"):
        map_runs(jobs.grid_job, [], executor="dask")
    with pytest.raises(ValueError, match="in_process do not apply to the 'local' executor"):
        map_runs(jobs.grid_job, [1], log_dir=tmp_path, in_process=True)  # in this process: "sequential"
    with pytest.raises(ValueError, match="timeout_min do not apply to the 'sequential' executor; it takes no"):
        map_runs(jobs.grid_job, [1], executor="sequential", log_dir=tmp_path, timeout_min=5)
    with pytest.raises(ValueError, match="module-level function"):
        map_runs(lambda item: item, [1], log_dir=tmp_path)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        map_runs(jobs.grid_job, [1], workers=0, log_dir=tmp_path)
    with pytest.raises(ValueError, match="names must be unique"):
        map_runs(jobs.grid_job, [1, 2], log_dir=tmp_path, names=["a", "a"])
    with pytest.raises(ValueError, match="relative path inside log_dir"):
        map_runs(jobs.grid_job, [1], log_dir=tmp_path, names=["../escape"])
    with pytest.raises(ValueError, match="slurm_partition do not apply to the 'local' executor"):
        map_runs(jobs.grid_job, [1], log_dir=tmp_path, slurm_partition="gpu")
    with pytest.raises(ValueError, match="log_dir is required for the slurm executor"):
        map_runs(jobs.grid_job, [1], executor="slurm")
    with pytest.raises(ValueError, match="bad slurm option"):
        map_runs(jobs.grid_job, [1], executor="slurm", log_dir=tmp_path / "slurm", cluster="local",
                 slurm_partiton="gpu")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'entropy-ae\[ray\]'"):
        map_runs(jobs.grid_job, [1], executor="ray", log_dir=tmp_path)
    assert map_runs(jobs.grid_job, [], log_dir=tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["slurm"]  # nothing ran: no log written


# ----------------------------------------------------------------------------- the real sweep

TINY_DATA = "synthetic[n_train=64,n_val=16,n_test=32]"


def comparable(table):
    """The results table without wall-clock timings, which legitimately differ between runs."""
    return table.drop(columns=[c for c in table.columns if c.endswith("_seconds")]).reset_index(drop=True)


def test_a_tiny_sweep_gives_the_same_results_table_on_every_backend(tmp_path, ray_instance):
    from analysis.sweep import run_sweep
    from entropy_ae.data import load_data

    data = load_data(TINY_DATA, image_size=16)
    tables = {}
    for executor in ("sequential", *BACKENDS):
        out = tmp_path / executor
        table = run_sweep(data, [1, 2], [0], 1, out, executor=executor, workers=2, progress=False,
                          **backend_options(executor))
        assert len(table) == 2 and sorted(table["latent_size"]) == [1, 2]
        assert table["auroc"].notna().all()
        tables[executor] = comparable(pd.read_csv(out / "results.csv"))
    for executor in ("sequential", "slurm", "ray"):
        pd.testing.assert_frame_equal(tables[executor], tables["local"], check_exact=True)


def test_a_sweep_run_that_fails_on_its_node_is_reported_and_completed_by_the_next_invocation(tmp_path):
    from analysis.sweep import SweepError, run_dir_for, run_sweep
    from entropy_ae.data import load_data

    data = load_data(TINY_DATA, image_size=16)
    out = tmp_path / "sweep"
    blocked = run_dir_for(out, data.name, 2, 0)
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a stale file where the run directory must go")  # saving the run fails on the node
    with pytest.raises(SweepError) as failure:
        run_sweep(data, [1, 2], [0], 1, out, executor="local", workers=2, progress=False)
    message = str(failure.value)
    assert "1 of 2 runs failed" in message and str(blocked) in message
    log_path = Path(message.split("(log: ")[1].split(")")[0])
    assert log_path == out / "logs" / data.name / "latent_size=2" / "seed=0.log"  # named after its run
    log = log_path.read_text()
    assert "Traceback" in log and ("FileExistsError" in log or "NotADirectoryError" in log)
    done = run_dir_for(out, data.name, 1, 0) / "metrics.json"
    before = os.stat(done)
    assert len(pd.read_csv(out / "results.csv")) == 1  # the finished run is in the table already

    blocked.unlink()
    table = run_sweep(data, [1, 2], [0], 1, out, executor="local", workers=2, progress=False)
    assert sorted(table["latent_size"]) == [1, 2]
    after = os.stat(done)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not retrained


def test_slurm_without_slurm_is_an_error_not_a_quiet_local_run(tmp_path, monkeypatch, capsys):
    from analysis.executors import ExecutorUnavailable, check_backend
    from analysis.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch (nor srun) on PATH
    with pytest.raises(ExecutorUnavailable, match="(?s)SLURM was not found.*no sbatch.*login node.*--executor local"):
        map_runs(jobs.grid_job, grid(tmp_path / "runs"), executor="slurm", log_dir=tmp_path / "logs")
    with pytest.raises(ExecutorUnavailable, match="SLURM was not found"):
        check_backend("slurm")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()  # nothing ran
    check_backend("slurm", cluster="local")  # the tests' way of running an array without a cluster still works
    # The sweep command says so before it measures or trains anything.
    code = main(["sweep", "--data", TINY_DATA, "--image-size", "16", "--latent-sizes", "1", "--seeds", "0",
                 "--epochs", "1", "--out", str(tmp_path / "sweep"), "--executor", "slurm"])
    assert code == 2 and "SLURM was not found on this machine (no sbatch on PATH)" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
