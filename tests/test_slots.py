"""The trial budget shared by processes: exactly ``n_trials`` trials, each run once.

Several real processes claim trials of one study as fast as they can (no objective), on a
SQLite file (where claims add the trials) and on PostgreSQL (where a pool of slots waits,
topped up from the budget when it runs dry); the study must end with exactly its budget, every
trial told once. The injected fault: each claimer pauses 50 ms between counting the study's
trials and adding, so that without the lock around the two, several processes count the same
free places and each adds trials (seen: 25 to 27 trials for a budget of 24 on SQLite).
"""

import subprocess
import sys
import time

import optuna
import pytest
from _servers import pg_url, postgres_database
from optuna.trial import TrialState

from mlx import search
from mlx.search import slots

# One claimer: waits for the start signal, then claims and tells trials until none is left.
_CLAIMER = """
import os, sys, time
from pathlib import Path
import optuna
from mlx.search import open_storage
from mlx.search import slots
from mlx.search.slots import Slots

counted = slots._missing


def counted_slowly(*args):
    missing = counted(*args)
    time.sleep(0.05)
    return missing


slots._missing = counted_slowly
url, name, go = sys.argv[1:4]
storage = open_storage(url)
study = optuna.load_study(study_name=name, storage=storage)
claims = Slots(study, storage)
Path(f"{go}.{os.getpid()}").touch()  # ready
while not Path(go).exists():
    time.sleep(0.005)
while (claimed := claims.claim()) is not None:
    trial, _ = claimed
    trial.set_user_attr("pid", os.getpid())
    time.sleep(0.02)  # a trial takes time: on a busy machine one process could take them all
    study.tell(trial, float(trial.number))
"""


def _race(url, n_trials, models=None, processes=4, tmp_path=None):
    """Run ``processes`` claimers on a new study of budget ``n_trials``; return the study."""
    storage = search.open_storage(url)
    study = search.create_study("race", storage=storage, seed=0)
    search.add_budget(study, storage, n_trials, models)
    go = tmp_path / "go"
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url, "race", str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < processes and time.monotonic() < deadline:
        time.sleep(0.05)  # their imports
    go.touch()
    for claimer in claimers:
        _, err = claimer.communicate(timeout=120)
        assert claimer.returncode == 0, err[-3000:]
    return optuna.load_study(study_name="race", storage=storage)


def _assert_exactly(study, n_trials):
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == n_trials, f"{len(trials)} trials for a budget of {n_trials}"
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) > 1  # the processes did share the work


def test_a_new_study_holds_its_budget_but_no_trial_yet(tmp_path):
    """Trials are added as they are claimed: nothing WAITING for the sampler to re-read."""
    storage = search.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = search.create_study("lazy", storage=storage, seed=0)
    search.add_budget(study, storage, 5)
    assert study.trials == [] and search.planned(study) == 5
    claims = slots.Slots(study, storage)
    for _ in range(5):
        trial, _ = claims.claim()
        study.tell(trial, 1.0)
    assert claims.claim() is None
    assert len(study.trials) == 5


def test_processes_on_sqlite_run_exactly_the_budget(tmp_path):
    study = _race(f"sqlite:///{tmp_path / 'optuna.db'}", 24, tmp_path=tmp_path)
    _assert_exactly(study, 24)


@pytest.mark.slow  # the default group is near its 6-minute budget
def test_processes_on_postgres_run_exactly_the_budget(tmp_path):
    with postgres_database("mlx_slots") as db:
        study = _race(pg_url(db), 24, tmp_path=tmp_path)
        _assert_exactly(study, 24)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_fixed_shares_hold_across_processes(tmp_path, database):
    if database == "postgresql":
        with postgres_database("mlx_slots") as db:
            _assert_fixed_shares(pg_url(db), tmp_path)
    else:
        _assert_fixed_shares(f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path)


def _assert_fixed_shares(url, tmp_path):
    study = _race(url, 13, models=["a", "b", "c"], processes=3, tmp_path=tmp_path)
    _assert_exactly(study, 13)
    models = [
        t.params.get(search.MODEL_PARAM) or t.system_attrs["fixed_params"][search.MODEL_PARAM]
        for t in study.trials
    ]
    assert {m: models.count(m) for m in "abc"} == {"a": 5, "b": 4, "c": 4}


