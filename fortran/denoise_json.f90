! Reading the flat fields of our JSON files (dataset.json, a checkpoint's manifest.json) by key:
! the value after the first "key": is a number, a string without commas, true/false/null or an
! array of numbers. Keys are looked up anywhere in the text, so a key must be unique in its file
! (ours are: the nested objects of a manifest's "extra" use other names). A full JSON parser is
! beyond this program. Every failure ends it naming the file (status 2, denoise_check's fail).
module denoise_json
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  use, intrinsic :: iso_fortran_env, only: int64
  use denoise_check, only: fail
  implicit none
  private
  public :: file_text, json_has, json_value, json_integer, json_number, json_string, json_logical

contains

  ! The whole file at path.
  function file_text(path) result(text)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: text
    integer(int64) :: bytes
    integer :: unit, iostat
    inquire(file=path, size=bytes)
    if (bytes <= 0) call fail(path // ": missing or empty", 2)
    allocate(character(len=bytes) :: text)
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat == 0) read(unit, iostat=iostat) text
    if (iostat /= 0) call fail(path // ": cannot be read", 2)
    close(unit)
  end function file_text

  logical function json_has(text, key)
    character(len=*), intent(in) :: text, key
    json_has = index(text, '"' // key // '"') > 0
  end function json_has

  ! The text of key's value, blanks and newlines around it removed: up to the next comma, brace
  ! or newline, or for an array up to its "]".
  function json_value(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: value
    integer :: start, finish
    start = index(text, '"' // key // '"')
    if (start == 0) call fail(path // ": no " // key, 2)
    start = start + len(key) + 2
    start = start + index(text(start:), ":")
    start = start - 1 + verify(text(start:), " " // achar(9) // achar(10) // achar(13))
    if (text(start:start) == "[") then
      finish = start - 1 + index(text(start:), "]") + 1
    else
      finish = start - 1 + scan(text(start:), ",}" // achar(10))
    end if
    if (finish <= start) finish = len(text) + 1
    value = trim(adjustl(text(start:finish - 1)))
  end function json_value

  integer(c_int64_t) function json_integer(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: field
    integer :: iostat
    field = json_value(text, key, path)
    iostat = 1
    if (verify(field, "-0123456789") == 0) read(field, *, iostat=iostat) value
    if (iostat /= 0) call fail(path // ": " // key // " is not an integer: " // field, 2)
  end function json_integer

  real(c_double) function json_number(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: field
    integer :: iostat
    field = json_value(text, key, path)
    iostat = 1
    if (verify(field, "-+.0123456789eE") == 0) read(field, *, iostat=iostat) value
    if (iostat /= 0) call fail(path // ": " // key // " is not a number: " // field, 2)
  end function json_number

  logical function json_logical(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: field
    field = json_value(text, key, path)
    if (field /= "true" .and. field /= "false") call fail(path // ": " // key // &
        " is not true or false: " // field, 2)
    value = field == "true"
  end function json_logical

  function json_string(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: value
    value = json_value(text, key, path)
    if (len(value) < 2) call fail(path // ": " // key // " is not a string", 2)
    if (value(1:1) /= '"' .or. value(len(value):) /= '"') &
        call fail(path // ": " // key // " is not a string", 2)
    value = value(2:len(value) - 1)
  end function json_string

end module denoise_json
