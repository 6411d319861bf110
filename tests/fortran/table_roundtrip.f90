! Reads an algorithm table with denoise_algorithms and writes it back (tests/fortran/test_denoise_train.py).
! Usage: table_roundtrip IN OUT BATCH HEIGHT WIDTH fp32|tf32
program table_roundtrip
  use, intrinsic :: iso_c_binding, only: c_int
  use denoise_algorithms, only: algorithm_table_t, read_table, write_table
  implicit none
  type(algorithm_table_t) :: table
  character(len=512) :: path_in, path_out, text
  integer(c_int) :: sizes(3)
  integer :: i

  call get_command_argument(1, path_in)
  call get_command_argument(2, path_out)
  do i = 1, 3
    call get_command_argument(2 + i, text)
    read(text, *) sizes(i)
  end do
  call get_command_argument(6, text)
  call read_table(trim(path_in), sizes(1), sizes(2), sizes(3), trim(text) == "fp32", table)
  call write_table(trim(path_out), table)
end program table_roundtrip