def test_a_smaller_budget_on_resume_adds_no_trial_and_a_larger_one_adds(tmp_path):
    storage = search.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = search.create_study("resize", storage=storage, seed=0)
    search.add_budget(study, storage, 4)
    claims = slots.Slots(study, storage)
    for _ in range(3):
        trial, _ = claims.claim()
        study.tell(trial, 1.0)
    search.set_budget(study, storage, 2)
    assert claims.claim() is None and len(study.trials) == 3  # finished trials stay
    search.set_budget(study, storage, 5)
    for _ in range(2):
        trial, _ = claims.claim()
        study.tell(trial, 1.0)
    assert claims.claim() is None and len(study.trials) == 5


def test_on_postgres_a_pool_of_slots_waits_not_the_whole_budget():
    """At most POOL slots wait; a claim that finds none tops the pool up from the budget."""
    with postgres_database("mlx_slots") as db:
        storage = search.open_storage(pg_url(db))
        study = search.create_study("pool", storage=storage, seed=0)
        search.add_budget(study, storage, 3 * slots.POOL + 2, models=["a", "b"])

        def waiting():
            return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

        assert waiting() == slots.POOL
        claims = slots.Slots(study, storage)
        most = 0
        while (claimed := claims.claim()) is not None:
            most = max(most, waiting())
            study.tell(claimed[0], 1.0)
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 3 * slots.POOL + 2 and most <= slots.POOL
        assert all(t.state == TrialState.COMPLETE for t in trials)
        models = [t.system_attrs["fixed_params"][search.MODEL_PARAM] for t in trials]
        assert models == ["a", "b"] * (len(trials) // 2)  # the turns of the fixed shares

        # Resized on resume: a smaller budget adds nothing, a larger one a pool at most.
        assert search.set_budget(study, storage, 10) == 0 and waiting() == 0
        assert search.set_budget(study, storage, len(trials) + 20) == slots.POOL
        assert waiting() == slots.POOL
        assert search.set_budget(study, storage, len(trials) + 3) == -(slots.POOL - 3)
        assert waiting() == 3


def test_a_broken_advisory_lock_connection_releases_the_lock_and_keeps_the_error(monkeypatch):
    """The fault: the unlock fails (as on a connection Ctrl-C broke); the lock must not stay."""
    import sqlalchemy

    with postgres_database("mlx_slots") as db:
        storage = search.open_storage(pg_url(db))
        study = search.create_study("lock", storage=storage, seed=0)
        study_id = storage.get_study_id_from_name("lock")
        text = sqlalchemy.text

        def failing_unlock(sql):
            return text("SELECT no_such_function()") if "unlock" in sql else text(sql)

        monkeypatch.setattr(slots.sqlalchemy, "text", failing_unlock)
        with (
            pytest.raises(ValueError, match="the block's own"),
            slots._advisory_lock(storage, study_id),
        ):
            raise ValueError("the block's own error")
        monkeypatch.undo()

        engine = sqlalchemy.create_engine(pg_url(db))
        try:
            with engine.connect() as other:
                taken = other.execute(
                    text("SELECT pg_try_advisory_lock(:kind, :study)"),
                    {"kind": slots._LOCK_CLASS, "study": study_id},
                ).scalar()
            assert taken, "the advisory lock is still held by the broken connection"
        finally:
            engine.dispose()
        assert study.trials == []


@pytest.mark.parametrize("lost", ["between two slots", "during a slot's write"])
def test_a_top_up_that_loses_its_lock_counts_the_trials_again(monkeypatch, lost):
    """The fault: a server restart ends the top-up's lock session after its second slot.

    Another process then tops the pool up; the first must count again, not add the slots it
    counted before (seen in the fresh-clone check: 15 trials for a budget of 12). Red without
    the lock checked before each slot (between) or with the failed write retried on its own
    (during).
    """
    import threading

    import sqlalchemy
    from optuna.exceptions import StorageInternalError

    with postgres_database("mlx_slots") as db:
        storage = search.open_storage(pg_url(db))
        study = search.create_study("restart", storage=storage, seed=0)
        study_id = storage.get_study_id_from_name("restart")
        other = search.open_storage(pg_url(db))
        add_trial, calls = study.add_trial, []

        def restart():
            """End the lock's session, then let another process top up to the whole pool."""
            engine = sqlalchemy.create_engine(pg_url(db))
            try:
                with engine.connect() as connection:
                    ended = connection.execute(
                        sqlalchemy.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_locks"
                            " WHERE locktype = 'advisory' AND classid = :kind AND objid = :study"
                            # Only this test's database: another test's study has the same id.
                            " AND database = (SELECT oid FROM pg_database"
                            " WHERE datname = current_database())"
                        ),
                        {"kind": slots._LOCK_CLASS, "study": study_id},
                    ).scalars()
                    assert list(ended) == [True]
            finally:
                engine.dispose()
            theirs = optuna.load_study(study_name="restart", storage=other)
            topping_up = threading.Thread(
                target=slots._top_up_locked, args=(theirs, other, study_id, slots.POOL)
            )
            topping_up.start()
            topping_up.join(timeout=60)

        def add_trial_hit_by_a_restart(trial):
            calls.append(trial)
            if len(calls) == 2 and lost == "between two slots":
                add_trial(trial)
                restart()
            elif len(calls) == 3 and lost == "during a slot's write":
                restart()
                raise StorageInternalError("server closed the connection unexpectedly")
            else:
                add_trial(trial)

        monkeypatch.setattr(study, "add_trial", add_trial_hit_by_a_restart)
        search.add_budget(study, storage, 3 * slots.POOL)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert len(waiting) == slots.POOL, f"{len(waiting)} slots wait for a pool of {slots.POOL}"


