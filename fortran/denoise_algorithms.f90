! The algorithm table: which cuDNN algorithm, workspace and math type each convolution direction
! uses, as the text file that train writes into its --out (algorithms.txt; docs/fortran.md, "The
! algorithm table") and that denoise_train reads, so that both run the same kernels. A line
! "batch N", "height H", "width W", "math fp32|tf32", then one line per direction:
!   conv2 backward_filter ALGO ALGO_NAME WORKSPACE_BYTES MATH_TYPE MATH_TYPE_NAME
! Lines starting with # are comments; the names are for people (Fortran writes "-").
module denoise_algorithms
  use, intrinsic :: iso_c_binding
  use denoise_check, only: fail, int_text
  implicit none
  private
  public :: algorithm_table_t, DIRECTION_NAMES, FORWARD, BACKWARD_FILTER, BACKWARD_DATA, &
      read_table, write_table

  integer, parameter :: FORWARD = 1, BACKWARD_FILTER = 2, BACKWARD_DATA = 3
  character(len=15), parameter :: DIRECTION_NAMES(3) = [character(len=15) :: "forward", &
      "backward_filter", "backward_data"]

  ! (direction, layer); conv1 has no backward_data (the input needs no gradient): algo stays -1
  type :: algorithm_table_t
    integer(c_int) :: n = 0, h = 0, w = 0
    logical :: strict_fp32 = .false.
    integer(c_int) :: algo(3, 3) = -1
    integer(c_size_t) :: bytes(3, 3) = 0
    integer(c_int) :: math(3, 3) = -1
  end type algorithm_table_t

contains

  ! Read the table at path; it must be for batches of n x 1 x h x w in the given math mode and
  ! name each of the 8 directions once. Any problem ends the program naming the file (status 2).
  subroutine read_table(path, n, h, w, strict_fp32, table)
    character(len=*), intent(in) :: path
    integer(c_int), intent(in) :: n, h, w
    logical, intent(in) :: strict_fp32
    type(algorithm_table_t), intent(out) :: table
    character(len=512) :: line, key, direction, algo_name, math_name, mode
    integer :: unit, iostat, layer, d, value
    integer(c_int) :: algo, math
    integer(c_int64_t) :: bytes

    table%n = n
    table%h = h
    table%w = w
    table%strict_fp32 = strict_fp32
    open(newunit=unit, file=path, action="read", status="old", iostat=iostat)
    if (iostat /= 0) call fail(path // ": cannot be opened (--algorithms)", 2)
    do
      read(unit, '(A)', iostat=iostat) line
      if (iostat /= 0) exit
      if (len_trim(line) == 0 .or. line(1:1) == "#") cycle
      read(line, *, iostat=iostat) key
      select case (trim(key))
      case ("batch", "height", "width")
        read(line, *, iostat=iostat) key, value
        if (iostat == 0) call expect(trim(key), value, merge(n, merge(h, w, key == "height"), &
            key == "batch"))
      case ("math")
        read(line, *, iostat=iostat) key, mode
        if (iostat == 0 .and. ((mode == "fp32") .neqv. strict_fp32)) call fail(path // &
            ": made for --math " // trim(mode) // ", not this run's " // &
            merge("fp32", "tf32", strict_fp32), 2)
      case ("conv1", "conv2", "conv3")
        read(line, *, iostat=iostat) key, direction, algo, algo_name, bytes, math, math_name
        layer = iachar(key(5:5)) - iachar("0")
        d = findloc(DIRECTION_NAMES, trim(direction), dim=1)
        if (d == 0 .or. (layer == 1 .and. d == BACKWARD_DATA) .or. bytes < 0) iostat = 1
        if (iostat == 0) then
          if (table%algo(d, layer) /= -1) call fail(path // ": names " // trim(key) // " " // &
              trim(direction) // " twice", 2)
          table%algo(d, layer) = algo
          table%bytes(d, layer) = int(bytes, c_size_t)
          table%math(d, layer) = math
        end if
      case default
        iostat = 1
      end select
      if (iostat /= 0) call fail(path // ": cannot read the line '" // trim(line) // "'", 2)
    end do
    close(unit)
    if (count(table%algo /= -1) /= 8) call fail(path // ": names " // &
        int_text(int(count(table%algo /= -1), c_int64_t)) // " of the 8 convolution directions", 2)

  contains

    subroutine expect(what, value, mine)
      character(len=*), intent(in) :: what
      integer, intent(in) :: value
      integer(c_int), intent(in) :: mine
      if (value /= mine) call fail(path // ": made for " // what // " " // &
          int_text(int(value, c_int64_t)) // ", this run has " // int_text(int(mine, c_int64_t)), 2)
    end subroutine expect

  end subroutine read_table

  ! Write the table to path, in the format read_table reads.
  subroutine write_table(path, table)
    character(len=*), intent(in) :: path
    type(algorithm_table_t), intent(in) :: table
    integer :: unit, iostat, layer, d

    open(newunit=unit, file=path, action="write", status="replace", iostat=iostat)
    if (iostat /= 0) call fail(path // ": cannot be written", 1)
    write(unit, '(A)') "# cudnn_denoise algorithm table, format 1 (docs/fortran.md), by denoise_train"
    write(unit, '(A, I0)') "batch ", table%n
    write(unit, '(A, I0)') "height ", table%h
    write(unit, '(A, I0)') "width ", table%w
    write(unit, '(A)') "math " // merge("fp32", "tf32", table%strict_fp32)
    do layer = 1, 3
      do d = 1, 3
        if (table%algo(d, layer) == -1) cycle
        write(unit, '(A, I0, 4A, I0, A, I0, A, I0, A)') "conv", layer, " ", &
            trim(DIRECTION_NAMES(d)), " ", "", table%algo(d, layer), " - ", table%bytes(d, layer), &
            " ", table%math(d, layer), " -"
      end do
    end do
    close(unit)
  end subroutine write_table

end module denoise_algorithms
