"""train --overwrite's earlier run kept aside (training/earlier_run.py): put back after a failed
start, dropped after the new run's first checkpoint, and a restore cut short finished later."""

from cudnn_denoise import checkpoint
from cudnn_denoise.params import init_params
from cudnn_denoise.training.earlier_run import ASIDE_NAME, EarlierRun, recover

NAMES = ("checkpoint", "losses.tsv", "metrics.jsonl")


def earlier_run(out):
    checkpoint.save(out / "checkpoint", init_params(0), step=7)
    (out / "losses.tsv").write_text("7\t0.5\n")
    (out / "metrics.jsonl").write_text('{"step": 7}\n')


def test_a_new_run_without_a_checkpoint_gives_the_earlier_one_back(tmp_path):
    earlier_run(tmp_path)
    with EarlierRun(tmp_path, NAMES):
        assert not (tmp_path / "checkpoint").exists() and (tmp_path / ASIDE_NAME).is_dir()
        (tmp_path / "losses.tsv").write_text("1\tnan\n")  # the new run's, then it fails
    assert checkpoint.load(tmp_path / "checkpoint").step == 7
    assert (tmp_path / "losses.tsv").read_text() == "7\t0.5\n"
    assert not (tmp_path / ASIDE_NAME).exists()


def test_the_new_runs_first_checkpoint_drops_the_earlier_one(tmp_path):
    earlier_run(tmp_path)
    with EarlierRun(tmp_path, NAMES) as earlier:
        checkpoint.save(tmp_path / "checkpoint", init_params(1), step=1)
        earlier.discard()
    assert checkpoint.load(tmp_path / "checkpoint").step == 1
    assert not (tmp_path / "losses.tsv").exists() and not (tmp_path / ASIDE_NAME).exists()


def test_a_restore_cut_short_is_finished_without_losing_what_came_back(tmp_path):
    earlier_run(tmp_path)
    with EarlierRun(tmp_path, NAMES) as earlier:
        aside = tmp_path / ASIDE_NAME
        # as a kill in the middle of a restore leaves it: new files gone, a log back already
        (aside / ".restoring").touch()
        (aside / "losses.tsv").rename(tmp_path / "losses.tsv")
        earlier._kept = False  # the killed process never got to finish
    recover(tmp_path, NAMES)
    assert checkpoint.load(tmp_path / "checkpoint").step == 7
    assert (tmp_path / "losses.tsv").read_text() == "7\t0.5\n"
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 7}\n'
    assert not (tmp_path / ASIDE_NAME).exists()
