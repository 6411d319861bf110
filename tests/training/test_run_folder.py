"""The run folder's names: the Fortran program writes the ones Python's run_folder gives (it spells
them by hand; fortran_parity compares the folders themselves on a GPU)."""

from pathlib import Path

from cudnn_denoise.training import run_folder

FORTRAN = Path(__file__).resolve().parents[2] / "fortran"


def test_the_fortran_program_writes_the_files_run_folder_names():
    """denoise_train.f90 opens the logs and writes the table; the checkpoint module names its folder."""
    main = (FORTRAN / "denoise_train.f90").read_text()
    for name in (run_folder.METRICS, run_folder.LOSSES, run_folder.ALGORITHMS):
        assert f'out_dir // "/{name}"' in main, f"denoise_train.f90 writes no OUT/{name}"
    folder = (FORTRAN / "denoise_checkpoint_folder.f90").read_text()
    assert f'RUN_SUBFOLDER = "{run_folder.CHECKPOINT}"' in folder


def test_overwrite_sets_aside_the_checkpoint_first_and_every_log():
    assert run_folder.REPLACED[0] == run_folder.CHECKPOINT
    assert set(run_folder.LOGS) <= set(run_folder.REPLACED) and run_folder.ALGORITHMS in run_folder.REPLACED
