! denoise_graph_api's read_engine_table on the file named by the first argument, for batch 4,
! 256 x 256, TF32, FP32 (or with a second argument "bf16", --precision bf16): prints each row as
! `layer direction position engine bias(T/F)`.
program engine_table_read
  use, intrinsic :: iso_c_binding
  use denoise_graph_api, only: engine_table_t, read_engine_table
  implicit none
  type(engine_table_t) :: table
  character(len=1024) :: path, precision
  integer :: i
  call get_command_argument(1, path)
  call get_command_argument(2, precision)
  call read_engine_table(trim(path), 4, 256, 256, .false., precision == "bf16", table)
  do i = 1, table%n
    print '(A, 1X, A, 1X, I0, 1X, I0, 1X, L1)', trim(table%layer(i)), trim(table%direction(i)), &
        table%position(i), table%engine(i), table%bias(i)
  end do
end program engine_table_read
