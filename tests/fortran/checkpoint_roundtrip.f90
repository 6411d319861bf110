! Reads a training checkpoint with denoise_checkpoint_folder and denoise_run_position, checked
! against a dataset and batch size, and saves it again as denoise_train does, with its position
! (tests/fortran/test_checkpoint.py: Python reads what this writes and the other way round).
! Usage: checkpoint_roundtrip IN OUT DATA BATCH
program checkpoint_roundtrip
  use, intrinsic :: iso_fortran_env, only: int64
  use denoise_checkpoint_folder, only: checkpoint_t, load_checkpoint, save_checkpoint
  use denoise_dataset_meta, only: dataset_meta_t, read_dataset_meta
  use denoise_run_position, only: position_t, position_from, run_extra
  implicit none
  character(len=4096) :: path_in, path_out, data_dir, text
  type(checkpoint_t) :: saved
  type(dataset_meta_t) :: data
  type(position_t) :: position
  integer :: batch

  call get_command_argument(1, path_in)
  call get_command_argument(2, path_out)
  call get_command_argument(3, data_dir)
  call get_command_argument(4, text)
  read(text, *) batch
  call read_dataset_meta(trim(data_dir), data)
  call load_checkpoint(trim(path_in), "--resume", .false., saved)
  position = position_from(saved, batch, data%count / batch, .false., data)
  call save_checkpoint(trim(path_out), saved%params, position%step, run_extra(position, &
      data%count / batch, '{"shuffle": false}', data))
  print '(A, I0, A, I0, A, I0)', "step ", position%step, " epoch ", position%epoch, " batch ", position%batch
end program checkpoint_roundtrip
