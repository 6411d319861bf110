! Checksums of float32 arrays, printed exactly as cudnn_denoise.port.checksum prints them in Python.
!
! A checksum is n, the real(c_double) sum of the values added in order, the same sum of their
! absolute values, and the min and max; min and max are NaN if any value is NaN, and a zero min or
! max is reported as +0. The sums must be added in array order: do not build this file with
! -ffast-math or -fassociative-math. format_checksum writes one line,
!   conv1.weight     n=144 sum=1.7585873487405479E-001 abssum=2.1937699473695830E+001 min=... max=...
! with the sums in ES24.16E3 and min and max in ES16.8E3, leading blanks removed, so Python's
! cudnn_denoise.port.checksum.format_checksum gives the same text for the same values.
module cudnn_denoise_checksum
  use, intrinsic :: iso_c_binding, only: c_float, c_double
  use, intrinsic :: iso_fortran_env, only: int64
  use, intrinsic :: ieee_arithmetic, only: ieee_is_nan, ieee_value, ieee_quiet_nan, ieee_class, &
      ieee_negative_zero, operator(==)
  implicit none
  private
  public :: checksum_t, checksum, format_checksum, scientific

  integer, parameter :: SUM_DECIMALS = 16    ! ES24.16E3: 17 significant digits identify a float64
  integer, parameter :: VALUE_DECIMALS = 8   ! ES16.8E3: 9 significant digits identify a float32
  integer, parameter :: NAME_WIDTH = 16      ! names are left-aligned in 16 columns (longer ones kept)

  type :: checksum_t
    integer(int64) :: n = 0
    real(c_double) :: sum = 0          ! ((0 + x(1)) + x(2)) + ...
    real(c_double) :: abssum = 0       ! ((0 + |x(1)|) + |x(2)|) + ...
    real(c_float) :: min = 0
    real(c_float) :: max = 0
  end type checksum_t

contains

  ! The checksum of values(1), values(2), ... in that order; values must not be empty.
  function checksum(values) result(c)
    real(c_float), intent(in) :: values(:)
    type(checksum_t) :: c
    integer(int64) :: i
    logical :: any_nan

    if (size(values) == 0) error stop "checksum of an empty array"
    c%n = size(values, kind=int64)
    c%min = values(1)
    c%max = values(1)
    any_nan = .false.
    do i = 1, c%n
      c%sum = c%sum + real(values(i), c_double)
      c%abssum = c%abssum + abs(real(values(i), c_double))
      if (ieee_is_nan(values(i))) then
        any_nan = .true.
      else if (values(i) < c%min) then
        c%min = values(i)
      else if (values(i) > c%max) then
        c%max = values(i)
      end if
    end do
    if (any_nan) then
      c%min = ieee_value(c%min, ieee_quiet_nan)
      c%max = c%min
    end if
    if (ieee_class(c%min) == ieee_negative_zero) c%min = 0
    if (ieee_class(c%max) == ieee_negative_zero) c%max = 0
  end function checksum

  ! `name n=... sum=... abssum=... min=... max=...`: the line Python's format_checksum writes.
  function format_checksum(name, values) result(line)
    character(len=*), intent(in) :: name
    real(c_float), intent(in) :: values(:)
    character(len=:), allocatable :: line
    type(checksum_t) :: c
    character(len=24) :: n_text

    c = checksum(values)
    write(n_text, '(I0)') c%n
    line = name // repeat(' ', max(0, NAME_WIDTH - len(name))) &
        // ' n=' // trim(n_text) &
        // ' sum=' // scientific(c%sum, SUM_DECIMALS) &
        // ' abssum=' // scientific(c%abssum, SUM_DECIMALS) &
        // ' min=' // scientific(real(c%min, c_double), VALUE_DECIMALS) &
        // ' max=' // scientific(real(c%max, c_double), VALUE_DECIMALS)
  end function format_checksum

  ! value written with ES(decimals+8).(decimals)E3, leading blanks removed (NaN, Infinity, -Infinity
  ! for those values).
  function scientific(value, decimals) result(text)
    real(c_double), intent(in) :: value
    integer, intent(in) :: decimals
    character(len=:), allocatable :: text
    character(len=32) :: edit
    character(len=64) :: buffer

    write(edit, '("(ES", I0, ".", I0, "E3)")') decimals + 8, decimals
    write(buffer, edit) value
    text = trim(adjustl(buffer))
  end function scientific

end module cudnn_denoise_checksum