def test_the_pool_is_topped_up_while_a_trial_runs_and_a_failed_top_up_is_done_again(
    monkeypatch, caplog
):
    """After a claim took the last slot it knew of, the pool is topped up on a thread.

    The loop asks for it as the trial's fit begins (``top_up_ahead``). The fault: that top-up
    fails (the server went away); the next claim then finds no slot and tops up itself. Either
    way the budget runs exactly, each trial once.
    """
    import threading

    from optuna.exceptions import StorageInternalError

    with postgres_database("mlx_slots") as db:
        storage = search.open_storage(pg_url(db))
        study = search.create_study("ahead", storage=storage, seed=0)
        search.add_budget(study, storage, 2 * slots.POOL + 3)
        claims = slots.Slots(study, storage)
        for _ in range(slots.POOL):
            trial, _ = claims.claim()
            claims.top_up_ahead()
            study.tell(trial, 1.0)
        claims.close()
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert len(waiting) == slots.POOL, "the pool was not topped up ahead of the next claim"

        top_up, failed = slots._top_up_locked, []

        def failing_on_the_thread(*args):
            if threading.current_thread().name == "mlx-slots" and not failed:
                failed.append(True)
                raise StorageInternalError("server closed the connection unexpectedly")
            return top_up(*args)

        monkeypatch.setattr(slots, "_top_up_locked", failing_on_the_thread)
        while (claimed := claims.claim()) is not None:
            claims.top_up_ahead()
            study.tell(claimed[0], 1.0)
        claims.close()
        assert failed and "slots not topped up ahead" in caplog.text
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 2 * slots.POOL + 3
        assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_claim_stopped_before_its_trial_starts_fails_it_as_interrupted(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) after the claim took the trial, before the claim returned.

    Left RUNNING, the trial was reported lost on resume ("its process stopped") though its
    process had stopped cleanly; now it is interrupted, and a slot replaces it.
    """
    storage = search.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = search.create_study("stopped-claim", storage=storage, seed=0)
    search.add_budget(study, storage, 2)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(slots.optuna, "Trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        slots.Slots(study, storage).claim()
    monkeypatch.undo()
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[slots.INTERRUPTED] is True
    assert slots.replace_interrupted(study, study.get_trials(deepcopy=False)) == [trial.number]
    # The run's summary tells an interrupted trial from a lost one (its process died).
    counted = slots.budget(study)
    assert (counted.interrupted, counted.lost, counted.waiting) == (1, 0, 1)
    slots.Slots(study, storage).claim()
    search.fail_lost(study, storage, running_are_lost=True)
    counted = slots.budget(study)
    assert (counted.interrupted, counted.lost, counted.waiting) == (1, 1, 1)
